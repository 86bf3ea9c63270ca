//! Events: what the engine tells the world. The notification contract as Rust types (`Event`, one variant per
//! `event_type`, its payload's fields) and `Notice`, one delivered event.
//!
//! A [`Notice`] serializes to exactly one line of the notifications file:
//! `{"event_type", "backend", "timestamp", "payload"}`. Subscribers (an
//! embedder's actors, given to [`crate::EngineBuilder::subscribe`]) receive
//! each as an actix message.

pub mod notify;
pub mod refusal;
pub mod status;

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::lifecycle::{ConfigId, Notification, StateName};

/// One event, named by its stable `event_type` (documented in
/// `docs/admin.md`, "Notifications"); its fields are the payload's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum Event {
    /// `driver.init.start`: a setup attempt starts (attempt 0 is the first
    /// setup, 1 the first re-initialization).
    #[serde(rename = "driver.init.start")]
    DriverInitStart {
        /// The attempt.
        attempt: u32,
    },
    /// `driver.init.end`: the setup succeeded; the driver is Ready.
    #[serde(rename = "driver.init.end")]
    DriverInitEnd {
        /// The attempt that succeeded.
        attempt: u32,
    },
    /// `driver.init.error`: a setup attempt failed.
    #[serde(rename = "driver.init.error")]
    DriverInitError {
        /// The attempt.
        attempt: u32,
        /// `recoverable` or `fatal`.
        class: String,
        /// The driver's error.
        message: String,
    },
    /// `driver.retry.scheduled`: the next attempt is due after a backoff.
    #[serde(rename = "driver.retry.scheduled")]
    DriverRetryScheduled {
        /// The attempt that will run.
        attempt: u32,
        /// The backoff, in seconds.
        delay_seconds: f64,
    },
    /// `driver.gave_up`: `reinit_driver_count` attempts failed.
    #[serde(rename = "driver.gave_up")]
    DriverGaveUp {
        /// How many attempts were made.
        attempts: u32,
    },
    /// `driver.health.lost`: a Ready driver's stats or probe failed, or one
    /// of its operations' calls passed its deadline.
    #[serde(rename = "driver.health.lost")]
    DriverHealthLost {
        /// `recoverable` or `fatal`.
        class: String,
        /// The driver's error.
        message: String,
    },
    /// `reload.start`: a reload begins.
    #[serde(rename = "reload.start")]
    ReloadStart {
        /// The config being applied.
        config: ConfigId,
        /// Each backend's change.
        diff: PlanDiff,
    },
    /// `reload.end`: every backend the reload touched has settled.
    #[serde(rename = "reload.end")]
    ReloadEnd(Box<ReloadEnd>),
    /// `reload.rejected`: the new file is invalid; the old config serves.
    #[serde(rename = "reload.rejected")]
    ReloadRejected {
        /// Every problem found, one a line.
        error: String,
    },
    /// `reload.coalesced`: a reload asked for while one runs; one follow-up
    /// reload runs when it settles.
    #[serde(rename = "reload.coalesced")]
    ReloadCoalesced {
        /// The config being applied now.
        running_config: ConfigId,
    },
    /// `reload.refused`: the service is shutting down.
    #[serde(rename = "reload.refused")]
    ReloadRefused {
        /// Why.
        reason: String,
    },
    /// `reload.aborted`: a backend's drain outlasted its deadline; it keeps
    /// its old config.
    #[serde(rename = "reload.aborted")]
    ReloadAborted {
        /// Why.
        reason: String,
        /// Operations in flight at the deadline.
        in_flight: u32,
    },
    /// `reload.rolled_back`: the new config failed; the old one serves again.
    #[serde(rename = "reload.rolled_back")]
    ReloadRolledBack {
        /// The new config's error class.
        class: String,
        /// The new config's error.
        error: String,
        /// What happened.
        reason: String,
    },
    /// `removal.aborted`: a removed backend's drain outlasted its deadline;
    /// it keeps serving on its old config.
    #[serde(rename = "removal.aborted")]
    RemovalAborted {
        /// Why.
        reason: String,
        /// Operations in flight at the deadline.
        in_flight: u32,
    },
    /// `backup.init.success`: the backup driver is set up.
    #[serde(rename = "backup.init.success")]
    BackupInitSuccess {
        /// The attempt.
        attempt: u32,
    },
    /// `backup.init.failure`: a backup driver setup failed (with `class`
    /// and `message`), or none succeeded within
    /// `backup_initialization_timeout` (with `reason`, `state`, `last_error`).
    #[serde(rename = "backup.init.failure")]
    BackupInitFailure(BackupInitFailure),
    /// `service.up`: a service row came up.
    #[serde(rename = "service.up")]
    ServiceUp(ServiceRowChange),
    /// `service.down`: a service row that was up went down.
    #[serde(rename = "service.down")]
    ServiceDown(ServiceRowChange),
    /// `record.recovered`: a record a crash left in a passing state was resolved.
    #[serde(rename = "record.recovered")]
    RecordRecovered {
        /// `volume` or `backup`.
        kind: String,
        /// Its id.
        id: String,
        /// The status it was left in.
        from: String,
        /// The status it became.
        to: String,
    },
    /// `work.claimed`: a live member of a cluster took over the unfinished
    /// work of a host that has been down for `service_down_time` (by the
    /// database's clock) and resolved its record as crash recovery does.
    #[serde(rename = "work.claimed")]
    WorkClaimed {
        /// `volume` or `backup`.
        kind: String,
        /// Its id.
        id: String,
        /// The status the dead host left it in.
        from: String,
        /// The status it became.
        to: String,
        /// The host that died with it.
        dead_host: String,
        /// The host that claimed it.
        survivor: String,
    },
    /// `volume.reset_state`: an admin set a volume's status.
    #[serde(rename = "volume.reset_state")]
    VolumeResetState {
        /// The volume.
        volume_id: String,
        /// Its status before.
        from: String,
        /// Its status now.
        to: String,
    },
    /// `backup.reset_state`: an admin set a backup's status.
    #[serde(rename = "backup.reset_state")]
    BackupResetState {
        /// The backup.
        backup_id: String,
        /// Its status before.
        from: String,
        /// Its status now.
        to: String,
    },
    /// `backup.restore.error`: a restore failed.
    #[serde(rename = "backup.restore.error")]
    BackupRestoreError {
        /// The backup.
        backup_id: String,
        /// The target volume.
        volume_id: String,
        /// `available` (nothing was written to it) or `error_restoring`.
        volume_status: String,
        /// Whether any byte was written to the volume.
        volume_written: bool,
        /// The driver's error.
        error: String,
    },
    /// `backup.create.error`: a backup failed.
    #[serde(rename = "backup.create.error")]
    BackupCreateError {
        /// The backup.
        backup_id: String,
        /// The source volume.
        volume_id: String,
        /// Whether anything reached the backup store.
        reached_backend: bool,
        /// The driver's (or the refusal's) error.
        error: String,
    },
    /// `backup.createprogress`: how far a running backup got (at most one a
    /// second; a last one at 100% when it succeeds after one was sent).
    #[serde(rename = "backup.createprogress")]
    BackupCreateProgress(BackupProgress),
    /// `backup.restoreprogress`: how far a running restore got (as
    /// `backup.createprogress`).
    #[serde(rename = "backup.restoreprogress")]
    BackupRestoreProgress(BackupProgress),
    /// `export.restarted`: a dead export was restarted.
    #[serde(rename = "export.restarted")]
    ExportRestarted {
        /// The exported volume.
        volume_id: String,
        /// The address the new server listens on.
        host: String,
        /// The dead server's port.
        old_port: u16,
        /// The new server's port (the old one unless it was taken).
        port: u16,
        /// The new server's process id.
        pid: u32,
        /// Why the old server was found dead.
        reason: String,
    },
    /// `export.restart_failed`: a dead export could not be restarted (tried
    /// again on the next tick).
    #[serde(rename = "export.restart_failed")]
    ExportRestartFailed {
        /// The exported volume.
        volume_id: String,
        /// Why.
        reason: String,
    },
}

