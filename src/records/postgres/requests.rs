//! Reload requests through PostgreSQL: a request row per host plus `NOTIFY` in the same
//! transaction, so the host reacts at once (`crate::records::requests`' contract).

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use async_trait::async_trait;

use super::PgStore;
use crate::records::RecordsError;
use crate::records::requests::{Answer, ReloadRequests, RequestId};

/// The `NOTIFY` channel; the payload is the host asked.
pub const CHANNEL: &str = "rekindle_reload";

#[async_trait(?Send)]
impl ReloadRequests for PgStore {
    async fn request_reload(
        &self,
        host: &str,
        rollout: Option<i64>,
    ) -> Result<RequestId, RecordsError> {
        self.with_client(async |client| {
            let tx = client.transaction().await.map_err(|e| self.failed(e))?;
            let id = self.insert_request(&tx, host, rollout).await?;
            tx.commit().await.map_err(|e| self.failed(e))?;
            Ok(id)
        })
        .await
    }

    async fn take_reload_requests(&self, host: &str) -> Result<Vec<RequestId>, RecordsError> {
        let rows = self
            .query(
                "UPDATE reload_requests SET state = 'running'
                 WHERE host = $1 AND state = 'requested' RETURNING id",
                &[&host],
            )
            .await?;
        let mut ids: Vec<RequestId> = rows.iter().map(|r| RequestId(r.get(0))).collect();
        ids.sort();
        Ok(ids)
    }

    async fn answer_reload(&self, id: RequestId, answer: &Answer) -> Result<(), RecordsError> {
        self.execute(
            "UPDATE reload_requests SET state = 'answered', as_intended = $2, report = $3,
                 answered_at = now() WHERE id = $1",
            &[&id.0, &answer.as_intended, &answer.report],
        )
        .await
        .map(drop)
    }

    async fn reload_answer(&self, id: RequestId) -> Result<Option<Answer>, RecordsError> {
        let rows = self
            .query(
                "SELECT as_intended, report FROM reload_requests WHERE id = $1 AND state = 'answered'",
                &[&id.0],
            )
            .await?;
        Ok(rows.first().map(|r| Answer {
            as_intended: r.get(0),
            report: r.get(1),
        }))
    }

    /// Listens for reload requests to `host` on a dedicated connection:
    /// the receiver gets `()` for each notification (and once at start and
    /// after every reconnection, since requests may have been missed). The
    /// connection is re-made after a database outage, every second.
    fn listen_for_reloads(&self, host: &str) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(16);
        let config = self.config().clone();
        let host = host.to_string();
        let url = self.url().to_string();
        actix::spawn(async move {
            while !tx.is_closed() {
                match listen_once(&config, &host, &tx).await {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(database = %url, error = %e, "reload listener lost its connection; retrying")
                    }
                }
                actix::clock::sleep(Duration::from_secs(1)).await;
            }
        });
        rx
    }
}

impl PgStore {
    /// Inserts a reload request for `host` and notifies it, in `tx`: the
    /// row and the notification commit together.
    pub(super) async fn insert_request(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        host: &str,
        rollout: Option<i64>,
    ) -> Result<RequestId, RecordsError> {
        let row = tx
            .query_one(
                "INSERT INTO reload_requests (host, rollout) VALUES ($1, $2) RETURNING id",
                &[&host, &rollout],
            )
            .await
            .map_err(|e| self.failed(e))?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &host])
            .await
            .map_err(|e| self.failed(e))?;
        Ok(RequestId(row.get(0)))
    }
}

/// One connection's life: LISTEN, wake the host once (requests may be
/// pending), then once per notification to it, until the connection ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    host: &str,
    wake: &mpsc::Sender<()>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let driver = actix::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if notes_tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let _ = wake.send(()).await;
    while let Some(payload) = notes.recv().await {
        if payload == host && wake.send(()).await.is_err() {
            break;
        }
    }
    driver.abort();
    Ok(())
}
