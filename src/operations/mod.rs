//! Operations: what users ask of volumes and backups (create, delete, attach, detach,
//! back up, restore, list), recorded before acknowledged, and their progress.

pub mod answer;
#[cfg(feature = "sqlite")]
pub mod listing;
#[cfg(feature = "sqlite")]
mod manager;
pub mod progress;

#[cfg(feature = "sqlite")]
pub use answer::{Answer, BackupAnswer, RestoreAnswer, VolumeAnswer};
#[cfg(feature = "sqlite")]
pub use manager::{
    Detach, Manager, ManagerError, Started, settable_backup_status, settable_volume_status,
};
