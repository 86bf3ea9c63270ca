//! The `rekindle run` daemon: loads the config, starts the service on the real clock,
//! listens for signals and the control socket, and exits 0 after a graceful shutdown.

use std::path::PathBuf;

use actix::prelude::*;
use thiserror::Error;

use crate::actors::SignalActor;
use crate::actors::signal::SignalListeners;
use crate::systemd::Systemd;

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
    /// The engine cannot start (the notifications file cannot be opened, ...).
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// The control socket cannot be served.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    /// The records database cannot be opened.
    #[error(transparent)]
    Records(#[from] crate::records::RecordsError),
    /// The signal handlers cannot be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The runtime cannot start.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

pub use crate::config::{ConfigSource, EMBEDDED_CONFIG, load_config, load_plan, state_dir};
pub use crate::engine::jitter_seed;

/// Runs the daemon until SIGTERM/SIGINT (or a shutdown request) completes.
///
/// The binary blocks the control signals first thing
/// ([`crate::actors::signal::hold_control_signals`]); their handlers are
/// installed here before the config is read, so a signal at any instant is
/// handled: a SIGHUP during start-up becomes one reload once the service runs,
/// a SIGTERM a graceful shutdown.
pub fn run(options: RunOptions) -> Result<(), DaemonError> {
    crate::runtime::run_real(async move {
        let signals = SignalListeners::install().map_err(DaemonError::Signals)?;
        let config = load_config(&options.config).map_err(DaemonError::Config)?;
        if let Some(configured) = config.service_down_time_raised_from {
            tracing::warn!(
                service_down_time = %humantime::format_duration(configured),
                report_interval = %humantime::format_duration(config.report_interval),
                raised_to = %humantime::format_duration(config.service_down_time),
                "service_down_time is not larger than report_interval; using 2.5 x report_interval, as Cinder does"
            );
        }
        // Bound before anything starts: a busy or impossible path refuses
        // start-up with one line, and no actor is left half-started.
        let control = match &options.control {
            Some(path) => Some(crate::control::ControlSocket::bind(path)?),
            None => None,
        };
        let configured = config.plan().backends.len();
        #[cfg(feature = "postgres")]
        let fleet = config
            .database
            .clone()
            .map(|url| (url, config.service_down_time, config.host.clone()));
        let records = match &config.state_dir {
            Some(dir) => crate::records::Records::open(dir)?,
            None => crate::records::Records::in_memory()?,
        };
        let records = std::rc::Rc::new(records);
        let mut engine = crate::engine::Engine::builder()
            .loaded_config(config, options.config.clone())
            .records(records.clone())
            .systemd(Systemd::from_env());
        if let Some(path) = &options.notifications {
            engine = engine.notifications_file(path);
        }
        let engine = std::rc::Rc::new(engine.start()?);
        let handles = engine.handles().clone();
        // Fleet reload requests (a separate connection pool; retries while
        // the database is down, never stops the daemon).
        #[cfg(feature = "postgres")]
        if let Some((url, service_down_time, host)) = fleet {
            crate::fleet::listener::spawn_connecting(url, service_down_time, host, engine.clone());
        }
        SignalActor::with_listeners(handles.controller.clone().recipient(), signals).start();
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
        if let Some(control) = control {
            control.serve(handles.clone(), Some(manager));
        }
        tracing::info!(backends = configured, "rekindle is running");
        // Resolves after a graceful shutdown (or if the controller is gone).
        engine.stopped().await;
        if let Some(path) = &options.control {
            let _ = std::fs::remove_file(path);
        }
        System::current().stop();
        Ok(())
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_jitter_seed_differs_between_starts_even_on_one_host() {
        // Two daemons started as PID 1 with the same host name.
        let seeds: std::collections::BTreeSet<u64> =
            (0..8).map(|_| jitter_seed(None, "node-1")).collect();
        assert_eq!(seeds.len(), 8, "{seeds:?}");
    }

    #[test]
    fn a_configured_jitter_seed_is_reproducible() {
        let text = "[DEFAULT]\nreinit_backoff_jitter_seed = 42\nenabled_backends = a\n[a]\nvolume_driver = fault\n";
        let config = crate::config::Config::parse(text, "t.conf").expect("valid");
        assert_eq!(config.jitter_seed, Some(42));
        let plan = config.plan();
        assert_eq!(jitter_seed(plan.jitter_seed, "x"), 42);
        assert_eq!(jitter_seed(plan.jitter_seed, "y"), 42);
        let bad = crate::config::Config::parse(&text.replace("= 42", "= soon"), "t.conf")
            .expect_err("not a number");
        assert_eq!(
            bad.to_string(),
            format!(
                "t.conf: [DEFAULT] reinit_backoff_jitter_seed: \"soon\": expected a whole number from 0 to {}",
                u64::MAX
            )
        );
    }

    #[test]
    fn a_raised_service_down_time_is_kept_for_the_start_up_log() {
        let text = "[DEFAULT]\nreport_interval = 10s\nservice_down_time = 5s\nenabled_backends = a\n[a]\nvolume_driver = fault\n";
        let config = crate::config::Config::parse(text, "t.conf").expect("valid");
        assert_eq!(
            config.service_down_time_raised_from,
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(config.service_down_time, std::time::Duration::from_secs(25));
    }
}
