//! The `qemu` volume driver: image files (qcow2 or raw) made with `qemu-img`, exported
//! to the attaching host by a `qemu-nbd` server per volume; exports are recorded
//! durably and re-adopted (or restarted, or removed) when the driver is set up again.
//!
//! Its options are declared in [`OPTIONS`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::options::{OptionDecl, OptionDefault, OptionReader, Rule};
use super::store_root::StoreRoot;
use super::{
    Capabilities, ConnectionInfo, Connector, DriverContext, DriverEvent, DriverEvents, Volume,
    VolumeDriver, VolumeId, VolumeLocation,
};
use crate::lifecycle::DriverError;
use crate::records::{ExportRow, RecordStore};

/// The driver's version, reported in capabilities.
pub const VERSION: &str = "1.0.0";

/// The options the `qemu` driver reads (registered with its factory).
pub const OPTIONS: &[OptionDecl] = &[
    OptionDecl::new(
        "volumes_dir",
        Rule::Text,
        OptionDefault::Required,
        "where volume images live (`volume-<uuid>.qcow2`); missing or not writable: recoverable",
    ),
    OptionDecl::new(
        "volume_format",
        Rule::OneOf(&["qcow2", "raw"]),
        OptionDefault::Value("qcow2"),
        "the image format of new and existing volumes (their file names end with it)",
    )
    .restart_only(),
    OptionDecl::new(
        "export_host",
        Rule::IpAddr,
        OptionDefault::Value("127.0.0.1"),
        "the address the `qemu-nbd` servers bind",
    ),
    OptionDecl::new(
        "export_port_range",
        Rule::PortRange,
        OptionDefault::Value("10809-10908"),
        "the TCP ports exports use",
    ),
    OptionDecl::new(
        "qemu_img",
        Rule::Text,
        OptionDefault::Value("qemu-img"),
        "the `qemu-img` program (a name looked up on `PATH`, or a path); missing: fatal `MissingLibrary`",
    ),
    OptionDecl::new(
        "qemu_nbd",
        Rule::Text,
        OptionDefault::Value("qemu-nbd"),
        "the `qemu-nbd` program (a name looked up on `PATH`, or a path); missing: fatal `MissingLibrary`",
    ),
];

fn other(message: String) -> DriverError {
    DriverError::Other(message.into())
}

/// Finds `program` on `PATH` (or checks it as a path).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

pub use super::volume::checked_volume_id;

/// How long a new `qemu-nbd` has to accept connections before its export
/// fails (it is then stopped).
pub const SERVE_DEADLINE: Duration = Duration::from_secs(5);

/// The environment variable naming the backend a `qemu-nbd` serves for:
/// `<backend>@<volumes_dir>`, so daemons on one machine (each with its own
/// state dir and volumes) never take each other's servers for their own.
const OWNER_ENV: &str = "REKINDLE_QEMU_BACKEND";

struct Export {
    pid: u32,
    port: u16,
    child: Option<std::process::Child>,
}

