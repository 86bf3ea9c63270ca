//! Fleet mode: many hosts on one PostgreSQL. The rolling reload's planner is pure
//! (`rollout`); the records it runs on live in `crate::store`.

#[cfg(feature = "postgres")]
pub mod member;
pub mod rollout;

pub use rollout::{HostPhase, Observation, Outcome, Rollout};
