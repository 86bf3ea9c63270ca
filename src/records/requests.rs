//! Reload requests in the fleet's records: a request row per host; the host claims it,
//! reloads, and writes its report back into the row ([`ReloadRequests`]).
//!
//! How a host learns of a request is the database's: PostgreSQL wakes it
//! with `NOTIFY`; MariaDB has no such thing, so its host polls the requests
//! table ([`REQUEST_POLL`]). Either way a request made while the host was
//! not listening is found when it starts listening.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::RecordsError;

/// How often a host on a database without notifications (MariaDB) looks
/// for reload requests to it: one indexed read.
pub const REQUEST_POLL: Duration = Duration::from_millis(200);

/// A reload request's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestId(pub i64);

/// A host's answer to a reload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Every backend ended as intended.
    pub as_intended: bool,
    /// The host's reload report (JSON, as `rekindle reload --json` prints).
    pub report: String,
}

/// Reload requests and their answers.
#[async_trait(?Send)]
pub trait ReloadRequests {
    /// Asks `host` to reload its own file (as part of `rollout`, if any);
    /// the host is woken as soon as the request commits.
    async fn request_reload(
        &self,
        host: &str,
        rollout: Option<i64>,
    ) -> Result<RequestId, RecordsError>;

    /// Claims `host`'s pending requests (also those made while it was not
    /// listening), oldest first; each is claimed once.
    async fn take_reload_requests(&self, host: &str) -> Result<Vec<RequestId>, RecordsError>;

    /// Writes a host's answer.
    async fn answer_reload(&self, id: RequestId, answer: &Answer) -> Result<(), RecordsError>;

    /// The answer to a request, once there is one.
    async fn reload_answer(&self, id: RequestId) -> Result<Option<Answer>, RecordsError>;

    /// Wakes `host` for its reload requests: the receiver gets `()` when
    /// there may be one to take (at once when listening starts, and again
    /// after every outage of the database, since requests may have been
    /// missed). Runs on a local task until the receiver is dropped.
    fn listen_for_reloads(&self, host: &str) -> mpsc::Receiver<()>;
}
