//! The records: one async interface (`RecordStore`), one error, one row type per
//! record; implemented by the embedded SQLite store, PostgreSQL and MariaDB.
//!
//! Every method writes before it returns (durable before acknowledged). A
//! store that cannot be reached answers [`RecordsError::Unavailable`]: a
//! recoverable failure of the records, never a crash.

#[cfg(feature = "fleet")]
pub mod cluster;
pub mod database;
#[cfg(feature = "fleet")]
mod fleet;
#[cfg(feature = "mariadb")]
pub mod mariadb;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "fleet")]
pub mod requests;
#[cfg(feature = "fleet")]
pub mod rollouts;
mod rows;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub mod state_dir;
mod status;

use async_trait::async_trait;
use thiserror::Error;

#[cfg(feature = "fleet")]
pub use cluster::{ClusterRecords, ServicePut};
#[cfg(feature = "fleet")]
pub use fleet::{FleetStore, connect};
#[cfg(feature = "fleet")]
pub(crate) use fleet::{OWN_TABLES, foreign_tables};
#[cfg(feature = "mariadb")]
pub use mariadb::MariaDbStore;
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
#[cfg(feature = "fleet")]
pub use requests::ReloadRequests;
#[cfg(feature = "fleet")]
pub use rollouts::RolloutRecords;
pub use rows::{AttachmentRow, BackupRow, ExportRow, Recovered, ServiceRow, VolumeRow};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use status::{BackupStatus, UnknownStatus, VolumeStatus};

/// How an operation ends its work on one record: the final status and what
/// is written with it, together (in a fleet, in one fenced statement; kept
/// together when the database does not answer it).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct End {
    /// The record's final status; `deleted` removes the record.
    pub status: String,
    /// The record's size now, in bytes, when the work changed it (an
    /// extend; what a backup stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// A backup's source volume, put back from `backing-up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// A backup's source volume and the status it goes back to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    /// The volume.
    pub volume_id: String,
    /// Its status before the backup (`available` or `in-use`).
    pub status: String,
}

impl End {
    /// An end that writes only the final `status`.
    pub fn to(status: &str) -> End {
        End {
            status: status.to_string(),
            ..End::default()
        }
    }

    /// A volume's end in `status`.
    pub fn volume(status: VolumeStatus) -> End {
        End::to(status.as_str())
    }

    /// A backup's end in `status`.
    pub fn backup(status: BackupStatus) -> End {
        End::to(status.as_str())
    }
}

