//! The state dir: owned by one daemon at a time (an exclusive lock on `rekindle.lock`,
//! holding the owner's pid), and its write faults named in an operator's words.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The lock file's name inside `state_dir`.
pub const LOCK_FILE: &str = "rekindle.lock";

/// Why the state dir cannot be taken.
#[derive(Debug, Error)]
pub enum StateDirError {
    /// Another process holds the lock: a second daemon on the same records
    /// would resolve the first one's live work.
    #[error(
        "state_dir {dir} is in use by another rekindle daemon{}; stop it first, or give this one its own state_dir",
        match pid { Some(pid) => format!(" (pid {pid})"), None => String::new() }
    )]
    InUse {
        /// The state dir.
        dir: PathBuf,
        /// The holder's pid, as it wrote it in the lock file.
        pid: Option<u32>,
    },
    /// The state dir or its lock file cannot be created or locked.
    #[error("state_dir {dir}: {}", in_words(source))]
    Io {
        /// The state dir.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The exclusive hold on a state dir, released when dropped (or when the
/// process ends, however it ends: the kernel drops a dead holder's lock).
#[derive(Debug)]
pub struct StateDirLock {
    _file: File,
}

impl StateDirLock {
    /// Takes `dir` (created if missing) for this process: an exclusive
    /// `flock` on `dir/rekindle.lock`, which then holds this pid.
    ///
    /// Errors: [`StateDirError::InUse`] naming the holder's pid when
    /// another process holds it; [`StateDirError::Io`] when the directory
    /// or file cannot be made. Nothing in `dir` changes on an error.
    pub fn acquire(dir: &Path) -> Result<StateDirLock, StateDirError> {
        let io = |source| StateDirError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StateDirError::InUse {
                    dir: dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Held: the pid is ours to write (a reader of a second start names it).
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(StateDirLock { _file: file })
    }
}

/// An I/O error in an operator's words: "no space left on device",
/// "read-only file system", "permission denied" (the OS's text, without
/// its error number).
pub fn in_words(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

/// Why `dir` cannot be written now, found by writing and syncing a small
/// probe file there (then removed), or `None` if it can: what a database
/// error such as SQLite's "disk I/O error" stands for ("no space left on
/// device", "read-only file system").
pub fn write_fault(dir: &Path) -> Option<String> {
    let probe = dir.join(".rekindle-write-probe");
    let written = File::create(&probe).and_then(|mut f| {
        f.write_all(&[0u8; 4096])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.err().map(|e| {
        format!(
            "state_dir {} cannot be written: {}",
            dir.display(),
            in_words(&e)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rekindle-statedir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_holder_is_refused_naming_the_dir_and_the_first_pid() {
        let dir = scratch("lock");
        let first = StateDirLock::acquire(&dir).expect("first");
        let second = StateDirLock::acquire(&dir).expect_err("second must be refused");
        let text = second.to_string();
        assert!(
            text.contains(&dir.display().to_string())
                && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        StateDirLock::acquire(&dir).expect("free again once the first is gone");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn io_errors_read_as_words() {
        let e = std::io::Error::from_raw_os_error(28);
        assert_eq!(in_words(&e), "no space left on device");
        let e = std::io::Error::from_raw_os_error(30);
        assert_eq!(in_words(&e), "read-only file system");
    }

    #[test]
    fn a_writable_dir_has_no_fault_and_a_missing_one_is_named() {
        let dir = scratch("probe");
        std::fs::create_dir_all(&dir).expect("dir");
        assert_eq!(write_fault(&dir), None);
        assert!(!dir.join(".rekindle-write-probe").exists());
        let gone = dir.join("missing");
        let fault = write_fault(&gone).expect("a missing dir cannot be written");
        assert!(fault.contains("no such file or directory"), "{fault}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
