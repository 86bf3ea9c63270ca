//! Fleet mode: many hosts on one PostgreSQL. The rolling reload's planner is pure
//! (`rollout`); the daemon's listener, the command's driver and the records live beside it.

#[cfg(feature = "postgres")]
// Plumbing of the `rekindle` binary, not public API: hidden, may change.
#[doc(hidden)]
pub mod command;
#[cfg(feature = "postgres")]
pub mod listener;
#[cfg(feature = "postgres")]
pub mod member;
pub mod outcome;
#[cfg(feature = "postgres")]
pub mod pending;
pub mod rollout;

pub use rollout::{HostPhase, Observation, Outcome, Rollout, Wait};
