//! The MariaDB schema and its migrations: versioned on their own (MariaDB's DDL commits
//! as it runs, so each step is idempotent), applied once under a named lock.

use sqlx::Connection;

use super::MariaDbStore;
use crate::records::RecordsError;

/// The options every table is made with: InnoDB (row locks, transactions),
/// utf8mb4 with the binary collation (ids compare byte by byte).
macro_rules! table {
    ($body:literal) => {
        concat!(
            $body,
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        )
    };
}

/// Schema migrations, in order; each a list of statements, each statement
/// safe to run twice (a migration cut off half way is run again whole).
/// Version 1 is the whole schema PostgreSQL reached in its five.
const MIGRATIONS: &[&[&str]] = &[&[
    table!(
        "CREATE TABLE IF NOT EXISTS volumes (
        id VARCHAR(255) PRIMARY KEY, backend VARCHAR(255) NOT NULL, size_bytes BIGINT NOT NULL,
        status VARCHAR(64) NOT NULL, updated_at DATETIME(6) NOT NULL)"
    ),
    table!(
        "CREATE TABLE IF NOT EXISTS exports (
        volume_id VARCHAR(255) PRIMARY KEY, backend VARCHAR(255) NOT NULL, pid BIGINT NOT NULL,
        host VARCHAR(255) NOT NULL, port INT NOT NULL, connector_host VARCHAR(255) NOT NULL)"
    ),
    table!(
        "CREATE TABLE IF NOT EXISTS attachments (
        volume_id VARCHAR(255) NOT NULL, connector_host VARCHAR(255) NOT NULL,
        connector TEXT NOT NULL, attached_at DATETIME(6) NOT NULL,
        PRIMARY KEY (volume_id, connector_host))"
    ),
    table!(
        "CREATE TABLE IF NOT EXISTS backups (
        id VARCHAR(255) PRIMARY KEY, volume_id VARCHAR(255) NOT NULL, status VARCHAR(64) NOT NULL,
        size_bytes BIGINT NOT NULL DEFAULT 0, reached_backend BOOLEAN NOT NULL DEFAULT FALSE,
        restore_target VARCHAR(255) NULL, updated_at DATETIME(6) NOT NULL)"
    ),
    table!(
        "CREATE TABLE IF NOT EXISTS services (
        host VARCHAR(255) NOT NULL, backend VARCHAR(255) NOT NULL,
        service_binary VARCHAR(64) NOT NULL, state VARCHAR(16) NOT NULL,
        heartbeat DATETIME(6) NOT NULL, PRIMARY KEY (host, backend))"
    ),
    table!(
        "CREATE TABLE IF NOT EXISTS hosts (
        host VARCHAR(255) PRIMARY KEY, cluster VARCHAR(255) NOT NULL, epoch BIGINT NOT NULL,
        heartbeat DATETIME(6) NOT NULL, renewed_since DATETIME(6) NOT NULL)"
    ),
    table!(
        "CREATE TABLE IF NOT EXISTS workers (
        kind VARCHAR(16) NOT NULL, id VARCHAR(255) NOT NULL, status VARCHAR(64) NOT NULL,
        cluster VARCHAR(255) NOT NULL, owner VARCHAR(255) NOT NULL, epoch BIGINT NOT NULL,
        updated_at DATETIME(6) NOT NULL, PRIMARY KEY (kind, id), KEY workers_owner (owner))"
    ),
    table!(
        "CREATE TABLE IF NOT EXISTS reload_requests (
        id BIGINT AUTO_INCREMENT PRIMARY KEY, host VARCHAR(255) NOT NULL, rollout BIGINT NULL,
        state VARCHAR(16) NOT NULL DEFAULT 'requested', as_intended BOOLEAN NULL,
        report LONGTEXT NULL, requested_at DATETIME(6) NOT NULL, answered_at DATETIME(6) NULL,
        KEY reload_requests_pending (host, state), KEY reload_requests_rollout (rollout, host))"
    ),
    table!(
        "CREATE TABLE IF NOT EXISTS rollouts (
        id BIGINT AUTO_INCREMENT PRIMARY KEY, cluster VARCHAR(255) NULL,
        max_unavailable INT NOT NULL, min_ready_ms BIGINT NOT NULL,
        state VARCHAR(16) NOT NULL DEFAULT 'running', hosts LONGTEXT NOT NULL,
        message TEXT NOT NULL, driver VARCHAR(255) NOT NULL DEFAULT '',
        started_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL)"
    ),
    // One row per lock a transaction takes with `SELECT ... FOR UPDATE`
    // (a rollout's start: the check and the insert cannot interleave).
    table!("CREATE TABLE IF NOT EXISTS rekindle_locks (name VARCHAR(64) PRIMARY KEY)"),
    "INSERT IGNORE INTO rekindle_locks (name) VALUES ('rollouts')",
]];

