//! Deterministic simulation of the real actor system on virtual time: a plan of
//! backends, a script of environment actions, invariants checked at every step.
//!
//! # Layout
//! - [`scenario`]: seeded generation of a plan and a script (`rekindle sim`).
//! - [`recorder`]: the observer that checks invariants and keeps statistics.
//! - [`report`]: the summary, byte-identical for the same seed and flags.
//! - [`svg`]: the state timeline picture.
//!
//! Simulating *your* driver: register it with
//! [`DriverRegistry::register_with_faults`](crate::driver::DriverRegistry::register_with_faults),
//! name it in the plan's backends with `fault_*` options as the fault plan,
//! and call [`Simulation::run`] (see `examples/simulate_my_driver.rs`).

pub mod cli;
pub mod recorder;
pub mod report;
pub mod scenario;
#[cfg(feature = "proptest")]
pub mod strategy;
pub mod svg;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use actix::clock::{Instant, sleep_until};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::actors::service::Route;
use crate::actors::signal::ControlSignal;
use crate::actors::{Controller, Operation, OperationError, Shell};
use crate::driver::{BackupRecord, DriverRegistry, Kind, Volume};
use crate::engine::clock::ServiceClock;
use crate::engine::runtime::{RuntimeError, run_virtual};
use crate::engine::systemd::Systemd;
use crate::events::notify::Notifier;
use crate::plan::{Loader, Plan};

pub use recorder::Recorder;
pub use report::SimReport;

/// Something the environment does at a virtual instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Action {
    /// The operator edits the config file (or breaks it: `Err`).
    WriteConfig(Result<Plan, String>),
    /// SIGHUP.
    Sighup,
    /// A user creates a volume on a backend.
    CreateVolume {
        /// The backend.
        backend: String,
        /// The volume id.
        volume: String,
    },
    /// A user backs a volume up on a backup backend (`backup create`).
    CreateBackup {
        /// The backup backend.
        backend: String,
        /// The backup id.
        backup: String,
    },
    /// A user restores a backup into a volume (`backup restore`).
    RestoreBackup {
        /// The backup backend.
        backend: String,
        /// The backup id.
        backup: String,
    },
}

impl Action {
    /// The operation this action routes to a backend, if it is one.
    fn operation(&self) -> Option<(&str, Operation)> {
        let backup = |id: &str| {
            Box::new(BackupRecord {
                id: id.to_string(),
                volume_id: format!("{id}-volume"),
                size_bytes: 1 << 30,
                progress: Default::default(),
            })
        };
        match self {
            Action::WriteConfig(_) | Action::Sighup => None,
            Action::CreateVolume { backend, volume } => Some((
                backend,
                Operation::CreateVolume(Volume::new(volume.clone(), 1 << 30)),
            )),
            Action::CreateBackup {
                backend,
                backup: id,
            } => Some((
                backend,
                Operation::Backup {
                    backup: backup(id),
                    volume: Volume::new(format!("{id}-volume"), 1 << 30),
                },
            )),
            Action::RestoreBackup {
                backend,
                backup: id,
            } => Some((
                backend,
                Operation::Restore {
                    backup: backup(id),
                    volume: Volume::new(format!("{id}-target"), 1 << 30),
                },
            )),
        }
    }
}

/// An action at an offset from the start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scripted {
    /// When, from the start.
    pub at: Duration,
    /// What.
    pub action: Action,
}

/// Builds a fresh driver registry for each run (registries hold per-run
/// probes).
pub type RegistryFactory = Rc<dyn Fn() -> DriverRegistry>;

/// One simulation: a plan, a script, a duration, a seed.
#[derive(Clone)]
pub struct Simulation {
    /// The seed (backend jitter seeds derive from it).
    pub seed: u64,
    /// Virtual duration before the final graceful shutdown.
    pub duration: Duration,
    /// Backends at start.
    pub plan: Plan,
    /// Environment actions, sorted by time.
    pub script: Vec<Scripted>,
    /// Builds the drivers.
    pub registry: RegistryFactory,
    /// Only these script entries run (`None` = all); the shrinker uses it.
    pub keep: Option<BTreeSet<usize>>,
    /// Planted bug for checker validation: the shell does not abandon a
    /// timed-out setup, so two setups of one driver can overlap.
    pub plant_bug: bool,
    /// Called with the virtual time reached, after each scripted action.
    pub progress: Option<Rc<dyn Fn(Duration)>>,
}

