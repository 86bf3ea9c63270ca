//! Rolling reloads as records on MariaDB (`crate::records::rollouts`' contract): the hosts as
//! JSON text, a start serialized by a locked row of `rekindle_locks`.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::mysql::MySqlRow;

use super::requests::insert_request;
use super::{Bind, MariaDbStore, bind, micros, stamp, text};
use crate::records::RecordsError;
use crate::records::requests::RequestId;
use crate::records::rollouts::{FleetHost, HostRecord, RolloutRecords, RolloutRow, RolloutState};

const ROLLOUT: &str = concat!(
    "SELECT id, cluster, max_unavailable, min_ready_ms, state, hosts, message, ",
    stamp!("started_at"),
    ", ",
    stamp!("updated_at"),
    ", driver FROM rollouts"
);

impl MariaDbStore {
    fn rollout_row(&self, r: &MySqlRow) -> Result<RolloutRow, RecordsError> {
        let row = || -> Result<_, sqlx::Error> {
            Ok((
                r.try_get::<i64, _>(0)?,
                r.try_get_unchecked::<Option<String>, _>(1)?,
                r.try_get::<i32, _>(2)?,
                r.try_get::<i64, _>(3)?,
                r.try_get_unchecked::<String, _>(4)?,
                r.try_get_unchecked::<String, _>(5)?,
                r.try_get_unchecked::<String, _>(6)?,
                r.try_get_unchecked::<String, _>(7)?,
                r.try_get_unchecked::<String, _>(8)?,
                r.try_get_unchecked::<String, _>(9)?,
            ))
        };
        let (id, cluster, max, min_ready, state, hosts, message, started_at, updated_at, driver) =
            row().map_err(|e| self.error(e))?;
        Ok(RolloutRow {
            id,
            cluster,
            max_unavailable: u32::try_from(max).unwrap_or(1),
            min_ready_ms: u64::try_from(min_ready).unwrap_or(0),
            state: RolloutState::parse(&state),
            hosts: serde_json::from_str(&hosts)
                .map_err(|e| self.bad_row(format!("rollout hosts: {e}")))?,
            message,
            driver,
            started_at,
            updated_at,
        })
    }
}