/// Every table, for [`crate::records::FleetStore::reset`].
pub(super) const DROP_ALL: &str = "DROP TABLE IF EXISTS volumes, exports, attachments, backups, services, hosts, workers, reload_requests, rollouts, rekindle_locks, rekindle_migrations";

/// The named lock migrations run under (named locks are the server's:
/// this one is per database); how long a host waits for it, in seconds.
const MIGRATION_LOCK: &str = "CONCAT('rekindle.migrate.', DATABASE())";
const MIGRATION_LOCK_WAIT_S: i64 = 4;

/// What a migration attempt found.
enum Migrated {
    Done,
    LockHeld,
    /// Tables of another application: nothing was changed.
    Foreign(Vec<String>),
}

impl MariaDbStore {
    /// Brings the schema up to date: under `GET_LOCK` (held by this
    /// connection only, released when it closes), applies each migration
    /// newer than the recorded version, recording it after.
    pub(super) async fn migrate(&self) -> Result<(), RecordsError> {
        let migrated = self
            .with_connection(async |c| {
                let got: Option<i64> =
                    sqlx::query_scalar(&format!("SELECT GET_LOCK({MIGRATION_LOCK}, ?)"))
                        .bind(MIGRATION_LOCK_WAIT_S)
                        .fetch_one(&mut *c)
                        .await?;
                if got != Some(1) {
                    return Ok(Migrated::LockHeld);
                }
                let applied = apply(c).await;
                sqlx::query(&format!("SELECT RELEASE_LOCK({MIGRATION_LOCK})"))
                    .execute(&mut *c)
                    .await?;
                applied
            })
            .await?;
        let refused = |reason: String| RecordsError::Query {
            url: self.url().to_string(),
            reason,
        };
        match migrated {
            Migrated::Done => Ok(()),
            Migrated::LockHeld => Err(refused(format!(
                "another host has been migrating this database's schema for over {MIGRATION_LOCK_WAIT_S}s (lock rekindle.migrate.DATABASE held); retrying"
            ))),
            Migrated::Foreign(tables) => Err(refused(crate::records::foreign_tables(&tables))),
        }
    }
}

async fn apply(c: &mut sqlx::MySqlConnection) -> Result<Migrated, sqlx::Error> {
    let ours: Option<i64> = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables
         WHERE table_schema = DATABASE() AND table_name = 'rekindle_migrations'",
    )
    .fetch_optional(&mut *c)
    .await?;
    if ours == Some(0) {
        let list = crate::records::OWN_TABLES
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let found: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT CAST(table_name AS CHAR) FROM information_schema.tables
             WHERE table_schema = DATABASE() AND table_name IN ({list}) ORDER BY table_name"
        ))
        .fetch_all(&mut *c)
        .await?;
        if !found.is_empty() {
            return Ok(Migrated::Foreign(found));
        }
    }
    sqlx::query(table!(
        "CREATE TABLE IF NOT EXISTS rekindle_migrations (
         version INT PRIMARY KEY, applied_at DATETIME(6) NOT NULL)"
    ))
    .execute(&mut *c)
    .await?;
    let applied: i32 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(MAX(version), 0) AS SIGNED) FROM rekindle_migrations",
    )
    .fetch_one(&mut *c)
    .await
    .map(|v: i64| i32::try_from(v).unwrap_or(i32::MAX))?;
    for (index, statements) in MIGRATIONS.iter().enumerate() {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        if version <= applied {
            continue;
        }
        for statement in *statements {
            sqlx::query(statement).execute(&mut *c).await?;
        }
        let mut tx = c.begin().await?;
        sqlx::query(
            "INSERT INTO rekindle_migrations (version, applied_at) VALUES (?, UTC_TIMESTAMP(6))",
        )
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(Migrated::Done)
}
