//! Records in MariaDB or MySQL (`[database] connection = mysql+pymysql://...`, Cinder's
//! form): the fleet's shared records on the database OpenStack operators already run.
//!
//! The contract is PostgreSQL's ([`crate::records::FleetStore`]); what differs
//! is how MariaDB keeps it. Liveness stamps are the server's
//! `UTC_TIMESTAMP(6)`, never a host's clock. Every write runs in its own
//! transaction, committed only once it answered within
//! [`STATEMENT_DEADLINE`]; a decision that PostgreSQL takes in one
//! statement (a claim, a fenced finish) is one transaction whose first
//! statement locks the rows it decides on (`FOR UPDATE`, `SKIP LOCKED` for
//! claims: MariaDB >= 10.6, MySQL >= 8.0). Transactions run at `READ
//! COMMITTED`, as PostgreSQL's do, so a locking read sees the latest commit
//! and takes no gap locks. Tables use the binary collation: ids compare
//! and sort byte by byte, as in PostgreSQL's `C` order.

use std::cell::RefCell;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{Connection, Row};
use tokio::sync::Semaphore;

use super::{
    AttachmentRow, BackupRow, ExportRow, FleetStore, RecordStore, RecordsError, ServiceRow,
    VolumeRow,
};

mod cluster;
mod options;
mod requests;
mod rollouts;
mod schema;

pub use options::connect_options;

/// How long one statement or transaction may take, measured by this host
/// (a frozen server answers nothing, so only the client can notice). Past
/// it the call fails as `Unavailable` and its connection is closed, never
/// reused: the server rolls its transaction back.
pub const STATEMENT_DEADLINE: Duration = Duration::from_secs(5);

/// Connections kept open between statements, at most (as many may be in use).
const POOL_SIZE: usize = 4;

/// MariaDB (or MySQL) records, through a small pool of connections.
///
/// The pool is rekindle's own, a few lines: sqlx's `Pool` retries a refused
/// connection until its acquire timeout and then reports only "pool timed
/// out", where an operator needs "Connection refused" at once, as the
/// PostgreSQL store says it.
pub struct MariaDbStore {
    options: MySqlConnectOptions,
    url: String,
    service_down_time: Duration,
    idle: RefCell<Vec<MySqlConnection>>,
    permits: Semaphore,
}

/// `d` in whole microseconds, as `TIMESTAMPDIFF(MICROSECOND, ...)` counts.
pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The SQL expression that renders a `DATETIME(6)` column (UTC) as RFC 3339
/// with milliseconds, as the other stores print their stamps.
macro_rules! stamp {
    ($column:literal) => {
        concat!(
            "CONCAT(LEFT(DATE_FORMAT(",
            $column,
            ", '%Y-%m-%dT%H:%i:%s.%f'), 23), 'Z')"
        )
    };
}
pub(super) use stamp;

/// A heartbeat in `$column` within `?` microseconds of the server's clock.
macro_rules! fresh {
    ($column:literal) => {
        concat!(
            "TIMESTAMPDIFF(MICROSECOND, ",
            $column,
            ", UTC_TIMESTAMP(6)) <= ?"
        )
    };
}
pub(super) use fresh;

