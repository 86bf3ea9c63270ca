//! The pure core of rekindle: a driver's lifecycle as a transition function
//! (`lifecycle::step(state, event, now) -> (state, effects)`), the invariants every
//! transition keeps, and the model checker's search over it.
//!
//! No actor runtime, no clock and no I/O: time is an argument, effects are
//! values the caller carries out. The engine (the `rekindle` crate) runs this
//! core inside actix actors; the simulator and the checker run it on virtual time.
//! This crate's dependencies are the proof: nothing here can spawn, sleep or read
//! a file, because nothing here links a runtime that could.

#![warn(missing_docs)]

pub mod check;
pub mod lifecycle;
