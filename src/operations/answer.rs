//! What each user operation answers: typed records, serialized with stable field names
//! only at the control socket's edge (and by `--json`); absent fields are not written.

use serde::{Deserialize, Serialize};

use super::progress::{BackupWork, Snapshot};
use crate::driver::ConnectionInfo;
use crate::records::{BackupRow, BackupStatus, VolumeStatus};

/// What a user operation answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// A volume as the operation left it (`volume create`, `delete`,
    /// `extend`, `detach`, `reset-state`).
    Volume(VolumeAnswer),
    /// A backup as the operation left it (`backup create`, `delete`,
    /// `reset-state`).
    Backup(BackupAnswer),
    /// A restore (`backup restore`).
    Restore(RestoreAnswer),
    /// How the host reaches the volume (`volume attach`).
    Connection(ConnectionInfo),
    /// One backup's record and what runs on it (`backup show`).
    Shown(BackupShown),
    /// The driver's work is done and its outcome is kept until the fleet's
    /// database answers.
    Pending(PendingAnswer),
}

impl Answer {
    /// The answer as the JSON an operator or a script reads (the fields of
    /// the record, without the variant's name).
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Answer::Volume(a) => serde_json::to_value(a),
            Answer::Backup(a) => serde_json::to_value(a),
            Answer::Restore(a) => serde_json::to_value(a),
            Answer::Connection(a) => serde_json::to_value(a),
            Answer::Shown(a) => serde_json::to_value(a),
            Answer::Pending(a) => serde_json::to_value(a),
        };
        value.unwrap_or_default()
    }

    /// The record's id (`id`, or a restore's `backup_id`).
    pub fn id(&self) -> Option<&str> {
        match self {
            Answer::Volume(a) => Some(&a.id),
            Answer::Backup(a) => Some(&a.id),
            Answer::Restore(a) => Some(&a.backup_id),
            Answer::Shown(a) => Some(&a.record.id),
            Answer::Pending(a) => Some(&a.id),
            Answer::Connection(_) => None,
        }
    }

    /// The volume a backup or restore is of (`volume_id`).
    pub fn volume_id(&self) -> Option<&str> {
        match self {
            Answer::Backup(a) => a.volume_id.as_deref(),
            Answer::Restore(a) => Some(&a.volume_id),
            Answer::Shown(a) => Some(&a.record.volume_id),
            _ => None,
        }
    }
}

/// A volume as an operation left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeAnswer {
    /// The volume's id (UUID).
    pub id: String,
    /// The backend that holds it (`volume create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Its size in bytes (`volume create`, `volume extend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Its status now.
    pub status: VolumeStatus,
    /// Its status before (`volume reset-state`; as recorded, whatever it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The hosts still attached (`volume detach`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_to: Option<Vec<String>>,
}

impl VolumeAnswer {
    /// A volume `id` in `status`, nothing else said.
    pub fn new(id: &str, status: VolumeStatus) -> VolumeAnswer {
        VolumeAnswer {
            id: id.to_string(),
            backend: None,
            size_bytes: None,
            status,
            from: None,
            attached_to: None,
        }
    }
}

/// A backup as an operation left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupAnswer {
    /// The backup's id (UUID).
    pub id: String,
    /// The volume it is of (`backup create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// Its status now.
    pub status: BackupStatus,
    /// Its status before (`backup reset-state`; as recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Whether any data had reached the backup store (`backup delete` of
    /// a backup that never reached it: only the record was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached_backend: Option<bool>,
}

impl BackupAnswer {
    /// A backup `id` in `status`, nothing else said.
    pub fn new(id: &str, status: BackupStatus) -> BackupAnswer {
        BackupAnswer {
            id: id.to_string(),
            volume_id: None,
            status,
            from: None,
            reached_backend: None,
        }
    }
}

/// Where a restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreStatus {
    /// Accepted, running.
    Restoring,
    /// The volume holds the backup's data.
    Restored,
}

/// A restore of `backup_id` into `volume_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreAnswer {
    /// The backup restored.
    pub backup_id: String,
    /// The volume written.
    pub volume_id: String,
    /// Where the restore is.
    pub status: RestoreStatus,
}

/// One backup's record, with `progress` while a backup or restore of it
/// runs and `operation`: the running or last-ended one since the daemon
/// started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupShown {
    /// The record.
    #[serde(flatten)]
    pub record: BackupRow,
    /// How far the running operation is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Snapshot>,
    /// The running or last-ended operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<ShownOperation>,
}

/// A backup's running or last-ended operation, as `backup show` says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownOperation {
    /// `create` or `restore`.
    pub work: BackupWork,
    /// The volume it reads or writes.
    pub volume_id: String,
    /// `running`, `succeeded` or `failed`.
    pub state: OperationState,
    /// Why it failed.
    pub error: Option<String>,
}

/// Where a backup's operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// It runs.
    Running,
    /// It ended well.
    Succeeded,
    /// It ended in an error.
    Failed,
}

/// The driver's work is done and its outcome is `status`, but the fleet's
/// database did not answer its final write: the outcome is kept and
/// written by this host as soon as the database answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAnswer {
    /// The record.
    pub id: String,
    /// `volume` or `backup`.
    pub kind: String,
    /// The outcome.
    pub status: String,
    /// Always `pending`.
    pub record: String,
    /// What happens next, in words.
    pub note: String,
}
