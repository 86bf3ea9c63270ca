//! The backup driver trait (`BackupDriver`): set up at start-up (the backup service is
//! down until it succeeds), then back up, restore and delete backups.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    /// What the call running on this record has written so far (not part of
    /// the record itself: never serialized, never compared).
    #[serde(skip)]
    pub progress: Progress,
}

/// Bytes a backup or restore call has written so far: to the backup store
/// (`backup`) or to the target volume (`restore`). The driver adds to it as
/// data lands (from worker threads too); the caller reads it when the call
/// ends, for the record's truth: a backup that wrote nothing never reached
/// the store, and a restore that wrote nothing left its volume untouched.
/// Drivers that do not report count as having written (see [`Progress::wrote`]).
///
/// Apart from that, it counts the bytes of the call's work done so far
/// ([`Progress::advance`], [`Progress::done`]): read and copied for a
/// backup, read and verified for a restore, whether or not the destination
/// changed yet. The manager reads that while the call runs, for progress
/// reports; a driver that does not advance it reports no progress.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<ProgressCells>);

#[derive(Debug, Default)]
struct ProgressCells {
    bytes: AtomicU64,
    done: AtomicU64,
    reported: AtomicBool,
    touched: AtomicBool,
}

impl Progress {
    /// Says that the driver reports and nothing was written so far (a
    /// driver that reports calls this first, so that "nothing" is known
    /// rather than assumed).
    pub fn start(&self) {
        self.0.reported.store(true, Ordering::Relaxed);
    }

    /// Records that the destination was changed (a directory made, a file
    /// replaced) even if no data byte landed yet.
    pub fn touch(&self) {
        self.start();
        self.0.touched.store(true, Ordering::Relaxed);
    }

    /// Records `bytes` more data written.
    pub fn add(&self, bytes: u64) {
        self.touch();
        self.0.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records `bytes` more of the call's work done (bytes read and copied
    /// or verified); it does not say that the destination changed.
    pub fn advance(&self, bytes: u64) {
        self.0.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes of the call's work done so far (see [`Progress::advance`]).
    pub fn done(&self) -> u64 {
        self.0.done.load(Ordering::Relaxed)
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed)
    }

    /// Whether anything may have been written: true unless the driver
    /// reported and wrote nothing (a driver that does not report is assumed
    /// to have written).
    pub fn wrote(&self) -> bool {
        !self.0.reported.load(Ordering::Relaxed) || self.0.touched.load(Ordering::Relaxed)
    }
}

impl PartialEq for Progress {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Progress {}

/// A backup driver. `do_setup` + `check_for_setup_error` run at start-up and
/// are retried; the backup service is reported down until they succeed.
#[async_trait(?Send)]
pub trait BackupDriver {
    /// Connects to the backup store.
    async fn do_setup(&self) -> Result<(), DriverError>;
    /// Verifies the setup (also what a reload's rollback to this instance
    /// must pass). Default: nothing more to check.
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        Ok(())
    }
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
