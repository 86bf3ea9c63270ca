//! Effect: what the shell must do after a transition (call the driver, arm a
//! timer, publish, notify, stop), and the driver-level notifications.

use std::time::Duration;

use arrayvec::ArrayVec;

use super::{ConfigId, DriverError, Generation, Moment, Timer};

/// The most effects one transition produces.
pub const MAX_EFFECTS: usize = 5;

/// The effects of one transition, in the order the shell must perform them.
/// Inline storage: a transition never allocates for its effects.
pub type Effects = ArrayVec<Effect, MAX_EFFECTS>;

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Build the driver from config `config` (a reload applied it). Always
    /// followed by a `RunSetup` in the same transition.
    ApplyConfig {
        /// The config to apply.
        config: ConfigId,
        /// Set the current driver instance aside (drained, not torn down)
        /// as the one a failed reload rolls back to, replacing any set aside
        /// before. When false the current instance is released and an
        /// instance already set aside stays.
        keep_previous: bool,
    },
    /// Run `do_setup` then `check_for_setup_error` and report the result as
    /// `SetupSucceeded`/`SetupFailed` with this generation. With `previous`,
    /// run only `check_for_setup_error`, on the instance set aside by
    /// `ApplyConfig` (a rollback's check).
    RunSetup {
        /// Generation to report back.
        setup: Generation,
        /// Attempt number (0 = first setup).
        attempt: u32,
        /// Check the set-aside instance instead of setting up the current one.
        previous: bool,
    },
    /// The rollback check passed: the set-aside instance and its config
    /// become current again; the instance of the failed config is released.
    RestorePrevious,
    /// Release the set-aside instance (the new config is up, or the
    /// rollback is off or failed).
    DropPrevious,
    /// Abandon setup `setup` (its deadline passed, or a reload or shutdown
    /// replaced it); its result, if it ever comes, is stale.
    AbortSetup {
        /// The setup to abandon.
        setup: Generation,
    },
    /// Fire `timer` at `at` (as `Event::TimerFired`).
    ScheduleTimer {
        /// The timer to fire.
        timer: Timer,
        /// When.
        at: Moment,
    },
    /// Call `get_volume_stats` and publish the capabilities; report a
    /// failure as `HealthLost` with this epoch.
    PublishCapabilities {
        /// The Ready period the call belongs to.
        epoch: Generation,
    },
    /// Emit a notification.
    Notify(Notification),
    /// The driver stopped: release it.
    Stop,
}

/// A driver-level notification. Event types are a stable contract.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Notification {
    /// `driver.init.start`
    InitStart {
        /// Attempt number (0 = first setup).
        attempt: u32,
    },
    /// `driver.init.end`: setup succeeded.
    InitEnd {
        /// Attempt number.
        attempt: u32,
    },
    /// `driver.init.error`
    InitError {
        /// Attempt number.
        attempt: u32,
        /// How it failed (its class is `error.class()`).
        error: DriverError,
    },
    /// `driver.retry.scheduled`
    RetryScheduled {
        /// The attempt that will run.
        attempt: u32,
        /// After how long.
        delay: Duration,
    },
    /// `driver.gave_up`: the budget is exhausted.
    GaveUp {
        /// Setup attempts made (first setup included).
        attempts: u32,
    },
    /// `driver.health.lost`
    HealthLost {
        /// How the stats call failed.
        error: DriverError,
    },
    /// `reload.aborted`: the drain deadline passed; the driver keeps serving
    /// on its old config.
    ReloadAborted {
        /// Operations still in flight when the deadline passed.
        in_flight: u32,
    },
    /// `reload.rolled_back`: the new config failed to set up; the driver
    /// serves again on its old instance and old config.
    ReloadRolledBack {
        /// Why the new config failed.
        error: DriverError,
    },
    /// `removal.aborted`: a removed backend's drain deadline passed; it
    /// keeps serving on its old config and the next reload tries again.
    RemovalAborted {
        /// Operations still in flight when the deadline passed.
        in_flight: u32,
    },
}
