//! The embedded records: SQLite implements the records interface directly (one
//! connection owner; every state change is written before it is acknowledged).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AttachmentRow, BackupRow, ExportRow, RecordStore, RecordsError, ServiceRow, ServiceRows,
    VolumeRow,
};

/// The records error for SQLite's `source` on the database at `path`,
/// naming what the state dir stands for when it cannot be written ("no
/// space left on device", "read-only file system") rather than SQLite's
/// "disk I/O error".
fn sqlite_error(path: PathBuf, source: rusqlite::Error) -> RecordsError {
    use rusqlite::ErrorCode::{CannotOpen, DiskFull, ReadOnly, SystemIoFailure};
    let io_failure = matches!(
        source.sqlite_error_code(),
        Some(SystemIoFailure | DiskFull | ReadOnly | CannotOpen)
    );
    let condition = match path.parent() {
        Some(dir) if io_failure && path != Path::new(":memory:") => {
            super::state_dir::write_fault(dir)
        }
        _ => None,
    };
    RecordsError::Sqlite {
        path,
        source,
        condition,
    }
}

/// The embedded records: SQLite at `state_dir/rekindle.sqlite` (one
/// connection owner; each call a local, synchronous write done before its
/// future resolves).
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS volumes (
    id TEXT PRIMARY KEY, backend TEXT NOT NULL, size_bytes INTEGER NOT NULL,
    status TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS exports (
    volume_id TEXT PRIMARY KEY, backend TEXT NOT NULL, pid INTEGER NOT NULL,
    host TEXT NOT NULL, port INTEGER NOT NULL, connector_host TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attachments (
    volume_id TEXT NOT NULL, connector_host TEXT NOT NULL, connector TEXT NOT NULL,
    attached_at TEXT NOT NULL, PRIMARY KEY (volume_id, connector_host));
CREATE TABLE IF NOT EXISTS backups (
    id TEXT PRIMARY KEY, volume_id TEXT NOT NULL, status TEXT NOT NULL,
    size_bytes INTEGER NOT NULL, reached_backend INTEGER NOT NULL,
    restore_target TEXT, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS services (
    backend TEXT PRIMARY KEY, binary TEXT NOT NULL, host TEXT NOT NULL,
    state TEXT NOT NULL, updated_at TEXT NOT NULL);
";

impl SqliteStore {
    /// Opens (creating) `state_dir/rekindle.sqlite`.
    pub fn open(state_dir: &Path) -> Result<SqliteStore, RecordsError> {
        let path = state_dir.join("rekindle.sqlite");
        let fail = |source| sqlite_error(path.clone(), source);
        std::fs::create_dir_all(state_dir)
            .map_err(|e| fail(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        let conn = Connection::open(&path).map_err(fail)?;
        SqliteStore::init(conn, path)
    }

    /// An in-memory database (tests, simulations).
    pub fn in_memory() -> Result<SqliteStore, RecordsError> {
        let path = PathBuf::from(":memory:");
        let conn =
            Connection::open_in_memory().map_err(|source| sqlite_error(path.clone(), source))?;
        SqliteStore::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<SqliteStore, RecordsError> {
        let records = SqliteStore { conn, path };
        // Durable before acknowledged: WAL with a full sync on commit.
        records
            .conn
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(|e| records.error(e))?;
        let had_attachments = records.table_exists("attachments")?;
        records
            .conn
            .execute_batch(SCHEMA)
            .map_err(|e| records.error(e))?;
        if !had_attachments {
            // A state dir from before attachments were recorded: each
            // in-use volume's export names the one host it was made for.
            records
                .conn
                .execute(
                    "INSERT OR IGNORE INTO attachments (volume_id, connector_host, connector, attached_at)
                     SELECT e.volume_id, e.connector_host, json_object('host', e.connector_host), ?1
                     FROM exports e JOIN volumes v ON v.id = e.volume_id WHERE v.status = 'in-use'",
                    params![now()],
                )
                .map_err(|e| records.error(e))?;
        }
        Ok(records)
    }

    fn table_exists(&self, name: &str) -> Result<bool, RecordsError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.error(e))
    }

    fn error(&self, source: rusqlite::Error) -> RecordsError {
        sqlite_error(self.path.clone(), source)
    }
}

#[async_trait(?Send)]
impl RecordStore for SqliteStore {
    /// Inserts a volume.
    async fn insert_volume(
        &self,
        id: &str,
        backend: &str,
        size_bytes: u64,
        status: &str,
    ) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "INSERT INTO volumes (id, backend, size_bytes, status, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, backend, size_bytes as i64, status, now()],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Sets a volume's status.
    async fn set_volume_status(&self, id: &str, status: &str) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "UPDATE volumes SET status = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, status, now()],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Puts a volume row back as it was before an operation that never
    /// reached its driver: the status and update time it had.
    async fn put_back_volume(&self, row: &VolumeRow) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "UPDATE volumes SET status = ?2, updated_at = ?3 WHERE id = ?1",
                params![row.id, row.status, row.updated_at],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Sets a volume's size.
    async fn set_volume_size(&self, id: &str, size_bytes: u64) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "UPDATE volumes SET size_bytes = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, size_bytes as i64, now()],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Deletes a volume row (and any attachment left on it).
    async fn delete_volume(&self, id: &str) -> Result<(), RecordsError> {
        self.conn
            .execute("DELETE FROM attachments WHERE volume_id = ?1", params![id])
            .and_then(|_| {
                self.conn
                    .execute("DELETE FROM volumes WHERE id = ?1", params![id])
            })
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Records (or refreshes) `connector_host`'s attachment of a volume.
    async fn put_attachment(
        &self,
        volume_id: &str,
        connector_host: &str,
        connector: &str,
    ) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO attachments (volume_id, connector_host, connector, attached_at) VALUES (?1, ?2, ?3, ?4)",
                params![volume_id, connector_host, connector, now()],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// A volume's attachments, oldest first.
    async fn attachments(&self, volume_id: &str) -> Result<Vec<AttachmentRow>, RecordsError> {
        let mut stmt = self
            .conn
            .prepare("SELECT volume_id, connector_host, connector, attached_at FROM attachments WHERE volume_id = ?1 ORDER BY attached_at, connector_host")
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(params![volume_id], attachment_row)
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Forgets `connector_host`'s attachment of a volume.
    async fn delete_attachment(
        &self,
        volume_id: &str,
        connector_host: &str,
    ) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "DELETE FROM attachments WHERE volume_id = ?1 AND connector_host = ?2",
                params![volume_id, connector_host],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// One volume.
    async fn volume(&self, id: &str) -> Result<Option<VolumeRow>, RecordsError> {
        self.conn
            .query_row(
                "SELECT id, backend, size_bytes, status, updated_at FROM volumes WHERE id = ?1",
                params![id],
                volume_row,
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    /// Every volume, by id.
    async fn volumes(&self) -> Result<Vec<VolumeRow>, RecordsError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, backend, size_bytes, status, updated_at FROM volumes ORDER BY id")
            .map_err(|e| self.error(e))?;
        let rows = stmt.query_map([], volume_row).map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Records (or replaces) an export.
    async fn put_export(&self, e: &ExportRow) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO exports (volume_id, backend, pid, host, port, connector_host) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.volume_id, e.backend, e.pid, e.host, e.port, e.connector_host],
            )
            .map(drop)
            .map_err(|err| self.error(err))
    }

    /// The export of a volume.
    async fn export(&self, volume_id: &str) -> Result<Option<ExportRow>, RecordsError> {
        self.conn
            .query_row(
                "SELECT volume_id, backend, pid, host, port, connector_host FROM exports WHERE volume_id = ?1",
                params![volume_id],
                export_row,
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    /// Every export of a backend.
    async fn exports(&self, backend: &str) -> Result<Vec<ExportRow>, RecordsError> {
        let mut stmt = self
            .conn
            .prepare("SELECT volume_id, backend, pid, host, port, connector_host FROM exports WHERE backend = ?1 ORDER BY volume_id")
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(params![backend], export_row)
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Forgets an export.
    async fn delete_export(&self, volume_id: &str) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "DELETE FROM exports WHERE volume_id = ?1",
                params![volume_id],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Inserts a backup in `creating`.
    async fn insert_backup(&self, id: &str, volume_id: &str) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "INSERT INTO backups (id, volume_id, status, size_bytes, reached_backend, restore_target, updated_at) VALUES (?1, ?2, 'creating', 0, 0, NULL, ?3)",
                params![id, volume_id, now()],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Updates a backup's status (and size, once known).
    async fn set_backup(
        &self,
        id: &str,
        status: &str,
        size_bytes: Option<u64>,
        restore_target: Option<&str>,
    ) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "UPDATE backups SET status = ?2, size_bytes = COALESCE(?3, size_bytes), restore_target = ?4, updated_at = ?5 WHERE id = ?1",
                params![id, status, size_bytes.map(|s| s as i64), restore_target, now()],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Puts a backup row back as it was before an operation that never
    /// reached its driver: the status, restore target and update time it had.
    async fn put_back_backup(&self, row: &BackupRow) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "UPDATE backups SET status = ?2, restore_target = ?3, updated_at = ?4 WHERE id = ?1",
                params![row.id, row.status, row.restore_target, row.updated_at],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Marks that a backup's data reached the store (it is no longer
    /// deletable without the driver).
    async fn set_backup_reached(&self, id: &str, reached: bool) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "UPDATE backups SET reached_backend = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, i64::from(reached), now()],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// One backup.
    async fn backup(&self, id: &str) -> Result<Option<BackupRow>, RecordsError> {
        self.conn
            .query_row(
                "SELECT id, volume_id, status, size_bytes, reached_backend, restore_target, updated_at FROM backups WHERE id = ?1",
                params![id],
                backup_row,
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    /// Every backup, by id.
    async fn backups(&self) -> Result<Vec<BackupRow>, RecordsError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, volume_id, status, size_bytes, reached_backend, restore_target, updated_at FROM backups ORDER BY id")
            .map_err(|e| self.error(e))?;
        let rows = stmt.query_map([], backup_row).map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Deletes a backup row.
    async fn delete_backup(&self, id: &str) -> Result<(), RecordsError> {
        self.conn
            .execute("DELETE FROM backups WHERE id = ?1", params![id])
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Records a service row (heartbeat).
    async fn put_service(
        &self,
        backend: &str,
        binary: &str,
        host: &str,
        state: &str,
        updated_at: &str,
    ) -> Result<(), RecordsError> {
        self.beat_service(backend, binary, host, state, updated_at)
    }

    /// Service rows, by backend.
    async fn services(&self) -> Result<Vec<ServiceRow>, RecordsError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT binary, host, backend, state, updated_at FROM services ORDER BY backend",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ServiceRow {
                    binary: r.get(0)?,
                    host: r.get(1)?,
                    backend: r.get(2)?,
                    state: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }
}

impl ServiceRows for SqliteStore {
    fn beat_service(
        &self,
        backend: &str,
        binary: &str,
        host: &str,
        state: &str,
        updated_at: &str,
    ) -> Result<(), RecordsError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO services (backend, binary, host, state, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![backend, binary, host, state, updated_at],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }
}

fn volume_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        id: r.get(0)?,
        backend: r.get(1)?,
        size_bytes: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        status: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

fn export_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportRow> {
    Ok(ExportRow {
        volume_id: r.get(0)?,
        backend: r.get(1)?,
        pid: r.get(2)?,
        host: r.get(3)?,
        port: r.get(4)?,
        connector_host: r.get(5)?,
    })
}

fn attachment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttachmentRow> {
    Ok(AttachmentRow {
        volume_id: r.get(0)?,
        connector_host: r.get(1)?,
        connector: r.get(2)?,
        attached_at: r.get(3)?,
    })
}

fn backup_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BackupRow> {
    Ok(BackupRow {
        id: r.get(0)?,
        volume_id: r.get(1)?,
        status: r.get(2)?,
        size_bytes: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        reached_backend: r.get::<_, i64>(4)? != 0,
        restore_target: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a test of the embedded store (its futures are ready at once).
    fn block_on<T>(test: impl std::future::Future<Output = T>) -> T {
        futures_util::FutureExt::now_or_never(test).expect("the embedded store answers at once")
    }

    #[test]
    fn a_crash_mid_backup_and_mid_restore_is_resolved_as_cinder_does() {
        block_on(async {
            let r = SqliteStore::in_memory().expect("db");
            r.insert_volume("v1", "qemu", 1, "available")
                .await
                .expect("insert");
            r.insert_volume("v2", "qemu", 1, "available")
                .await
                .expect("insert");
            r.insert_volume("v3", "qemu", 1, "creating")
                .await
                .expect("insert");
            r.insert_backup("b1", "v1").await.expect("insert");
            r.insert_backup("b2", "v1").await.expect("insert");
            r.set_backup("b2", "restoring", Some(10), Some("v2"))
                .await
                .expect("update");
            r.insert_backup("b3", "v1").await.expect("insert");
            r.set_backup("b3", "deleting", None, None)
                .await
                .expect("update");
            // The one crash-recovery algorithm, `RecordStore::recover`.
            let recovered = r.recover().await.expect("recover");
            assert_eq!(
                r.backup("b1").await.expect("read").expect("exists").status,
                "error"
            );
            assert_eq!(
                r.backup("b2").await.expect("read").expect("exists").status,
                "available"
            );
            assert_eq!(
                r.backup("b3").await.expect("read").expect("exists").status,
                "deleting"
            );
            assert_eq!(
                r.volume("v2").await.expect("read").expect("exists").status,
                "error_restoring"
            );
            assert_eq!(
                r.volume("v3").await.expect("read").expect("exists").status,
                "error"
            );
            assert_eq!(
                r.volume("v1").await.expect("read").expect("exists").status,
                "available"
            );
            assert_eq!(recovered.len(), 5, "{recovered:?}");
        })
    }

    #[test]
    fn attachments_are_per_host_and_survive_reopening() {
        block_on(async {
            let dir = std::env::temp_dir().join(format!("rekindle-attach-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            {
                let r = SqliteStore::open(&dir).expect("open");
                r.insert_volume("v1", "qemu", 1, "in-use")
                    .await
                    .expect("insert");
                r.put_attachment("v1", "src", r#"{"host":"src"}"#)
                    .await
                    .expect("attach");
                r.put_attachment("v1", "dst", r#"{"host":"dst"}"#)
                    .await
                    .expect("attach");
                r.put_attachment("v1", "dst", r#"{"host":"dst"}"#)
                    .await
                    .expect("attach again");
                r.delete_attachment("v1", "src").await.expect("detach");
            }
            let r = SqliteStore::open(&dir).expect("reopen");
            let hosts: Vec<String> = r
                .attachments("v1")
                .await
                .expect("read")
                .into_iter()
                .map(|a| a.connector_host)
                .collect();
            assert_eq!(hosts, ["dst"]);
            r.delete_volume("v1").await.expect("delete");
            assert!(r.attachments("v1").await.expect("read").is_empty());
            let _ = std::fs::remove_dir_all(&dir);
        })
    }

    #[test]
    fn a_state_dir_from_before_attachments_gets_one_per_in_use_export_once() {
        block_on(async {
            let dir = std::env::temp_dir().join(format!("rekindle-legacy-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("dir");
            {
                // The schema as it was before attachments.
                let conn = Connection::open(dir.join("rekindle.sqlite")).expect("open");
                conn.execute_batch(&SCHEMA.replace("attachments", "unused_attachments"))
                    .expect("old schema");
                conn.execute_batch(
                    "INSERT INTO volumes VALUES ('v1', 'qemu', 1, 'in-use', 'then');
                 INSERT INTO volumes VALUES ('v2', 'qemu', 1, 'available', 'then');
                 INSERT INTO exports VALUES ('v1', 'qemu', 7, '127.0.0.1', 10809, 'c1');
                 INSERT INTO exports VALUES ('v2', 'qemu', 8, '127.0.0.1', 10810, 'c2');",
                )
                .expect("old rows");
            }
            let r = SqliteStore::open(&dir).expect("migrate");
            let v1 = r.attachments("v1").await.expect("read");
            assert_eq!(v1.len(), 1);
            assert_eq!(v1[0].connector_host, "c1");
            assert_eq!(v1[0].connector, r#"{"host":"c1"}"#);
            assert!(r.attachments("v2").await.expect("read").is_empty());
            // Once only: a detached host is not brought back by the next open.
            r.delete_attachment("v1", "c1").await.expect("detach");
            drop(r);
            let r = SqliteStore::open(&dir).expect("reopen");
            assert!(r.attachments("v1").await.expect("read").is_empty());
            let _ = std::fs::remove_dir_all(&dir);
        })
    }

    #[test]
    fn rows_survive_reopening_the_file() {
        block_on(async {
            let dir = std::env::temp_dir().join(format!("rekindle-records-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            {
                let r = SqliteStore::open(&dir).expect("open");
                r.insert_volume("v1", "qemu", 42, "available")
                    .await
                    .expect("insert");
                r.put_export(&ExportRow {
                    volume_id: "v1".into(),
                    backend: "qemu".into(),
                    pid: 7,
                    host: "127.0.0.1".into(),
                    port: 10809,
                    connector_host: "c1".into(),
                })
                .await
                .expect("export");
            }
            let r = SqliteStore::open(&dir).expect("reopen");
            assert_eq!(
                r.volume("v1").await.expect("read").map(|v| v.size_bytes),
                Some(42)
            );
            assert_eq!(r.exports("qemu").await.expect("read").len(), 1);
            let _ = std::fs::remove_dir_all(&dir);
        })
    }
}
