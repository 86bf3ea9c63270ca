//! The front door: [`Engine::builder`] assembles a service (drivers, policy, a config
//! file or an in-code plan, subscribers) and starts it in the running actix `System`.
//!
//! ```no_run
//! # use rekindle::{Engine, Policy};
//! # async fn demo(driver: impl rekindle::VolumeDriver + 'static) -> Result<(), rekindle::EngineError> {
//! let engine = Engine::builder()
//!     .host("node-1")
//!     .volume_backend("array-1", driver)
//!     .policy(Policy::default())
//!     .start()?;
//! engine.shutdown().await;
//! # Ok(()) }
//! ```

pub mod clock;
pub mod runtime;
pub mod systemd;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use thiserror::Error;
use tokio::sync::watch;

use crate::actors::controller::{GetPlan, RequestReloadAndWait};
use crate::actors::service::Route;
use crate::actors::signal::ControlSignal;
use crate::actors::{Controller, Handles, Operation, OperationError, OperationOutput, Shell};
use crate::config::ConfigSource;
use crate::driver::options::OptionDecl;
use crate::driver::registry::AnyDriver;
use crate::driver::{BackupDriver, DriverContext, DriverRegistry, DriverSpec, Kind, VolumeDriver};
use crate::engine::clock::ServiceClock;
use crate::engine::systemd::Systemd;
use crate::events::Notice;
use crate::events::notify::Notifier;
use crate::events::status::BackendStatus;
use crate::lifecycle::{DriverError, Policy};
use crate::plan::{BackendPlan, Loader, Plan};

/// A fixed seed for the retry jitter (`reinit_backoff_jitter_seed`), for
/// reproducible runs. Without one, each start draws its seed from OS entropy
/// mixed with the host name, so hosts never retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterSeed(pub u64);

/// Why an engine could not start or a request could not be made.
#[derive(Debug, Error)]
pub enum EngineError {
    /// `start` was called outside a running actix `System`.
    #[error(
        "Engine::start must be called inside a running actix System (System::new().block_on(...) or #[actix::main])"
    )]
    NoSystem,
    /// The config file is invalid: every problem, one a line.
    #[error("{0}")]
    Config(String),
    /// Neither a config file nor any backend was given.
    #[error("no backends: add one with volume_backend / backup_backend, or give a config_file")]
    NoBackends,
    /// Two backends were given the same name.
    #[error("backend {0:?} is defined twice")]
    DuplicateBackend(String),
    /// A policy was given for a backend that is not defined.
    #[error("a policy is given for backend {0:?}, which is not defined")]
    UnknownBackend(String),
    /// The notifications file cannot be opened.
    #[error("notifications file {path}: {source}")]
    Notifications {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The engine has stopped: nothing answers requests any more.
    #[error("the engine has stopped")]
    Stopped,
}

/// Where a new configuration comes from on [`EngineHandle::reload`].
#[derive(Debug, Clone)]
pub enum Reload {
    /// Re-read the config the engine runs on (its file or loader; an
    /// in-code plan reloads as it is, which re-initializes backends that are
    /// not Ready).
    Current,
    /// Switch to this config file (and re-read it on later reloads).
    ConfigFile(PathBuf),
    /// Switch to this in-code plan (start from [`EngineHandle::plan`]).
    Plan(Box<Plan>),
}

type Registration = Box<dyn FnOnce(&mut DriverRegistry)>;

/// Your own config source: read at start and on every reload.
type PlanLoader = Rc<dyn Fn() -> Result<Plan, String>>;

/// Told every config the engine reads from its file (start-up aside, once
/// per reload), so the daemon never reads the file a second time.
type ConfigSeen = Rc<dyn Fn(&crate::config::Config)>;

/// Builds an [`EngineHandle`]; see [`Engine::builder`].
pub struct EngineBuilder {
    host: String,
    source: Option<ConfigSource>,
    loaded: Option<crate::config::Config>,
    config_seen: Option<ConfigSeen>,
    loader: Option<PlanLoader>,
    registry: Option<DriverRegistry>,
    backends: Vec<(String, Kind)>,
    registrations: Vec<Registration>,
    policy: Policy,
    backend_policy: BTreeMap<String, Policy>,
    periodic_interval: Duration,
    report_interval: Duration,
    service_down_time: Duration,
    jitter_seed: Option<JitterSeed>,
    subscribers: Vec<Recipient<Notice>>,
    service_rows: Option<crate::actors::service::RowSink>,
    notifications_file: Option<PathBuf>,
    clock: Option<ServiceClock>,
    systemd: Systemd,
    #[cfg(feature = "sqlite")]
    records: Option<(
        Rc<dyn crate::records::RecordStore>,
        Rc<dyn crate::records::ServiceRows>,
    )>,
}