/// Why the records could not be read or written.
#[derive(Debug, Error)]
pub enum RecordsError {
    /// The embedded SQLite database failed: names the file and, when the
    /// state dir cannot be written, why ("no space left on device",
    /// "read-only file system") rather than SQLite's "disk I/O error".
    #[cfg(feature = "sqlite")]
    #[error("records database {}: {}", path.display(), match condition { Some(c) => c.clone(), None => source.to_string() })]
    Sqlite {
        /// The database file (`:memory:` for tests).
        path: std::path::PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
        /// Why the state dir cannot be written, when the SQLite error was
        /// an I/O, full-disk or read-only failure and a probe write there
        /// failed.
        condition: Option<String>,
    },
    /// The database cannot be reached now (connection refused, timed out,
    /// the server is restarting): operations are refused with this reason
    /// and work resumes when it answers again.
    #[error("records database {url} is unavailable: {reason}")]
    Unavailable {
        /// The database, password removed.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The database answered with an error (a bug or a schema problem).
    #[error("records database {url}: {reason}")]
    Query {
        /// The database, password removed.
        url: String,
        /// The server's error.
        reason: String,
    },
    /// The `[database] connection` URL is not one rekindle can use.
    #[error("[database] connection {url:?}: {reason}")]
    BadUrl {
        /// The URL as given, password removed.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// Durable records. Implemented by [`SqliteStore`] (SQLite
/// under `state_dir`) and, for a fleet, by `PgStore` (`[database]
/// connection = postgresql://...`) and `MariaDbStore` (`mysql+pymysql://...`);
/// the same contract tests run against all three.
#[async_trait(?Send)]
pub trait RecordStore {
    /// Inserts a volume.
    async fn insert_volume(
        &self,
        id: &str,
        backend: &str,
        size_bytes: u64,
        status: &str,
    ) -> Result<(), RecordsError>;
    /// Sets a volume's status.
    async fn set_volume_status(&self, id: &str, status: &str) -> Result<(), RecordsError>;
    /// Puts a volume row's status and `updated_at` back as they were (an
    /// operation turned away before its driver).
    async fn put_back_volume(&self, row: &VolumeRow) -> Result<(), RecordsError>;
    /// Sets a volume's size in bytes.
    async fn set_volume_size(&self, id: &str, size_bytes: u64) -> Result<(), RecordsError>;
    /// Deletes a volume (and any attachment left on it).
    async fn delete_volume(&self, id: &str) -> Result<(), RecordsError>;
    /// One volume.
    async fn volume(&self, id: &str) -> Result<Option<VolumeRow>, RecordsError>;
    /// Every volume, by id.
    async fn volumes(&self) -> Result<Vec<VolumeRow>, RecordsError>;

    /// Records (or replaces) an export.
    async fn put_export(&self, export: &ExportRow) -> Result<(), RecordsError>;
    /// The export of a volume.
    async fn export(&self, volume_id: &str) -> Result<Option<ExportRow>, RecordsError>;
    /// Every export of a backend, by volume.
    async fn exports(&self, backend: &str) -> Result<Vec<ExportRow>, RecordsError>;
    /// Forgets an export.
    async fn delete_export(&self, volume_id: &str) -> Result<(), RecordsError>;

    /// Records (or refreshes) `connector_host`'s attachment of a volume.
    async fn put_attachment(
        &self,
        volume_id: &str,
        connector_host: &str,
        connector: &str,
    ) -> Result<(), RecordsError>;
    /// A volume's attachments, oldest first.
    async fn attachments(&self, volume_id: &str) -> Result<Vec<AttachmentRow>, RecordsError>;
    /// Forgets `connector_host`'s attachment of a volume.
    async fn delete_attachment(
        &self,
        volume_id: &str,
        connector_host: &str,
    ) -> Result<(), RecordsError>;

    /// Inserts a backup in `creating`.
    async fn insert_backup(&self, id: &str, volume_id: &str) -> Result<(), RecordsError>;
    /// Updates a backup's status (and size in bytes, once known; the restore
    /// target while restoring).
    async fn set_backup(
        &self,
        id: &str,
        status: &str,
        size_bytes: Option<u64>,
        restore_target: Option<&str>,
    ) -> Result<(), RecordsError>;
    /// Puts a backup row's status, restore target and `updated_at` back as
    /// they were (an operation turned away before its driver).
    async fn put_back_backup(&self, row: &BackupRow) -> Result<(), RecordsError>;
    /// Marks whether a backup's data reached the store.
    async fn set_backup_reached(&self, id: &str, reached: bool) -> Result<(), RecordsError>;
    /// One backup.
    async fn backup(&self, id: &str) -> Result<Option<BackupRow>, RecordsError>;
    /// Every backup, by id.
    async fn backups(&self) -> Result<Vec<BackupRow>, RecordsError>;
    /// Deletes a backup.
    async fn delete_backup(&self, id: &str) -> Result<(), RecordsError>;

    /// Records a service row's heartbeat. SQLite stamps it with
    /// `updated_at` (this host's clock); PostgreSQL with the server's
    /// `now()`, so liveness never depends on a host's clock.
    async fn put_service(
        &self,
        backend: &str,
        binary: &str,
        host: &str,
        state: &str,
        updated_at: &str,
    ) -> Result<(), RecordsError>;
    /// Service rows, by host then backend.
    async fn services(&self) -> Result<Vec<ServiceRow>, RecordsError>;

    /// Resolves records a crash left in transitional states, as Cinder
    /// does: backup `creating` -> `error`; `restoring` -> `available` (and
    /// its target volume -> `error_restoring`); `deleting` stays (the
    /// deletion resumes); volume `creating` -> `error`, `backing-up` ->
    /// `in-use` if it has attachments, else `available`, `extending` ->
    /// `error_extending`, `deleting` resumes.
    async fn recover(&self) -> Result<Vec<Recovered>, RecordsError> {
        use BackupStatus as B;
        use VolumeStatus as V;
        let mut recovered = Vec::new();
        for backup in self.backups().await? {
            let to = match backup.status.parse::<B>() {
                Ok(B::Creating) => B::Error,
                Ok(B::Restoring) => {
                    if let Some(target) = &backup.restore_target {
                        let from = match self.volume(target).await? {
                            Some(volume) => volume.status,
                            None => V::RestoringBackup.to_string(),
                        };
                        self.set_volume_status(target, V::ErrorRestoring.as_str())
                            .await?;
                        recovered.push(Recovered {
                            kind: "volume",
                            id: target.clone(),
                            from,
                            to: V::ErrorRestoring.to_string(),
                        });
                    }
                    B::Available
                }
                Ok(B::Deleting) => B::Deleting,
                _ => continue,
            };
            if backup.status != to {
                self.set_backup(&backup.id, to.as_str(), None, None).await?;
            }
            recovered.push(Recovered {
                kind: "backup",
                id: backup.id,
                from: backup.status,
                to: to.to_string(),
            });
        }
        for volume in self.volumes().await? {
            let to = match volume.status.parse::<V>() {
                Ok(V::Creating) => V::Error,
                Ok(V::Deleting) => V::Deleting,
                Ok(V::BackingUp) if !self.attachments(&volume.id).await?.is_empty() => V::InUse,
                Ok(V::BackingUp) => V::Available,
                Ok(V::Extending) => V::ErrorExtending,
                _ => continue,
            };
            if volume.status != to {
                self.set_volume_status(&volume.id, to.as_str()).await?;
            }
            recovered.push(Recovered {
                kind: "volume",
                id: volume.id,
                from: volume.status,
                to: to.to_string(),
            });
        }
        Ok(recovered)
    }
}

pub use database::redact;

/// This host's service rows as its heartbeat writes them: synchronously, on
/// the service actor's tick, so that a row is written before anyone is told
/// (the embedded store; a fleet's rows are written off the actor by its
/// member, through [`ClusterRecords`]).
pub trait ServiceRows {
    /// Writes the service row of `backend` (`binary`, `host`, `state` `up`
    /// or `down`, `updated_at` RFC 3339).
    ///
    /// # Errors
    /// The records cannot be written.
    fn beat_service(
        &self,
        backend: &str,
        binary: &str,
        host: &str,
        state: &str,
        updated_at: &str,
    ) -> Result<(), RecordsError>;
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact("postgresql://cinder:s3cret@db.example:5432/cinder"),
            "postgresql://cinder:***@db.example:5432/cinder"
        );
        assert_eq!(
            redact("postgresql://cinder@db/cinder"),
            "postgresql://cinder@db/cinder"
        );
        assert_eq!(redact("postgresql:///cinder"), "postgresql:///cinder");
    }
}
