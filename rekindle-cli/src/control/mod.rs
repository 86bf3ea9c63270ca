//! The control socket: one JSON request per connection, one JSON response, over a
//! Unix socket created mode 0600. Here the protocol, typed and shared by both sides;
//! the daemon's side in `server`, the commands' in `client`, what they print in `render`.

mod client;
mod render;
mod server;

pub use client::request;
pub use render::{filter_services, reload_exit, render_reload, render_status};
pub use server::ControlSocket;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::UnixListener;

use rekindle::actors::Handles;

use crate::exit::Exit;
use rekindle::actors::controller::{RequestReload, RequestReloadAndWait};
use rekindle::events::status::BackendStatus;
use rekindle::operations::listing::{BackupListRow, VolumeListRow};
use rekindle::operations::{Answer, Detach, Manager, ManagerError, Started};
use rekindle::records::{BackupStatus, VolumeStatus};
use rekindle::{BackendResult, ReloadOutcome};

/// The longest request line the server reads.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Services and backends.
    Status,
    /// Reload the config file.
    Reload {
        /// Answer once the reload settled, with the per-backend report (the
        /// default); false answers at once (started, queued, rejected).
        #[serde(default = "yes")]
        wait: bool,
    },
    /// Create a volume.
    VolumeCreate {
        /// Its size in bytes (the client reads `1G`, `512M`).
        size_bytes: u64,
        /// The backend.
        backend: String,
    },
    /// Grow a volume.
    VolumeExtend {
        /// The volume.
        id: String,
        /// The new size in bytes.
        size_bytes: u64,
    },
    /// Delete a volume.
    VolumeDelete {
        /// The volume.
        id: String,
    },
    /// Attach a volume for a host.
    VolumeAttach {
        /// The volume.
        id: String,
        /// The attaching host.
        connector: Box<rekindle::driver::Connector>,
    },
    /// Detach hosts from a volume: one (`connector`), every one (`all`), or
    /// the only one (neither).
    VolumeDetach {
        /// The volume.
        id: String,
        /// Which hosts.
        which: Detach,
    },
    /// Back a volume up.
    BackupCreate {
        /// The volume.
        volume: String,
        /// Answer once the backup is recorded (`creating`, with its id)
        /// and carry on in the daemon, instead of answering when it ends;
        /// follow it with [`Request::BackupShow`].
        #[serde(default)]
        background: bool,
    },
    /// Restore a backup into a volume.
    BackupRestore {
        /// The backup.
        backup: String,
        /// The target volume.
        volume: String,
        /// Answer once the restore is recorded (`restoring`) and carry on
        /// in the daemon; follow it with [`Request::BackupShow`].
        #[serde(default)]
        background: bool,
    },
    /// One backup's record, with its progress while a backup or restore of
    /// it runs, and how the last one ended.
    BackupShow {
        /// The backup.
        id: String,
    },
    /// Delete a backup.
    BackupDelete {
        /// The backup.
        id: String,
    },
    /// Set a volume record's status by hand (Cinder's `reset-state`).
    VolumeResetState {
        /// The volume.
        id: String,
        /// The new status.
        state: VolumeStatus,
        /// Detach every host and remove the export first (refused
        /// without it while any is live).
        #[serde(default)]
        force: bool,
    },
    /// Set a backup record's status by hand (Cinder's `backup-reset-state`).
    BackupResetState {
        /// The backup.
        id: String,
        /// The new status.
        state: BackupStatus,
    },
    /// Every volume.
    VolumeList,
    /// Every backup.
    BackupList,
}

/// `rekindle status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// One row per service.
    pub services: Vec<ServiceRow>,
    /// One row per backend.
    pub backends: Vec<BackendRow>,
    /// Set while the records cannot be written: every service row is down
    /// and its Updated At is the last heartbeat written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_fault: Option<rekindle::events::status::RecordsFault>,
    /// Set when the fleet's database did not answer this `status`: why,
    /// and that the service rows shown are this host's own, as it last
    /// heartbeated them (their Updated At says how old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_fault: Option<String>,
}

