//! State: the explicit lifecycle states of one driver and their stable names.
//! Plain data; the transitions live in `machine.rs`.

use std::fmt;

use super::{DriverError, Moment, Policy};

/// A generation number. Every setup and every timer the lifecycle starts gets
/// a fresh one; a completion or timer whose generation is not the current one
/// is stale and ignored.
pub type Generation = u64;

/// Identifies the config a driver runs on. The shell owns the config values;
/// the core only needs to know which one is current and which is pending.
pub type ConfigId = u64;

/// One setup (`do_setup` + `check_for_setup_error`) in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Setup {
    /// 0 for the first setup, k for the k-th re-initialization.
    pub attempt: u32,
    /// Generation of this setup and of its deadline timer.
    pub id: Generation,
    /// When this setup times out (`driver_init_timeout`).
    pub deadline: Moment,
}

/// A driver that serves operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Ready {
    /// Operations accepted and not yet finished.
    pub in_flight: u32,
    /// When the driver became Ready.
    pub since: Moment,
    /// The attempt that brought it up; the budget resets after `reinit_reset_after`.
    pub attempt: u32,
    /// Generation of this Ready period; capability calls carry it so a stale
    /// stats failure cannot fail a later Ready period.
    pub epoch: Generation,
}

/// A re-initialization that is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Retry {
    /// The attempt that will run.
    pub attempt: u32,
    /// When it is due.
    pub at: Moment,
    /// Generation of its timer.
    pub timer: Generation,
}

/// A failed driver.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Failed {
    /// Retried with backoff; `retry` is `None` once the budget is exhausted
    /// (the driver gave up and only a reload brings it back).
    Recoverable {
        /// The attempt that failed.
        attempt: u32,
        /// The scheduled re-initialization, if any budget is left.
        retry: Option<Retry>,
        /// Why the last attempt failed.
        #[serde(serialize_with = "super::serialize_display")]
        last_error: DriverError,
    },
    /// Never retried; only a reload brings the driver back.
    Fatal {
        /// The fatal error.
        #[serde(serialize_with = "super::serialize_display")]
        reason: DriverError,
    },
}

/// What happens when a drain reaches zero in-flight operations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum AfterDrain {
    /// Apply this config and set the driver up again (boxed: keeps the
    /// common states small).
    Reload(Box<PendingConfig>),
    /// Stop the driver for good (final shutdown): the deadline passing cuts
    /// in-flight work.
    Shutdown,
    /// The backend was removed by a reload: stop once drained. Unlike
    /// `Shutdown`, the deadline passing aborts the removal (the driver keeps
    /// serving), so in-flight work is never cut.
    Remove,
    /// The backend was lost while operations were in flight: fail recoverably.
    HealthLost(#[serde(serialize_with = "super::serialize_display")] DriverError),
}

/// A config waiting to be applied once the drain is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PendingConfig {
    /// Which config.
    pub config: ConfigId,
    /// Its policy.
    pub policy: Policy,
}

/// A driver that accepts no new operations and waits for in-flight ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Draining {
    /// The Ready period being drained. `ready.in_flight` is the live count of
    /// operations still in flight (> 0 while draining); an aborted reload
    /// returns to this Ready period.
    pub ready: Ready,
    /// Drain deadline and its timer generation. A health-lost drain has none:
    /// it waits for in-flight operations, which are bounded by their own timeouts.
    pub deadline: Option<(Moment, Generation)>,
    /// What comes after the drain.
    pub then: AfterDrain,
    /// The backend's health, lost during a reload's or a removal's drain (a
    /// stats call failed, or an operation's call passed its deadline): that
    /// drain, if aborted, fails recoverably instead of returning to Ready.
    /// `None` in a health-lost or shutdown drain (`then` says it all there).
    /// Boxed: keeps the common states small.
    #[serde(serialize_with = "super::serialize_display_opt")]
    pub lost: Option<Box<DriverError>>,
}

impl Draining {
    /// Why the backend is no longer healthy, if it lost its health during
    /// this Ready period (the drain's own cause, or a loss seen while draining).
    pub fn health_lost(&self) -> Option<&DriverError> {
        match &self.then {
            AfterDrain::HealthLost(error) => Some(error),
            _ => self.lost.as_deref(),
        }
    }
}