/// `reload.end`'s payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadEnd {
    /// The config applied.
    pub config: ConfigId,
    /// True if every backend ended as intended.
    pub ok: bool,
    /// Backends started.
    pub added: Vec<String>,
    /// Backends removed and stopped.
    pub removed: Vec<String>,
    /// Backends whose config changed.
    pub changed: Vec<String>,
    /// Backends left as they were.
    pub unchanged: Vec<String>,
    /// Backends whose drain outlasted the deadline (old config kept).
    pub aborted: Vec<String>,
    /// Backends back on their old config after the new one failed.
    pub rolled_back: Vec<String>,
    /// Backends that ended failed.
    pub failed: Vec<String>,
    /// Removed backends that kept serving (drain deadline passed).
    pub removal_aborted: Vec<String>,
    /// Service-level options that take effect on restart.
    pub restart_required: Vec<String>,
    /// Each touched backend's state name at the end.
    pub states: BTreeMap<String, &'static str>,
    /// Each touched backend's result.
    pub backends: BTreeMap<String, BackendResult>,
}

/// `backup.init.failure`'s payload: a failed attempt, or the
/// `backup_initialization_timeout` report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BackupInitFailure {
    /// A setup attempt failed.
    Attempt {
        /// The attempt.
        attempt: u32,
        /// `recoverable` or `fatal`.
        class: String,
        /// The driver's error.
        message: String,
    },
    /// No setup succeeded within `backup_initialization_timeout`.
    Timeout {
        /// What happened, naming the timeout.
        reason: String,
        /// The backup backend's state name.
        state: &'static str,
        /// Its last error.
        last_error: Option<String>,
    },
}

