//! The rows of `volume list` and `backup list` (as `cinder list` and `cinder backup-list`):
//! typed records with their stable JSON fields for scripts.

use serde::{Deserialize, Serialize};

/// One row of `volume list`; `--json` prints an array of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeListRow {
    /// The volume's id (UUID).
    pub id: String,
    /// `creating`, `available`, `in-use`, `error`, ...
    pub status: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// The backend that holds it.
    pub backend: String,
    /// The connector hosts it is attached to (empty when none).
    pub attached_to: Vec<String>,
    /// Last change of the record (RFC 3339, UTC).
    pub updated_at: String,
}

/// One row of `backup list`; `--json` prints an array of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupListRow {
    /// The backup's id (UUID).
    pub id: String,
    /// `creating`, `available`, `restoring`, `deleting`, `error`.
    pub status: String,
    /// Bytes backed up (0 until the backup is available).
    pub size_bytes: u64,
    /// The volume it was taken from.
    pub volume_id: String,
    /// Last change of the record (RFC 3339, UTC).
    pub updated_at: String,
}