/// A service row as `status` shows it: the records' row, and its host's
/// cluster in a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRow {
    /// The row (`binary`, `host`, `backend`, `state`, `updated_at`).
    #[serde(flatten)]
    pub row: rekindle::records::ServiceRow,
    /// The host's cluster, in a fleet (`[database] connection`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// A backend row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRow {
    /// Backend name.
    pub name: String,
    /// `volume` or `backup`.
    pub kind: String,
    /// Driver name.
    pub driver: String,
    /// Lifecycle state (`ready`, `failed_recoverable`, ...).
    pub state: String,
    /// Current attempt (0 = the first setup).
    pub attempt: u32,
    /// Setup attempts the budget allows; absent when unlimited.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The retry budget is spent; a reload starts it again.
    #[serde(default)]
    pub gave_up: bool,
    /// Last error.
    pub last_error: Option<String>,
    /// Next retry (RFC 3339).
    pub next_retry: Option<String>,
    /// `current`, or why the backend runs an older config than the file's
    /// (`old config (rolled back: ...)`).
    #[serde(default = "current")]
    pub config: String,
}

fn yes() -> bool {
    true
}

fn current() -> String {
    "current".to_string()
}

impl From<rekindle::records::ServiceRow> for ServiceRow {
    fn from(row: rekindle::records::ServiceRow) -> Self {
        ServiceRow { row, cluster: None }
    }
}

impl From<BackendStatus> for BackendRow {
    fn from(b: BackendStatus) -> Self {
        BackendRow {
            name: b.name,
            kind: b.kind.as_str().to_string(),
            driver: b.driver,
            state: b.state.as_str().to_string(),
            attempt: b.attempt,
            max_attempts: b.max_attempts,
            gave_up: b.gave_up,
            last_error: b.last_error,
            next_retry: b.next_retry,
            config: b
                .stale_config
                .map_or_else(current, |stale| stale.to_string()),
        }
    }
}

/// A response on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// The status.
    Status(StatusReport),
    /// What the reload request led to.
    Reload {
        /// The outcome.
        outcome: ReloadOutcome,
    },
    /// A user operation succeeded.
    Done {
        /// What it answered.
        answer: Answer,
    },
    /// `volume list`.
    Volumes {
        /// Every volume, by id.
        rows: Vec<VolumeListRow>,
    },
    /// `backup list`.
    Backups {
        /// Every backup, by id.
        rows: Vec<BackupListRow>,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Control socket errors.
#[derive(Debug, Error)]
pub enum ControlError {
    /// Cannot create or connect to the socket.
    #[error("control socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The peer sent something that is not a valid message.
    #[error("control socket {path}: invalid message: {problem}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        problem: String,
    },
}

impl Request {
    /// The user operation this request is (`volume create`, ...), for its
    /// metrics; `None` for reads, status and reloads.
    pub fn operation(&self) -> Option<&'static str> {
        Some(match self {
            Request::VolumeCreate { .. } => "volume create",
            Request::VolumeExtend { .. } => "volume extend",
            Request::VolumeDelete { .. } => "volume delete",
            Request::VolumeAttach { .. } => "volume attach",
            Request::VolumeDetach { .. } => "volume detach",
            Request::VolumeResetState { .. } => "volume reset-state",
            Request::BackupCreate { .. } => "backup create",
            Request::BackupRestore { .. } => "backup restore",
            Request::BackupDelete { .. } => "backup delete",
            Request::BackupResetState { .. } => "backup reset-state",
            _ => return None,
        })
    }
}

impl Response {
    /// How an operation's answer ended, for its metrics: `ok`, `pending`
    /// (its record waits for the fleet database) or `error`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Response::Done {
                answer: Answer::Pending(_),
            } => "pending",
            Response::Error { .. } => "error",
            _ => "ok",
        }
    }
}