/// The engine: [`Engine::builder`] is where every embedding starts.
pub struct Engine;

impl Engine {
    /// A builder with Cinder's defaults: host `localhost`, the default
    /// [`Policy`] (`reinit_driver_count` 3, backoff 1s, 2s, 4s, ... capped
    /// and jittered), `periodic_interval` 60s, `report_interval` 10s,
    /// `service_down_time` 60s, the built-in drivers registered.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            host: "localhost".to_string(),
            source: None,
            loaded: None,
            config_seen: None,
            loader: None,
            registry: None,
            backends: Vec::new(),
            registrations: Vec::new(),
            policy: Policy::default(),
            backend_policy: BTreeMap::new(),
            periodic_interval: Duration::from_secs(60),
            report_interval: Duration::from_secs(10),
            service_down_time: Duration::from_secs(60),
            jitter_seed: None,
            subscribers: Vec::new(),
            service_rows: None,
            notifications_file: None,
            clock: None,
            systemd: Systemd::disabled(),
            #[cfg(feature = "sqlite")]
            records: None,
        }
    }
}

impl EngineBuilder {
    /// This host's name (service rows are `host@backend`). In-code plans only;
    /// a config file says it with `host`.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// A volume backend named `name` served by `driver` (the same instance
    /// is set up again on every re-initialization and reload).
    pub fn volume_backend(self, name: &str, driver: impl VolumeDriver + 'static) -> Self {
        let driver: Rc<dyn VolumeDriver> = Rc::new(driver);
        self.backend(name, Kind::Volume, move |_| {
            Ok(AnyDriver::Volume(driver.clone()))
        })
    }

