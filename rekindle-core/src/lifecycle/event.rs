//! Event: everything that can happen to one driver, as plain data, and the
//! stable event names used in refusals and traces.

use std::fmt;

use super::{ConfigId, DriverError, Generation, Policy};

/// Which timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// A scheduled re-initialization is due.
    Retry,
    /// A setup attempt's `driver_init_timeout` passed.
    SetupDeadline,
    /// A drain's `graceful_shutdown_timeout` passed.
    DrainDeadline,
}

/// A timer: its kind and the generation it was armed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Timer {
    /// What it is for.
    pub kind: TimerKind,
    /// The generation it was armed with; stale if the state moved on.
    pub generation: Generation,
}

/// Something that happened to a driver.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Event {
    /// The service starts the driver.
    Start,
    /// Setup `setup` (`do_setup` + `check_for_setup_error`) returned Ok.
    SetupSucceeded {
        /// Generation of the setup.
        setup: Generation,
    },
    /// Setup `setup` failed.
    SetupFailed {
        /// Generation of the setup.
        setup: Generation,
        /// How it failed.
        #[serde(serialize_with = "super::serialize_display")]
        error: DriverError,
    },
    /// The periodic capability publisher ticked.
    PublisherTick,
    /// An operation (create, delete, export, ...) wants to start.
    OperationStarted,
    /// An accepted operation finished (successfully or not).
    OperationFinished,
    /// An accepted operation's driver call passed its deadline and the
    /// shell abandoned it (its future dropped): it is counted out as by
    /// `OperationFinished`, and a Ready driver of epoch `epoch` has lost
    /// its health as by `HealthLost` (a backend whose calls hang is not
    /// Ready). In a drain it is counted out only: the drain's end (a
    /// reload's new setup, a stop) decides what follows.
    OperationTimedOut {
        /// The Ready period the operation started in.
        epoch: Generation,
        /// What passed its deadline (the call and the deadline, in words).
        #[serde(serialize_with = "super::serialize_display")]
        error: DriverError,
    },
    /// The config was reloaded. `changed` is false when this driver's section
    /// is identical to the one it runs on.
    ReloadRequested {
        /// Which config.
        config: ConfigId,
        /// Whether this driver's config differs from the one it runs on.
        changed: bool,
        /// The policy of the new config (boxed: reloads are rare, and a
        /// small `Event` keeps every other transition cheap).
        policy: Box<Policy>,
    },
    /// A timer the lifecycle armed fired.
    TimerFired(Timer),
    /// The service shuts down.
    ShutdownRequested,
    /// A reload removed this backend: drain, then stop; if the drain
    /// deadline passes first, the removal is aborted and the driver keeps
    /// serving.
    RemovalRequested,
    /// A Ready driver's periodic stats call (epoch `epoch`) failed.
    HealthLost {
        /// The Ready period the stats call belonged to.
        epoch: Generation,
        /// How it failed.
        #[serde(serialize_with = "super::serialize_display")]
        error: DriverError,
    },
}

/// The stable name of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // one per `Event` variant (timers split by kind), documented there
pub enum EventName {
    Start,
    SetupSucceeded,
    SetupFailed,
    PublisherTick,
    OperationStarted,
    OperationFinished,
    OperationTimedOut,
    ReloadRequested,
    RetryTimer,
    SetupDeadline,
    DrainDeadline,
    ShutdownRequested,
    RemovalRequested,
    HealthLost,
}

impl EventName {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Start => "start",
            EventName::SetupSucceeded => "setup_succeeded",
            EventName::SetupFailed => "setup_failed",
            EventName::PublisherTick => "publisher_tick",
            EventName::OperationStarted => "operation_started",
            EventName::OperationFinished => "operation_finished",
            EventName::OperationTimedOut => "operation_timed_out",
            EventName::ReloadRequested => "reload_requested",
            EventName::RetryTimer => "retry_timer",
            EventName::SetupDeadline => "setup_deadline",
            EventName::DrainDeadline => "drain_deadline",
            EventName::ShutdownRequested => "shutdown_requested",
            EventName::RemovalRequested => "removal_requested",
            EventName::HealthLost => "health_lost",
        }
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Event {
    /// The stable name of this event.
    pub fn name(&self) -> EventName {
        match self {
            Event::Start => EventName::Start,
            Event::SetupSucceeded { .. } => EventName::SetupSucceeded,
            Event::SetupFailed { .. } => EventName::SetupFailed,
            Event::PublisherTick => EventName::PublisherTick,
            Event::OperationStarted => EventName::OperationStarted,
            Event::OperationFinished => EventName::OperationFinished,
            Event::OperationTimedOut { .. } => EventName::OperationTimedOut,
            Event::ReloadRequested { .. } => EventName::ReloadRequested,
            Event::TimerFired(Timer {
                kind: TimerKind::Retry,
                ..
            }) => EventName::RetryTimer,
            Event::TimerFired(Timer {
                kind: TimerKind::SetupDeadline,
                ..
            }) => EventName::SetupDeadline,
            Event::TimerFired(Timer {
                kind: TimerKind::DrainDeadline,
                ..
            }) => EventName::DrainDeadline,
            Event::ShutdownRequested => EventName::ShutdownRequested,
            Event::RemovalRequested => EventName::RemovalRequested,
            Event::HealthLost { .. } => EventName::HealthLost,
        }
    }
}
