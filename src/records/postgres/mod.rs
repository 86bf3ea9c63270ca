//! Records in PostgreSQL (`[database] connection = postgresql://...`, Cinder's option):
//! shared by every host of a fleet, schema migrated at start, heartbeats on the server's clock.
//!
//! Liveness is judged by the database's clock: a heartbeat is written with
//! the server's `now()`, and a service row reads `down` once that heartbeat
//! is older than `service_down_time` by the same clock, so a host whose own
//! clock is minutes off is neither shown down nor kept up.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::{
    AttachmentRow, BackupRow, ExportRow, FleetStore, RecordStore, RecordsError, ServiceRow,
    VolumeRow, redact,
};

mod cluster;
mod requests;
mod rollouts;

pub use requests::CHANNEL;

/// Schema migrations, in order; each runs once, in a transaction, under an
/// advisory lock (hosts starting together do not race).
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE volumes (
    id TEXT PRIMARY KEY, backend TEXT NOT NULL, size_bytes BIGINT NOT NULL,
    status TEXT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE exports (
    volume_id TEXT PRIMARY KEY, backend TEXT NOT NULL, pid BIGINT NOT NULL,
    host TEXT NOT NULL, port INTEGER NOT NULL, connector_host TEXT NOT NULL);
CREATE TABLE attachments (
    volume_id TEXT NOT NULL, connector_host TEXT NOT NULL, connector TEXT NOT NULL,
    attached_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (volume_id, connector_host));
CREATE TABLE backups (
    id TEXT PRIMARY KEY, volume_id TEXT NOT NULL, status TEXT NOT NULL,
    size_bytes BIGINT NOT NULL DEFAULT 0, reached_backend BOOLEAN NOT NULL DEFAULT false,
    restore_target TEXT, updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE services (
    host TEXT NOT NULL, backend TEXT NOT NULL, service_binary TEXT NOT NULL,
    state TEXT NOT NULL, heartbeat TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (host, backend));
",
    "
CREATE TABLE hosts (
    host TEXT PRIMARY KEY, cluster TEXT NOT NULL, epoch BIGINT NOT NULL,
    heartbeat TIMESTAMPTZ NOT NULL);
CREATE TABLE workers (
    kind TEXT NOT NULL, id TEXT NOT NULL, status TEXT NOT NULL,
    cluster TEXT NOT NULL, owner TEXT NOT NULL, epoch BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, id));
",
    "
CREATE TABLE reload_requests (
    id BIGSERIAL PRIMARY KEY, host TEXT NOT NULL, rollout BIGINT,
    state TEXT NOT NULL DEFAULT 'requested', as_intended BOOLEAN, report TEXT,
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now(), answered_at TIMESTAMPTZ);
CREATE INDEX reload_requests_pending ON reload_requests (host) WHERE state = 'requested';
",
    "
CREATE TABLE rollouts (
    id BIGSERIAL PRIMARY KEY, cluster TEXT, max_unavailable INTEGER NOT NULL,
    min_ready_ms BIGINT NOT NULL, state TEXT NOT NULL DEFAULT 'running',
    hosts JSONB NOT NULL DEFAULT '[]', message TEXT NOT NULL DEFAULT '',
    driver TEXT NOT NULL DEFAULT '',
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
",
    // Where each host's run of renewals started (crate::fleet::outcome).
    "
ALTER TABLE hosts ADD COLUMN renewed_since TIMESTAMPTZ NOT NULL DEFAULT now();
",
];

/// How long one statement or transaction may take, measured by this host:
/// the documented `statement_timeout` is enforced by the server itself, so
/// it cannot fire while the server is frozen (SIGSTOP, a hung storage
/// layer). Past it the call fails as `Unavailable` and its connection is
/// discarded, never returned to the pool.
pub const STATEMENT_DEADLINE: Duration = Duration::from_secs(5);

/// The advisory lock key migrations run under ("rekindle" in ASCII).
const MIGRATION_LOCK: i64 = 0x7265_6b69_6e64_6c65;

/// PostgreSQL records, through a small pool of connections.
pub struct PgStore {
    pool: Pool,
    url: String,
    /// The URL with its password, for connections outside the pool (LISTEN).
    config: tokio_postgres::Config,
    service_down_time: Duration,
}

/// A duration in whole milliseconds, as the statements take it.
pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl PgStore {
    /// `service_down_time` in milliseconds, as queries take it.
    pub(crate) fn down_time_millis(&self) -> i64 {
        millis(self.service_down_time)
    }

    /// Connects to `url` (`postgresql://user[:password]@host[:port]/db`)
    /// and brings the schema up to date. Connections time out after 3 s
    /// and statements after 5 s, so an outage is an error, never a hang.
    /// `service_down_time` decides when a heartbeat is too old.
    ///
    /// # Errors
    /// `BadUrl` for a URL that does not parse or is not PostgreSQL;
    /// `Unavailable` when the server cannot be reached; `Query` when a
    /// migration fails.
    pub async fn connect(url: &str, service_down_time: Duration) -> Result<PgStore, RecordsError> {
        let shown = redact(url);
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return Err(RecordsError::BadUrl {
                url: shown,
                reason: "expected postgresql://user@host:port/database".to_string(),
            });
        }
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| RecordsError::BadUrl {
            url: shown.clone(),
            reason: format!("{e}"),
        })?;
        config
            .connect_timeout(Duration::from_secs(3))
            .options("-c statement_timeout=5000")
            // A peer that vanished (a partition, a powered-off host) is
            // noticed by the kernel, not only at the next deadline.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .application_name("rekindle");
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(4)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(STATEMENT_DEADLINE))
            .create_timeout(Some(STATEMENT_DEADLINE))
            .recycle_timeout(Some(STATEMENT_DEADLINE))
            .build()
            .map_err(|e| RecordsError::BadUrl {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        let store = PgStore {
            pool,
            url: shown,
            config,
            service_down_time,
        };
        store.migrate().await?;
        Ok(store)
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> RecordsError {
        RecordsError::Unavailable {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    /// A server error is a query problem; anything else (closed, refused,
    /// timed out) means the database is unavailable.
    fn error(&self, e: tokio_postgres::Error) -> RecordsError {
        match e.as_db_error() {
            Some(db) => RecordsError::Query {
                url: self.url.clone(),
                reason: format!("{} ({})", db.message(), db.code().code()),
            },
            None => {
                // "error connecting to server: Connection refused (os error 111)"
                let mut reason = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    reason.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                self.unavailable(reason)
            }
        }
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, RecordsError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => self.error(e),
            // The pool's waits are as long as a statement's deadline.
            deadpool_postgres::PoolError::Timeout(_) => self.unavailable(format!(
                "no answer within {} (the server is frozen or unreachable): no connection could be had",
                humantime::format_duration(STATEMENT_DEADLINE)
            )),
            other => self.unavailable(other),
        })
    }

    /// Runs `work` on a pooled connection under [`STATEMENT_DEADLINE`]:
    /// its result, or `Unavailable` naming the deadline, the connection
    /// then discarded (a frozen server's connection is never reused).
    pub(super) async fn with_client<T>(
        &self,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, RecordsError>,
    ) -> Result<T, RecordsError> {
        let overdue = || {
            self.unavailable(format!(
                "no answer within {} (the server is frozen or unreachable)",
                humantime::format_duration(STATEMENT_DEADLINE)
            ))
        };
        // Waiting for a connection counts against the same deadline.
        let started = tokio::time::Instant::now();
        let mut client = tokio::time::timeout(STATEMENT_DEADLINE, self.client())
            .await
            .map_err(|_| overdue())??;
        let left = STATEMENT_DEADLINE.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, work(&mut client)).await {
            Ok(result) => result,
            Err(_) => {
                // Its request may still be queued on it: never reused.
                drop(deadpool_postgres::Object::take(client));
                Err(overdue())
            }
        }
    }

    async fn migrate(&self) -> Result<(), RecordsError> {
        self.with_client(async |client| {
            let tx = client.transaction().await.map_err(|e| self.error(e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(|e| self.error(e))?;
            // Another application's tables (Cinder's own database has
            // volumes, services, backups, workers): nothing is changed.
            let foreign: Vec<String> = tx
                .query(
                    "SELECT table_name::text FROM information_schema.tables
                     WHERE table_schema = current_schema() AND table_name = ANY($1)
                       AND to_regclass('rekindle_migrations') IS NULL
                     ORDER BY table_name",
                    &[&crate::records::OWN_TABLES],
                )
                .await
                .map_err(|e| self.error(e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !foreign.is_empty() {
                return Err(RecordsError::Query {
                    url: self.url.clone(),
                    reason: crate::records::foreign_tables(&foreign),
                });
            }
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS rekindle_migrations (
                     version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await
            .map_err(|e| self.error(e))?;
            let applied: i32 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM rekindle_migrations",
                    &[],
                )
                .await
                .map_err(|e| self.error(e))?
                .get(0);
            for (index, migration) in MIGRATIONS.iter().enumerate() {
                let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
                if version <= applied {
                    continue;
                }
                tx.batch_execute(migration)
                    .await
                    .map_err(|e| self.error(e))?;
                tx.execute(
                    "INSERT INTO rekindle_migrations (version) VALUES ($1)",
                    &[&version],
                )
                .await
                .map_err(|e| self.error(e))?;
            }
            tx.commit().await.map_err(|e| self.error(e))
        })
        .await
    }

    /// The connection settings (for a dedicated LISTEN connection).
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub(super) fn failed(&self, e: tokio_postgres::Error) -> RecordsError {
        self.error(e)
    }

    /// The database, password removed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether `sql` only reads (a plain `SELECT`): it needs no transaction.
    fn reads_only(sql: &str) -> bool {
        sql.trim_start()
            .get(..6)
            .is_some_and(|word| word.eq_ignore_ascii_case("SELECT"))
    }

    /// Runs one statement (`run`) under the deadline; a write in its own
    /// transaction, committed only once the statement answered in time. A
    /// write the deadline cut off (the server froze with it) is never
    /// committed later: the thawed server finds its transaction abandoned
    /// (rolled back with the discarded connection), not a statement to
    /// commit on its own. A plain `SELECT` runs as it is.
    async fn statement<T>(
        &self,
        sql: &str,
        run: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> Result<T, tokio_postgres::Error>,
        read: impl AsyncFnOnce(&deadpool_postgres::Object) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, RecordsError> {
        if Self::reads_only(sql) {
            return self
                .with_client(async |client| read(client).await.map_err(|e| self.error(e)))
                .await;
        }
        self.with_client(async |client| {
            let tx = client.transaction().await.map_err(|e| self.error(e))?;
            let answer = run(&tx).await.map_err(|e| self.error(e))?;
            tx.commit().await.map_err(|e| self.error(e))?;
            Ok(answer)
        })
        .await
    }

    pub(super) async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, RecordsError> {
        self.statement(
            sql,
            async |tx| tx.query_one(sql, params).await,
            async |client| client.query_one(sql, params).await,
        )
        .await
    }

    pub(super) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, RecordsError> {
        self.statement(
            sql,
            async |tx| tx.execute(sql, params).await,
            async |client| client.execute(sql, params).await,
        )
        .await
    }

    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, RecordsError> {
        self.statement(
            sql,
            async |tx| tx.query(sql, params).await,
            async |client| client.query(sql, params).await,
        )
        .await
    }
}

fn size(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn volume_row(r: &tokio_postgres::Row) -> VolumeRow {
    VolumeRow {
        id: r.get(0),
        backend: r.get(1),
        size_bytes: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
        status: r.get(3),
        updated_at: stamp(r.get(4)),
    }
}

fn export_row(r: &tokio_postgres::Row) -> ExportRow {
    ExportRow {
        volume_id: r.get(0),
        backend: r.get(1),
        pid: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
        host: r.get(3),
        port: u16::try_from(r.get::<_, i32>(4)).unwrap_or(0),
        connector_host: r.get(5),
    }
}

fn backup_row(r: &tokio_postgres::Row) -> BackupRow {
    BackupRow {
        id: r.get(0),
        volume_id: r.get(1),
        status: r.get(2),
        size_bytes: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
        reached_backend: r.get(4),
        restore_target: r.get(5),
        updated_at: stamp(r.get(6)),
    }
}

const VOLUME: &str = "SELECT id, backend, size_bytes, status, updated_at FROM volumes";
const EXPORT: &str = "SELECT volume_id, backend, pid, host, port, connector_host FROM exports";
const BACKUP: &str = "SELECT id, volume_id, status, size_bytes, reached_backend, restore_target, updated_at FROM backups";

#[async_trait(?Send)]
impl RecordStore for PgStore {
    async fn insert_volume(
        &self,
        id: &str,
        backend: &str,
        size_bytes: u64,
        status: &str,
    ) -> Result<(), RecordsError> {
        self.execute(
            "INSERT INTO volumes (id, backend, size_bytes, status) VALUES ($1, $2, $3, $4)",
            &[&id, &backend, &size(size_bytes), &status],
        )
        .await
        .map(drop)
    }

    async fn set_volume_status(&self, id: &str, status: &str) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE volumes SET status = $2, updated_at = now() WHERE id = $1",
            &[&id, &status],
        )
        .await
        .map(drop)
    }

    async fn set_volume_size(&self, id: &str, size_bytes: u64) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE volumes SET size_bytes = $2, updated_at = now() WHERE id = $1",
            &[&id, &size(size_bytes)],
        )
        .await
        .map(drop)
    }

    async fn delete_volume(&self, id: &str) -> Result<(), RecordsError> {
        self.with_client(async |client| {
            let tx = client.transaction().await.map_err(|e| self.error(e))?;
            tx.execute("DELETE FROM attachments WHERE volume_id = $1", &[&id])
                .await
                .map_err(|e| self.error(e))?;
            tx.execute("DELETE FROM volumes WHERE id = $1", &[&id])
                .await
                .map_err(|e| self.error(e))?;
            tx.commit().await.map_err(|e| self.error(e))
        })
        .await
    }

    async fn volume(&self, id: &str) -> Result<Option<VolumeRow>, RecordsError> {
        let rows = self
            .query(&format!("{VOLUME} WHERE id = $1"), &[&id])
            .await?;
        Ok(rows.first().map(volume_row))
    }

    async fn volumes(&self) -> Result<Vec<VolumeRow>, RecordsError> {
        let rows = self.query(&format!("{VOLUME} ORDER BY id"), &[]).await?;
        Ok(rows.iter().map(volume_row).collect())
    }

    async fn put_export(&self, e: &ExportRow) -> Result<(), RecordsError> {
        self.execute(
            "INSERT INTO exports (volume_id, backend, pid, host, port, connector_host)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (volume_id) DO UPDATE SET backend = $2, pid = $3, host = $4, port = $5, connector_host = $6",
            &[
                &e.volume_id,
                &e.backend,
                &i64::from(e.pid),
                &e.host,
                &i32::from(e.port),
                &e.connector_host,
            ],
        )
        .await
        .map(drop)
    }

    async fn export(&self, volume_id: &str) -> Result<Option<ExportRow>, RecordsError> {
        let rows = self
            .query(&format!("{EXPORT} WHERE volume_id = $1"), &[&volume_id])
            .await?;
        Ok(rows.first().map(export_row))
    }

    async fn exports(&self, backend: &str) -> Result<Vec<ExportRow>, RecordsError> {
        let rows = self
            .query(
                &format!("{EXPORT} WHERE backend = $1 ORDER BY volume_id"),
                &[&backend],
            )
            .await?;
        Ok(rows.iter().map(export_row).collect())
    }

    async fn delete_export(&self, volume_id: &str) -> Result<(), RecordsError> {
        self.execute("DELETE FROM exports WHERE volume_id = $1", &[&volume_id])
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
            "INSERT INTO attachments (volume_id, connector_host, connector) VALUES ($1, $2, $3)
             ON CONFLICT (volume_id, connector_host) DO UPDATE SET connector = $3",
            &[&volume_id, &connector_host, &connector],
        )
        .await
        .map(drop)
    }

    async fn attachments(&self, volume_id: &str) -> Result<Vec<AttachmentRow>, RecordsError> {
        let rows = self
            .query(
                "SELECT volume_id, connector_host, connector, attached_at FROM attachments
                 WHERE volume_id = $1 ORDER BY attached_at, connector_host",
                &[&volume_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AttachmentRow {
                volume_id: r.get(0),
                connector_host: r.get(1),
                connector: r.get(2),
                attached_at: stamp(r.get(3)),
            })
            .collect())
    }

    async fn delete_attachment(
        &self,
        volume_id: &str,
        connector_host: &str,
    ) -> Result<(), RecordsError> {
        self.execute(
            "DELETE FROM attachments WHERE volume_id = $1 AND connector_host = $2",
            &[&volume_id, &connector_host],
        )
        .await
        .map(drop)
    }

    async fn insert_backup(&self, id: &str, volume_id: &str) -> Result<(), RecordsError> {
        self.execute(
            "INSERT INTO backups (id, volume_id, status) VALUES ($1, $2, 'creating')",
            &[&id, &volume_id],
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
            "UPDATE backups SET status = $2, size_bytes = COALESCE($3, size_bytes),
                 restore_target = $4, updated_at = now() WHERE id = $1",
            &[&id, &status, &size_bytes.map(size), &restore_target],
        )
        .await
        .map(drop)
    }

    /// `updated_at` goes back to the row's own stamp (RFC 3339, as this
    /// store reads it out).
    async fn put_back_volume(&self, row: &VolumeRow) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE volumes SET status = $2,
                    updated_at = CAST($3::text AS timestamptz) WHERE id = $1",
            &[&row.id, &row.status, &row.updated_at],
        )
        .await
        .map(drop)
    }

    async fn put_back_backup(&self, row: &BackupRow) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE backups SET status = $2, restore_target = $3,
                    updated_at = CAST($4::text AS timestamptz) WHERE id = $1",
            &[&row.id, &row.status, &row.restore_target, &row.updated_at],
        )
        .await
        .map(drop)
    }

    async fn set_backup_reached(&self, id: &str, reached: bool) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE backups SET reached_backend = $2, updated_at = now() WHERE id = $1",
            &[&id, &reached],
        )
        .await
        .map(drop)
    }

    async fn backup(&self, id: &str) -> Result<Option<BackupRow>, RecordsError> {
        let rows = self
            .query(&format!("{BACKUP} WHERE id = $1"), &[&id])
            .await?;
        Ok(rows.first().map(backup_row))
    }

    async fn backups(&self) -> Result<Vec<BackupRow>, RecordsError> {
        let rows = self.query(&format!("{BACKUP} ORDER BY id"), &[]).await?;
        Ok(rows.iter().map(backup_row).collect())
    }

    async fn delete_backup(&self, id: &str) -> Result<(), RecordsError> {
        self.execute("DELETE FROM backups WHERE id = $1", &[&id])
            .await
            .map(drop)
    }

    /// The heartbeat is the server's `now()`; `updated_at` (this host's
    /// clock) is not used.
    async fn put_service(
        &self,
        backend: &str,
        binary: &str,
        host: &str,
        state: &str,
        _updated_at: &str,
    ) -> Result<(), RecordsError> {
        self.execute(
            "INSERT INTO services (host, backend, service_binary, state, heartbeat) VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (host, backend) DO UPDATE SET service_binary = $3, state = $4, heartbeat = now()",
            &[&host, &backend, &binary, &state],
        )
        .await
        .map(drop)
    }

    /// A row is `up` only if its host said so and its heartbeat is within
    /// `service_down_time` of the server's `now()`.
    async fn services(&self) -> Result<Vec<ServiceRow>, RecordsError> {
        let rows = self
            .query(
                "SELECT service_binary, host, backend,
                        CASE WHEN state = 'up' AND now() - heartbeat <= make_interval(secs => $1::bigint / 1000.0)
                             THEN 'up' ELSE 'down' END,
                        heartbeat
                 FROM services ORDER BY host, backend",
                &[&millis(self.service_down_time)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ServiceRow {
                binary: r.get(0),
                host: r.get(1),
                backend: r.get(2),
                state: r.get(3),
                updated_at: stamp(r.get(4)),
            })
            .collect())
    }
}

#[async_trait(?Send)]
impl FleetStore for PgStore {
    fn url(&self) -> &str {
        &self.url
    }

    /// Drops every rekindle table (tests start each from an empty schema).
    async fn reset(&self) -> Result<(), RecordsError> {
        let client = self.client().await?;
        client
            .batch_execute(
                "DROP TABLE IF EXISTS volumes, exports, attachments, backups, services, hosts, workers, reload_requests, rollouts, rekindle_migrations",
            )
            .await
            .map_err(|e| self.error(e))?;
        drop(client);
        self.migrate().await
    }
}