impl Export {
    /// Stops the server: our child is killed and reaped; an adopted one
    /// (from before a restart) gets SIGTERM if it still serves `volume_id`.
    async fn stop(mut self, volume_id: &str) {
        match self.child.as_mut() {
            Some(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None if pid_alive(self.pid, volume_id) => stop_pid(self.pid).await,
            None => {}
        }
    }
}

/// The `qemu` volume driver.
pub struct QemuDriver {
    backend: String,
    /// `volumes_dir`, checked against its setup identity before every
    /// write and on every stats call (a publisher tick): moved away,
    /// replaced or unmounted, the backend is not ready and nothing is
    /// written or re-created there.
    volumes_dir: StoreRoot,
    format: &'static str,
    export_host: IpAddr,
    ports: RangeInclusive<u16>,
    qemu_img: String,
    qemu_nbd: String,
    records: Option<Rc<dyn RecordStore>>,
    exports: RefCell<BTreeMap<VolumeId, Export>>,
    /// Held while an export is started, repaired or removed, so a
    /// publisher tick's check and an attach never race on one export.
    export_lock: tokio::sync::Mutex<()>,
    events: DriverEvents,
}

impl QemuDriver {
    /// Builds the driver from the backend's options, read through
    /// [`OPTIONS`]; bad values are fatal `Config` errors naming the option.
    pub fn from_context(
        ctx: &DriverContext,
        records: Option<Rc<dyn RecordStore>>,
    ) -> Result<Self, DriverError> {
        let read = OptionReader::new("qemu", OPTIONS, &ctx.spec);
        Ok(QemuDriver {
            backend: ctx.spec.backend.clone(),
            volumes_dir: StoreRoot::new(
                PathBuf::from(read.get::<String>("volumes_dir")?),
                "volumes_dir",
            ),
            format: read.get("volume_format")?,
            export_host: read.get("export_host")?,
            ports: read.get("export_port_range")?,
            qemu_img: read.get("qemu_img")?,
            qemu_nbd: read.get("qemu_nbd")?,
            records,
            exports: RefCell::default(),
            export_lock: tokio::sync::Mutex::new(()),
            events: ctx.events.clone(),
        })
    }

    fn path(&self, id: &str) -> Result<PathBuf, DriverError> {
        let id = checked_volume_id(id)?;
        Ok(self
            .volumes_dir
            .path()
            .join(format!("volume-{}.{}", id.hyphenated(), self.format)))
    }

    /// What this backend's servers carry in [`OWNER_ENV`].
    fn owner(&self) -> String {
        format!("{}@{}", self.backend, self.volumes_dir.path().display())
    }

    fn record_error(e: crate::records::RecordsError) -> DriverError {
        other(e.to_string())
    }

