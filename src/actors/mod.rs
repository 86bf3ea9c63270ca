//! The actor shell on actix: one `DriverActor` per backend performs the core's effects;
//! the `Publisher`, `SignalActor` and `Controller` drive them with messages.
//!
//! Rules every actor here keeps: no handler awaits a reply from its own
//! address or from an actor that may call back into it; driver calls run as
//! spawned futures, never blocking the arbiter; mailboxes are bounded
//! ([`MAILBOX_CAPACITY`]) and a message that does not fit is counted and
//! logged, never dropped silently.

pub mod controller;
pub mod driver_actor;
mod driver_call;
mod operation;
pub mod publisher;
pub mod scheduler;
pub mod service;
pub mod signal;

pub use controller::{
    BackendResult, Controller, Handles, Plan, PlanDiff, ReloadOutcome, ReloadReport,
};
pub use driver_actor::{
    DriverActor, Operation, OperationError, OperationOutput, OperationResponse, Shell,
};
pub use publisher::Publisher;
pub use scheduler::Scheduler;
pub use service::Service;
pub use signal::SignalActor;

/// Mailbox capacity of every actor rekindle starts.
pub const MAILBOX_CAPACITY: usize = 256;
