//! Staged restore copies: a restore writes `.<image>.restoring` beside its target and holds
//! an exclusive lock on it while it runs; one nobody holds is a dead restore's, removed.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".restoring";

/// The staged copy's file name for a target image named `target_name`.
pub fn staged_name(target_name: &str) -> String {
    format!(".{target_name}{SUFFIX}")
}

/// Creates the staged copy at `path` and locks it for the restore's life
/// (released when the returned file is dropped, or the process dies).
pub fn create_locked(path: &Path) -> std::io::Result<File> {
    let file = File::create(path)?;
    file.lock()?;
    Ok(file)
}

/// Removes `path` if it is a staged copy no running restore holds;
/// answers whether it did.
fn remove_if_dead(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => std::fs::remove_file(path).is_ok(),
        Err(TryLockError::WouldBlock | TryLockError::Error(_)) => false,
    }
}

/// Removes the staged copies in `dir` that no running restore holds (left
/// by a restore killed mid-way); answers what it removed.
pub fn sweep_dead(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(SUFFIX))
        })
        .filter(|p| remove_if_dead(p))
        .collect()
}

/// Removes the staged copy beside `target` if no running restore holds it.
pub fn remove_dead_beside(target: &Path) -> bool {
    match target.file_name().and_then(|n| n.to_str()) {
        Some(name) => remove_if_dead(&target.with_file_name(staged_name(name))),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_copy_stays_and_a_dead_one_goes() {
        let dir = std::env::temp_dir().join(format!("rekindle-staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let live = dir.join(staged_name("volume-a.raw"));
        let dead = dir.join(staged_name("volume-b.raw"));
        let held = create_locked(&live).expect("live restore");
        drop(create_locked(&dead).expect("dead restore"));
        std::fs::write(dir.join("volume-b.raw"), b"image").expect("image");
        assert_eq!(sweep_dead(&dir), vec![dead.clone()]);
        assert!(live.exists() && dir.join("volume-b.raw").exists());
        assert!(!remove_dead_beside(&dir.join("volume-a.raw")), "held");
        drop(held);
        assert!(remove_dead_beside(&dir.join("volume-a.raw")));
        assert!(!live.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