    async fn qemu_img(&self, args: &[&std::ffi::OsStr]) -> Result<(), DriverError> {
        let out = tokio::process::Command::new(&self.qemu_img)
            .args(args)
            .output()
            .await
            .map_err(|e| DriverError::MissingLibrary(format!("{}: {e}", self.qemu_img).into()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(DriverError::backend(format!(
                "qemu-img {}: {}",
                args.first()
                    .map(|a| a.to_string_lossy())
                    .unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Starts a `qemu-nbd` for `id` on `port` and returns once it accepts
    /// connections. A server that exits first (its image held by another
    /// program, a bad image) or does not listen within [`SERVE_DEADLINE`]
    /// is an error naming the cause (its stderr), and leaves no process:
    /// it is killed and reaped before this returns.
    async fn serve(&self, id: &str, path: &Path, port: u16) -> Result<Export, DriverError> {
        use std::io::{Read, Seek};
        use std::os::unix::process::CommandExt;
        let stderr = rustix::fs::memfd_create("qemu-nbd-stderr", rustix::fs::MemfdFlags::CLOEXEC)
            .map(std::fs::File::from)
            .map_err(|e| other(format!("cannot capture qemu-nbd's errors: {e}")))?;
        let child_stderr = stderr
            .try_clone()
            .map_err(|e| other(format!("cannot capture qemu-nbd's errors: {e}")))?;
        let mut child = std::process::Command::new(&self.qemu_nbd)
            .arg("--persistent")
            .arg("--shared=8")
            .arg(format!("--format={}", self.format))
            .arg(format!("--export-name={id}"))
            .arg(format!("--bind={}", self.export_host))
            .arg(format!("--port={port}"))
            .arg(path)
            // Names the backend that owns it: servers of this backend that
            // no record names are found by it and stopped.
            .env(OWNER_ENV, self.owner())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(child_stderr)
            // Its own process group: a Ctrl-C or restart of the daemon does
            // not take the export (and the compute host's disk) down.
            .process_group(0)
            .spawn()
            .map_err(|e| DriverError::MissingLibrary(format!("{}: {e}", self.qemu_nbd).into()))?;
        let addr = SocketAddr::new(self.export_host, port);
        let started = tokio::time::Instant::now();
        let failure = loop {
            match child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    let mut text = String::new();
                    let mut stderr = stderr;
                    let _ = stderr.rewind();
                    let _ = stderr.read_to_string(&mut text);
                    let text = text.trim();
                    break format!(
                        "qemu-nbd for volume {id} on {addr} exited at once ({status}){}",
                        if text.is_empty() {
                            String::new()
                        } else {
                            format!(": {text}")
                        }
                    );
                }
                Err(e) => break format!("qemu-nbd for volume {id}: {e}"),
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_ok() {
                return Ok(Export {
                    pid: child.id(),
                    port,
                    child: Some(child),
                });
            }
            if started.elapsed() >= SERVE_DEADLINE {
                break format!(
                    "qemu-nbd for volume {id} did not listen on {addr} within {}",
                    humantime::format_duration(SERVE_DEADLINE)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let _ = child.kill();
        let _ = child.wait();
        Err(DriverError::backend(failure))
    }

    /// Records `export` of `volume_id` for `connector_host`: a server is
    /// trusted only once recorded, so one whose record cannot be written is
    /// stopped and the error returned.
    async fn record_export(
        &self,
        volume_id: &VolumeId,
        export: Export,
        connector_host: String,
    ) -> Result<(), DriverError> {
        if let Some(records) = &self.records {
            let row = ExportRow {
                volume_id: volume_id.to_string(),
                backend: self.backend.clone(),
                pid: export.pid,
                host: self.export_host.to_string(),
                port: export.port,
                connector_host,
            };
            if let Err(e) = records.put_export(&row).await {
                export.stop(volume_id).await;
                return Err(other(format!(
                    "volume {volume_id}'s export was stopped: its record cannot be written: {e}"
                )));
            }
        }
        self.exports.borrow_mut().insert(volume_id.clone(), export);
        Ok(())
    }

    /// Stops servers of this backend (started by this driver, in this or an
    /// earlier process) that no export names: left by a crash between start
    /// and record, or by a record lost. Answers how many were stopped.
    async fn stop_unrecorded_servers(&self) -> usize {
        let known: Vec<u32> = self.exports.borrow().values().map(|e| e.pid).collect();
        let mut stopped = 0;
        for pid in servers_owned_by(&self.owner()) {
            if known.contains(&pid) {
                continue;
            }
            tracing::warn!(backend = %self.backend, pid, "stopping a qemu-nbd of this backend that no export record names");
            stop_pid(pid).await;
            stopped += 1;
        }
        stopped
    }

    fn free_port(&self) -> Result<u16, DriverError> {
        let used: Vec<u16> = self.exports.borrow().values().map(|e| e.port).collect();
        self.ports
            .clone()
            .filter(|p| !used.contains(p))
            .find(|p| TcpListener::bind(SocketAddr::new(self.export_host, *p)).is_ok())
            .ok_or_else(|| {
                DriverError::backend(format!(
                    "no free port in export_port_range {}-{}",
                    self.ports.start(),
                    self.ports.end()
                ))
            })
    }

    /// Re-adopts recorded exports whose server is alive, restarts dead ones,
    /// and removes those whose volume is gone.
    async fn adopt_exports(&self) -> Result<(), DriverError> {
        let Some(records) = &self.records else {
            return Ok(());
        };
        for row in records
            .exports(&self.backend)
            .await
            .map_err(Self::record_error)?
        {
            let path = self.path(&row.volume_id)?;
            let alive = pid_alive(row.pid, &row.volume_id);
            if !path.exists() {
                if alive {
                    stop_pid(row.pid).await;
                }
                records
                    .delete_export(&row.volume_id)
                    .await
                    .map_err(Self::record_error)?;
                tracing::warn!(backend = %self.backend, volume = %row.volume_id, "export removed: its volume is gone");
                continue;
            }
            let volume_id = VolumeId::from(&row.volume_id);
            if alive {
                let export = Export {
                    pid: row.pid,
                    port: row.port,
                    child: None,
                };
                self.exports.borrow_mut().insert(volume_id, export);
                continue;
            }
            let export = self.serve(&row.volume_id, &path, row.port).await?;
            let pid = export.pid;
            self.record_export(&volume_id, export, row.connector_host.clone())
                .await?;
            tracing::info!(backend = %self.backend, volume = %row.volume_id, port = row.port, "export restarted");
            self.events.emit(DriverEvent::ExportRestarted {
                volume_id,
                host: self.export_host.to_string(),
                old_port: row.port,
                port: row.port,
                pid,
                reason: format!(
                    "its qemu-nbd (pid {}) was not running when the driver was set up",
                    row.pid
                ),
            });
        }
        self.stop_unrecorded_servers().await;
        Ok(())
    }
}

impl QemuDriver {
    /// Why `volume_id`'s export does not serve, or `None` if its server runs
    /// and accepts connections (a connect on loopback: tens of microseconds).
    fn export_fault(&self, volume_id: &VolumeId) -> Option<String> {
        let mut exports = self.exports.borrow_mut();
        let export = exports.get_mut(volume_id)?;
        let exited = match export.child.as_mut() {
            // try_wait also reaps a dead child.
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => !pid_alive(export.pid, volume_id),
        };
        if exited {
            return Some(format!("its qemu-nbd (pid {}) is not running", export.pid));
        }
        let addr = SocketAddr::new(self.export_host, export.port);
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(_) => None,
            Err(e) => Some(format!(
                "its qemu-nbd (pid {}) does not accept connections on {addr}: {e}",
                export.pid
            )),
        }
    }

    /// Checks `volume_id`'s export and restarts it if it is dead: on its
    /// port, or another free one if that is taken; recorded and reported
    /// (`export.restarted`, or `export.restart_failed` with the error).
    /// Call with `export_lock` held.
    async fn repair_export(&self, volume_id: &VolumeId) -> Result<(), DriverError> {
        let Some(reason) = self.export_fault(volume_id) else {
            return Ok(());
        };
        let result = self.restart_export(volume_id, &reason).await;
        if let Err(e) = &result {
            tracing::error!(backend = %self.backend, volume = %volume_id, %reason, error = %e, "dead export could not be restarted");
            self.events.emit(DriverEvent::ExportRestartFailed {
                volume_id: volume_id.clone(),
                reason: format!("{reason}; restart failed: {e}"),
            });
        }
        result
    }

    async fn restart_export(&self, volume_id: &VolumeId, reason: &str) -> Result<(), DriverError> {
        self.volumes_dir.check()?;
        let Some(old) = self.exports.borrow_mut().remove(volume_id) else {
            return Ok(());
        };
        let old_port = old.port;
        old.stop(volume_id).await;
        let path = self.path(volume_id)?;
        if !path.exists() {
            return Err(other(format!(
                "volume {volume_id}'s image {} is gone",
                path.display()
            )));
        }
        let port = if TcpListener::bind(SocketAddr::new(self.export_host, old_port)).is_ok() {
            old_port
        } else {
            self.free_port()?
        };
        let export = self.serve(volume_id, &path, port).await?;
        let pid = export.pid;
        let connector_host = match &self.records {
            Some(records) => records
                .export(volume_id)
                .await
                .map_err(Self::record_error)?
                .map(|row| row.connector_host)
                .unwrap_or_default(),
            None => String::new(),
        };
        self.record_export(volume_id, export, connector_host)
            .await?;
        tracing::warn!(backend = %self.backend, volume = %volume_id, old_port, port, %reason, "dead export restarted");
        self.events.emit(DriverEvent::ExportRestarted {
            volume_id: volume_id.clone(),
            host: self.export_host.to_string(),
            old_port,
            port,
            pid,
            reason: reason.to_string(),
        });
        Ok(())
    }
}

/// True if `pid` runs a qemu-nbd serving `volume_id`.
fn pid_alive(pid: u32, volume_id: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| {
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("qemu-nbd") && cmd.contains(volume_id)
        })
        .unwrap_or(false)
}

/// The pids of running `qemu-nbd` servers whose environment names `owner`
/// (see [`OWNER_ENV`]), whichever process started them.
fn servers_owned_by(owner: &str) -> Vec<u32> {
    let tag = format!("{OWNER_ENV}={owner}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .any(|var| var == tag.as_bytes())
        })
        .collect()
}

async fn stop_pid(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dir_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

#[async_trait(?Send)]
impl VolumeDriver for QemuDriver {
    async fn do_setup(&self) -> Result<(), DriverError> {
        for program in [&self.qemu_img, &self.qemu_nbd] {
            if find_program(program).is_none() {
                return Err(DriverError::MissingLibrary(
                    format!("`{program}` not found (install qemu-utils)").into(),
                ));
            }
        }
        self.volumes_dir.setup()?;
        for staged in super::staging::sweep_dead(self.volumes_dir.path()) {
            tracing::warn!(backend = %self.backend, path = %staged.display(), "removed the staged copy of a restore that did not finish");
        }
        self.adopt_exports().await
    }

    /// `qemu-img` runs and `volumes_dir` is still the writable directory
    /// set up: what a rollback to this instance must pass.
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        self.volumes_dir.probe()?;
        self.qemu_img(&["--version".as_ref()]).await
    }

    /// Also the health probe: `volumes_dir` must still be the writable
    /// directory set up, so a tick notices it moved or unmounted.
    async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> {
        self.volumes_dir.probe()?;
        let dir = self.volumes_dir.path();
        let stat = rustix::fs::statvfs(dir)
            .map_err(|e| DriverError::backend(format!("volumes_dir {}: {e}", dir.display())))?;
        let mut extra = BTreeMap::new();
        extra.insert(
            "allocated_capacity_bytes".to_string(),
            dir_usage(dir).to_string(),
        );
        extra.insert("volume_format".to_string(), self.format.to_string());
        Ok(Capabilities {
            volume_backend_name: self.backend.clone(),
            driver_version: VERSION.to_string(),
            storage_protocol: "nbd".to_string(),
            total_capacity_bytes: stat.f_blocks * stat.f_frsize,
            free_capacity_bytes: stat.f_bavail * stat.f_frsize,
            extra,
        })
    }

    async fn create_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        let path = self.path(&volume.id)?;
        self.volumes_dir.check()?;
        let size = volume.size_bytes.to_string();
        self.qemu_img(&[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            self.format.as_ref(),
            path.as_os_str(),
            size.as_ref(),
        ])
        .await
    }

    /// Refused while `volumes_dir` is not the directory set up: a missing
    /// image there says nothing about the real one.
    async fn delete_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        let path = self.path(&volume.id)?;
        self.volumes_dir.check()?;
        if self.exports.borrow().contains_key(&volume.id) {
            return Err(other(format!(
                "volume {} is exported; detach it first",
                volume.id
            )));
        }
        // A dead restore into it may have left its staged copy.
        super::staging::remove_dead_beside(&path);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::backend(format!("{}: {e}", path.display()))),
        }
    }

    async fn create_export(
        &self,
        volume: &Volume,
        connector: &Connector,
    ) -> Result<(), DriverError> {
        let path = self.path(&volume.id)?;
        // This driver needs the host and a valid ip: refused before anything
        // is exported.
        let host = connector
            .require_host()
            .map_err(|e| other(e.to_string()))?
            .to_string();
        connector.require_ip().map_err(|e| other(e.to_string()))?;
        self.volumes_dir.check()?;
        let _guard = self.export_lock.lock().await;
        if self.exports.borrow().contains_key(&volume.id) {
            // Another host attaches (a live migration): the export is shared,
            // and must be alive for it.
            return self.repair_export(&volume.id).await;
        }
        if !path.exists() {
            return Err(other(format!(
                "volume {} does not exist on backend {}",
                volume.id, self.backend
            )));
        }
        let port = self.free_port()?;
        let export = self.serve(&volume.id, &path, port).await?;
        self.record_export(&volume.id, export, host).await
    }

    async fn remove_export(&self, volume: &Volume) -> Result<(), DriverError> {
        checked_volume_id(&volume.id)?;
        let _guard = self.export_lock.lock().await;
        // The record goes first: one that cannot be deleted keeps naming a
        // server that still runs.
        if let Some(records) = &self.records {
            records
                .delete_export(&volume.id)
                .await
                .map_err(Self::record_error)?;
        }
        let export = self.exports.borrow_mut().remove(&volume.id);
        if let Some(export) = export {
            export.stop(&volume.id).await;
        }
        Ok(())
    }

    async fn initialize_connection(
        &self,
        volume: &Volume,
        _connector: &Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        // Idempotent: reads the export, after checking it accepts
        // connections (and restarting it if not): never a dead endpoint.
        {
            let _guard = self.export_lock.lock().await;
            self.repair_export(&volume.id).await?;
        }
        let exports = self.exports.borrow();
        let export = exports.get(&volume.id).ok_or_else(|| {
            other(format!(
                "volume {} is not exported; create_export first",
                volume.id
            ))
        })?;
        let mut data = BTreeMap::new();
        data.insert("host".to_string(), json!(self.export_host.to_string()));
        data.insert("port".to_string(), json!(export.port));
        data.insert("export_name".to_string(), json!(volume.id));
        Ok(ConnectionInfo {
            driver_volume_type: "nbd".to_string(),
            data,
        })
    }

    async fn terminate_connection(
        &self,
        volume: &Volume,
        _connector: &Connector,
    ) -> Result<(), DriverError> {
        checked_volume_id(&volume.id).map(drop)
    }

    async fn ensure_exports(&self) -> Result<(), DriverError> {
        let _guard = self.export_lock.lock().await;
        self.stop_unrecorded_servers().await;
        let volumes: Vec<VolumeId> = self.exports.borrow().keys().cloned().collect();
        let mut failed = Vec::new();
        for volume_id in volumes {
            if let Err(e) = self.repair_export(&volume_id).await {
                failed.push(format!("{volume_id}: {e}"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(other(format!(
                "dead exports could not be restarted: {}",
                failed.join("; ")
            )))
        }
    }

    async fn extend_volume(&self, volume: &Volume, new_size_bytes: u64) -> Result<(), DriverError> {
        let path = self.path(&volume.id)?;
        if new_size_bytes < volume.size_bytes {
            return Err(other(format!(
                "volume {} cannot shrink from {} to {new_size_bytes} bytes",
                volume.id, volume.size_bytes
            )));
        }
        self.volumes_dir.check()?;
        let size = new_size_bytes.to_string();
        self.qemu_img(&[
            "resize".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            self.format.as_ref(),
            path.as_os_str(),
            size.as_ref(),
        ])
        .await
    }

    async fn locate(&self, volume: &Volume) -> Result<Option<VolumeLocation>, DriverError> {
        Ok(Some(VolumeLocation {
            path: self.path(&volume.id)?,
            format: self.format.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids_must_be_uuids_before_any_path_is_built() {
        assert!(checked_volume_id("1b4e28ba-2fa1-11d2-883f-0016d3cca427").is_ok());
        for bad in [
            "../etc/passwd",
            "a/b",
            "",
            "1b4e28ba2fa111d2883f0016d3cca427",
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427/..",
        ] {
            let e = checked_volume_id(bad).expect_err(bad);
            assert!(e.to_string().contains("volume ids are UUIDs"), "{e}");
        }
    }
}
