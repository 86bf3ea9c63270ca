//! rekindle keeps storage drivers alive: it re-initializes failed drivers with
//! backoff, reloads config on SIGHUP with a drain (and rolls back), passes the
//! connector to `create_export`, checks and repairs exports, and keeps a backup
//! service down while its store is unreachable.
//!
//! # Quickstart
//!
//! A driver, the builder, one operation, and one of your actors told every
//! event ([`Event`], inside a [`Notice`]). This runs on virtual time, as tests
//! do; in a program, start the engine inside `#[actix::main]`.
//!
//! ```
//! use actix::prelude::*;
//! use async_trait::async_trait;
//! use rekindle::{
//!     Capabilities, ConnectionInfo, Connector, DriverError, Engine, Event, Notice, Operation,
//!     Volume, VolumeDriver,
//! };
//!
//! /// Your driver: only what it must do (the rest has default bodies).
//! struct Array;
//!
//! #[async_trait(?Send)]
//! impl VolumeDriver for Array {
//!     async fn do_setup(&self) -> Result<(), DriverError> { Ok(()) }
//!     async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> {
//!         Ok(Capabilities::default())
//!     }
//!     async fn create_volume(&self, _: &Volume) -> Result<(), DriverError> { Ok(()) }
//!     async fn delete_volume(&self, _: &Volume) -> Result<(), DriverError> { Ok(()) }
//!     async fn create_export(&self, _: &Volume, _: &Connector) -> Result<(), DriverError> {
//!         Ok(())
//!     }
//!     async fn remove_export(&self, _: &Volume) -> Result<(), DriverError> { Ok(()) }
//!     async fn initialize_connection(
//!         &self, _: &Volume, _: &Connector,
//!     ) -> Result<ConnectionInfo, DriverError> {
//!         Ok(ConnectionInfo { driver_volume_type: "array".into(), data: Default::default() })
//!     }
//! }
//!
//! /// One of your actors.
//! struct Audit;
//! impl Actor for Audit { type Context = Context<Self>; }
//! impl Handler<Notice> for Audit {
//!     type Result = ();
//!     fn handle(&mut self, notice: Notice, _: &mut Context<Self>) {
//!         if let Event::DriverInitEnd { attempt } = notice.event {
//!             println!("{:?} ready after attempt {attempt}", notice.backend);
//!         }
//!     }
//! }
//!
//! rekindle::engine::runtime::run_virtual(async {
//!     let engine = Engine::builder()
//!         .volume_backend("array-1", Array)
//!         .subscribe(Audit.start().recipient())
//!         .start()?;
//!     actix::clock::sleep(std::time::Duration::from_secs(1)).await;
//!     let created = engine
//!         .volume("array-1", Operation::CreateVolume(Volume::new("vol-1", 1 << 30)))
//!         .await;
//!     assert!(created.is_ok(), "{created:?}");
//!     engine.shutdown().await;
//!     System::current().stop();
//!     Ok::<(), rekindle::EngineError>(())
//! })
//! .expect("runtime")
//! .expect("engine");
//! ```
//!
//! # Layout
//!
//! One module per layer, inner to outer:
//!
//! - [`lifecycle`]: the sans-IO driver state machine (`Lifecycle::step`), from
//!   the `rekindle-core` crate; it imports nothing of this crate.
//! - [`driver`]: the driver traits ([`VolumeDriver`], [`BackupDriver`]),
//!   their options and registry, and the built-in drivers.
//! - [`records`]: the records interface ([`records::RecordStore`]), its rows,
//!   status words and error; the embedded SQLite store (feature `sqlite`).
//! - [`events`]: what the engine tells the world ([`Event`], [`Notice`]), the
//!   status board and refusals in an operator's words.
//! - [`plan`]: what to run ([`Plan`], [`BackendPlan`]) and the pure reload
//!   decision; [`config`]: cinder.conf to a validated plan.
//! - [`actors`]: the actix shell that performs what the core decides.
//! - [`engine`]: the front door ([`Engine::builder`], [`EngineHandle`]), its
//!   clock and runtimes.
//! - [`operations`]: user operations on volumes and backups, typed, recorded
//!   before they are acknowledged; [`fleet`]: many hosts on one database.
//! - [`sim`] and [`check`]: the simulator and the model checker; `watch`
//!   (feature `http`): metrics and probes.
//!
//! See `ARCHITECTURE.md` for the map of layers and what each may import.
//!
//! # Features
//!
//! `default = []`: the crate is the engine alone: [`lifecycle`],
//! [`driver`] (traits, options, registry, the `fault` driver), [`actors`],
//! [`config`], [`sim`] and [`check`], on actix, tokio, serde, serde_json,
//! thiserror, tracing and humantime (plus `rekindle-core`, the pure core and
//! the checker's search; rust-ini for cinder.conf, strsim,
//! serde_path_to_error, futures-util, async-trait, libc).
//!
//! Each integration is a feature; the `rekindle` binary is its own crate
//! (`rekindle-cli/`: the daemon, its control socket, the commands) and turns
//! on every one.
//!
//! - `cli`: what the binary needs of the engine (the simulator's progress
//!   bars with indicatif, the daemon's hooks); implies `sqlite` and `http`.
//!   What the binary shares with the library (the checker's `export` and
//!   `fuzz`, two hooks on `EngineBuilder`) is hidden from these docs and is
//!   not public API.
//! - `sqlite`: durable records in a bundled SQLite (`records::SqliteStore`)
//!   and the operations' `Manager`, which records operations before
//!   acknowledging them.
//! - `qemu`: the `qemu` volume driver; it records its exports, so it implies `sqlite`.
//! - `posix`: the `posix` backup driver.
//! - `systemd`: sd_notify readiness; without it [`engine::systemd::Systemd`] never sends.
//! - `fleet`: fleet mode whatever the database: `records::FleetStore`, the
//!   fleet's member, listener and rollouts; implies `sqlite`. Turned on by:
//! - `postgres`: fleet records in PostgreSQL (`[database] connection =
//!   postgresql://...`): `records::postgres`.
//! - `mariadb`: fleet records in MariaDB or MySQL (`[database] connection =
//!   mysql+pymysql://...`, Cinder's form): `records::mariadb`, on sqlx.
//! - `http`: the daemon's `http_listen` (`watch::http`): Prometheus metrics
//!   (`watch::metrics`, on prometheus-client) and the `/healthz` and `/readyz`
//!   probes, served by hyper.
//! - `proptest`: `sim::strategy`, proptest strategies over simulations of
//!   your own driver (not in the defaults).

#![warn(missing_docs)]

pub mod actors;
pub mod check;
pub mod config;
pub mod driver;
pub mod engine;
pub mod events;
pub mod fleet;
pub use rekindle_core::lifecycle;
pub mod operations;
pub mod plan;
pub mod records;
pub mod sim;
#[cfg(feature = "http")]
pub mod watch;

pub use actors::{
    BackendResult, Handles, Operation, OperationError, OperationOutput, ReloadOutcome, ReloadReport,
};
pub use driver::{
    BackupDriver, BackupRecord, Capabilities, ConnectionInfo, Connector, DriverContext,
    DriverEvent, DriverEvents, DriverRegistry, DriverSpec, Kind, Volume, VolumeDriver, VolumeId,
};
pub use engine::{Engine, EngineBuilder, EngineError, EngineHandle, JitterSeed, Reload};
pub use events::status::BackendStatus;
pub use events::{Event, Notice};
pub use lifecycle::{DriverError, Policy, StateName};
pub use plan::{BackendPlan, Plan};
