//! Fleet mode: many hosts on one database (PostgreSQL or MariaDB). The rolling reload's
//! planner is pure (`rollout`); the listener, the command's driver and the member beside it.

#[cfg(feature = "fleet")]
pub mod listener;
#[cfg(feature = "fleet")]
pub mod member;
pub mod outcome;
#[cfg(feature = "fleet")]
pub mod pending;
pub mod rollout;

pub use rollout::{HostPhase, Observation, Outcome, Rollout, Wait};
