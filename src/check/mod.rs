//! The model checker: its search over the real transition function lives in
//! `rekindle-core` (re-exported here whole); this module adds what needs the
//! engine: checking the policies of a cinder.conf, and the fuzz entry points.
//!
//! Time is abstracted: events arrive at time zero, and a "late" publisher tick
//! arrives at the end of time (everything due). Timers are events tagged with
//! their generation; stale timers and late results of abandoned setups stay
//! deliverable after the state moved on (the bug class of a stale retry timer
//! starting a second setup). Generations are renamed to a dense canonical
//! order, identical backends are sorted (symmetry reduction), and only the
//! newest stale timers and abandoned setups are kept, so the space is finite.

pub use rekindle_core::check::*;

pub mod config_file;
#[doc(hidden)]
pub mod fuzz;
