//! The `rekindle run` daemon: loads the config, starts the service on the real clock,
//! listens for signals and the control socket, and exits 0 after a graceful shutdown.

use std::path::PathBuf;

use actix::prelude::*;
use thiserror::Error;

use crate::actors::SignalActor;
use crate::actors::controller::Plan;
use crate::actors::signal::SignalListeners;
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

/// Loads and validates the config `source` names. The error lists every
/// structural problem of the file, one a line. Driver options are not
/// checked here: at start-up an invalid backend fails on its own (the others
/// start), and a reload checks them whole in the controller.
pub fn load_config(source: &ConfigSource) -> Result<crate::config::Config, String> {
    match source {
        ConfigSource::File(path) => crate::config::Config::load_all(path),
        ConfigSource::Embedded => {
            crate::config::Config::parse_all(EMBEDDED_CONFIG, "embedded cinder.conf")
        }
    }
    .map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Loads `source` as a plan (see [`load_config`]).
pub fn load_plan(source: &ConfigSource) -> Result<Plan, String> {
    load_config(source).map(|c| c.plan())
}

/// The `state_dir` of `source`, if it sets one.
pub fn state_dir(source: &ConfigSource) -> Result<Option<PathBuf>, String> {
    load_config(source).map(|c| c.state_dir)
}

/// The service's jitter seed: the config's `reinit_backoff_jitter_seed`
/// when set (reproducible), otherwise OS entropy mixed with `host`, so two
/// hosts (or two containers that are both PID 1) never draw the same retry
/// delays. The controller mixes in each backend's name.
pub fn jitter_seed(fixed: Option<u64>, host: &str) -> u64 {
    if let Some(seed) = fixed {
        return seed;
    }
    let entropy = getrandom::u64().unwrap_or_else(|error| {
        // No OS entropy (a very old kernel): time and process id still
        // differ between hosts and starts.
        tracing::warn!(%error, "no OS entropy for the jitter seed; using time and process id");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    });
    host.bytes().fold(entropy, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

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
        let engine = engine.start()?;
        let handles = engine.handles().clone();
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
