//! rekindle: keeps storage drivers alive (re-initialization, reload, export, backup init).
//! The crate root: the layers, from the pure core outwards.
//!
//! # Layout
//! - [`lifecycle`]: the sans-IO driver state machine (`Lifecycle::step`). Imports nothing
//!   from the rest of the crate.
//!
//! See `ARCHITECTURE.md` for the map of layers and what each may import.
//!
//! rekindle keeps storage drivers alive: it re-initializes failed drivers with
//! backoff, reloads config on SIGHUP with a drain, passes the connector to
//! `create_export`, and keeps a backup service down until its driver is set up.
//!
//! The heart is [`lifecycle::Lifecycle::step`], a pure transition function.

#![warn(missing_docs)]

pub mod actors;
pub mod check;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod driver;
pub mod engine;
pub mod event;
pub mod lifecycle;
pub mod manager;
pub mod notify;
pub mod records;
pub mod refusal;
pub mod runtime;
pub mod sim;
pub mod status;
pub mod systemd;

pub use actors::{
    BackendResult, Handles, Operation, OperationError, OperationOutput, ReloadOutcome, ReloadReport,
};
pub use driver::{
    BackupDriver, BackupRecord, Capabilities, ConnectionInfo, Connector, DriverContext,
    DriverEvent, Kind, Volume, VolumeDriver, VolumeId,
};
pub use engine::{Engine, EngineBuilder, EngineError, EngineHandle, JitterSeed, Reload};
pub use event::{Event, Notice};
pub use lifecycle::{DriverError, Policy, StateName};
pub use status::BackendStatus;
