//! Reload requests on MariaDB (`crate::records::requests`' contract): no notifications, so a
//! host polls the requests table every `REQUEST_POLL`, one indexed read.

use async_trait::async_trait;
use sqlx::Row;
use tokio::sync::mpsc;

use super::{Bind, MariaDbStore, text};
use crate::records::RecordsError;
use crate::records::requests::{Answer, REQUEST_POLL, ReloadRequests, RequestId};

/// Inserts a reload request for `host` on `c` (in its transaction), its id.
pub(super) async fn insert_request(
    c: &mut sqlx::MySqlConnection,
    host: &str,
    rollout: Option<i64>,
) -> Result<RequestId, sqlx::Error> {
    let id = sqlx::query(
        "INSERT INTO reload_requests (host, rollout, state, requested_at)
         VALUES (?, ?, 'requested', UTC_TIMESTAMP(6))",
    )
    .bind(host)
    .bind(rollout)
    .execute(&mut *c)
    .await?
    .last_insert_id();
    Ok(RequestId(i64::try_from(id).unwrap_or(i64::MAX)))
}

#[async_trait(?Send)]
impl ReloadRequests for MariaDbStore {
    async fn request_reload(
        &self,
        host: &str,
        rollout: Option<i64>,
    ) -> Result<RequestId, RecordsError> {
        self.transaction(async |c| insert_request(c, host, rollout).await)
            .await
    }

    async fn take_reload_requests(&self, host: &str) -> Result<Vec<RequestId>, RecordsError> {
        let ids = self
            .transaction(async |c| {
                let rows = sqlx::query(
                    "SELECT id FROM reload_requests WHERE host = ? AND state = 'requested'
                     ORDER BY id FOR UPDATE SKIP LOCKED",
                )
                .bind(host)
                .fetch_all(&mut *c)
                .await?;
                let mut ids = Vec::with_capacity(rows.len());
                for row in &rows {
                    let id: i64 = row.try_get(0)?;
                    sqlx::query("UPDATE reload_requests SET state = 'running' WHERE id = ?")
                        .bind(id)
                        .execute(&mut *c)
                        .await?;
                    ids.push(RequestId(id));
                }
                Ok(ids)
            })
            .await?;
        Ok(ids)
    }

    async fn answer_reload(&self, id: RequestId, answer: &Answer) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE reload_requests SET state = 'answered', as_intended = ?, report = ?,
                 answered_at = UTC_TIMESTAMP(6) WHERE id = ?",
            &[
                Bind::Bool(answer.as_intended),
                Bind::Text(&answer.report),
                Bind::Int(id.0),
            ],
        )
        .await
        .map(drop)
    }

    async fn reload_answer(&self, id: RequestId) -> Result<Option<Answer>, RecordsError> {
        let rows = self
            .fetch(
                "SELECT as_intended, report FROM reload_requests WHERE id = ? AND state = 'answered'",
                &[Bind::Int(id.0)],
            )
            .await?;
        Ok(self
            .rows(&rows, |r| {
                Ok(Answer {
                    as_intended: r.try_get(0)?,
                    report: text(r, 1)?,
                })
            })?
            .pop())
    }

    /// Polls for `host`'s pending requests every [`REQUEST_POLL`] on its
    /// own connection (made again after an outage), waking the host when
    /// there is one; once at start, and once after every outage.
    fn listen_for_reloads(&self, host: &str) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(16);
        let options = self.options.clone();
        let host = host.to_string();
        let url = self.url.clone();
        actix::spawn(async move {
            let mut connection: Option<sqlx::MySqlConnection> = None;
            let mut wake_next = true;
            while !tx.is_closed() {
                if connection.is_none() {
                    match tokio::time::timeout(
                        super::STATEMENT_DEADLINE,
                        <sqlx::MySqlConnection as sqlx::Connection>::connect_with(&options),
                    )
                    .await
                    {
                        Ok(Ok(c)) => connection = Some(c),
                        Ok(Err(e)) => {
                            tracing::warn!(database = %url, error = %e, "reload poller cannot connect; retrying")
                        }
                        Err(_) => {
                            tracing::warn!(database = %url, "reload poller: no connection in time; retrying")
                        }
                    }
                }
                if let Some(c) = connection.as_mut() {
                    let pending = tokio::time::timeout(
                        super::STATEMENT_DEADLINE,
                        sqlx::query_scalar::<_, i64>(
                            "SELECT COUNT(*) FROM reload_requests WHERE host = ? AND state = 'requested'",
                        )
                        .bind(&host)
                        .fetch_one(&mut *c),
                    )
                    .await;
                    match pending {
                        Ok(Ok(n)) => {
                            if (n > 0 || wake_next) && tx.send(()).await.is_err() {
                                break;
                            }
                            wake_next = false;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(database = %url, error = %e, "reload poller lost its connection; retrying");
                            connection = None;
                            wake_next = true;
                        }
                        Err(_) => {
                            connection = None;
                            wake_next = true;
                        }
                    }
                }
                actix::clock::sleep(REQUEST_POLL).await;
            }
        });
        rx
    }
}