    /// A volume backend built by `factory` on every setup (a fresh instance
    /// each time; the context carries the backend's options and an event sink).
    /// A factory error is the setup's error (its class decides retry or fatal).
    pub fn volume_backend_with<D: VolumeDriver + 'static>(
        self,
        name: &str,
        factory: impl Fn(&DriverContext) -> Result<D, DriverError> + 'static,
    ) -> Self {
        self.backend(name, Kind::Volume, move |ctx| {
            factory(ctx).map(|d| AnyDriver::Volume(Rc::new(d)))
        })
    }

    /// A backup backend named `name` served by `driver`. Backup operations
    /// on the daemon's control socket use the backend named `backup`
    /// ([`crate::config::BACKUP_BACKEND`]).
    pub fn backup_backend(self, name: &str, driver: impl BackupDriver + 'static) -> Self {
        let driver: Rc<dyn BackupDriver> = Rc::new(driver);
        self.backend(name, Kind::Backup, move |_| {
            Ok(AnyDriver::Backup(driver.clone()))
        })
    }

    /// A backup backend built by `factory` on every setup.
    pub fn backup_backend_with<D: BackupDriver + 'static>(
        self,
        name: &str,
        factory: impl Fn(&DriverContext) -> Result<D, DriverError> + 'static,
    ) -> Self {
        self.backend(name, Kind::Backup, move |ctx| {
            factory(ctx).map(|d| AnyDriver::Backup(Rc::new(d)))
        })
    }

    fn backend(
        mut self,
        name: &str,
        kind: Kind,
        factory: impl Fn(&DriverContext) -> Result<AnyDriver, DriverError> + 'static,
    ) -> Self {
        // The backend's own driver entry, named after it.
        let driver = engine_driver_name(name);
        self.registrations.push(Box::new(move |registry| {
            registry.register(kind, &driver, &[], factory);
        }));
        self.backends.push((name.to_string(), kind));
        self
    }

    /// Registers a driver under `name` for config files to use
    /// (`volume_driver = name` / `backup_driver = name`), with the options
    /// it reads (checked before it is built; see [`OptionDecl`]).
    pub fn driver(
        mut self,
        kind: Kind,
        name: &str,
        options: &'static [OptionDecl],
        factory: impl Fn(&DriverContext) -> Result<AnyDriver, DriverError> + 'static,
    ) -> Self {
        let name = name.to_string();
        self.registrations.push(Box::new(move |registry| {
            registry.register(kind, &name, options, factory);
        }));
        self
    }

    /// The lifecycle policy of every in-code backend without its own.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The lifecycle policy of one in-code backend.
    pub fn backend_policy(mut self, name: &str, policy: Policy) -> Self {
        self.backend_policy.insert(name.to_string(), policy);
        self
    }

    /// Read the backends, policies and service options from a cinder.conf
    /// file instead (re-read on every reload). In-code backends are not
    /// allowed with it; register drivers the file names with [`Self::driver`].
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Some(ConfigSource::File(path.into()));
        self
    }

    /// Read the plan from your own source instead (a config service, a
    /// database): `loader` runs at start and on every reload; an `Err` (the
    /// problems, one a line) rejects that reload as a bad file would, and
    /// fails the start.
    pub fn plan_loader(mut self, loader: impl Fn() -> Result<Plan, String> + 'static) -> Self {
        self.loader = Some(Rc::new(loader));
        self
    }

    /// Start from this registry instead of the built-in drivers (in-code
    /// backends and [`Self::driver`] registrations are added to it).
    pub fn registry(mut self, registry: DriverRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The daemon's path: a config already loaded (and logged) from `source`.
    /// Plumbing of the `rekindle` binary, not public API: hidden, may change.
    #[cfg(feature = "cli")]
    #[doc(hidden)]
    pub fn loaded_config(mut self, config: crate::config::Config, source: ConfigSource) -> Self {
        self.loaded = Some(config);
        self.source = Some(source);
        self
    }

    /// The daemon's path: `seen` gets each config a reload reads from the
    /// file (the file is read once per reload, by the engine).
    /// Plumbing of the `rekindle` binary, not public API: hidden, may change.
    #[cfg(feature = "cli")]
    #[doc(hidden)]
    pub fn on_config_reloaded(mut self, seen: impl Fn(&crate::config::Config) + 'static) -> Self {
        self.config_seen = Some(Rc::new(seen));
        self
    }

    /// How often the publisher ticks (re-initialization, stats, probes,
    /// export checks). In-code plans only.
    pub fn periodic_interval(mut self, every: Duration) -> Self {
        self.periodic_interval = every;
        self
    }

    /// How often service rows are stamped. In-code plans only.
    pub fn report_interval(mut self, every: Duration) -> Self {
        self.report_interval = every;
        self
    }

    /// How long a passing state keeps a service row up. In-code plans only.
    pub fn service_down_time(mut self, after: Duration) -> Self {
        self.service_down_time = after;
        self
    }

    /// A fixed jitter seed (reproducible retry delays).
    pub fn jitter_seed(mut self, seed: JitterSeed) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Delivers every event to `recipient` as a [`Notice`] (bounded: a full
    /// mailbox drops the notice for that subscriber, counted and logged,
    /// never blocking a driver).
    pub fn subscribe(mut self, recipient: Recipient<Notice>) -> Self {
        self.subscribers.push(recipient);
        self
    }

    /// Appends every event as a JSON line to `path`.
    pub fn notifications_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.notifications_file = Some(path.into());
        self
    }

    /// The service clock (tests and simulations pass one on virtual time).
    pub fn clock(mut self, clock: ServiceClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Tells `sink` every service row (backend, binary, host, up) at each
    /// heartbeat (`report_interval`) and whenever one changes: how fleet
    /// records, or your own monitoring, follow them. Called on the
    /// service's actor: it must not block.
    pub fn service_rows(
        mut self,
        sink: impl Fn(&[crate::events::status::ServiceBeat<'_>]) + 'static,
    ) -> Self {
        self.service_rows = Some(Rc::new(sink));
        self
    }

    /// Report readiness and status to systemd (`sd_notify`).
    pub fn systemd(mut self, systemd: Systemd) -> Self {
        self.systemd = systemd;
        self
    }

    /// Durable records: this host's service rows, written on each
    /// heartbeat, and the qemu driver's exports (a
    /// [`crate::records::SqliteStore`], or your own store). Feature `sqlite`.
    #[cfg(feature = "sqlite")]
    pub fn records<R>(mut self, records: Rc<R>) -> Self
    where
        R: crate::records::RecordStore + crate::records::ServiceRows + 'static,
    {
        self.records = Some((records.clone(), records));
        self
    }

    /// Starts the service in the current actix `System`: one actor per
    /// backend (each set up at once), the publisher, the service front and
    /// the controller.
    ///
    /// # Errors
    /// [`EngineError::NoSystem`] outside a running `System`; `Config` for
    /// an invalid file; `NoBackends`, `DuplicateBackend`, `UnknownBackend`
    /// for an in-code plan that does not add up; `Notifications` when the
    /// file cannot be opened.
    pub fn start(self) -> Result<EngineHandle, EngineError> {
        if System::try_current().is_none() {
            return Err(EngineError::NoSystem);
        }
        let (plan, source) = self.plan()?;
        let clock = self.clock.unwrap_or_else(ServiceClock::start);
        let notifier = match &self.notifications_file {
            Some(path) => {
                Notifier::to_file(clock, path).map_err(|source| EngineError::Notifications {
                    path: path.clone(),
                    source,
                })?
            }
            None => Notifier::in_memory(clock),
        };
        for subscriber in self.subscribers {
            notifier.subscribe(subscriber);
        }
        #[cfg(feature = "sqlite")]
        let builtin = || DriverRegistry::with_records(self.records.as_ref().map(|r| r.0.clone()));
        #[cfg(not(feature = "sqlite"))]
        let builtin = DriverRegistry::with_builtin;
        let mut registry = self.registry.unwrap_or_else(builtin);
        for registration in self.registrations {
            registration(&mut registry);
        }
        let mut shell = Shell::new(clock, notifier, registry);
        shell.service_rows = self.service_rows;
        #[cfg(feature = "sqlite")]
        let shell = Shell {
            records: self.records.map(|r| r.1),
            ..shell
        };
        let seed = jitter_seed(
            self.jitter_seed.map(|s| s.0).or(plan.jitter_seed),
            &plan.host,
        );
        let source = Rc::new(RefCell::new(source));
        let reader = source.clone();
        let seen = self.config_seen;
        let loader: Loader = Box::new(move || match &*reader.borrow() {
            PlanSource::Config(source) => crate::config::load_config(source).map(|config| {
                if let Some(seen) = &seen {
                    seen(&config);
                }
                config.plan()
            }),
            PlanSource::Plan(plan) => Ok((**plan).clone()),
            PlanSource::Loader(loader) => loader(),
        });
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
        let handles = Controller::start(plan, loader, shell, seed, self.systemd, Some(stopped_tx));
        let (stopped, watching) = watch::channel(false);
        actix::spawn(async move {
            let _ = stopped_rx.await;
            let _ = stopped.send(true);
        });
        Ok(EngineHandle {
            handles,
            source,
            stopped: watching,
        })
    }

    fn plan(&self) -> Result<(Plan, PlanSource), EngineError> {
        let sources = [
            self.loader.is_some(),
            self.source.is_some(),
            !self.backends.is_empty(),
        ];
        if sources.iter().filter(|given| **given).count() > 1 {
            return Err(EngineError::Config(
                "give backends one way: in code (volume_backend, backup_backend), a config_file, or a plan_loader"
                    .to_string(),
            ));
        }
        if let Some(loader) = &self.loader {
            let plan = loader().map_err(EngineError::Config)?;
            return Ok((plan, PlanSource::Loader(loader.clone())));
        }
        if let Some(source) = &self.source {
            let config = match &self.loaded {
                Some(config) => config.clone(),
                None => crate::config::load_config(source).map_err(EngineError::Config)?,
            };
            return Ok((config.plan(), PlanSource::Config(source.clone())));
        }
        if self.backends.is_empty() {
            return Err(EngineError::NoBackends);
        }
        let mut backends = BTreeMap::new();
        for (name, kind) in &self.backends {
            let backend = BackendPlan {
                spec: DriverSpec {
                    backend: name.clone(),
                    kind: *kind,
                    driver: engine_driver_name(name),
                    options: BTreeMap::new(),
                    origin: None,
                },
                policy: self
                    .backend_policy
                    .get(name)
                    .cloned()
                    .unwrap_or(self.policy),
            };
            if backends.insert(name.clone(), backend).is_some() {
                return Err(EngineError::DuplicateBackend(name.clone()));
            }
        }
        if let Some(name) = self
            .backend_policy
            .keys()
            .find(|name| !backends.contains_key(*name))
        {
            return Err(EngineError::UnknownBackend(name.clone()));
        }
        let plan = Plan {
            host: self.host.clone(),
            periodic_interval: self.periodic_interval,
            report_interval: self.report_interval,
            service_down_time: self.service_down_time,
            // As Cinder: backup_initialization_timeout defaults to service_down_time.
            backup_initialization_timeout: self.service_down_time,
            graceful_shutdown_timeout: self.policy.graceful_shutdown_timeout,
            jitter_seed: self.jitter_seed.map(|s| s.0),
            backends,
        };
        Ok((plan.clone(), PlanSource::Plan(Box::new(plan))))
    }
}

/// The service's jitter seed: the config's `reinit_backoff_jitter_seed`
/// when set (reproducible), otherwise OS entropy mixed with `host`, so two
/// hosts (or two containers that are both PID 1) never draw the same retry
/// delays. The controller mixes in each backend's name.
pub fn jitter_seed(fixed: Option<u64>, host: &str) -> u64 {
    if let Some(seed) = fixed {
        return seed;
    }
    // std's hasher keys are drawn from OS randomness (once per thread,
    // then stepped): a random u64 without another dependency. Time and the
    // process id are mixed in too.
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let entropy = hasher.finish();
    host.bytes().fold(entropy, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The registry name of an in-code backend's own driver.
fn engine_driver_name(backend: &str) -> String {
    format!("engine:{backend}")
}

/// What a reload reads.
enum PlanSource {
    Config(ConfigSource),
    Plan(Box<Plan>),
    Loader(PlanLoader),
}

/// A running engine. Dropping it leaves the engine running; call
/// [`EngineHandle::shutdown`] to stop it gracefully.
pub struct EngineHandle {
    handles: Handles,
    source: Rc<RefCell<PlanSource>>,
    stopped: watch::Receiver<bool>,
}

impl EngineHandle {
    /// Every backend's status now (state, attempt, last error, next retry),
    /// by name. Read from the status board, never a driver's mailbox.
    pub fn status(&self) -> Vec<BackendStatus> {
        self.handles.shell.board.backends()
    }

    /// The plan running now (edit it and pass it to [`Self::reload`]).
    pub async fn plan(&self) -> Result<Plan, EngineError> {
        self.handles
            .controller
            .send(GetPlan)
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// Reloads: drains what changed, sets it up again (rolling back to the
    /// old config if the new one fails), leaves the rest serving, and
    /// answers with each backend's result once everything settled.
    pub async fn reload(&self, reload: Reload) -> Result<crate::ReloadOutcome, EngineError> {
        match reload {
            Reload::Current => {}
            Reload::ConfigFile(path) => {
                *self.source.borrow_mut() = PlanSource::Config(ConfigSource::File(path));
            }
            Reload::Plan(plan) => *self.source.borrow_mut() = PlanSource::Plan(plan),
        }
        self.handles
            .controller
            .send(RequestReloadAndWait)
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// Runs a volume operation on `backend` (refused with the reason when
    /// the backend is not Ready).
    pub async fn volume(
        &self,
        backend: &str,
        operation: Operation,
    ) -> Result<OperationOutput, OperationError> {
        self.route(backend, operation).await
    }

    /// Runs a backup operation on the backup backend `backend`.
    pub async fn backup(
        &self,
        backend: &str,
        operation: Operation,
    ) -> Result<OperationOutput, OperationError> {
        self.route(backend, operation).await
    }

    async fn route(
        &self,
        backend: &str,
        operation: Operation,
    ) -> Result<OperationOutput, OperationError> {
        let name = operation.name();
        self.handles
            .service
            .send(Route {
                backend: backend.to_string(),
                operation,
            })
            .await
            .unwrap_or_else(|_| {
                Err(OperationError::Stopped {
                    operation: name,
                    backend: backend.to_string(),
                })
            })
    }

    /// Drains every backend (operations refused, in-flight ones finish, up
    /// to the graceful shutdown timeout) and stops; resolves when done.
    pub async fn shutdown(&self) {
        self.handles.controller.do_send(ControlSignal::Shutdown);
        self.stopped().await;
    }

    /// Resolves when the engine has stopped (after a shutdown, from here,
    /// a signal or the control socket).
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|done| *done).await;
    }

    /// How many events subscribers' full mailboxes refused, in all.
    pub fn overflowed(&self) -> u64 {
        self.handles.shell.notifier.overflowed()
    }

    /// The actors, for sending messages from your own (`controller`,
    /// `service`, `scheduler`, `publisher`) and the shell they share.
    pub fn handles(&self) -> &Handles {
        &self.handles
    }
}
