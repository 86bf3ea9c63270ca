//! The `rekindle run` daemon: loads the config, starts the service on the real clock,
//! listens for signals and the control socket, and exits 0 after a graceful shutdown.

use std::path::PathBuf;

use actix::prelude::*;
use thiserror::Error;

use rekindle::actors::SignalActor;
use rekindle::actors::signal::SignalListeners;
use rekindle::engine::systemd::Systemd;

/// `rekindle run` options.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config.
    pub config: ConfigSource,
    /// Append notifications (JSON lines) to this file.
    pub notifications: Option<PathBuf>,
    /// Serve the control socket here.
    pub control: Option<PathBuf>,
    /// Serve `/metrics`, `/healthz` and `/readyz` here (`--http-listen`:
    /// overrides the config's `http_listen`, which reloads then leave be).
    pub http_listen: Option<std::net::SocketAddr>,
}

/// Why the daemon could not run.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The config is invalid at start-up.
    #[error("{0}")]
    Config(String),
    /// The engine cannot start (the notifications file cannot be opened, ...).
    #[error(transparent)]
    Engine(#[from] rekindle::engine::EngineError),
    /// The control socket cannot be served.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    /// The records database cannot be opened.
    #[error(transparent)]
    Records(#[from] rekindle::records::RecordsError),
    /// The state dir is another daemon's, or cannot be made.
    #[error(transparent)]
    StateDir(#[from] rekindle::records::state_dir::StateDirError),
    /// The outcomes a fleet host kept for the database cannot be read.
    #[cfg(feature = "fleet")]
    #[error(transparent)]
    Pending(#[from] rekindle::fleet::pending::PendingError),
    /// The HTTP listener cannot listen where it was told to.
    #[error(transparent)]
    Http(#[from] rekindle::watch::http::HttpError),
    /// The signal handlers cannot be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The runtime cannot start.
    #[error(transparent)]
    Runtime(#[from] rekindle::engine::runtime::RuntimeError),
}

pub use rekindle::config::{ConfigSource, load_config};

/// Runs the daemon until SIGTERM/SIGINT (or a shutdown request) completes.
///
/// The binary blocks the control signals first thing
/// ([`rekindle::actors::signal::hold_control_signals`]); their handlers are
/// installed here before the config is read, so a signal at any instant is
/// handled: a SIGHUP during start-up becomes one reload once the service runs,
/// a SIGTERM a graceful shutdown.
pub fn run(options: RunOptions) -> Result<(), DaemonError> {
    rekindle::engine::runtime::run_real(async move {
        let signals = SignalListeners::install().map_err(DaemonError::Signals)?;
        let config = load_config(&options.config).map_err(DaemonError::Config)?;
        warn_if_raised(&config);
        // The state dir is this daemon's before anything reads or changes
        // it (recovery, exports): a second daemon on it exits here.
        let _state_dir = match &config.state_dir {
            Some(dir) => Some(rekindle::records::state_dir::StateDirLock::acquire(dir)?),
            None => None,
        };
        // Bound before anything starts: a busy or impossible path refuses
        // start-up with one line, and no actor is left half-started.
        let http_listen = options.http_listen.or(config.http_listen);
        let (control, http) = bind(options.control.as_deref(), http_listen)?;
        let configured = config.plan().backends.len();
        #[cfg(feature = "fleet")]
        let fleet = config
            .database
            .clone()
            .map(|url| (url, config.service_down_time, config.host.clone()));
        let records = std::rc::Rc::new(open_records(config.state_dir.as_deref())?);
        // In a fleet, the host joins the database in the background: the
        // drivers start at once, operations are refused naming the database
        // until it answers, and its service rows go there from then on.
        #[cfg(feature = "fleet")]
        let fleet_mode = config.database.is_some();
        // Outcomes the database did not answer last time, read before
        // anything runs: a damaged file stops the start (it is never
        // overwritten unread).
        #[cfg(feature = "fleet")]
        let pending = match (&config.database, &config.state_dir) {
            (Some(_), Some(dir)) => rekindle::fleet::pending::PendingOutcomes::open(dir)?,
            _ => rekindle::fleet::pending::PendingOutcomes::in_memory(),
        };
        #[cfg(feature = "fleet")]
        let joining = config.database.clone().map(|url| {
            let rows: RowSlot = std::rc::Rc::default();
            (url, config.clone(), rows)
        });
        let intervals = (config.report_interval, config.service_down_time);
        // `http_listen` as each reload read it (the engine reads the file
        // once per reload; nothing here reads it again).
        let reloaded_http_listen: ReloadedHttpListen = std::rc::Rc::default();
        #[cfg(feature = "fleet")]
        let rows = joining.as_ref().map(|(_, _, rows)| rows.clone());
        #[cfg(not(feature = "fleet"))]
        let rows = None;
        let engine = start_engine(
            config,
            &options,
            records.clone(),
            rows,
            &reloaded_http_listen,
        )?;
        let handles = engine.handles().clone();
        let metrics = start_watching(
            &handles,
            http,
            options
                .http_listen
                .is_none()
                .then_some((reloaded_http_listen, http_listen)),
        )?;
        // Fleet reload requests (a separate connection pool; retries while
        // the database is down, never stops the daemon).
        #[cfg(feature = "fleet")]
        if let Some((url, service_down_time, host)) = fleet {
            rekindle::fleet::listener::spawn_connecting(
                url,
                service_down_time,
                host,
                engine.clone(),
            );
        }
        SignalActor::with_listeners(handles.controller.clone().recipient(), signals).start();
        #[cfg(feature = "fleet")]
        let manager = match joining {
            Some((url, config, rows)) => {
                let manager =
                    rekindle::operations::Manager::waiting_for_fleet(handles.clone(), &url);
                spawn_join(url, config, rows, pending, manager.clone(), handles.clone());
                manager
            }
            None => rekindle::operations::Manager::new(handles.clone(), records.clone()),
        };
        #[cfg(not(feature = "fleet"))]
        let manager = rekindle::operations::Manager::new(handles.clone(), records.clone());
        spawn_metrics_refresh(
            metrics.clone(),
            manager.clone(),
            records.clone(),
            handles.shell.board.clone(),
            intervals,
        );
        #[cfg(feature = "fleet")]
        let recover_now = !fleet_mode;
        #[cfg(not(feature = "fleet"))]
        let recover_now = true;
        if recover_now {
            spawn_recovery(manager.clone());
        }
        if let Some(control) = control {
            control
                .with_metrics(metrics.clone())
                .serve(handles.clone(), Some(manager));
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

/// The embedded records in `state_dir` (in memory without one).
fn open_records(
    state_dir: Option<&std::path::Path>,
) -> Result<rekindle::records::SqliteStore, DaemonError> {
    Ok(match state_dir {
        Some(dir) => rekindle::records::SqliteStore::open(dir)?,
        None => rekindle::records::SqliteStore::in_memory()?,
    })
}

/// Says that `service_down_time` was raised, as Cinder does, when the file
/// set it no larger than `report_interval`.
fn warn_if_raised(config: &rekindle::config::Config) {
    if let Some(configured) = config.service_down_time_raised_from {
        tracing::warn!(
            service_down_time = %humantime::format_duration(configured),
            report_interval = %humantime::format_duration(config.report_interval),
            raised_to = %humantime::format_duration(config.service_down_time),
            "service_down_time is not larger than report_interval; using 2.5 x report_interval, as Cinder does"
        );
    }
}

/// Binds the control socket at `control` and the HTTP listener at
/// `http_listen`, each when given.
fn bind(
    control: Option<&std::path::Path>,
    http_listen: Option<std::net::SocketAddr>,
) -> Result<
    (
        Option<crate::control::ControlSocket>,
        Option<rekindle::watch::http::HttpListener>,
    ),
    DaemonError,
> {
    let control = match control {
        Some(path) => Some(crate::control::ControlSocket::bind(path)?),
        None => None,
    };
    let http = match http_listen {
        Some(address) => Some(rekindle::watch::http::HttpListener::bind(address)?),
        None => None,
    };
    Ok((control, http))
}

/// Starts the engine on `config` (as loaded from `options.config`), its
/// records, `rows` (a fleet's service-row sink, once joined) and the
/// `http_listen` each reload reads.
fn start_engine(
    config: rekindle::config::Config,
    options: &RunOptions,
    records: std::rc::Rc<rekindle::records::SqliteStore>,
    rows: Option<RowSlot>,
    reloaded_http_listen: &ReloadedHttpListen,
) -> Result<std::rc::Rc<rekindle::EngineHandle>, DaemonError> {
    let mut engine = rekindle::engine::Engine::builder()
        .loaded_config(config, options.config.clone())
        .records(records.clone())
        .systemd(Systemd::from_env());
    if let Some(rows) = rows {
        engine = engine.service_rows(move |beats| {
            if let Some(sink) = rows.borrow().as_ref() {
                sink(beats)
            }
        });
    }
    if options.http_listen.is_none() {
        let latest = reloaded_http_listen.clone();
        engine = engine.on_config_reloaded(move |config| latest.set(Some(config.http_listen)));
    }
    if let Some(path) = &options.notifications {
        engine = engine.notifications_file(path);
    }
    Ok(std::rc::Rc::new(engine.start()?))
}

/// Starts the metrics (counting every notification from here on) and the
/// HTTP listener when one is bound, which `follow` (the address each
/// reload reads, and the one started with) moves when a reload changes it.
fn start_watching(
    handles: &rekindle::Handles,
    http: Option<rekindle::watch::http::HttpListener>,
    follow: Option<(ReloadedHttpListen, Option<std::net::SocketAddr>)>,
) -> Result<std::rc::Rc<rekindle::watch::metrics::Metrics>, DaemonError> {
    // Metrics count every notification from here on; the HTTP listener
    // (when configured) serves them with the probes.
    let metrics = std::rc::Rc::new(rekindle::watch::metrics::Metrics::new(
        handles.shell.board.clone(),
        handles.shell.clock,
    ));
    {
        let metrics = metrics.clone();
        handles
            .shell
            .notifier
            .on_notice(move |notice| metrics.observe(notice));
    }
    let serving = match http {
        Some(listener) => Some(listener.serve(handles.clone(), metrics.clone())?),
        None => None,
    };
    if let Some((reloaded_http_listen, http_listen)) = follow {
        follow_http_listen(
            reloaded_http_listen,
            http_listen,
            serving,
            handles.clone(),
            metrics.clone(),
        );
    }
    Ok(metrics)
}

/// Runs crash recovery of this host's records (retried for up to two
/// minutes while the backends come up).
fn spawn_recovery(manager: rekindle::operations::Manager) {
    actix::spawn(async move {
        if let Err(error) = manager.recover(std::time::Duration::from_secs(120)).await {
            tracing::error!(%error, "crash recovery of records failed");
        }
    });
}

/// Every `report_interval`, tells the metrics what only the records know:
/// how many exports this host holds and, once it has joined a fleet, the
/// fleet's hosts and rollouts and this host's fencing (the last answer is
/// kept while the database does not answer).
fn spawn_metrics_refresh(
    metrics: std::rc::Rc<rekindle::watch::metrics::Metrics>,
    manager: rekindle::operations::Manager,
    records: std::rc::Rc<dyn rekindle::records::RecordStore>,
    board: rekindle::events::status::StatusBoard,
    (report_interval, service_down_time): (std::time::Duration, std::time::Duration),
) {
    let _ = (&manager, service_down_time);
    actix::spawn(async move {
        let mut ticks = actix::clock::interval(report_interval);
        #[cfg(feature = "fleet")]
        let mut fleet = rekindle::watch::metrics::FleetView::default();
        loop {
            ticks.tick().await;
            let mut exports = Some(0);
            for backend in board.backends() {
                if backend.kind != rekindle::driver::Kind::Volume {
                    continue;
                }
                exports = match (exports, records.exports(&backend.name).await) {
                    (Some(n), Ok(rows)) => Some(n + rows.len() as u64),
                    _ => None,
                };
            }
            metrics.set_exports_alive(exports);
            #[cfg(feature = "fleet")]
            if let Some(member) = manager.member() {
                let store = member.store();
                if let Ok(hosts) = store.fleet_hosts(service_down_time).await {
                    fleet.hosts_up = hosts.iter().filter(|h| h.alive).count() as u64;
                    fleet.hosts_down = hosts.len() as u64 - fleet.hosts_up;
                }
                if let Ok(rollouts) = store.rollouts().await {
                    fleet.rollouts_running = rollouts
                        .iter()
                        .filter(|r| r.state == rekindle::records::rollouts::RolloutState::Running)
                        .count() as u64;
                }
                fleet.fenced = member.fenced().is_some();
                fleet.heartbeat_round_trip = member.renewal_round_trip().map(|d| d.as_secs_f64());
                fleet.superseded_writes = member.superseded_writes();
                metrics.set_fleet(fleet.clone());
            }
        }
    });
}

/// `http_listen` as the last reload read it (`None` until one does).
type ReloadedHttpListen = std::rc::Rc<std::cell::Cell<Option<Option<std::net::SocketAddr>>>>;

/// Moves the HTTP listener when a reload changes `http_listen` (and only
/// then), once the reload ended, as the engine's reload read the file (never
/// read twice: a file changed in between, or a FIFO, cannot disagree); an
/// address that cannot be bound is logged and the old listener keeps serving.
fn follow_http_listen(
    reloaded: ReloadedHttpListen,
    configured: Option<std::net::SocketAddr>,
    serving: Option<rekindle::watch::http::Serving>,
    handles: rekindle::actors::Handles,
    metrics: std::rc::Rc<rekindle::watch::metrics::Metrics>,
) {
    let state = std::rc::Rc::new(std::cell::RefCell::new((configured, serving)));
    let notifier = handles.shell.notifier.clone();
    notifier.on_notice(move |notice| {
        if !matches!(notice.event, rekindle::events::Event::ReloadEnd(_)) {
            return;
        }
        // A reload whose file did not load leaves the listener as it is.
        let Some(wanted) = reloaded.take() else {
            return;
        };
        let (state, handles, metrics) = (state.clone(), handles.clone(), metrics.clone());
        actix::spawn(async move {
            if wanted == state.borrow().0 {
                return;
            }
            let next = match wanted {
                Some(address) => match rekindle::watch::http::HttpListener::bind(address)
                    .and_then(|l| l.serve(handles, metrics))
                {
                    Ok(serving) => Some(serving),
                    Err(error) => {
                        tracing::error!(%error, "the reload changed http_listen, but the new address cannot be used: the old listener keeps serving");
                        return;
                    }
                },
                None => None,
            };
            let mut state = state.borrow_mut();
            if let Some(old) = state.1.take() {
                tracing::info!(address = %old.address(), "http_listen changed by a reload: the old listener stops");
                old.stop();
            }
            *state = (wanted, next);
        });
    });
}

/// Where the engine's service rows go once the host has joined its fleet.
type RowSlot = std::rc::Rc<
    std::cell::RefCell<Option<Box<dyn Fn(&[rekindle::events::status::ServiceBeat<'_>])>>>,
>;

/// Joins the fleet database in the background: a database that does not
/// answer (not up yet, an outage) is retried every 2 s with one log line
/// each time, and one that refuses this host (a schema problem) every 10 s;
/// the daemon keeps running either way. Once joined, service rows go there,
/// the manager runs on its records, this host's own stale work is resolved
/// and dead members' work is claimed.
#[cfg(feature = "fleet")]
fn spawn_join(
    url: String,
    config: rekindle::config::Config,
    rows: RowSlot,
    pending: rekindle::fleet::pending::PendingOutcomes,
    manager: rekindle::operations::Manager,
    handles: rekindle::actors::Handles,
) {
    use rekindle::records::RecordsError;
    actix::spawn(async move {
        let mut pending = Some(pending);
        let member = loop {
            match rekindle::fleet::member::Member::join(
                &url,
                &config.host,
                config.cluster.as_deref(),
                config.service_down_time,
            )
            .await
            {
                Ok(member) => {
                    break std::rc::Rc::new(
                        member
                            .keeping_outcomes(pending.take().unwrap_or_default())
                            .renewing_every(config.report_interval, config.service_down_time),
                    );
                }
                Err(error @ RecordsError::Unavailable { .. }) => {
                    tracing::warn!(%error, "waiting for the fleet database");
                    actix::clock::sleep(std::time::Duration::from_secs(2)).await;
                }
                Err(error) => {
                    tracing::error!(%error, "the fleet database refused this host; retrying");
                    actix::clock::sleep(std::time::Duration::from_secs(10)).await;
                }
            }
        };
        tracing::info!(host = %member.host(), cluster = %member.cluster(), epoch = member.epoch().0, "joined the fleet");
        // The fleet sees this host once its rows are in the database: the
        // rows it last heartbeated go there before `status` reads the
        // fleet's (else this host would be missing from it until its next
        // heartbeat).
        let own = handles.shell.board.services();
        let puts: Vec<rekindle::records::ServicePut<'_>> = own
            .iter()
            .map(|s| rekindle::records::ServicePut {
                backend: &s.backend,
                binary: &s.binary,
                host: &s.host,
                state: &s.state,
            })
            .collect();
        if let Err(error) = member.store().put_services(&puts).await {
            tracing::warn!(%error, "cannot write this host's service rows yet; its next heartbeat tries again");
        }
        *rows.borrow_mut() = Some(Box::new(member.row_sink()));
        manager.joined(member.clone());
        spawn_claims(
            member.clone(),
            handles,
            (config.report_interval, config.service_down_time),
        );
        // Recovery of this host's own work (the outcomes the last run kept
        // first), tried again until it is done; then outcomes the database
        // did not answer are written as soon as it answers, oldest first
        // (only once recovered: until then, work of the last run is still
        // under its old epoch, which no fenced write of this one matches).
        let mut recovered = false;
        let mut ticks = actix::clock::interval(std::time::Duration::from_secs(1));
        loop {
            ticks.tick().await;
            if !recovered {
                match manager.recover(std::time::Duration::from_secs(120)).await {
                    Ok(()) => recovered = true,
                    Err(error) => {
                        tracing::error!(%error, "recovery of this host's own work failed; trying again")
                    }
                }
                continue;
            }
            if member.pending().is_empty() {
                continue;
            }
            if let Err(error) = member.write_pending().await {
                tracing::error!(%error, "cannot update the pending outcomes in the state dir");
            }
        }
    });
}

/// Every `report_interval`, claims and resolves the work of members of
/// this host's cluster that have been down for `service_down_time` (by the
/// database's clock). A database that does not answer is tried again next
/// time.
#[cfg(feature = "fleet")]
fn spawn_claims(
    member: std::rc::Rc<rekindle::fleet::member::Member>,
    handles: rekindle::actors::Handles,
    (report_interval, service_down_time): (std::time::Duration, std::time::Duration),
) {
    actix::spawn(async move {
        let mut ticks = actix::clock::interval(report_interval);
        loop {
            ticks.tick().await;
            let now = handles.shell.clock.now();
            if let Err(error) = member
                .claim_dead_work(service_down_time, &handles.shell.notifier, now)
                .await
            {
                tracing::warn!(%error, "cannot claim dead members' work now; trying again");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use rekindle::engine::jitter_seed;

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
        let config = rekindle::config::Config::parse(text, "t.conf").expect("valid");
        assert_eq!(config.jitter_seed, Some(42));
        let plan = config.plan();
        assert_eq!(jitter_seed(plan.jitter_seed, "x"), 42);
        assert_eq!(jitter_seed(plan.jitter_seed, "y"), 42);
        let bad = rekindle::config::Config::parse(&text.replace("= 42", "= soon"), "t.conf")
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
        let config = rekindle::config::Config::parse(text, "t.conf").expect("valid");
        assert_eq!(
            config.service_down_time_raised_from,
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(config.service_down_time, std::time::Duration::from_secs(25));
    }
}
