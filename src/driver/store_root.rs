//! A driver's store root (`backup_posix_path`, `volumes_dir`): the directory
//! recorded at setup by its device and inode, checked before every write and probe.
//!
//! The rule (issue #12): drivers write only *below* a root that exists, is a
//! directory and is the same directory (device, inode) it was at setup; the
//! root itself is never created by a write. A root that is moved away,
//! replaced, or unmounted (the mount point's own directory shows through)
//! no longer matches. Optionally the root must be a mount point.

use std::cell::Cell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::lifecycle::DriverError;

/// A store root and what it was at setup.
#[derive(Debug)]
pub(crate) struct StoreRoot {
    path: PathBuf,
    /// The option that names it, in errors: `volumes_dir`, `backup_posix_path`.
    option: &'static str,
    /// The option that asks for a mount point, when set
    /// (`backup_posix_require_mount`); `None` = not required.
    require_mount: Option<&'static str>,
    /// (device, inode) at setup; `None` before the first setup.
    identity: Cell<Option<(u64, u64)>>,
}

impl StoreRoot {
    /// A root at `path`, named by `option` in every error.
    pub(crate) fn new(path: PathBuf, option: &'static str) -> StoreRoot {
        StoreRoot {
            path,
            option,
            require_mount: None,
            identity: Cell::new(None),
        }
    }

    /// Also requires the root to be a mount point, as `option = true` asks.
    pub(crate) fn require_mount(mut self, option: &'static str) -> StoreRoot {
        self.require_mount = Some(option);
        self
    }

    /// The root's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn gone(&self, e: &std::io::Error) -> DriverError {
        DriverError::backend(format!(
            "{} {} does not exist ({e}); is it mounted?",
            self.option,
            self.path.display()
        ))
    }

    /// The root's (device, inode) now, once it is an existing directory and,
    /// if required, a mount point.
    fn identity_now(&self) -> Result<(u64, u64), DriverError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| self.gone(&e))?;
        if !meta.is_dir() {
            return Err(DriverError::backend(format!(
                "{} {} is not a directory",
                self.option,
                self.path.display()
            )));
        }
        if let Some(flag) = self.require_mount
            && !is_mount_point(&self.path)?
        {
            return Err(DriverError::backend(format!(
                "{} {} is not a mount point ({flag} = true)",
                self.option,
                self.path.display()
            )));
        }
        Ok((meta.dev(), meta.ino()))
    }

    /// Setup: the root exists, is a directory (a mount point if required)
    /// and is writable; the first setup records its identity, which every
    /// later check compares, and so does a setup retried on this driver
    /// instance: an unmounted store's mount point is never taken for the
    /// store by a retry. (A reload builds a new instance, which records
    /// afresh.) Never creates the root.
    pub(crate) fn setup(&self) -> Result<(), DriverError> {
        self.check()?;
        self.writable()?;
        if self.identity.get().is_none() {
            self.identity.set(Some(self.identity_now()?));
        }
        Ok(())
    }

    /// The root as it is now is the one set up: an existing directory with
    /// the device and inode it had at setup (a mount point if required).
    /// Every write checks this first; writes go only below the root.
    pub(crate) fn check(&self) -> Result<(), DriverError> {
        let now = self.identity_now()?;
        match self.identity.get() {
            Some(then) if then != now => Err(DriverError::backend(format!(
                "{} {} is not the directory set up (device and inode changed: moved, replaced or unmounted)",
                self.option,
                self.path.display()
            ))),
            _ => Ok(()),
        }
    }

    /// [`check`](Self::check), then a file can be written and removed in it:
    /// a health probe.
    pub(crate) fn probe(&self) -> Result<(), DriverError> {
        self.check()?;
        self.writable()
    }

    fn writable(&self) -> Result<(), DriverError> {
        let probe = self.path.join(".rekindle-write-probe");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                DriverError::backend(format!(
                    "{} {} is not writable: {e}",
                    self.option,
                    self.path.display()
                ))
            })
    }
}

