//! The operations a backend takes (`Operation`), what they return and why one
//! is refused or fails: the vocabulary the driver actor, its calls and callers share.

use actix::prelude::*;
use thiserror::Error;

use crate::driver::{BackupRecord, ConnectionInfo, Connector, Volume};
use crate::lifecycle::DriverError;

/// An operation routed to a backend.
#[derive(Debug, Clone)]
pub enum Operation {
    /// `create_volume`.
    CreateVolume(Volume),
    /// `delete_volume`.
    DeleteVolume(Volume),
    /// `create_export(volume, connector)` then `initialize_connection(volume,
    /// connector)`; the export is removed again if the second fails.
    Attach {
        /// The volume.
        volume: Volume,
        /// The attaching host (boxed: a connector is large, and every
        /// operation message is moved through the mailbox).
        connector: Box<Connector>,
    },
    /// `initialize_connection` alone (idempotent; the export must exist).
    InitializeConnection {
        /// The volume.
        volume: Volume,
        /// The attaching host (boxed: a connector is large, and every
        /// operation message is moved through the mailbox).
        connector: Box<Connector>,
    },
    /// `terminate_connection` then `remove_export` (the last host detaching).
    Detach {
        /// The volume.
        volume: Volume,
        /// The host detaching.
        connector: Box<Connector>,
    },
    /// `terminate_connection` alone: one host detaches while others still
    /// use the export.
    TerminateConnection {
        /// The volume.
        volume: Volume,
        /// The host detaching.
        connector: Box<Connector>,
    },
    /// Where the volume's data lives on this host (`locate`).
    Locate(Volume),
    /// `extend_volume` to a new size in bytes.
    ExtendVolume(Volume, u64),
    /// `backup`.
    Backup {
        /// The backup.
        backup: Box<BackupRecord>,
        /// Its source volume.
        volume: Volume,
    },
    /// `restore`.
    Restore {
        /// The backup.
        backup: Box<BackupRecord>,
        /// The target volume.
        volume: Volume,
    },
    /// `delete_backup`.
    DeleteBackup(Box<BackupRecord>),
}

impl Operation {
    /// The operation in an operator's words ("volume create").
    pub fn name(&self) -> &'static str {
        match self {
            Operation::CreateVolume(..) => "volume create",
            Operation::DeleteVolume(..) => "volume delete",
            Operation::Attach { .. } => "volume attach",
            Operation::InitializeConnection { .. } => "volume attach (initialize connection)",
            Operation::Detach { .. } | Operation::TerminateConnection { .. } => "volume detach",
            Operation::ExtendVolume(..) => "volume extend",
            Operation::Locate(..) => "volume lookup",
            Operation::Backup { .. } => "backup create",
            Operation::Restore { .. } => "backup restore",
            Operation::DeleteBackup(..) => "backup delete",
        }
    }
}

impl Message for Operation {
    type Result = Result<OperationOutput, OperationError>;
}

/// What an operation returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationOutput {
    /// Nothing to return.
    Done,
    /// Connection info for the attaching host (boxed, as the location: an
    /// answer is moved several times on its way back to the caller).
    Connection(Box<ConnectionInfo>),
    /// Where a volume's data lives.
    Location(Option<Box<crate::driver::VolumeLocation>>),
}

/// Why an operation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OperationError {
    /// The backend is not Ready: what was refused, the backend, its state in
    /// words and what happens next (see [`crate::events::refusal::Refusal`]).
    #[error("{0}")]
    Refused(Box<crate::events::refusal::Refusal>),
    /// The driver failed the operation (or turned its input away, as a
    /// connector missing a field): named, as every refusal is.
    #[error("{operation} failed: backend `{backend}`: {error}")]
    Driver {
        /// The operation, in an operator's words ([`Operation::name`]).
        operation: &'static str,
        /// The backend.
        backend: String,
        /// The driver's error.
        error: DriverError,
    },
    /// The operation does not apply to this kind of backend.
    #[error("backend `{backend}` is a {kind} backend and cannot {operation}")]
    WrongKind {
        /// The backend.
        backend: String,
        /// Its kind.
        kind: &'static str,
        /// What was asked.
        operation: &'static str,
    },
    /// No backend of that name exists.
    #[error("{operation} refused: no backend named `{backend}`")]
    UnknownBackend {
        /// The operation ([`Operation::name`]).
        operation: &'static str,
        /// The backend named.
        backend: String,
    },
    /// The backend has stopped (shutdown, or removed by a reload) and takes
    /// no operations.
    #[error(
        "{operation} refused: backend `{backend}` has stopped (the service is shutting down, or a reload removed it) and takes no operations"
    )]
    Stopped {
        /// The operation ([`Operation::name`]).
        operation: &'static str,
        /// The backend.
        backend: String,
    },
    /// The backend stopped while the operation ran.
    #[error("{operation} cut short: backend `{backend}` stopped before the operation finished")]
    Cancelled {
        /// The operation ([`Operation::name`]).
        operation: &'static str,
        /// The backend.
        backend: String,
    },
    /// The backend's mailbox is full; retry.
    #[error("{operation} refused: backend `{backend}` is busy (mailbox full); retry")]
    Busy {
        /// The operation ([`Operation::name`]).
        operation: &'static str,
        /// The backend.
        backend: String,
    },
}

impl OperationError {
    /// Whether the operation was turned away before its driver was called
    /// (the backend not Ready, stopped, busy, unknown or of the wrong
    /// kind): nothing was done, so a caller puts its records back as they
    /// were. `Driver` and `Cancelled` may follow a driver call.
    pub fn before_driver(&self) -> bool {
        match self {
            OperationError::Refused(_)
            | OperationError::WrongKind { .. }
            | OperationError::UnknownBackend { .. }
            | OperationError::Stopped { .. }
            | OperationError::Busy { .. } => true,
            OperationError::Driver { .. } | OperationError::Cancelled { .. } => false,
        }
    }
}
