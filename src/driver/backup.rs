//! The backup driver trait (`BackupDriver`): set up at start-up (the backup service is
//! down until it succeeds), then back up, restore and delete backups.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Volume;
use crate::lifecycle::DriverError;

/// A backup's id.
pub type BackupId = String;

/// A backup as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// The backup's id.
    pub id: BackupId,
    /// The volume it was taken from.
    pub volume_id: String,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// A backup driver. `do_setup` + `check_for_setup_error` run at start-up and
/// are retried; the backup service is reported down until they succeed.
#[async_trait(?Send)]
pub trait BackupDriver {
    /// Connects to the backup store.
    async fn do_setup(&self) -> Result<(), DriverError>;
    /// Verifies the setup.
    async fn check_for_setup_error(&self) -> Result<(), DriverError>;
    /// Backs `volume` up as `backup`.
    async fn backup(&self, backup: &BackupRecord, volume: &Volume) -> Result<(), DriverError>;
    /// Restores `backup` into `volume`.
    async fn restore(&self, backup: &BackupRecord, volume: &Volume) -> Result<(), DriverError>;
    /// Deletes `backup` from the store.
    async fn delete_backup(&self, backup: &BackupRecord) -> Result<(), DriverError>;
    /// The health probe, called on every publisher tick while Ready (as a
    /// volume driver's stats are): an error is health lost, so the backup
    /// service goes down and the driver is set up again. The default says
    /// healthy.
    async fn probe(&self) -> Result<(), DriverError> {
        Ok(())
    }
}