/// `backup.createprogress` / `backup.restoreprogress`'s payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupProgress {
    /// The backup.
    pub backup_id: String,
    /// The source volume (backup) or the target volume (restore).
    pub volume_id: String,
    /// Whole percent done, rounded down (at most 99 while running, 100 once done).
    pub percent: u8,
    /// Bytes of the work done.
    pub bytes_done: u64,
    /// Bytes the work covers.
    pub bytes_total: u64,
}

/// `service.up` / `service.down`'s payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRowChange {
    /// `cinder-volume` or `cinder-backup`.
    pub binary: String,
    /// `host@backend` or `host`.
    pub host: String,
    /// The backend's state name.
    pub state: &'static str,
}

impl Event {
    /// The stable `event_type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::DriverInitStart { .. } => "driver.init.start",
            Event::DriverInitEnd { .. } => "driver.init.end",
            Event::DriverInitError { .. } => "driver.init.error",
            Event::DriverRetryScheduled { .. } => "driver.retry.scheduled",
            Event::DriverGaveUp { .. } => "driver.gave_up",
            Event::DriverHealthLost { .. } => "driver.health.lost",
            Event::ReloadStart { .. } => "reload.start",
            Event::ReloadEnd(_) => "reload.end",
            Event::ReloadRejected { .. } => "reload.rejected",
            Event::ReloadCoalesced { .. } => "reload.coalesced",
            Event::ReloadRefused { .. } => "reload.refused",
            Event::ReloadAborted { .. } => "reload.aborted",
            Event::ReloadRolledBack { .. } => "reload.rolled_back",
            Event::RemovalAborted { .. } => "removal.aborted",
            Event::BackupInitSuccess { .. } => "backup.init.success",
            Event::BackupInitFailure(_) => "backup.init.failure",
            Event::ServiceUp(_) => "service.up",
            Event::ServiceDown(_) => "service.down",
            Event::RecordRecovered { .. } => "record.recovered",
            Event::WorkClaimed { .. } => "work.claimed",
            Event::VolumeResetState { .. } => "volume.reset_state",
            Event::BackupResetState { .. } => "backup.reset_state",
            Event::BackupRestoreError { .. } => "backup.restore.error",
            Event::BackupCreateError { .. } => "backup.create.error",
            Event::BackupCreateProgress(_) => "backup.createprogress",
            Event::BackupRestoreProgress(_) => "backup.restoreprogress",
            Event::ExportRestarted { .. } => "export.restarted",
            Event::ExportRestartFailed { .. } => "export.restart_failed",
        }
    }

    /// The payload, as it is written to the notifications file.
    pub fn payload(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut tagged)) => {
                tagged.remove("payload").unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::Null,
        }
    }
}

impl From<&Notification> for Event {
    fn from(n: &Notification) -> Event {
        match n {
            Notification::InitStart { attempt } => Event::DriverInitStart { attempt: *attempt },
            Notification::InitEnd { attempt } => Event::DriverInitEnd { attempt: *attempt },
            Notification::InitError { attempt, error } => Event::DriverInitError {
                attempt: *attempt,
                class: error.class().as_str().to_string(),
                message: error.to_string(),
            },
            Notification::RetryScheduled { attempt, delay } => Event::DriverRetryScheduled {
                attempt: *attempt,
                delay_seconds: delay.as_secs_f64(),
            },
            Notification::GaveUp { attempts } => Event::DriverGaveUp {
                attempts: *attempts,
            },
            Notification::HealthLost { error } => Event::DriverHealthLost {
                class: error.class().as_str().to_string(),
                message: error.to_string(),
            },
            Notification::ReloadAborted { in_flight } => Event::ReloadAborted {
                reason: "drain deadline passed; the old config keeps serving".to_string(),
                in_flight: *in_flight,
            },
            Notification::ReloadRolledBack { error } => Event::ReloadRolledBack {
                class: error.class().as_str().to_string(),
                error: error.to_string(),
                reason: "the new config failed to set up; the old config serves again".to_string(),
            },
            Notification::RemovalAborted { in_flight } => Event::RemovalAborted {
                reason:
                    "drain deadline passed; the removed backend keeps serving on its old config"
                        .to_string(),
                in_flight: *in_flight,
            },
        }
    }
}

