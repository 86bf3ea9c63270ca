//! Rolling reloads as records in PostgreSQL (`crate::records::rollouts`' contract): the
//! rollout's hosts as JSONB, a start serialized by a table lock.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{PgStore, millis};
use crate::records::RecordsError;
use crate::records::requests::RequestId;
use crate::records::rollouts::{FleetHost, HostRecord, RolloutRecords, RolloutRow, RolloutState};

fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

const ROLLOUT: &str = "SELECT id, cluster, max_unavailable, min_ready_ms, state, hosts::text, message, started_at, updated_at, driver FROM rollouts";

impl PgStore {
    fn bad_row(&self, reason: impl std::fmt::Display) -> RecordsError {
        RecordsError::Query {
            url: self.url().to_string(),
            reason: reason.to_string(),
        }
    }

    fn rollout_row(&self, r: &tokio_postgres::Row) -> Result<RolloutRow, RecordsError> {
        let hosts: String = r.get(5);
        Ok(RolloutRow {
            id: r.get(0),
            cluster: r.get(1),
            max_unavailable: u32::try_from(r.get::<_, i32>(2)).unwrap_or(1),
            min_ready_ms: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
            state: RolloutState::parse(r.get(4)),
            hosts: serde_json::from_str(&hosts)
                .map_err(|e| self.bad_row(format!("rollout hosts: {e}")))?,
            message: r.get(6),
            started_at: stamp(r.get(7)),
            updated_at: stamp(r.get(8)),
            driver: r.get(9),
        })
    }
}

