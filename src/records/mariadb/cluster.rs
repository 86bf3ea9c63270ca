//! Active/Active clusters on MariaDB (`crate::records::cluster`'s contract): each decision one
//! transaction whose first statement locks the rows it decides on, stamps on the server's clock.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use super::{Bind, MariaDbStore, bind, fresh, micros, stamp, text};
use crate::records::cluster::{
    Claimed, ClusterRecords, Epoch, ServicePut, Work, last_service_rows,
};
use crate::records::{End, RecordsError, ServiceRow};

/// The table a kind of work's record lives in.
fn table(kind: &str) -> Option<&'static str> {
    match kind {
        "volume" => Some("volumes"),
        "backup" => Some("backups"),
        _ => None,
    }
}

#[async_trait(?Send)]
impl ClusterRecords for MariaDbStore {
    async fn register_host(&self, host: &str, cluster: &str) -> Result<Epoch, RecordsError> {
        self.transaction(async |c| {
            sqlx::query(
                "INSERT INTO hosts (host, cluster, epoch, heartbeat, renewed_since)
                 VALUES (?, ?, 1, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))
                 ON DUPLICATE KEY UPDATE cluster = VALUES(cluster), epoch = epoch + 1,
                     heartbeat = UTC_TIMESTAMP(6), renewed_since = UTC_TIMESTAMP(6)",
            )
            .bind(host)
            .bind(cluster)
            .execute(&mut *c)
            .await?;
            // The row is this transaction's (locked by the write above).
            let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM hosts WHERE host = ?")
                .bind(host)
                .fetch_one(&mut *c)
                .await?;
            Ok(Epoch(epoch))
        })
        .await
    }

    /// `renewed_since` is assigned before `heartbeat`: MariaDB evaluates a
    /// single-table `UPDATE`'s assignments left to right, so it compares
    /// against the previous heartbeat.
    async fn host_heartbeat(
        &self,
        host: &str,
        epoch: Epoch,
        allowed_gap: Duration,
    ) -> Result<bool, RecordsError> {
        let n = self
            .execute(
                concat!(
                    "UPDATE hosts SET renewed_since = CASE WHEN ",
                    fresh!("heartbeat"),
                    " THEN renewed_since ELSE UTC_TIMESTAMP(6) END,
                       heartbeat = UTC_TIMESTAMP(6)
                     WHERE host = ? AND epoch = ?"
                ),
                &[
                    Bind::Int(micros(allowed_gap)),
                    Bind::Text(host),
                    Bind::Int(epoch.0),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// One multi-row `INSERT ... ON DUPLICATE KEY UPDATE`.
    async fn put_services(&self, rows: &[ServicePut<'_>]) -> Result<(), RecordsError> {
        let rows = last_service_rows(rows);
        if rows.is_empty() {
            return Ok(());
        }
        let mut sql = String::from(
            "INSERT INTO services (host, backend, service_binary, state, heartbeat) VALUES ",
        );
        let mut binds = Vec::with_capacity(rows.len() * 4);
        for (i, row) in rows.iter().enumerate() {
            sql.push_str(if i == 0 { "" } else { ", " });
            sql.push_str("(?, ?, ?, ?, UTC_TIMESTAMP(6))");
            binds.extend([
                Bind::Text(row.host),
                Bind::Text(row.backend),
                Bind::Text(row.binary),
                Bind::Text(row.state),
            ]);
        }
        sql.push_str(
            " ON DUPLICATE KEY UPDATE service_binary = VALUES(service_binary),
              state = VALUES(state), heartbeat = UTC_TIMESTAMP(6)",
        );
        self.execute(&sql, &binds).await.map(drop)
    }

    async fn begin_work(
        &self,
        host: &str,
        epoch: Epoch,
        cluster: &str,
        work: &Work,
    ) -> Result<(), RecordsError> {
        self.execute(
            "INSERT INTO workers (kind, id, status, cluster, owner, epoch, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6))",
            &[
                Bind::Text(&work.kind),
                Bind::Text(&work.id),
                Bind::Text(&work.status),
                Bind::Text(cluster),
                Bind::Text(host),
                Bind::Int(epoch.0),
            ],
        )
        .await
        .map(drop)
    }

    /// The worker row's `DELETE` decides (it locks the row, so a claim
    /// racing it skips or waits); the record's end is written in the same
    /// transaction only if it deleted one.
    async fn finish_work(
        &self,
        host: &str,
        epoch: Epoch,
        work: &Work,
        end: &End,
    ) -> Result<bool, RecordsError> {
        let Some(table) = table(&work.kind) else {
            return Err(self.bad_row(format!("unknown kind of work {:?}", work.kind)));
        };
        let size = end.size_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        self.transaction(async |c| {
            let owned = sqlx::query(
                "DELETE FROM workers WHERE kind = ? AND id = ? AND owner = ? AND epoch = ?",
            )
            .bind(&work.kind)
            .bind(&work.id)
            .bind(host)
            .bind(epoch.0)
            .execute(&mut *c)
            .await?
            .rows_affected();
            if owned != 1 {
                return Ok(false);
            }
            if end.status == "deleted" {
                if table == "volumes" {
                    sqlx::query("DELETE FROM attachments WHERE volume_id = ?")
                        .bind(&work.id)
                        .execute(&mut *c)
                        .await?;
                }
                sqlx::query(&format!("DELETE FROM {table} WHERE id = ?"))
                    .bind(&work.id)
                    .execute(&mut *c)
                    .await?;
            } else {
                sqlx::query(&format!(
                    "UPDATE {table} SET status = ?, size_bytes = COALESCE(?, size_bytes),
                         updated_at = UTC_TIMESTAMP(6) WHERE id = ?"
                ))
                .bind(&end.status)
                .bind(size)
                .bind(&work.id)
                .execute(&mut *c)
                .await?;
            }
            if let Some(source) = &end.source {
                sqlx::query(
                    "UPDATE volumes SET status = ?, updated_at = UTC_TIMESTAMP(6)
                     WHERE id = ? AND status = 'backing-up'",
                )
                .bind(&source.status)
                .bind(&source.volume_id)
                .execute(&mut *c)
                .await?;
            }
            Ok(true)
        })
        .await
    }

    async fn fleet_services(&self) -> Result<Vec<(ServiceRow, String)>, RecordsError> {
        let rows = self
            .fetch(
                concat!(
                    "SELECT s.service_binary, s.host, s.backend,
                        CASE WHEN s.state = 'up' AND ",
                    fresh!("s.heartbeat"),
                    " THEN 'up' ELSE 'down' END, ",
                    stamp!("s.heartbeat"),
                    ", COALESCE(h.cluster, SUBSTRING_INDEX(s.host, '@', 1))
                     FROM services s LEFT JOIN hosts h ON h.host = SUBSTRING_INDEX(s.host, '@', 1)
                     ORDER BY s.host, s.backend"
                ),
                &[Bind::Int(self.down_time_micros())],
            )
            .await?;
        self.rows(&rows, |r| {
            Ok((
                ServiceRow {
                    binary: text(r, 0)?,
                    host: text(r, 1)?,
                    backend: text(r, 2)?,
                    state: text(r, 3)?,
                    updated_at: text(r, 4)?,
                },
                text(r, 5)?,
            ))
        })
    }

    async fn adopt_own_work(&self, host: &str, epoch: Epoch) -> Result<Vec<Work>, RecordsError> {
        let rows = self
            .transaction(async |c| {
                let rows = sqlx::query(
                    "SELECT kind, id, status FROM workers WHERE owner = ? AND epoch < ?
                     ORDER BY kind, id FOR UPDATE",
                )
                .bind(host)
                .bind(epoch.0)
                .fetch_all(&mut *c)
                .await?;
                sqlx::query(
                    "UPDATE workers SET epoch = ?, updated_at = UTC_TIMESTAMP(6)
                     WHERE owner = ? AND epoch < ?",
                )
                .bind(epoch.0)
                .bind(host)
                .bind(epoch.0)
                .execute(&mut *c)
                .await?;
                Ok(rows)
            })
            .await?;
        self.rows(&rows, |r| {
            Ok(Work {
                kind: text(r, 0)?,
                id: text(r, 1)?,
                status: text(r, 2)?,
            })
        })
    }

    /// The survivor's own standing is read first; the dead hosts' rows are
    /// then taken with `FOR UPDATE SKIP LOCKED` (rows another survivor is
    /// claiming, or their owner finishing, are skipped) and moved to the
    /// survivor in the same transaction.
    async fn claim_dead_work(
        &self,
        survivor: &str,
        epoch: Epoch,
        cluster: &str,
        service_down_time: Duration,
        allowed_gap: Duration,
    ) -> Result<Vec<Claimed>, RecordsError> {
        let down = micros(service_down_time);
        let rows = self
            .transaction(async |c| {
                let me = bind(
                    sqlx::query(concat!(
                        "SELECT 1 FROM hosts WHERE host = ? AND epoch = ? AND ",
                        fresh!("heartbeat"),
                        " AND TIMESTAMPDIFF(MICROSECOND, renewed_since, UTC_TIMESTAMP(6)) >= ?"
                    )),
                    &[
                        Bind::Text(survivor),
                        Bind::Int(epoch.0),
                        Bind::Int(micros(allowed_gap)),
                        Bind::Int(down),
                    ],
                )
                .fetch_optional(&mut *c)
                .await?;
                if me.is_none() {
                    return Ok(Vec::new());
                }
                let dead = sqlx::query(
                    "SELECT kind, id, status, owner FROM workers
                     WHERE cluster = ? AND owner <> ? AND (owner, epoch) IN (
                         SELECT host, epoch FROM hosts
                         WHERE TIMESTAMPDIFF(MICROSECOND, heartbeat, UTC_TIMESTAMP(6)) > ?)
                     ORDER BY kind, id FOR UPDATE SKIP LOCKED",
                )
                .bind(cluster)
                .bind(survivor)
                .bind(down)
                .fetch_all(&mut *c)
                .await?;
                for row in &dead {
                    sqlx::query(
                        "UPDATE workers SET owner = ?, epoch = ?, updated_at = UTC_TIMESTAMP(6)
                         WHERE kind = ? AND id = ?",
                    )
                    .bind(survivor)
                    .bind(epoch.0)
                    .bind(row.try_get_unchecked::<String, _>(0)?)
                    .bind(row.try_get_unchecked::<String, _>(1)?)
                    .execute(&mut *c)
                    .await?;
                }
                Ok(dead)
            })
            .await?;
        self.rows(&rows, |r| {
            Ok(Claimed {
                work: Work {
                    kind: text(r, 0)?,
                    id: text(r, 1)?,
                    status: text(r, 2)?,
                },
                dead_host: text(r, 3)?,
            })
        })
    }
}
