//! The sans-IO core: one storage driver's lifecycle as a pure state machine.
//! No actix, no clock, no I/O: every layer above drives `Lifecycle::step`.
//!
//! # Layout
//! - `state`: the explicit states (`Uninitialized` .. `Stopped`) and their names.
//! - `event`: what can happen (start, setup results, ticks, operations, reloads,
//!   timers, shutdown, health lost).
//! - `effect`: what the shell must do, and the driver-level notifications.
//! - `machine`: `Lifecycle` and its transition function.
//! - `policy`: retry budget, backoff, timeouts, built from config options.
//! - `error`: `DriverError` (fatal or recoverable) and `Refused`.
//! - `invariants`: the safety properties every transition keeps; shared by the
//!   property tests, the simulator and the model checker.

mod effect;
mod error;
mod event;
pub mod invariants;
mod jitter;
mod machine;
mod policy;
mod state;
mod time;

pub use effect::{Effect, Effects, MAX_EFFECTS, Notification};
pub use error::{DriverError, ErrorClass, ErrorText, Refused, Why};
pub use event::{Event, EventName, Timer, TimerKind};
pub use jitter::Jitter;
pub use machine::Lifecycle;
pub use policy::{JITTER_PPM_ONE, MAX_DURATION, Policy, PolicyError, parse_duration};
pub use state::{
    AfterDrain, ConfigId, Draining, Failed, Generation, PendingConfig, Ready, Retry, RollingBack,
    Setup, State, StateName,
};
pub use time::Moment;

/// Serializes a value through its `Display` (errors in traces and snapshots).
fn serialize_display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// [`serialize_display`] for an optional value (`null` when absent).
fn serialize_display_opt<T: std::fmt::Display, S: serde::Serializer>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => serializer.collect_str(v),
        None => serializer.serialize_none(),
    }
}