#[async_trait(?Send)]
impl RolloutRecords for PgStore {
    async fn fleet_hosts(
        &self,
        service_down_time: Duration,
    ) -> Result<Vec<FleetHost>, RecordsError> {
        let rows = self
            .query(
                "WITH seen AS (
                     SELECT host, NULLIF(cluster, '') AS cluster, heartbeat FROM hosts
                     UNION ALL
                     SELECT split_part(host, '@', 1), NULL, heartbeat FROM services)
                 SELECT host, MAX(cluster),
                        COALESCE(bool_or(now() - heartbeat <= make_interval(secs => $1::bigint / 1000.0)), false)
                 FROM seen GROUP BY host ORDER BY MAX(cluster) NULLS LAST, host",
                &[&millis(service_down_time)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| FleetHost {
                host: r.get(0),
                cluster: r.get(1),
                alive: r.get(2),
            })
            .collect())
    }

    async fn host_ready(
        &self,
        host: &str,
        backends: Option<&[String]>,
        service_down_time: Duration,
    ) -> Result<bool, RecordsError> {
        if backends.is_some_and(<[String]>::is_empty) {
            return Ok(true);
        }
        let row = self
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'up'
                            AND now() - heartbeat <= make_interval(secs => $2::bigint / 1000.0)),
                        count(*)
                 FROM services WHERE split_part(host, '@', 1) = $1 AND ($3::text[] IS NULL OR backend = ANY($3))",
                &[&host, &millis(service_down_time), &backends],
            )
            .await?;
        let (up, rows): (i64, i64) = (row.get(0), row.get(1));
        Ok(match backends {
            Some(wanted) => usize::try_from(up).is_ok_and(|up| up == wanted.len()),
            None => rows > 0 && up == rows,
        })
    }

    async fn insert_rollout(
        &self,
        cluster: Option<&str>,
        max_unavailable: u32,
        min_ready: Duration,
        hosts: &[HostRecord],
        driver: &str,
    ) -> Result<Option<i64>, RecordsError> {
        let hosts = serde_json::to_string(hosts).map_err(|e| self.bad_row(e))?;
        let max = i32::try_from(max_unavailable).unwrap_or(i32::MAX);
        self.with_client(async |client| {
            let tx = client.transaction().await.map_err(|e| self.failed(e))?;
            // Serializes starts: the check and the insert cannot interleave.
            tx.execute("LOCK TABLE rollouts IN SHARE ROW EXCLUSIVE MODE", &[])
                .await
                .map_err(|e| self.failed(e))?;
            let rows = tx
                .query(
                    "INSERT INTO rollouts (cluster, max_unavailable, min_ready_ms, hosts, driver)
                     SELECT $1, $2, $3, ($4::text)::jsonb, $5
                     WHERE NOT EXISTS (SELECT 1 FROM rollouts WHERE state = 'running')
                     RETURNING id",
                    &[&cluster, &max, &millis(min_ready), &hosts, &driver],
                )
                .await
                .map_err(|e| self.failed(e))?;
            tx.commit().await.map_err(|e| self.failed(e))?;
            Ok(rows.first().map(|r| r.get(0)))
        })
        .await
    }

    async fn take_over_rollout(
        &self,
        id: i64,
        driver: &str,
    ) -> Result<Option<RolloutRow>, RecordsError> {
        self.execute(
            "UPDATE rollouts SET driver = $2, updated_at = now() WHERE id = $1 AND state = 'running'",
            &[&id, &driver],
        )
        .await?;
        Ok(self
            .rollout(id)
            .await?
            .filter(|r| r.state == RolloutState::Running && r.driver == driver))
    }

    async fn update_rollout(
        &self,
        id: i64,
        driver: &str,
        state: RolloutState,
        hosts: &[HostRecord],
        message: &str,
    ) -> Result<bool, RecordsError> {
        let hosts = serde_json::to_string(hosts).map_err(|e| self.bad_row(e))?;
        let n = self
            .execute(
                "UPDATE rollouts SET state = $2, hosts = ($3::text)::jsonb, message = $4, updated_at = now()
                 WHERE id = $1 AND state = 'running' AND driver = $5",
                &[&id, &state.as_str(), &hosts, &message, &driver],
            )
            .await?;
        Ok(n == 1)
    }

    async fn rollout(&self, id: i64) -> Result<Option<RolloutRow>, RecordsError> {
        let rows = self
            .query(&format!("{ROLLOUT} WHERE id = $1"), &[&id])
            .await?;
        rows.first().map(|r| self.rollout_row(r)).transpose()
    }

    async fn rollouts(&self) -> Result<Vec<RolloutRow>, RecordsError> {
        let rows = self
            .query(&format!("{ROLLOUT} ORDER BY id DESC"), &[])
            .await?;
        rows.iter().map(|r| self.rollout_row(r)).collect()
    }

    async fn request_reload_in_rollout(
        &self,
        id: i64,
        driver: &str,
        host: &str,
    ) -> Result<Option<RequestId>, RecordsError> {
        self.with_client(async |client| {
            let tx = client.transaction().await.map_err(|e| self.failed(e))?;
            let ours = tx
                .query(
                    "SELECT 1 FROM rollouts WHERE id = $1 AND driver = $2 AND state = 'running' FOR UPDATE",
                    &[&id, &driver],
                )
                .await
                .map_err(|e| self.failed(e))?;
            if ours.is_empty() {
                return Ok(None);
            }
            let earlier = tx
                .query(
                    "SELECT id FROM reload_requests WHERE rollout = $1 AND host = $2 ORDER BY id LIMIT 1",
                    &[&id, &host],
                )
                .await
                .map_err(|e| self.failed(e))?;
            if let Some(row) = earlier.first() {
                return Ok(Some(RequestId(row.get(0))));
            }
            let request = self.insert_request(&tx, host, Some(id)).await?;
            tx.commit().await.map_err(|e| self.failed(e))?;
            Ok(Some(request))
        })
        .await
    }

    async fn abandon_rollout(&self, id: i64, message: &str) -> Result<bool, RecordsError> {
        let row = self
            .query_one(
                "WITH r AS (
                     UPDATE rollouts SET state = 'abandoned', message = $2, updated_at = now()
                     WHERE id = $1 AND state = 'running' RETURNING id),
                 c AS (
                     UPDATE reload_requests SET state = 'cancelled'
                     WHERE rollout IN (SELECT id FROM r) AND state = 'requested')
                 SELECT count(*) FROM r",
                &[&id, &message],
            )
            .await?;
        Ok(row.get::<_, i64>(0) == 1)
    }
}