/// A failed reload being rolled back: the driver instance set aside before
/// the reload runs `check_for_setup_error`; if it passes, the driver returns
/// to Ready on its old config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RollingBack {
    /// The check in flight (generation, deadline; `attempt` is the failed
    /// reload's attempt, kept if the check fails and the new config is retried).
    pub check: Setup,
    /// Why the new config failed to set up.
    #[serde(serialize_with = "super::serialize_display")]
    pub error: DriverError,
}

/// The lifecycle state of one driver.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum State {
    /// Created, not started.
    Uninitialized,
    /// Setup in flight.
    Initializing(Setup),
    /// Serving operations.
    Ready(Ready),
    /// Setup failed, or health was lost.
    Failed(Failed),
    /// Waiting for in-flight operations before a reload, shutdown or failure.
    Draining(Draining),
    /// Setup in flight on a newly applied config (after a reload).
    Reloading(Setup),
    /// The new config failed to set up; the old driver instance is checked
    /// before the driver returns to Ready on it.
    RollingBack(RollingBack),
    /// Stopped for good.
    Stopped,
}

/// The stable name of a state, as printed by `rekindle status`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // one per `State` variant (Failed split by class), documented there
pub enum StateName {
    Uninitialized,
    Initializing,
    Ready,
    FailedRecoverable,
    FailedFatal,
    Draining,
    Reloading,
    RollingBack,
    Stopped,
}

impl StateName {
    /// Every state name, in lifecycle order.
    pub const ALL: [StateName; 9] = [
        StateName::Uninitialized,
        StateName::Initializing,
        StateName::Ready,
        StateName::FailedRecoverable,
        StateName::FailedFatal,
        StateName::Draining,
        StateName::Reloading,
        StateName::RollingBack,
        StateName::Stopped,
    ];

    /// The snake_case name (`failed_recoverable`).
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Uninitialized => "uninitialized",
            StateName::Initializing => "initializing",
            StateName::Ready => "ready",
            StateName::FailedRecoverable => "failed_recoverable",
            StateName::FailedFatal => "failed_fatal",
            StateName::Draining => "draining",
            StateName::Reloading => "reloading",
            StateName::RollingBack => "rolling_back",
            StateName::Stopped => "stopped",
        }
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl State {
    /// The stable name of this state.
    pub fn name(&self) -> StateName {
        match self {
            State::Uninitialized => StateName::Uninitialized,
            State::Initializing(_) => StateName::Initializing,
            State::Ready(_) => StateName::Ready,
            State::Failed(Failed::Recoverable { .. }) => StateName::FailedRecoverable,
            State::Failed(Failed::Fatal { .. }) => StateName::FailedFatal,
            State::Draining(_) => StateName::Draining,
            State::Reloading(_) => StateName::Reloading,
            State::RollingBack(_) => StateName::RollingBack,
            State::Stopped => StateName::Stopped,
        }
    }

    /// Operations accepted and not yet finished.
    pub fn in_flight(&self) -> u32 {
        match self {
            State::Ready(r) => r.in_flight,
            State::Draining(d) => d.ready.in_flight,
            _ => 0,
        }
    }

    /// The setup in flight, if any (a rollback's check counts as one).
    pub fn setup(&self) -> Option<&Setup> {
        match self {
            State::Initializing(s) | State::Reloading(s) => Some(s),
            State::RollingBack(r) => Some(&r.check),
            _ => None,
        }
    }

    /// The scheduled re-initialization, if any.
    pub fn retry(&self) -> Option<&Retry> {
        match self {
            State::Failed(Failed::Recoverable { retry, .. }) => retry.as_ref(),
            _ => None,
        }
    }

    /// The attempt number the state is at (0 where none applies).
    pub fn attempt(&self) -> u32 {
        match self {
            State::Initializing(s) | State::Reloading(s) => s.attempt,
            State::RollingBack(r) => r.check.attempt,
            State::Ready(r) => r.attempt,
            State::Draining(d) => d.ready.attempt,
            State::Failed(Failed::Recoverable { attempt, .. }) => *attempt,
            _ => 0,
        }
    }

    /// The last driver error, for failed states.
    pub fn last_error(&self) -> Option<&DriverError> {
        match self {
            State::Failed(Failed::Recoverable { last_error, .. }) => Some(last_error),
            State::Failed(Failed::Fatal { reason }) => Some(reason),
            _ => None,
        }
    }

    /// True for a recoverable failure whose budget is exhausted.
    pub fn gave_up(&self) -> bool {
        matches!(self, State::Failed(Failed::Recoverable { retry: None, .. }))
    }
}
