//! The `rekindle run` daemon: loads the config, starts the service on the real clock,
//! listens for signals and the control socket, and exits 0 after a graceful shutdown.

use std::path::PathBuf;

use actix::prelude::*;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::actors::controller::{Loader, Plan};
use crate::actors::{Controller, Shell, SignalActor};
use crate::clock::ServiceClock;
use crate::driver::DriverRegistry;
use crate::notify::Notifier;
use crate::systemd::Systemd;

/// The config shipped in `examples/cinder.conf`, used when no file is given.
pub const EMBEDDED_CONFIG: &str = include_str!("../examples/cinder.conf");

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file, re-read on every reload.
    File(PathBuf),
    /// The embedded default (reload re-reads the same text).
    Embedded,
}

/// `rekindle run` options.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config.
    pub config: ConfigSource,
    /// Append notifications (JSON lines) to this file.
    pub notifications: Option<PathBuf>,
    /// Serve the control socket here.
    pub control: Option<PathBuf>,
}

/// Why the daemon could not run.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The config is invalid at start-up.
    #[error("{0}")]
    Config(String),
    /// The notifications file cannot be opened.
    #[error("notifications file {path}: {source}")]
    Notifications {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The control socket cannot be served.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    /// The records database cannot be opened.
    #[error(transparent)]
    Records(#[from] crate::records::RecordsError),
    /// The runtime cannot start.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// Loads `source` as a plan.
pub fn load_plan(source: &ConfigSource) -> Result<Plan, String> {
    match source {
        ConfigSource::File(path) => crate::config::Config::load(path)
            .map_err(|e| e.to_string())
            .map(|c| c.plan()),
        ConfigSource::Embedded => {
            crate::config::Config::parse(EMBEDDED_CONFIG, "embedded cinder.conf")
                .map_err(|e| e.to_string())
                .map(|c| c.plan())
        }
    }
}

/// The `state_dir` of `source`, if it sets one.
pub fn state_dir(source: &ConfigSource) -> Result<Option<PathBuf>, String> {
    let config = match source {
        ConfigSource::File(path) => crate::config::Config::load(path),
        ConfigSource::Embedded => {
            crate::config::Config::parse(EMBEDDED_CONFIG, "embedded cinder.conf")
        }
    };
    config.map(|c| c.state_dir).map_err(|e| e.to_string())
}

/// Runs the daemon until SIGTERM/SIGINT (or a shutdown request) completes.
pub fn run(options: RunOptions) -> Result<(), DaemonError> {
    let plan = load_plan(&options.config).map_err(DaemonError::Config)?;
    let state_dir = state_dir(&options.config).map_err(DaemonError::Config)?;
    crate::runtime::run_real(async move {
        let clock = ServiceClock::start();
        let notifier = match &options.notifications {
            Some(path) => {
                Notifier::to_file(clock, path).map_err(|source| DaemonError::Notifications {
                    path: path.clone(),
                    source,
                })?
            }
            None => Notifier::in_memory(clock),
        };
        let records = match &state_dir {
            Some(dir) => crate::records::Records::open(dir)?,
            None => crate::records::Records::in_memory()?,
        };
        let records = std::rc::Rc::new(records);
        let mut shell = Shell::new(
            clock,
            notifier,
            DriverRegistry::with_records(Some(records.clone())),
        );
        shell.records = Some(records.clone());
        let source = options.config.clone();
        let loader: Loader = Box::new(move || load_plan(&source));
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let seed = std::process::id().into();
        let handles = Controller::start(
            plan,
            loader,
            shell,
            seed,
            Systemd::from_env(),
            Some(stopped_tx),
        );
        SignalActor::new(handles.controller.clone().recipient()).start();
        let manager = crate::manager::Manager::new(handles.clone(), records);
        let recovering = manager.clone();
        actix::spawn(async move {
            if let Err(error) = recovering
                .recover(std::time::Duration::from_secs(120))
                .await
            {
                tracing::error!(%error, "crash recovery of records failed");
            }
        });
        if let Some(path) = &options.control {
            crate::control::serve(path, handles.clone(), Some(manager))?;
        }
        tracing::info!(
            backends = handles.shell.board.backends().len(),
            "rekindle is running"
        );
        // Resolves after a graceful shutdown (or if the controller is gone).
        let _ = stopped_rx.await;
        if let Some(path) = &options.control {
            let _ = std::fs::remove_file(path);
        }
        System::current().stop();
        Ok(())
    })?
}
