//! Rolling reloads as records: one rollout row per `rekindle fleet reload`, its per-host
//! phases kept up to date so `fleet status` shows it and `--resume` continues it.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::RecordsError;
use super::requests::RequestId;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Its command is driving it (or was killed: see `--resume`).
    Running,
    /// Every host reloaded and stayed Ready.
    Finished,
    /// A host's reload did not end as intended; later hosts were not asked.
    Halted,
    /// An operator gave it up (`rekindle fleet abandon`).
    Abandoned,
}

impl RolloutState {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Finished => "finished",
            RolloutState::Halted => "halted",
            RolloutState::Abandoned => "abandoned",
        }
    }

    pub(crate) fn parse(word: &str) -> RolloutState {
        match word {
            "running" => RolloutState::Running,
            "finished" => RolloutState::Finished,
            "halted" => RolloutState::Halted,
            _ => RolloutState::Abandoned,
        }
    }
}

/// One host's phase as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host.
    pub host: String,
    /// Its cluster (`None`: a cluster of its own).
    pub cluster: Option<String>,
    /// `waiting`, `asked`, `settling`, `done` or `failed`.
    pub phase: String,
    /// The reload request it was sent, once asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<i64>,
    /// What its reload did (its summary), once answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// The backends its reload changed, which must be Ready (`None`: the
    /// answer did not say, so every backend of the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<String>>,
}

/// A rollout row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutRow {
    /// Its id.
    pub id: i64,
    /// The cluster it is limited to, if any.
    pub cluster: Option<String>,
    /// Hosts of one cluster reloading at once, at most.
    pub max_unavailable: u32,
    /// How long a reloaded host must stay Ready, in milliseconds.
    pub min_ready_ms: u64,
    /// Where it is.
    pub state: RolloutState,
    /// Every host, in the order they are asked.
    pub hosts: Vec<HostRecord>,
    /// Where it stopped and why (or what it is doing).
    pub message: String,
    /// The command driving it (`host:pid:nonce`); a resume takes it over.
    pub driver: String,
    /// When it started (RFC 3339, the server's clock).
    pub started_at: String,
    /// When it last changed (RFC 3339, the server's clock).
    pub updated_at: String,
}

/// A host known to the fleet's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetHost {
    /// The host.
    pub host: String,
    /// Its cluster, if it registered one.
    pub cluster: Option<String>,
    /// Whether it has heartbeat within `service_down_time` (host or service rows).
    pub alive: bool,
}

/// Rollouts and the fleet's hosts as a rollout sees them.
#[async_trait(?Send)]
pub trait RolloutRecords {
    /// Every host the records know (registered hosts and hosts with
    /// service rows, whose `host` is `name@backend` or `name`), by cluster
    /// (hosts without one last) then name; `alive` by the server's clock.
    async fn fleet_hosts(
        &self,
        service_down_time: Duration,
    ) -> Result<Vec<FleetHost>, RecordsError>;

    /// True if `backends` of `host` (`None`: every backend it has a row
    /// for, at least one) each have a service row that is `up` with a
    /// heartbeat within `service_down_time` of the server's clock.
    async fn host_ready(
        &self,
        host: &str,
        backends: Option<&[String]>,
        service_down_time: Duration,
    ) -> Result<bool, RecordsError>;

    /// Records a new rollout (`running`), driven by `driver`, and returns
    /// its id. Refused (`None`) while another rollout is running: atomic,
    /// so two commands starting together do not both start.
    async fn insert_rollout(
        &self,
        cluster: Option<&str>,
        max_unavailable: u32,
        min_ready: Duration,
        hosts: &[HostRecord],
        driver: &str,
    ) -> Result<Option<i64>, RecordsError>;

    /// Makes `driver` the command driving running rollout `id` (a resume):
    /// the command that drove it before can no longer write to it. `None`
    /// if there is no such rollout or it is not running.
    async fn take_over_rollout(
        &self,
        id: i64,
        driver: &str,
    ) -> Result<Option<RolloutRow>, RecordsError>;

    /// Records a rollout's progress. Only a `running` rollout still driven
    /// by `driver` changes: false if it was abandoned or taken over
    /// (resumed by another command) meanwhile.
    async fn update_rollout(
        &self,
        id: i64,
        driver: &str,
        state: RolloutState,
        hosts: &[HostRecord],
        message: &str,
    ) -> Result<bool, RecordsError>;

    /// One rollout.
    async fn rollout(&self, id: i64) -> Result<Option<RolloutRow>, RecordsError>;

    /// Every rollout, latest first.
    async fn rollouts(&self) -> Result<Vec<RolloutRow>, RecordsError>;

    /// Asks `host` to reload as part of rollout `id`, only while `driver`
    /// drives it (the rollout's row is locked meanwhile, so a take-over
    /// waits). Once per host and rollout: a host already asked in this
    /// rollout gets no second request, its first is returned. `None` if
    /// the rollout is not running or is driven by another command.
    async fn request_reload_in_rollout(
        &self,
        id: i64,
        driver: &str,
        host: &str,
    ) -> Result<Option<RequestId>, RecordsError>;

    /// Marks a running rollout abandoned (its hosts keep whatever config
    /// they have) and cancels its requests no host has claimed yet,
    /// atomically. False if it is not running.
    async fn abandon_rollout(&self, id: i64, message: &str) -> Result<bool, RecordsError>;
}