/// Whether `path` is the root of a mount: the kernel's own answer
/// (`statx` `STATX_ATTR_MOUNT_ROOT`, Linux 5.8+, which also sees bind
/// mounts), else the classic test (its device differs from its parent's,
/// or it is `/`).
pub(crate) fn is_mount_point(path: &Path) -> Result<bool, DriverError> {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    let failed = |e: &dyn std::fmt::Display| {
        DriverError::backend(format!(
            "{}: cannot tell if it is a mount point: {e}",
            path.display()
        ))
    };
    if let Ok(st) = statx(CWD, path, AtFlags::empty(), StatxFlags::BASIC_STATS)
        && st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
    {
        return Ok(st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT));
    }
    let meta = std::fs::metadata(path).map_err(|e| failed(&e))?;
    let parent = std::fs::metadata(path.join("..")).map_err(|e| failed(&e))?;
    Ok(meta.dev() != parent.dev() || meta.ino() == parent.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rekindle-store-root-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root")).expect("scratch dir");
        dir
    }

    #[test]
    fn a_root_moved_away_or_replaced_fails_the_check_and_is_never_recreated() {
        let dir = scratch("moved");
        let root = StoreRoot::new(dir.join("root"), "volumes_dir");
        root.setup().expect("setup");
        root.probe().expect("probe right after setup");

        std::fs::rename(dir.join("root"), dir.join("root.gone")).expect("mv away");
        let gone = root.probe().expect_err("a moved root fails");
        assert!(
            gone.to_string().contains("volumes_dir") && gone.to_string().contains("does not exist"),
            "{gone}"
        );
        assert!(!dir.join("root").exists(), "the check created the root");

        std::fs::create_dir(dir.join("root")).expect("an empty stand-in");
        let replaced = root.check().expect_err("a replaced root fails");
        assert!(
            replaced.to_string().contains("device and inode changed"),
            "{replaced}"
        );
        let retried = root
            .setup()
            .expect_err("a retried setup does not adopt the stand-in");
        assert!(
            retried.to_string().contains("device and inode changed"),
            "{retried}"
        );
        let fresh = StoreRoot::new(dir.join("root"), "volumes_dir");
        fresh
            .setup()
            .expect("a new instance (a reload) records the root afresh");

        std::fs::remove_dir(dir.join("root")).expect("rm stand-in");
        std::fs::rename(dir.join("root.gone"), dir.join("root")).expect("mv back");
        root.probe().expect("the original root is accepted again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn setup_refuses_a_missing_root_or_a_file_and_creates_nothing() {
        let dir = scratch("missing");
        let missing = StoreRoot::new(dir.join("nope"), "backup_posix_path");
        let e = missing.setup().expect_err("missing root");
        assert!(
            e.to_string()
                .starts_with("backend error: backup_posix_path "),
            "{e}"
        );
        assert!(!dir.join("nope").exists());

        std::fs::write(dir.join("file"), b"x").expect("a file");
        let file = StoreRoot::new(dir.join("file"), "backup_posix_path");
        let e = file.setup().expect_err("a file is not a root");
        assert!(e.to_string().contains("is not a directory"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_required_mount_point_is_checked_at_setup_and_on_every_check() {
        let dir = scratch("mount");
        let plain = StoreRoot::new(dir.join("root"), "backup_posix_path")
            .require_mount("backup_posix_require_mount");
        let e = plain
            .setup()
            .expect_err("a plain directory is not a mount point");
        assert_eq!(
            e.to_string(),
            format!(
                "backend error: backup_posix_path {} is not a mount point (backup_posix_require_mount = true)",
                dir.join("root").display()
            )
        );
        assert!(is_mount_point(Path::new("/")).expect("/"));
        assert!(is_mount_point(Path::new("/proc")).expect("/proc"));
        assert!(!is_mount_point(&dir.join("root")).expect("plain dir"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