impl From<crate::driver::DriverEvent> for Event {
    fn from(e: crate::driver::DriverEvent) -> Event {
        use crate::driver::DriverEvent;
        match e {
            DriverEvent::ExportRestarted {
                volume_id,
                host,
                old_port,
                port,
                pid,
                reason,
            } => Event::ExportRestarted {
                volume_id: volume_id.to_string(),
                host,
                old_port,
                port,
                pid,
                reason,
            },
            DriverEvent::ExportRestartFailed { volume_id, reason } => Event::ExportRestartFailed {
                volume_id: volume_id.to_string(),
                reason,
            },
        }
    }
}

/// One delivered event: what happened, to which backend, when. Serializes
/// to exactly one line of the notifications file.
#[derive(Debug, Clone, PartialEq, actix::Message)]
#[rtype(result = "()")]
pub struct Notice {
    /// What happened.
    pub event: Event,
    /// The backend it concerns, if any.
    pub backend: Option<String>,
    /// When, as RFC 3339 UTC with milliseconds (the service clock's wall time).
    pub timestamp: String,
}

impl Notice {
    /// The stable `event_type`.
    pub fn event_type(&self) -> &'static str {
        self.event.event_type()
    }
}

impl Serialize for Notice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut line = serializer.serialize_struct("Notice", 4)?;
        line.serialize_field("event_type", self.event.event_type())?;
        line.serialize_field("backend", &self.backend)?;
        line.serialize_field("timestamp", &self.timestamp)?;
        line.serialize_field("payload", &self.event.payload())?;
        line.end()
    }
}

/// How a new plan differs from the running one, per backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PlanDiff {
    /// Backends to start.
    pub added: Vec<String>,
    /// Backends to drain and stop.
    pub removed: Vec<String>,
    /// Backends to drain and reload.
    pub changed: Vec<String>,
    /// Backends that keep serving untouched.
    pub unchanged: Vec<String>,
    /// Service-level options that changed and take effect on restart.
    pub restart_required: Vec<String>,
}

/// How one backend ended a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum BackendResult {
    /// Its section did not change; it keeps serving (or was set up again).
    Unchanged {
        /// Its state.
        state: StateName,
    },
    /// It runs the new config.
    Reloaded {
        /// Its state.
        state: StateName,
    },
    /// The new config failed to set up; it serves on its old config again.
    RolledBack {
        /// The new config's error.
        error: String,
    },
    /// It ended failed (on the new config, or an unchanged backend whose
    /// setup failed again).
    Failed {
        /// Its state.
        state: StateName,
        /// Its last error.
        error: Option<String>,
    },
    /// Its drain deadline passed with operations in flight: it kept its old
    /// config; the next reload tries again.
    Aborted {
        /// Operations in flight when the deadline passed.
        in_flight: u32,
    },
    /// It was added.
    Added {
        /// Whether its first setup made it Ready.
        ready: bool,
        /// Its state.
        state: StateName,
        /// Its last error, if its setup failed.
        error: Option<String>,
    },
    /// It was removed and has stopped.
    Removed,
    /// It was removed from the file, but its drain deadline passed with
    /// operations in flight: it keeps serving; the next reload tries again.
    RemovalAborted {
        /// Operations in flight when the deadline passed.
        in_flight: u32,
    },
}

impl BackendResult {
    /// True for the results a reload intends: unchanged, reloaded, added and
    /// Ready, removed.
    pub fn as_intended(&self) -> bool {
        match self {
            BackendResult::Unchanged { .. }
            | BackendResult::Reloaded { .. }
            | BackendResult::Removed => true,
            BackendResult::Added { ready, .. } => *ready,
            BackendResult::RolledBack { .. }
            | BackendResult::Failed { .. }
            | BackendResult::Aborted { .. }
            | BackendResult::RemovalAborted { .. } => false,
        }
    }

    /// The result's stable name (`rolled_back`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            BackendResult::Unchanged { .. } => "unchanged",
            BackendResult::Reloaded { .. } => "reloaded",
            BackendResult::RolledBack { .. } => "rolled_back",
            BackendResult::Failed { .. } => "failed",
            BackendResult::Aborted { .. } => "aborted",
            BackendResult::Added { .. } => "added",
            BackendResult::Removed => "removed",
            BackendResult::RemovalAborted { .. } => "removal_aborted",
        }
    }
}