#[async_trait(?Send)]
impl RolloutRecords for MariaDbStore {
    async fn fleet_hosts(
        &self,
        service_down_time: Duration,
    ) -> Result<Vec<FleetHost>, RecordsError> {
        let rows = self
            .fetch(
                "SELECT host, MAX(cluster),
                        CAST(COALESCE(MAX(CASE WHEN TIMESTAMPDIFF(MICROSECOND, heartbeat, UTC_TIMESTAMP(6)) <= ?
                                          THEN 1 ELSE 0 END), 0) AS SIGNED)
                 FROM (SELECT host, NULLIF(cluster, '') AS cluster, heartbeat FROM hosts
                       UNION ALL
                       SELECT SUBSTRING_INDEX(host, '@', 1), NULL, heartbeat FROM services) seen
                 GROUP BY host ORDER BY MAX(cluster) IS NULL, MAX(cluster), host",
                &[Bind::Int(micros(service_down_time))],
            )
            .await?;
        self.rows(&rows, |r| {
            Ok(FleetHost {
                host: text(r, 0)?,
                cluster: text(r, 1)?,
                alive: r.try_get::<i64, _>(2)? != 0,
            })
        })
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
        let mut sql = String::from(
            "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'up'
                        AND TIMESTAMPDIFF(MICROSECOND, heartbeat, UTC_TIMESTAMP(6)) <= ?
                        THEN 1 ELSE 0 END), 0) AS SIGNED), COUNT(*)
             FROM services WHERE SUBSTRING_INDEX(host, '@', 1) = ?",
        );
        let mut binds = vec![Bind::Int(micros(service_down_time)), Bind::Text(host)];
        if let Some(wanted) = backends {
            sql.push_str(" AND backend IN (");
            for (i, backend) in wanted.iter().enumerate() {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
                binds.push(Bind::Text(backend));
            }
            sql.push(')');
        }
        let rows = self.fetch(&sql, &binds).await?;
        let counts = self.rows(&rows, |r| {
            Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?))
        })?;
        let (up, rows) = counts.first().copied().unwrap_or((0, 0));
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
        let max = i64::from(max_unavailable);
        let min_ready = i64::try_from(min_ready.as_millis()).unwrap_or(i64::MAX);
        self.transaction(async |c| {
            // Serializes starts: the check and the insert cannot interleave.
            sqlx::query("SELECT name FROM rekindle_locks WHERE name = 'rollouts' FOR UPDATE")
                .fetch_optional(&mut *c)
                .await?;
            let running = sqlx::query("SELECT 1 FROM rollouts WHERE state = 'running' LIMIT 1")
                .fetch_optional(&mut *c)
                .await?;
            if running.is_some() {
                return Ok(None);
            }
            let id = sqlx::query(
                "INSERT INTO rollouts (cluster, max_unavailable, min_ready_ms, state, hosts,
                     message, driver, started_at, updated_at)
                 VALUES (?, ?, ?, 'running', ?, '', ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
            )
            .bind(cluster)
            .bind(max)
            .bind(min_ready)
            .bind(&hosts)
            .bind(driver)
            .execute(&mut *c)
            .await?
            .last_insert_id();
            Ok(Some(i64::try_from(id).unwrap_or(i64::MAX)))
        })
        .await
    }

    async fn take_over_rollout(
        &self,
        id: i64,
        driver: &str,
    ) -> Result<Option<RolloutRow>, RecordsError> {
        self.execute(
            "UPDATE rollouts SET driver = ?, updated_at = UTC_TIMESTAMP(6) WHERE id = ? AND state = 'running'",
            &[Bind::Text(driver), Bind::Int(id)],
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
                "UPDATE rollouts SET state = ?, hosts = ?, message = ?, updated_at = UTC_TIMESTAMP(6)
                 WHERE id = ? AND state = 'running' AND driver = ?",
                &[
                    Bind::Text(state.as_str()),
                    Bind::Text(&hosts),
                    Bind::Text(message),
                    Bind::Int(id),
                    Bind::Text(driver),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn rollout(&self, id: i64) -> Result<Option<RolloutRow>, RecordsError> {
        let rows = self
            .fetch(&format!("{ROLLOUT} WHERE id = ?"), &[Bind::Int(id)])
            .await?;
        rows.first().map(|r| self.rollout_row(r)).transpose()
    }

    async fn rollouts(&self) -> Result<Vec<RolloutRow>, RecordsError> {
        let rows = self
            .fetch(&format!("{ROLLOUT} ORDER BY id DESC"), &[])
            .await?;
        rows.iter().map(|r| self.rollout_row(r)).collect()
    }

    async fn request_reload_in_rollout(
        &self,
        id: i64,
        driver: &str,
        host: &str,
    ) -> Result<Option<RequestId>, RecordsError> {
        self.transaction(async |c| {
            let ours = sqlx::query(
                "SELECT 1 FROM rollouts WHERE id = ? AND driver = ? AND state = 'running' FOR UPDATE",
            )
            .bind(id)
            .bind(driver)
            .fetch_optional(&mut *c)
            .await?;
            if ours.is_none() {
                return Ok(None);
            }
            let earlier = bind(
                sqlx::query(
                    "SELECT id FROM reload_requests WHERE rollout = ? AND host = ? ORDER BY id LIMIT 1",
                ),
                &[Bind::Int(id), Bind::Text(host)],
            )
            .fetch_optional(&mut *c)
            .await?;
            if let Some(row) = earlier {
                return Ok(Some(RequestId(row.try_get(0)?)));
            }
            Ok(Some(insert_request(c, host, Some(id)).await?))
        })
        .await
    }

    async fn abandon_rollout(&self, id: i64, message: &str) -> Result<bool, RecordsError> {
        self.transaction(async |c| {
            let n = sqlx::query(
                "UPDATE rollouts SET state = 'abandoned', message = ?, updated_at = UTC_TIMESTAMP(6)
                 WHERE id = ? AND state = 'running'",
            )
            .bind(message)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "UPDATE reload_requests SET state = 'cancelled' WHERE rollout = ? AND state = 'requested'",
                )
                .bind(id)
                .execute(&mut *c)
                .await?;
            }
            Ok(n == 1)
        })
        .await
    }
}
