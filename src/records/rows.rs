//! The rows of the records, one type per record (volumes, exports, attachments,
//! backups, services) and what crash recovery resolved; every store returns these.

use serde::{Deserialize, Serialize};

/// A volume row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRow {
    /// UUID.
    pub id: String,
    /// Backend that holds it.
    pub backend: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// `creating`, `available`, `in-use`, `deleting`, `error`, ...
    pub status: String,
    /// Last update (RFC 3339).
    pub updated_at: String,
}

/// An export row: a running NBD server for a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRow {
    /// The exported volume.
    pub volume_id: String,
    /// Its backend.
    pub backend: String,
    /// The server's process id.
    pub pid: u32,
    /// Where it listens.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The connector host it was exported for.
    pub connector_host: String,
}

/// An attachment: one host using a volume (Cinder's attachments API). A
/// volume is `in-use` while it has any; its export stays until the last goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRow {
    /// The attached volume.
    pub volume_id: String,
    /// The connector's `host` (one attachment per host and volume).
    pub connector_host: String,
    /// The whole connector, as JSON (handed to `terminate_connection`).
    pub connector: String,
    /// When it was attached (RFC 3339).
    pub attached_at: String,
}

/// A backup row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRow {
    /// UUID.
    pub id: String,
    /// Source volume.
    pub volume_id: String,
    /// `creating`, `available`, `restoring`, `deleting`, `error`.
    pub status: String,
    /// Bytes backed up.
    pub size_bytes: u64,
    /// Whether any data reached the backup store.
    pub reached_backend: bool,
    /// The volume a restore writes to, while restoring.
    pub restore_target: Option<String>,
    /// Last update (RFC 3339).
    pub updated_at: String,
}

/// A service row, like `cinder service-list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRow {
    /// `cinder-volume` or `cinder-backup`.
    pub binary: String,
    /// `host@backend` or `host`.
    pub host: String,
    /// The backend.
    pub backend: String,
    /// `up` or `down`.
    pub state: String,
    /// Last heartbeat.
    pub updated_at: String,
}

/// A record a crash left in a transitional state, and what it became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// `volume` or `backup`.
    pub kind: &'static str,
    /// Its id.
    pub id: String,
    /// The status it was left in.
    pub from: String,
    /// The status it was resolved to (`deleting` = the deletion resumes).
    pub to: String,
}
