//! The `posix` backup driver: backups as chunk files (`backup_file_size`, default
//! 64 MiB) with a SHA-256 each and a metadata file, under `backup_posix_path`;
//! restores verify every checksum first. Heavy I/O runs off the arbiter.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::backup::Progress;
use super::options::{OptionDecl, OptionDefault, OptionReader, Rule};
use super::store_root::StoreRoot;
use super::{BackupDriver, BackupRecord, DriverContext, Volume, VolumeLocation};
use crate::lifecycle::DriverError;

/// Default chunk size.
pub const DEFAULT_FILE_SIZE: u64 = 64 << 20;

/// The options the `posix` backup driver reads (registered with its
/// factory). Like every backup driver option they are written in `[DEFAULT]`.
pub const OPTIONS: &[OptionDecl] = &[
    OptionDecl::new(
        "backup_posix_path",
        Rule::Text,
        OptionDefault::Required,
        "the backup store; missing or not writable: the backup service is down (retried)",
    ),
    OptionDecl::new(
        "backup_posix_require_mount",
        Rule::Bool,
        OptionDefault::Value("false"),
        "`true`: `backup_posix_path` must be a mount point, at setup and on every probe, so an unmounted store is never written to the filesystem beneath it",
    ),
    OptionDecl::new(
        "backup_file_size",
        Rule::Size { min: 4096 },
        OptionDefault::Value("64M"),
        "the chunk size of new backups (each chunk has its own SHA-256)",
    ),
    OptionDecl::new(
        "backup_rate_limit",
        Rule::Size { min: 0 },
        OptionDefault::Value("0"),
        "bytes per second a backup or restore copies at most (`0`: no limit; `100M`), so backups do not starve volumes of I/O",
    ),
    OptionDecl::new(
        "backup_qemu_img",
        Rule::Text,
        OptionDefault::Value("qemu-img"),
        "the `qemu-img` program that reads and writes volume images (a name on `PATH`, or a path)",
    ),
];

/// One chunk of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// File name in the backup's directory.
    pub name: String,
    /// Bytes in it.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// The metadata file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The backup.
    pub backup_id: String,
    /// Its source volume.
    pub volume_id: String,
    /// Total bytes.
    pub size: u64,
    /// Chunks in order.
    pub chunks: Vec<Chunk>,
}

/// The `posix` backup driver.
pub struct PosixBackupDriver {
    /// The store root, checked against its setup identity before every
    /// write: a root moved away, replaced, or unmounted (the mount point's
    /// own directory shows through) no longer matches, and nothing is
    /// written there.
    store: StoreRoot,
    file_size: u64,
    /// Bytes per second a call copies at most; 0 = no limit.
    rate_limit: u64,
    qemu_img: String,
}

/// Holds one call's copying to `rate` bytes per second, shared by its
/// worker threads: a worker that got ahead of the rate sleeps until the
/// clock catches up. A rate of 0 never waits.
struct Throttle {
    rate: u64,
    started: std::time::Instant,
    copied: std::sync::atomic::AtomicU64,
}

