//! Active/Active clusters on PostgreSQL (`crate::records::cluster`'s contract): each decision
//! one SQL statement, heartbeats on the server's `now()`.
//!
//! Every decision is one SQL statement, never a check in the client then an
//! act: a claim is `UPDATE workers ... WHERE owner = dead AND epoch = its
//! epoch AND its heartbeat is stale by the server's clock RETURNING ...`,
//! so of two survivors racing, exactly one gets each row. A host's writes
//! to work it owns carry its epoch; once a survivor has claimed the work (or
//! the host restarted with a new epoch), they change nothing.

use std::time::Duration;

use async_trait::async_trait;

use super::{PgStore, millis};
use crate::records::cluster::{
    Claimed, ClusterRecords, Epoch, ServicePut, Work, last_service_rows,
};
use crate::records::{End, RecordsError, ServiceRow};

#[async_trait(?Send)]
impl ClusterRecords for PgStore {
    /// Records every one of `rows`' heartbeats in ONE statement (arrays
    /// unnested server-side), each stamped with the server's `now()`: what
    /// [`crate::records::RecordStore::put_service`] does for one row, at a fraction of the
    /// database's work for a host's whole beat. A (host, backend) given
    /// twice keeps its last row.
    ///
    /// # Errors
    /// As every write: `Unavailable` when the server cannot be reached.
    async fn put_services(&self, rows: &[ServicePut<'_>]) -> Result<(), RecordsError> {
        if rows.is_empty() {
            return Ok(());
        }
        // ON CONFLICT may not touch a row twice in one statement: the last wins.
        let mut columns: [Vec<&str>; 4] = Default::default();
        for row in last_service_rows(rows) {
            columns[0].push(row.host);
            columns[1].push(row.backend);
            columns[2].push(row.binary);
            columns[3].push(row.state);
        }
        self.with_client(async |client| {
            let statement = client
                .prepare_cached(
                    "INSERT INTO services (host, backend, service_binary, state, heartbeat)
                     SELECT h, b, s, st, now()
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS r(h, b, s, st)
                     ON CONFLICT (host, backend) DO UPDATE
                     SET service_binary = EXCLUDED.service_binary, state = EXCLUDED.state, heartbeat = now()",
                )
                .await
                .map_err(|e| self.error(e))?;
            client
                .execute(
                    &statement,
                    &[&columns[0], &columns[1], &columns[2], &columns[3]],
                )
                .await
                .map(drop)
                .map_err(|e| self.error(e))
        })
        .await
    }

    async fn register_host(&self, host: &str, cluster: &str) -> Result<Epoch, RecordsError> {
        let row = self
            .query_one(
                "INSERT INTO hosts (host, cluster, epoch, heartbeat, renewed_since)
                 VALUES ($1, $2, 1, now(), now())
                 ON CONFLICT (host) DO UPDATE SET cluster = $2, epoch = hosts.epoch + 1,
                     heartbeat = now(), renewed_since = now()
                 RETURNING epoch",
                &[&host, &cluster],
            )
            .await?;
        Ok(Epoch(row.get(0)))
    }

    /// Stamps this host alive (the server's `now()`); a renewal more than
    /// `allowed_gap` after the previous one starts a new run of renewals
    /// ([`crate::fleet::outcome::continues_run`]). False if a newer
    /// incarnation of the host registered since: this one must stop.
    async fn host_heartbeat(
        &self,
        host: &str,
        epoch: Epoch,
        allowed_gap: Duration,
    ) -> Result<bool, RecordsError> {
        let n = self
            .execute(
                "UPDATE hosts SET renewed_since = CASE
                     WHEN now() - heartbeat <= make_interval(secs => $3::bigint / 1000.0)
                     THEN renewed_since ELSE now() END,
                   heartbeat = now()
                 WHERE host = $1 AND epoch = $2",
                &[&host, &epoch.0, &millis(allowed_gap)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn begin_work(
        &self,
        host: &str,
        epoch: Epoch,
        cluster: &str,
        work: &Work,
    ) -> Result<(), RecordsError> {
        self.execute(
            "INSERT INTO workers (kind, id, status, cluster, owner, epoch) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&work.kind, &work.id, &work.status, &cluster, &host, &epoch.0],
        )
        .await
        .map(drop)
    }

    /// Ends `work` as its owner with `end`, in one statement, only if
    /// `host` at `epoch` still owns it: drops the worker row, sets the
    /// record's final status and size (or removes it, with its
    /// attachments, for `deleted`) and puts a backup's source back from
    /// `backing-up`. False means a survivor claimed it (and resolved the
    /// record): nothing was written.
    async fn finish_work(
        &self,
        host: &str,
        epoch: Epoch,
        work: &Work,
        end: &End,
    ) -> Result<bool, RecordsError> {
        let (table, attachments) = match work.kind.as_str() {
            "volume" => (
                "volumes",
                "DELETE FROM attachments WHERE $5 = 'deleted' AND volume_id IN (SELECT id FROM owned)",
            ),
            "backup" => ("backups", "SELECT 1"),
            other => {
                return Err(RecordsError::Query {
                    url: self.url().to_string(),
                    reason: format!("unknown kind of work {other:?}"),
                });
            }
        };
        let sql = format!(
            "WITH owned AS (
                 DELETE FROM workers WHERE kind = $1 AND id = $2 AND owner = $3 AND epoch = $4
                 RETURNING id),
             kept AS (
                 UPDATE {table} SET status = $5, size_bytes = COALESCE($6, size_bytes), updated_at = now()
                 WHERE $5 <> 'deleted' AND id IN (SELECT id FROM owned)),
             gone AS (DELETE FROM {table} WHERE $5 = 'deleted' AND id IN (SELECT id FROM owned)),
             unattached AS ({attachments}),
             source AS (
                 UPDATE volumes SET status = $8, updated_at = now()
                 WHERE id = $7 AND status = 'backing-up' AND EXISTS (SELECT 1 FROM owned))
             SELECT count(*) FROM owned"
        );
        let size = end.size_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let (source, back) = match &end.source {
            Some(s) => (Some(s.volume_id.as_str()), Some(s.status.as_str())),
            None => (None, None),
        };
        let row = self
            .query_one(
                &sql,
                &[
                    &work.kind,
                    &work.id,
                    &host,
                    &epoch.0,
                    &end.status,
                    &size,
                    &source,
                    &back,
                ],
            )
            .await?;
        Ok(row.get::<_, i64>(0) == 1)
    }

    async fn fleet_services(&self) -> Result<Vec<(ServiceRow, String)>, RecordsError> {
        let rows = self
            .query(
                "SELECT s.service_binary, s.host, s.backend,
                        CASE WHEN s.state = 'up'
                               AND now() - s.heartbeat <= make_interval(secs => $1::bigint / 1000.0)
                             THEN 'up' ELSE 'down' END,
                        to_char(s.heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                        COALESCE(h.cluster, split_part(s.host, '@', 1))
                 FROM services s LEFT JOIN hosts h ON h.host = split_part(s.host, '@', 1)
                 ORDER BY s.host, s.backend",
                &[&self.down_time_millis()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    ServiceRow {
                        binary: r.get(0),
                        host: r.get(1),
                        backend: r.get(2),
                        state: r.get(3),
                        updated_at: r.get(4),
                    },
                    r.get(5),
                )
            })
            .collect())
    }

    async fn adopt_own_work(&self, host: &str, epoch: Epoch) -> Result<Vec<Work>, RecordsError> {
        let rows = self
            .query(
                "UPDATE workers SET epoch = $2, updated_at = now()
                 WHERE owner = $1 AND epoch < $2 RETURNING kind, id, status",
                &[&host, &epoch.0],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Work {
                kind: r.get(0),
                id: r.get(1),
                status: r.get(2),
            })
            .collect())
    }

    async fn claim_dead_work(
        &self,
        survivor: &str,
        epoch: Epoch,
        cluster: &str,
        service_down_time: Duration,
        allowed_gap: Duration,
    ) -> Result<Vec<Claimed>, RecordsError> {
        let rows = self
            .query(
                "WITH me AS (
                     SELECT 1 FROM hosts WHERE host = $1 AND epoch = $2
                       AND now() - heartbeat <= make_interval(secs => $5::bigint / 1000.0)
                       AND now() - renewed_since >= make_interval(secs => $4::bigint / 1000.0)),
                 dead AS (
                     SELECT w.kind, w.id, w.owner FROM workers w JOIN hosts h
                       ON h.host = w.owner AND h.epoch = w.epoch
                     WHERE w.cluster = $3 AND w.owner <> $1 AND EXISTS (SELECT 1 FROM me)
                       AND now() - h.heartbeat > make_interval(secs => $4::bigint / 1000.0)
                     FOR UPDATE OF w SKIP LOCKED)
                 UPDATE workers w SET owner = $1, epoch = $2, updated_at = now()
                 FROM dead WHERE w.kind = dead.kind AND w.id = dead.id
                 RETURNING w.kind, w.id, w.status, dead.owner",
                &[
                    &survivor,
                    &epoch.0,
                    &cluster,
                    &millis(service_down_time),
                    &millis(allowed_gap),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Claimed {
                work: Work {
                    kind: r.get(0),
                    id: r.get(1),
                    status: r.get(2),
                },
                dead_host: r.get(3),
            })
            .collect())
    }
}