impl Simulation {
    /// Runs the simulation on a fresh virtual-time actix system.
    pub fn run(&self) -> Result<SimReport, RuntimeError> {
        self.run_with_recorder().map(|(report, _)| report)
    }

    /// Runs it and also returns everything the recorder saw (timelines).
    pub fn run_with_recorder(&self) -> Result<(SimReport, Recorder), RuntimeError> {
        run_virtual(self.run_async())
    }

    async fn run_async(&self) -> (SimReport, Recorder) {
        let clock = ServiceClock::start_at(std::time::UNIX_EPOCH);
        let start = Instant::now();
        let notifier = Notifier::in_memory(clock);
        let registry = (self.registry)();
        let recorder = Rc::new(RefCell::new(Recorder::new(&self.plan)));
        recorder.borrow_mut().watch_fault_probes(&registry);
        let mut shell = Shell::new(clock, notifier.clone(), registry.clone());
        shell.plant_bug_keep_hung_setups = self.plant_bug;
        let observing = recorder.clone();
        shell.observer = Some(Rc::new(move |observation| {
            observing.borrow_mut().observe(observation)
        }));
        let file: Rc<RefCell<Result<Plan, String>>> = Rc::new(RefCell::new(Ok(self.plan.clone())));
        let reader = file.clone();
        let loader: Loader = Box::new(move || reader.borrow().clone());
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let handles = Controller::start(
            self.plan.clone(),
            loader,
            shell,
            self.seed,
            Systemd::disabled(),
            Some(stopped_tx),
        );
        let mut operations = Vec::new();
        for (index, step) in self.script.iter().enumerate() {
            if self
                .keep
                .as_ref()
                .is_some_and(|keep| !keep.contains(&index))
            {
                continue;
            }
            sleep_until(start + step.at).await;
            if let Some(progress) = &self.progress {
                progress(step.at);
            }
            let now = clock.now();
            recorder.borrow_mut().environment(index, now, &step.action);
            match &step.action {
                Action::WriteConfig(next) => {
                    if let Ok(plan) = next {
                        recorder.borrow_mut().config_written(now, plan);
                    }
                    *file.borrow_mut() = next.clone();
                }
                Action::Sighup => handles.controller.do_send(ControlSignal::Reload),
                action => {
                    let Some((backend, operation)) = action.operation() else {
                        continue;
                    };
                    let name = operation.name();
                    let request = handles.service.send(Route {
                        backend: backend.to_string(),
                        operation,
                    });
                    let outcomes = recorder.clone();
                    let backend = backend.to_string();
                    operations.push(actix::spawn(async move {
                        let result = request.await.unwrap_or_else(|_| {
                            Err(OperationError::Cancelled {
                                operation: name,
                                backend: backend.clone(),
                            })
                        });
                        outcomes
                            .borrow_mut()
                            .operation_done(clock.now(), &backend, &result);
                    }));
                }
            }
        }
        sleep_until(start + self.duration).await;
        let shutdown_at = clock.now();
        handles.controller.do_send(ControlSignal::Shutdown);
        let bound = self.plan.graceful_shutdown_timeout + Duration::from_secs(10);
        let stopped = actix::clock::timeout(bound, stopped_rx).await.is_ok();
        for operation in operations {
            let _ = operation.await;
        }
        let mut recorder = recorder.replace(Recorder::default());
        recorder.finish(shutdown_at, stopped, &notifier, &registry, &self.plan);
        (SimReport::from_recorder(&recorder, self.duration), recorder)
    }
}

/// The simulated backend names of a plan, by kind.
pub fn backend_names(plan: &Plan, kind: Kind) -> Vec<String> {
    plan.backends
        .iter()
        .filter(|(_, b)| b.spec.kind == kind)
        .map(|(name, _)| name.clone())
        .collect()
}

/// Keeps the panics the fault driver injects on purpose off stderr (they are
/// expected in a simulation, and the panic hook would print each one, with a
/// backtrace under `RUST_BACKTRACE`); any other panic is still reported.
/// Installs a process-wide panic hook: call it once, before a run.
pub fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.contains("injected driver panic"));
        if !injected {
            default(info);
        }
    }));
}