impl MariaDbStore {
    /// Connects to `url` (`mysql+pymysql://user[:password]@host[:port]/db`,
    /// also `mysql://` and `mariadb://`; see [`connect_options`] for the
    /// query parameters) and brings the schema up to date, under a named
    /// lock (`GET_LOCK`) so hosts starting together migrate once.
    /// `service_down_time` decides when a heartbeat is too old.
    ///
    /// # Errors
    /// `BadUrl` for a URL that does not parse or asks for what this build
    /// cannot do; `Unavailable` when the server cannot be reached; `Query`
    /// when a migration fails.
    pub async fn connect(
        url: &str,
        service_down_time: Duration,
    ) -> Result<MariaDbStore, RecordsError> {
        let shown = crate::records::redact(url);
        let options = connect_options(url).map_err(|reason| RecordsError::BadUrl {
            url: shown.clone(),
            reason,
        })?;
        let store = MariaDbStore {
            options,
            url: shown,
            service_down_time,
            idle: RefCell::new(Vec::new()),
            permits: Semaphore::new(POOL_SIZE),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The database, password removed.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn down_time_micros(&self) -> i64 {
        micros(self.service_down_time)
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> RecordsError {
        RecordsError::Unavailable {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    /// A server's error is a query problem; a lost or refused connection
    /// means the database is unavailable.
    pub(super) fn error(&self, e: sqlx::Error) -> RecordsError {
        match e {
            sqlx::Error::Database(db) => RecordsError::Query {
                url: self.url.clone(),
                reason: format!(
                    "{} ({})",
                    db.message(),
                    db.code().unwrap_or(std::borrow::Cow::Borrowed("?"))
                ),
            },
            sqlx::Error::Protocol(message) if message.contains("EOF") => self.unavailable(
                "the server closed the connection (it stopped, restarted or dropped this client)",
            ),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => self.unavailable(e),
            other => RecordsError::Query {
                url: self.url.clone(),
                reason: other.to_string(),
            },
        }
    }

    pub(super) fn bad_row(&self, reason: impl std::fmt::Display) -> RecordsError {
        RecordsError::Query {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    fn overdue(&self) -> RecordsError {
        self.unavailable(format!(
            "no answer within {} (the server is frozen or unreachable)",
            humantime::format_duration(STATEMENT_DEADLINE)
        ))
    }

    /// A fresh connection, its session set as every statement here
    /// expects (the caller bounds how long it may take; a refused one
    /// fails at once).
    async fn open(&self) -> Result<MySqlConnection, RecordsError> {
        let mut connection = MySqlConnection::connect_with(&self.options)
            .await
            .map_err(|e| self.error(e))?;
        sqlx::raw_sql(
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SET SESSION innodb_lock_wait_timeout = 5",
        )
        .execute(&mut connection)
        .await
        .map_err(|e| self.error(e))?;
        Ok(connection)
    }

    /// Runs `work` on a connection under [`STATEMENT_DEADLINE`] (waiting
    /// for one included): its result, or `Unavailable` naming the deadline.
    /// A connection that failed or ran out of time is closed, never reused.
    pub(super) async fn with_connection<T>(
        &self,
        work: impl AsyncFnOnce(&mut MySqlConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, RecordsError> {
        let started = tokio::time::Instant::now();
        let _permit = tokio::time::timeout(STATEMENT_DEADLINE, self.permits.acquire())
            .await
            .map_err(|_| self.overdue())?
            .map_err(|e| self.unavailable(e))?;
        let idle = self.idle.borrow_mut().pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => {
                // Opening one counts against the same deadline (a frozen
                // server accepts the TCP connection and never greets).
                let left = STATEMENT_DEADLINE.saturating_sub(started.elapsed());
                tokio::time::timeout(left, self.open()).await.map_err(|_| {
                    self.unavailable(format!(
                        "no answer within {} (the server is frozen or unreachable): no connection could be had",
                        humantime::format_duration(STATEMENT_DEADLINE)
                    ))
                })??
            }
        };
        let left = STATEMENT_DEADLINE.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, work(&mut connection)).await {
            Ok(Ok(answer)) => {
                let mut idle = self.idle.borrow_mut();
                if idle.len() < POOL_SIZE {
                    idle.push(connection);
                }
                Ok(answer)
            }
            // A server's own error leaves the connection usable; anything
            // else (lost, protocol) does not.
            Ok(Err(sqlx::Error::Database(db))) => {
                let mut idle = self.idle.borrow_mut();
                if idle.len() < POOL_SIZE {
                    idle.push(connection);
                }
                Err(self.error(sqlx::Error::Database(db)))
            }
            Ok(Err(e)) => Err(self.error(e)),
            // Dropped: the socket closes, the server rolls back.
            Err(_) => Err(self.overdue()),
        }
    }

    /// Runs `work` in a transaction under the deadline, committed only if
    /// it answered in time and succeeded.
    pub(super) async fn transaction<T>(
        &self,
        work: impl AsyncFnOnce(&mut MySqlConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, RecordsError> {
        self.with_connection(async |connection| {
            let mut tx = connection.begin().await?;
            let answer = work(&mut tx).await?;
            tx.commit().await?;
            Ok(answer)
        })
        .await
    }

    /// One write statement with `binds`, in its own transaction: the rows
    /// it matched.
    pub(super) async fn execute(&self, sql: &str, binds: &[Bind<'_>]) -> Result<u64, RecordsError> {
        self.transaction(async |c| {
            Ok(bind(sqlx::query(sql), binds)
                .execute(&mut *c)
                .await?
                .rows_affected())
        })
        .await
    }

    /// One read with `binds`.
    pub(super) async fn fetch(
        &self,
        sql: &str,
        binds: &[Bind<'_>],
    ) -> Result<Vec<MySqlRow>, RecordsError> {
        self.with_connection(async |c| bind(sqlx::query(sql), binds).fetch_all(&mut *c).await)
            .await
    }
}

/// A statement's parameter.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bind<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
    MaybeInt(Option<i64>),
    Bool(bool),
}

pub(super) fn bind<'q>(
    mut query: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    binds: &[Bind<'q>],
) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    for b in binds {
        query = match *b {
            Bind::Text(t) => query.bind(t),
            Bind::MaybeText(t) => query.bind(t),
            Bind::Int(i) => query.bind(i),
            Bind::MaybeInt(i) => query.bind(i),
            Bind::Bool(b) => query.bind(b),
        };
    }
    query
}

/// Column `i` as text (`String` or `Option<String>`). The tables' binary
/// collation makes MariaDB flag their text columns BINARY, which sqlx's
/// type check takes for `VARBINARY`; the bytes are the UTF-8 text written,
/// so they are decoded as text without that check.
pub(super) fn text<'r, T>(r: &'r MySqlRow, i: usize) -> Result<T, sqlx::Error>
where
    T: sqlx::Decode<'r, sqlx::MySql> + sqlx::Type<sqlx::MySql>,
{
    r.try_get_unchecked(i)
}

fn size(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn volume_row(r: &MySqlRow) -> Result<VolumeRow, sqlx::Error> {
    Ok(VolumeRow {
        id: text(r, 0)?,
        backend: text(r, 1)?,
        size_bytes: u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
        status: text(r, 3)?,
        updated_at: text(r, 4)?,
    })
}

fn export_row(r: &MySqlRow) -> Result<ExportRow, sqlx::Error> {
    Ok(ExportRow {
        volume_id: text(r, 0)?,
        backend: text(r, 1)?,
        pid: u32::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
        host: text(r, 3)?,
        port: u16::try_from(r.try_get::<i32, _>(4)?).unwrap_or(0),
        connector_host: text(r, 5)?,
    })
}

fn backup_row(r: &MySqlRow) -> Result<BackupRow, sqlx::Error> {
    Ok(BackupRow {
        id: text(r, 0)?,
        volume_id: text(r, 1)?,
        status: text(r, 2)?,
        size_bytes: u64::try_from(r.try_get::<i64, _>(3)?).unwrap_or(0),
        reached_backend: r.try_get(4)?,
        restore_target: text(r, 5)?,
        updated_at: text(r, 6)?,
    })
}

impl MariaDbStore {
    /// `rows` mapped by `row`, a decoding failure a `Query` error.
    pub(super) fn rows<T>(
        &self,
        rows: &[MySqlRow],
        row: impl Fn(&MySqlRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, RecordsError> {
        rows.iter()
            .map(|r| row(r).map_err(|e| self.error(e)))
            .collect()
    }
}

const VOLUME: &str = concat!(
    "SELECT id, backend, size_bytes, status, ",
    stamp!("updated_at"),
    " FROM volumes"
);
const EXPORT: &str = "SELECT volume_id, backend, pid, host, port, connector_host FROM exports";
const BACKUP: &str = concat!(
    "SELECT id, volume_id, status, size_bytes, reached_backend, restore_target, ",
    stamp!("updated_at"),
    " FROM backups"
);

/// An RFC 3339 stamp as this store prints it, back into a `DATETIME(6)`.
const FROM_STAMP: &str = "STR_TO_DATE(?, '%Y-%m-%dT%H:%i:%s.%fZ')";

#[async_trait(?Send)]
impl RecordStore for MariaDbStore {
    async fn insert_volume(
        &self,
        id: &str,
        backend: &str,
        size_bytes: u64,
        status: &str,
    ) -> Result<(), RecordsError> {
        self.execute(
            "INSERT INTO volumes (id, backend, size_bytes, status, updated_at)
             VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6))",
            &[
                Bind::Text(id),
                Bind::Text(backend),
                Bind::Int(size(size_bytes)),
                Bind::Text(status),
            ],
        )
        .await
        .map(drop)
    }

    async fn set_volume_status(&self, id: &str, status: &str) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE volumes SET status = ?, updated_at = UTC_TIMESTAMP(6) WHERE id = ?",
            &[Bind::Text(status), Bind::Text(id)],
        )
        .await
        .map(drop)
    }

    async fn put_back_volume(&self, row: &VolumeRow) -> Result<(), RecordsError> {
        self.execute(
            &format!("UPDATE volumes SET status = ?, updated_at = {FROM_STAMP} WHERE id = ?"),
            &[
                Bind::Text(&row.status),
                Bind::Text(&row.updated_at),
                Bind::Text(&row.id),
            ],
        )
        .await
        .map(drop)
    }

    async fn set_volume_size(&self, id: &str, size_bytes: u64) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE volumes SET size_bytes = ?, updated_at = UTC_TIMESTAMP(6) WHERE id = ?",
            &[Bind::Int(size(size_bytes)), Bind::Text(id)],
        )
        .await
        .map(drop)
    }

    async fn delete_volume(&self, id: &str) -> Result<(), RecordsError> {
        self.transaction(async |c| {
            sqlx::query("DELETE FROM attachments WHERE volume_id = ?")
                .bind(id)
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM volumes WHERE id = ?")
                .bind(id)
                .execute(&mut *c)
                .await?;
            Ok(())
        })
        .await
    }

    async fn volume(&self, id: &str) -> Result<Option<VolumeRow>, RecordsError> {
        let rows = self
            .fetch(&format!("{VOLUME} WHERE id = ?"), &[Bind::Text(id)])
            .await?;
        Ok(self.rows(&rows, volume_row)?.pop())
    }

    async fn volumes(&self) -> Result<Vec<VolumeRow>, RecordsError> {
        let rows = self.fetch(&format!("{VOLUME} ORDER BY id"), &[]).await?;
        self.rows(&rows, volume_row)
    }

    async fn put_export(&self, e: &ExportRow) -> Result<(), RecordsError> {
        self.execute(
            "INSERT INTO exports (volume_id, backend, pid, host, port, connector_host)
             VALUES (?, ?, ?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE backend = VALUES(backend), pid = VALUES(pid),
                 host = VALUES(host), port = VALUES(port), connector_host = VALUES(connector_host)",
            &[
                Bind::Text(&e.volume_id),
                Bind::Text(&e.backend),
                Bind::Int(i64::from(e.pid)),
                Bind::Text(&e.host),
                Bind::Int(i64::from(e.port)),
                Bind::Text(&e.connector_host),
            ],
        )
        .await
        .map(drop)
    }

    async fn export(&self, volume_id: &str) -> Result<Option<ExportRow>, RecordsError> {
        let rows = self
            .fetch(
                &format!("{EXPORT} WHERE volume_id = ?"),
                &[Bind::Text(volume_id)],
            )
            .await?;
        Ok(self.rows(&rows, export_row)?.pop())
    }

    async fn exports(&self, backend: &str) -> Result<Vec<ExportRow>, RecordsError> {
        let rows = self
            .fetch(
                &format!("{EXPORT} WHERE backend = ? ORDER BY volume_id"),
                &[Bind::Text(backend)],
            )
            .await?;
        self.rows(&rows, export_row)
    }

    async fn delete_export(&self, volume_id: &str) -> Result<(), RecordsError> {
        self.execute(
            "DELETE FROM exports WHERE volume_id = ?",
            &[Bind::Text(volume_id)],
        )
        .await
        .map(drop)
    }

    async fn put_attachment(
        &self,
        volume_id: &str,
        connector_host: &str,
        connector: &str,
    ) -> Result<(), RecordsError> {
        self.execute(
            "INSERT INTO attachments (volume_id, connector_host, connector, attached_at)
             VALUES (?, ?, ?, UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE connector = VALUES(connector)",
            &[
                Bind::Text(volume_id),
                Bind::Text(connector_host),
                Bind::Text(connector),
            ],
        )
        .await
        .map(drop)
    }

    async fn attachments(&self, volume_id: &str) -> Result<Vec<AttachmentRow>, RecordsError> {
        let rows = self
            .fetch(
                concat!(
                    "SELECT volume_id, connector_host, connector, ",
                    stamp!("attached_at"),
                    " FROM attachments WHERE volume_id = ? ORDER BY attached_at, connector_host"
                ),
                &[Bind::Text(volume_id)],
            )
            .await?;
        self.rows(&rows, |r| {
            Ok(AttachmentRow {
                volume_id: text(r, 0)?,
                connector_host: text(r, 1)?,
                connector: text(r, 2)?,
                attached_at: text(r, 3)?,
            })
        })
    }

    async fn delete_attachment(
        &self,
        volume_id: &str,
        connector_host: &str,
    ) -> Result<(), RecordsError> {
        self.execute(
            "DELETE FROM attachments WHERE volume_id = ? AND connector_host = ?",
            &[Bind::Text(volume_id), Bind::Text(connector_host)],
        )
        .await
        .map(drop)
    }

    async fn insert_backup(&self, id: &str, volume_id: &str) -> Result<(), RecordsError> {
        self.execute(
            "INSERT INTO backups (id, volume_id, status, updated_at)
             VALUES (?, ?, 'creating', UTC_TIMESTAMP(6))",
            &[Bind::Text(id), Bind::Text(volume_id)],
        )
        .await
        .map(drop)
    }

    async fn set_backup(
        &self,
        id: &str,
        status: &str,
        size_bytes: Option<u64>,
        restore_target: Option<&str>,
    ) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE backups SET status = ?, size_bytes = COALESCE(?, size_bytes),
                 restore_target = ?, updated_at = UTC_TIMESTAMP(6) WHERE id = ?",
            &[
                Bind::Text(status),
                Bind::MaybeInt(size_bytes.map(size)),
                Bind::MaybeText(restore_target),
                Bind::Text(id),
            ],
        )
        .await
        .map(drop)
    }

    async fn put_back_backup(&self, row: &BackupRow) -> Result<(), RecordsError> {
        self.execute(
            &format!(
                "UPDATE backups SET status = ?, restore_target = ?, updated_at = {FROM_STAMP} WHERE id = ?"
            ),
            &[
                Bind::Text(&row.status),
                Bind::MaybeText(row.restore_target.as_deref()),
                Bind::Text(&row.updated_at),
                Bind::Text(&row.id),
            ],
        )
        .await
        .map(drop)
    }

    async fn set_backup_reached(&self, id: &str, reached: bool) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE backups SET reached_backend = ?, updated_at = UTC_TIMESTAMP(6) WHERE id = ?",
            &[Bind::Bool(reached), Bind::Text(id)],
        )
        .await
        .map(drop)
    }

    async fn backup(&self, id: &str) -> Result<Option<BackupRow>, RecordsError> {
        let rows = self
            .fetch(&format!("{BACKUP} WHERE id = ?"), &[Bind::Text(id)])
            .await?;
        Ok(self.rows(&rows, backup_row)?.pop())
    }

    async fn backups(&self) -> Result<Vec<BackupRow>, RecordsError> {
        let rows = self.fetch(&format!("{BACKUP} ORDER BY id"), &[]).await?;
        self.rows(&rows, backup_row)
    }

    async fn delete_backup(&self, id: &str) -> Result<(), RecordsError> {
        self.execute("DELETE FROM backups WHERE id = ?", &[Bind::Text(id)])
            .await
            .map(drop)
    }

    /// The heartbeat is the server's `UTC_TIMESTAMP(6)`; `updated_at`
    /// (this host's clock) is not used.
    async fn put_service(
        &self,
        backend: &str,
        binary: &str,
        host: &str,
        state: &str,
        _updated_at: &str,
    ) -> Result<(), RecordsError> {
        use crate::records::ClusterRecords;
        self.put_services(&[crate::records::ServicePut {
            backend,
            binary,
            host,
            state,
        }])
        .await
    }

    /// A row is `up` only if its host said so and its heartbeat is within
    /// `service_down_time` of the server's clock.
    async fn services(&self) -> Result<Vec<ServiceRow>, RecordsError> {
        let rows = self
            .fetch(
                concat!(
                    "SELECT service_binary, host, backend,
                        CASE WHEN state = 'up' AND ",
                    fresh!("heartbeat"),
                    " THEN 'up' ELSE 'down' END, ",
                    stamp!("heartbeat"),
                    " FROM services ORDER BY host, backend"
                ),
                &[Bind::Int(self.down_time_micros())],
            )
            .await?;
        self.rows(&rows, |r| {
            Ok(ServiceRow {
                binary: text(r, 0)?,
                host: text(r, 1)?,
                backend: text(r, 2)?,
                state: text(r, 3)?,
                updated_at: text(r, 4)?,
            })
        })
    }
}

#[async_trait(?Send)]
impl FleetStore for MariaDbStore {
    fn url(&self) -> &str {
        &self.url
    }

    async fn reset(&self) -> Result<(), RecordsError> {
        self.with_connection(async |c| {
            sqlx::raw_sql(schema::DROP_ALL).execute(&mut *c).await?;
            Ok(())
        })
        .await?;
        self.migrate().await
    }
}