impl Throttle {
    fn new(rate: u64) -> Throttle {
        Throttle {
            rate,
            started: std::time::Instant::now(),
            copied: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts `bytes` copied and waits while the call is ahead of its rate.
    fn take(&self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        let copied = self
            .copied
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed)
            + bytes;
        let due = std::time::Duration::from_secs_f64(copied as f64 / self.rate as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

fn io(context: &str, e: std::io::Error) -> DriverError {
    DriverError::backend(format!("{context}: {e}"))
}

fn checked_id(id: &str) -> Result<String, DriverError> {
    super::volume::checked_volume_id(id).map(|u| u.hyphenated().to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use super::options::parse_size;

impl PosixBackupDriver {
    /// Builds the driver from its options, read through [`OPTIONS`]
    /// (`backup_posix_path` required).
    pub fn from_context(ctx: &DriverContext) -> Result<Self, DriverError> {
        let read = OptionReader::new("posix", OPTIONS, &ctx.spec);
        Ok(PosixBackupDriver {
            store: {
                let store = StoreRoot::new(
                    PathBuf::from(read.get::<String>("backup_posix_path")?),
                    "backup_posix_path",
                );
                if read.get::<bool>("backup_posix_require_mount")? {
                    store.require_mount("backup_posix_require_mount")
                } else {
                    store
                }
            },
            file_size: read.get("backup_file_size")?,
            rate_limit: read.get("backup_rate_limit")?,
            qemu_img: read.get("backup_qemu_img")?,
        })
    }

    /// The store root as it is now is the one set up: an existing directory
    /// with the device and inode it had at setup (a mount point if
    /// `backup_posix_require_mount`).
    /// Every write checks this first, and writes only below the root: the
    /// root itself is never created by a write.
    pub fn check_store(&self) -> Result<(), DriverError> {
        self.store.check()
    }

    fn dir(&self, backup_id: &str) -> Result<PathBuf, DriverError> {
        Ok(self.store.path().join(checked_id(backup_id)?))
    }

    fn location(volume: &Volume) -> Result<VolumeLocation, DriverError> {
        volume.location.as_deref().cloned().ok_or_else(|| {
            DriverError::Other(
                format!("volume {} has no local image to read or write", volume.id).into(),
            )
        })
    }

    async fn convert(
        &self,
        from_format: &str,
        from: &Path,
        to_format: &str,
        to: &Path,
    ) -> Result<(), DriverError> {
        let out = tokio::process::Command::new(&self.qemu_img)
            .args(["convert", "-q", "-f", from_format, "-O", to_format])
            .arg(from)
            .arg(to)
            .output()
            .await
            .map_err(|e| DriverError::MissingLibrary(format!("{}: {e}", self.qemu_img).into()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(DriverError::backend(format!(
                "qemu-img convert: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

/// Worker threads for chunk I/O: chunks are independent, so reading,
/// hashing and writing them spreads over the cores.
fn workers(chunks: usize) -> usize {
    (2 * std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(8)
        .min(chunks)
        .max(1)
}

/// Starts writing back `len` bytes of `file` at `offset` without waiting
/// (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`), so the disk works
/// while the next block is read and hashed; the fsync at the end then waits
/// only for what is left. Advisory: an error here is reported by that fsync.
fn start_writeback(file: &File, offset: u64, len: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: the descriptor stays open for the borrow of `file`, and
        // sync_file_range reads no memory of this process.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Reads `len` bytes of `source` at `offset`, hashing them into `out`
/// (each block read and written advances `progress`).
fn copy_range(
    source: &File,
    offset: u64,
    len: u64,
    out: &mut File,
    buffer: &mut [u8],
    progress: &Progress,
    throttle: &Throttle,
) -> std::io::Result<(u64, String)> {
    use std::os::unix::fs::FileExt;
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from((len - done).min(buffer.len() as u64)).unwrap_or(buffer.len());
        let n = source.read_at(&mut buffer[..want], offset + done)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
        start_writeback(out, done, n);
        throttle.take(n as u64);
        progress.advance(n as u64);
        done += n as u64;
    }
    Ok((done, hex(&hasher.finalize())))
}

/// Writes `source` as chunks with checksums (chunks spread over worker
/// threads, each synced), then the metadata, last, so a backup without
/// metadata is known incomplete.
fn write_chunks(
    source: &Path,
    dir: &Path,
    file_size: u64,
    backup_id: &str,
    volume_id: &str,
    progress: &Progress,
    throttle: &Throttle,
) -> Result<Metadata, DriverError> {
    // Only the backup's own directory: its parent, the store root, must
    // already exist (a vanished store is an error, never re-created).
    std::fs::create_dir(dir).map_err(|e| io(&dir.display().to_string(), e))?;
    progress.touch();
    let total = std::fs::metadata(source)
        .map_err(|e| io(&source.display().to_string(), e))?
        .len();
    let count = usize::try_from(total.div_ceil(file_size)).unwrap_or(usize::MAX);
    let threads = workers(count);
    let results: Vec<Result<Vec<(usize, Chunk)>, DriverError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                scope.spawn(move || -> Result<Vec<(usize, Chunk)>, DriverError> {
                    let file =
                        File::open(source).map_err(|e| io(&source.display().to_string(), e))?;
                    let mut buffer = vec![0u8; 1 << 20];
                    let mut mine = Vec::new();
                    for k in (w..count).step_by(threads) {
                        let name = format!("chunk-{k:05}");
                        let path = dir.join(&name);
                        let mut out =
                            File::create(&path).map_err(|e| io(&path.display().to_string(), e))?;
                        let offset = k as u64 * file_size;
                        let len = file_size.min(total - offset);
                        let (size, sha256) = copy_range(
                            &file,
                            offset,
                            len,
                            &mut out,
                            &mut buffer,
                            progress,
                            throttle,
                        )
                        .map_err(|e| io(&path.display().to_string(), e))?;
                        out.sync_all()
                            .map_err(|e| io(&path.display().to_string(), e))?;
                        progress.add(size);
                        mine.push((k, Chunk { name, size, sha256 }));
                    }
                    Ok(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DriverError::Other("a backup worker panicked".into())))
            })
            .collect()
    });
    let mut chunks: Vec<(usize, Chunk)> = Vec::with_capacity(count);
    for result in results {
        chunks.extend(result?);
    }
    chunks.sort_by_key(|(k, _)| *k);
    let chunks: Vec<Chunk> = chunks.into_iter().map(|(_, c)| c).collect();
    let size = chunks.iter().map(|c| c.size).sum();
    let metadata = Metadata {
        backup_id: backup_id.to_string(),
        volume_id: volume_id.to_string(),
        size,
        chunks,
    };
    let text = serde_json::to_vec_pretty(&metadata)
        .map_err(|e| DriverError::Other(e.to_string().into()))?;
    let tmp = dir.join("metadata.json.tmp");
    std::fs::write(&tmp, text).map_err(|e| io(&tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, dir.join("metadata.json"))
        .map_err(|e| io(&dir.display().to_string(), e))?;
    Ok(metadata)
}

/// Reads the metadata, then copies every chunk into `out` (a new file)
/// while verifying its checksum, chunks spread over worker threads. On any
/// mismatch `out` is removed and nothing else was touched: callers rename
/// `out` over the target only after success, so a corrupt backup never
/// half-overwrites a volume.
/// Each block verified and staged advances `progress` (the target itself
/// is not touched here). `out` is `volume_size` long when that is larger
/// than the backup: a restore into a larger volume keeps the volume's size
/// (as Cinder does), the bytes past the backup read as zeros.
fn restore_chunks(
    dir: &Path,
    out_path: &Path,
    volume_size: u64,
    progress: &Progress,
    throttle: &Throttle,
) -> Result<u64, DriverError> {
    let meta_path = dir.join("metadata.json");
    let text = std::fs::read(&meta_path)
        .map_err(|e| io(&format!("backup metadata {}", meta_path.display()), e))?;
    let metadata: Metadata = serde_json::from_slice(&text).map_err(|e| {
        DriverError::Other(
            format!("backup metadata {} is corrupt: {e}", meta_path.display()).into(),
        )
    })?;
    let length = metadata.size.max(volume_size);
    let result = copy_verified(dir, &metadata, out_path, length, progress, throttle);
    if result.is_err() {
        let _ = std::fs::remove_file(out_path);
    }
    result.map(|()| metadata.size)
}

/// Restores into a staged file beside `target` and renames it over
/// `target` only once every chunk verified (then syncs the directory), so a
/// corrupt backup leaves the target volume exactly as it was.
///
/// `progress` says the target was written only once the rename replaced
/// it: a staged sibling is not the volume. On any failure the staged file
/// is removed through a handle on the directory opened before staging, so
/// it goes even if the directory was moved away meanwhile (the rename by
/// path then fails and the volume is untouched).
fn restore_in_place(
    dir: &Path,
    target: &Path,
    volume_size: u64,
    progress: &Progress,
    throttle: &Throttle,
) -> Result<(), DriverError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| DriverError::Other(format!("{} is not a file", target.display()).into()))?;
    let parent = target.parent().ok_or_else(|| {
        DriverError::Other(format!("{} has no directory", target.display()).into())
    })?;
    let directory = File::open(parent).map_err(|e| io(&parent.display().to_string(), e))?;
    let staged_name = super::staging::staged_name(&name);
    let staged = target.with_file_name(&staged_name);
    // Locked until it replaced the target: a staged copy nobody holds is a
    // dead restore's, removed by the volume driver (`driver::staging`).
    let _held =
        super::staging::create_locked(&staged).map_err(|e| io(&staged.display().to_string(), e))?;
    let replaced = restore_chunks(dir, &staged, volume_size, progress, throttle).and_then(|_| {
        std::fs::rename(&staged, target).map_err(|e| io(&target.display().to_string(), e))
    });
    if let Err(e) = replaced {
        let _ = rustix::fs::unlinkat(
            &directory,
            staged_name.as_str(),
            rustix::fs::AtFlags::empty(),
        );
        return Err(e);
    }
    // The target was replaced: from here on it counts as written.
    progress.touch();
    directory
        .sync_all()
        .map_err(|e| io(&parent.display().to_string(), e))
}

fn copy_verified(
    dir: &Path,
    metadata: &Metadata,
    out_path: &Path,
    length: u64,
    progress: &Progress,
    throttle: &Throttle,
) -> Result<(), DriverError> {
    use std::os::unix::fs::FileExt;
    let out = File::create(out_path).map_err(|e| io(&out_path.display().to_string(), e))?;
    out.set_len(length)
        .map_err(|e| io(&out_path.display().to_string(), e))?;
    let offsets: Vec<u64> = metadata
        .chunks
        .iter()
        .scan(0u64, |at, c| {
            let here = *at;
            *at += c.size;
            Some(here)
        })
        .collect();
    let count = metadata.chunks.len();
    let threads = workers(count);
    let out = &out;
    let offsets = &offsets;
    let results: Vec<Result<(), DriverError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                scope.spawn(move || -> Result<(), DriverError> {
                    let mut buffer = vec![0u8; 1 << 20];
                    for k in (w..count).step_by(threads) {
                        let chunk = &metadata.chunks[k];
                        let path = dir.join(&chunk.name);
                        let mut file = File::open(&path).map_err(|e| io(&path.display().to_string(), e))?;
                        let mut hasher = Sha256::new();
                        let mut n = 0u64;
                        loop {
                            let read = file.read(&mut buffer).map_err(|e| io(&path.display().to_string(), e))?;
                            if read == 0 {
                                break;
                            }
                            hasher.update(&buffer[..read]);
                            out.write_all_at(&buffer[..read], offsets[k] + n)
                                .map_err(|e| io(&out_path.display().to_string(), e))?;
                            start_writeback(out, offsets[k] + n, read);
                            throttle.take(read as u64);
                            progress.advance(read as u64);
                            n += read as u64;
                        }
                        let digest = hex(&hasher.finalize());
                        if n != chunk.size || digest != chunk.sha256 {
                            return Err(DriverError::Other(
                                format!(
                                    "backup {} is corrupt: {} has {n} bytes with sha256 {digest}, expected {} bytes with sha256 {}",
                                    metadata.backup_id, chunk.name, chunk.size, chunk.sha256
                                )
                                .into(),
                            ));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DriverError::Other("a restore worker panicked".into())))
            })
            .collect()
    });
    for result in results {
        result?;
    }
    out.sync_all()
        .map_err(|e| io(&out_path.display().to_string(), e))
}

/// What says a file was changed: device, inode, length and modification
/// time (`None` when it cannot be read).
fn file_identity(path: &Path) -> Option<(u64, u64, u64, Option<std::time::SystemTime>)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.len(), m.modified().ok()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DriverError::Other(format!("backup worker failed: {e}").into()))?
}

#[async_trait(?Send)]
impl BackupDriver for PosixBackupDriver {
    async fn do_setup(&self) -> Result<(), DriverError> {
        self.store.setup()
    }

    async fn probe(&self) -> Result<(), DriverError> {
        self.store.probe()
    }

    /// The store set up is still there and writable: what a rollback to
    /// this instance must pass.
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        self.store.probe()
    }

    async fn backup(&self, backup: &BackupRecord, volume: &Volume) -> Result<(), DriverError> {
        backup.progress.start();
        self.check_store()?;
        let dir = self.dir(&backup.id)?;
        let location = Self::location(volume)?;
        let (source, temporary) = if location.format == "raw" {
            (location.path.clone(), None)
        } else {
            let tmp = self
                .store
                .path()
                .join(format!(".{}.raw", checked_id(&backup.id)?));
            self.convert(&location.format, &location.path, "raw", &tmp)
                .await?;
            (tmp.clone(), Some(tmp))
        };
        let (file_size, backup_id, volume_id) =
            (self.file_size, backup.id.clone(), volume.id.clone());
        let progress = backup.progress.clone();
        let throttle = Throttle::new(self.rate_limit);
        let result = blocking(move || {
            write_chunks(
                &source, &dir, file_size, &backup_id, &volume_id, &progress, &throttle,
            )
        })
        .await;
        if let Some(tmp) = temporary {
            let _ = std::fs::remove_file(tmp);
        }
        result.map(drop)
    }

    async fn restore(&self, backup: &BackupRecord, volume: &Volume) -> Result<(), DriverError> {
        backup.progress.start();
        self.check_store()?;
        let dir = self.dir(&backup.id)?;
        let location = Self::location(volume)?;
        if location.format == "raw" {
            let target = location.path.clone();
            let progress = backup.progress.clone();
            let throttle = Throttle::new(self.rate_limit);
            let size = volume.size_bytes;
            return blocking(move || restore_in_place(&dir, &target, size, &progress, &throttle))
                .await;
        }
        let tmp = self
            .store
            .path()
            .join(format!(".{}.restore.raw", checked_id(&backup.id)?));
        let raw = tmp.clone();
        let progress = backup.progress.clone();
        let throttle = Throttle::new(self.rate_limit);
        let size = volume.size_bytes;
        let restored =
            blocking(move || restore_chunks(&dir, &raw, size, &progress, &throttle)).await;
        let converted = match restored {
            Ok(_) => {
                // qemu-img writes the target from here on, unless it fails
                // before touching it (the target's file as it was).
                let before = file_identity(&location.path);
                let converted = self
                    .convert("raw", &tmp, &location.format, &location.path)
                    .await;
                if converted.is_ok() || file_identity(&location.path) != before {
                    backup.progress.touch();
                }
                converted
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&tmp);
        converted
    }

    async fn delete_backup(&self, backup: &BackupRecord) -> Result<(), DriverError> {
        let dir = self.dir(&backup.id)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir.display().to_string(), e)),
        }
    }
}

#[cfg(test)]
mod tests;
