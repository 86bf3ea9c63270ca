//! Controller: starts every backend, owns the running plan, and carries out reloads
//! (validate, per-backend diff, drain/reload/stop/start, reload.start/end, coalescing)
//! and graceful shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::json;
use tokio::sync::oneshot;

use super::driver_actor::{DriverActor, Reload, Shell, Shutdown, Start, WhenSettled};
use super::publisher::{Publisher, Track, Untrack};
use super::scheduler::{ForgetBackend, Scheduler};
use super::service::{AddBackend, Heartbeat, RemoveBackend, Service};
use super::signal::ControlSignal;
use crate::driver::DriverSpec;
use crate::lifecycle::{ConfigId, Policy, StateName};
use crate::systemd::Systemd;

/// One backend as the plan runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendPlan {
    /// Driver and options.
    pub spec: DriverSpec,
    /// Retry and drain limits.
    pub policy: Policy,
}

/// What the service runs: everything a config file decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// This host's name (service rows are `host@backend`).
    pub host: String,
    /// Publisher period.
    pub periodic_interval: Duration,
    /// Heartbeat period.
    pub report_interval: Duration,
    /// A backend not Ready for this long is down.
    pub service_down_time: Duration,
    /// After this long without a Ready backup driver, a notification says so.
    pub backup_initialization_timeout: Duration,
    /// How long shutdown waits for in-flight operations.
    pub graceful_shutdown_timeout: Duration,
    /// `reinit_backoff_jitter_seed`: the fixed jitter seed, if the config
    /// sets one (read at start-up; a change takes effect on restart).
    pub jitter_seed: Option<u64>,
    /// Backends by name (volume backends and the backup backend).
    pub backends: BTreeMap<String, BackendPlan>,
}

/// How a new plan differs from the running one, per backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanDiff {
    /// Backends to start.
    pub added: Vec<String>,
    /// Backends to drain and stop.
    pub removed: Vec<String>,
    /// Backends to drain and reload.
    pub changed: Vec<String>,
    /// Backends that keep serving untouched.
    pub unchanged: Vec<String>,
    /// Service-level options that changed and take effect on restart.
    pub restart_required: Vec<String>,
}

impl Plan {
    /// The per-backend difference from `self` (running) to `new`.
    pub fn diff(&self, new: &Plan) -> PlanDiff {
        let mut diff = PlanDiff::default();
        for (name, backend) in &new.backends {
            match self.backends.get(name) {
                None => diff.added.push(name.clone()),
                Some(old) if old == backend => diff.unchanged.push(name.clone()),
                Some(_) => diff.changed.push(name.clone()),
            }
        }
        diff.removed = self
            .backends
            .keys()
            .filter(|name| !new.backends.contains_key(*name))
            .cloned()
            .collect();
        let service_options = [
            ("host", self.host != new.host),
            (
                "periodic_interval",
                self.periodic_interval != new.periodic_interval,
            ),
            (
                "report_interval",
                self.report_interval != new.report_interval,
            ),
            (
                "service_down_time",
                self.service_down_time != new.service_down_time,
            ),
            (
                "backup_initialization_timeout",
                self.backup_initialization_timeout != new.backup_initialization_timeout,
            ),
            (
                "reinit_backoff_jitter_seed",
                self.jitter_seed != new.jitter_seed,
            ),
        ];
        diff.restart_required = service_options
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| (*name).to_string())
            .collect();
        diff
    }
}

/// Re-reads and validates the config; the error names file, section, option
/// and problem.
pub type Loader = Box<dyn Fn() -> Result<Plan, String>>;

/// What a reload request led to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The new config is valid and is being applied.
    Started {
        /// Its id.
        config: ConfigId,
        /// What changes.
        diff: PlanDiff,
    },
    /// A reload is running; one follow-up reload will run after it.
    Coalesced,
    /// The new config is invalid; the old one keeps serving.
    Rejected {
        /// Why.
        error: String,
    },
    /// The service is shutting down.
    ShuttingDown,
}

/// Asks for a reload and says what happened.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ReloadOutcome")]
pub struct RequestReload;

/// Internal: every reloaded backend has settled.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct ReloadSettled {
    config: ConfigId,
    diff: PlanDiff,
    states: BTreeMap<String, String>,
}

/// Internal: every backend has stopped (or the shutdown deadline passed).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
struct ShutdownComplete;

/// Returns the running plan.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Plan")]
pub struct GetPlan;

/// Returns the driver actors by backend name.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "BTreeMap<String, Addr<DriverActor>>")]
pub struct GetDrivers;

/// The controller of one service.
pub struct Controller {
    plan: Plan,
    loader: Loader,
    config: ConfigId,
    /// Shared by every driver actor this controller starts.
    shell: Rc<Shell>,
    seed: u64,
    publisher: Addr<Publisher>,
    service: Addr<Service>,
    scheduler: Addr<Scheduler>,
    drivers: BTreeMap<String, Addr<DriverActor>>,
    reloading: bool,
    follow_up: bool,
    shutting_down: bool,
    systemd: Systemd,
    on_stopped: Option<oneshot::Sender<()>>,
}

/// Handles to a running service.
#[derive(Clone)]
pub struct Handles {
    /// The controller (reloads, shutdown).
    pub controller: Addr<Controller>,
    /// The service (operations).
    pub service: Addr<Service>,
    /// The scheduler (published capabilities).
    pub scheduler: Addr<Scheduler>,
    /// The publisher.
    pub publisher: Addr<Publisher>,
    /// The shared shell (clock, notifier, status board, registry).
    pub shell: Shell,
}

impl Controller {
    /// Starts a service running `plan` in the current actix system: the
    /// scheduler, the publisher, the service front, and one driver actor per
    /// backend, each started at once. `loader` re-reads the config on reload;
    /// `on_stopped` fires once shutdown is complete.
    pub fn start(
        plan: Plan,
        loader: Loader,
        mut shell: Shell,
        seed: u64,
        systemd: Systemd,
        on_stopped: Option<oneshot::Sender<()>>,
    ) -> Handles {
        let scheduler = Scheduler::default().start();
        if shell.scheduler.is_none() {
            shell.scheduler = Some(scheduler.clone().recipient());
        }
        let publisher = Publisher::new(plan.periodic_interval).start();
        let heartbeat = Heartbeat {
            report_interval: plan.report_interval,
            service_down_time: plan.service_down_time,
            backup_initialization_timeout: plan.backup_initialization_timeout,
        };
        let service = Service::new(
            plan.host.clone(),
            heartbeat,
            shell.clock,
            shell.board.clone(),
            shell.notifier.clone(),
        )
        .with_records(shell.records.clone())
        .start();
        shell.service = Some(service.clone().recipient());
        let controller = Controller {
            plan,
            loader,
            config: 1,
            shell: Rc::new(shell.clone()),
            seed,
            publisher: publisher.clone(),
            service: service.clone(),
            scheduler: scheduler.clone(),
            drivers: BTreeMap::new(),
            reloading: false,
            follow_up: false,
            shutting_down: false,
            systemd,
            on_stopped,
        }
        .start();
        Handles {
            controller,
            service,
            scheduler,
            publisher,
            shell,
        }
    }

    fn spawn_backend(&mut self, name: &str, backend: &BackendPlan) {
        // Each backend's jitter has its own seed, derived from the service's.
        let seed = self.seed ^ fnv1a(name.as_bytes());
        let actor = DriverActor::new(
            backend.spec.clone(),
            backend.policy,
            self.config,
            seed,
            self.shell.clone(),
        );
        let addr = actor.start();
        addr.do_send(Start);
        self.publisher
            .do_send(Track(name.to_string(), addr.clone()));
        self.service.do_send(AddBackend {
            name: name.to_string(),
            kind: backend.spec.kind,
            addr: addr.clone(),
        });
        self.drivers.insert(name.to_string(), addr);
    }

    /// `READY=1` with the status line, built only under systemd.
    fn systemd_ready(&self) {
        if self.systemd.enabled() {
            self.systemd.ready(&self.status_line());
        }
    }

    /// `STATUS=` for systemd: the configured backends (not only those that
    /// have published yet) and which of them are Ready or failed.
    fn status_line(&self) -> String {
        let mut ready = 0;
        let mut failed = Vec::new();
        for name in self.plan.backends.keys() {
            match self.shell.board.backend(name).map(|b| b.state) {
                Some(StateName::Ready) => ready += 1,
                Some(state @ (StateName::FailedFatal | StateName::FailedRecoverable)) => {
                    failed.push(format!("{name} {state}"));
                }
                _ => {}
            }
        }
        let mut line = format!("{ready}/{} backends ready", self.plan.backends.len());
        if !failed.is_empty() {
            line.push_str("; ");
            line.push_str(&failed.join(", "));
        }
        line
    }

    fn reload(&mut self, ctx: &mut Context<Self>) -> ReloadOutcome {
        if self.shutting_down {
            return ReloadOutcome::ShuttingDown;
        }
        if self.reloading {
            self.follow_up = true;
            return ReloadOutcome::Coalesced;
        }
        let now = self.shell.clock.now();
        let plan = match (self.loader)().and_then(|plan| self.check_reload(plan)) {
            Ok(plan) => plan,
            Err(error) => {
                tracing::error!(%error, "reload rejected; the old config keeps serving");
                self.shell
                    .notifier
                    .emit("reload.rejected", None, now, json!({ "error": error }));
                return ReloadOutcome::Rejected { error };
            }
        };
        self.systemd.reloading();
        self.reloading = true;
        self.config += 1;
        let config = self.config;
        let diff = self.plan.diff(&plan);
        self.shell.notifier.emit(
            "reload.start",
            None,
            now,
            json!({ "config": config, "diff": diff }),
        );
        let mut settle = Vec::new();
        for name in diff.changed.iter().chain(&diff.unchanged) {
            let (Some(addr), Some(backend)) = (self.drivers.get(name), plan.backends.get(name))
            else {
                continue;
            };
            addr.do_send(Reload {
                config,
                spec: backend.spec.clone(),
                policy: backend.policy,
                changed: diff.changed.contains(name),
            });
            settle.push(when_settled(name.clone(), addr));
        }
        for name in &diff.removed {
            if let Some(addr) = self.drivers.remove(name) {
                addr.do_send(Shutdown);
                settle.push(when_settled(name.clone(), &addr));
                self.publisher.do_send(Untrack(name.clone()));
                self.service.do_send(RemoveBackend(name.clone()));
                self.scheduler.do_send(ForgetBackend(name.clone()));
            }
        }
        let old_plan = std::mem::replace(&mut self.plan, plan);
        for name in &diff.added {
            if let Some(backend) = self.plan.backends.get(name).cloned() {
                self.spawn_backend(name, &backend);
            }
        }
        // Service-level timing options keep their running values until a
        // restart (reported in reload.end), so the plan keeps them too.
        self.plan.host = old_plan.host;
        self.plan.periodic_interval = old_plan.periodic_interval;
        self.plan.report_interval = old_plan.report_interval;
        self.plan.service_down_time = old_plan.service_down_time;
        self.plan.backup_initialization_timeout = old_plan.backup_initialization_timeout;
        self.plan.jitter_seed = old_plan.jitter_seed;
        let outcome = ReloadOutcome::Started {
            config,
            diff: diff.clone(),
        };
        let waiting = join_all(settle);
        ctx.spawn(waiting.into_actor(self).map(move |states, _act, ctx| {
            let states = states.into_iter().collect();
            ctx.notify(ReloadSettled {
                config,
                diff,
                states,
            });
        }));
        outcome
    }

    /// Checks every backend of `plan` against its driver's declared options
    /// and, for a backend that keeps its driver, the options that may not
    /// change on reload: any problem rejects the whole plan (one problem a
    /// line), so nothing running is touched.
    fn check_reload(&self, plan: Plan) -> Result<Plan, String> {
        let problems: Vec<String> = plan
            .backends
            .iter()
            .flat_map(|(name, backend)| {
                let running = self.plan.backends.get(name).map(|b| &b.spec);
                self.shell.registry.check_reload(running, &backend.spec)
            })
            .map(|problem| problem.to_string())
            .collect();
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(problems.join("\n"))
        }
    }

    fn shutdown(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.systemd.stopping();
        let settle: Vec<_> = self
            .drivers
            .iter()
            .map(|(name, addr)| {
                addr.do_send(Shutdown);
                when_settled(name.clone(), addr)
            })
            .collect();
        // Drivers stop at their own drain deadline; this bound only guards
        // against a driver actor that never answers.
        let bound = self.plan.graceful_shutdown_timeout + Duration::from_secs(5);
        let all = async move {
            let _ = actix::clock::timeout(bound, join_all(settle)).await;
        };
        ctx.spawn(
            all.into_actor(self)
                .map(|(), _act, ctx| ctx.notify(ShutdownComplete)),
        );
    }
}

/// Waits until the backend's lifecycle is neither draining nor reloading
/// (or the actor stopped), and returns its state.
fn when_settled(
    name: String,
    addr: &Addr<DriverActor>,
) -> impl std::future::Future<Output = (String, String)> + 'static {
    let (tx, rx) = oneshot::channel();
    // Queued behind the reload or shutdown just sent: mailboxes are FIFO.
    addr.do_send(WhenSettled(tx));
    async move {
        let state = rx.await.map_or(StateName::Stopped, |s| s);
        (name, state.as_str().to_string())
    }
}

/// FNV-1a, for per-backend seeds that do not depend on hash-map order.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Actor for Controller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
        for (name, backend) in self.plan.backends.clone() {
            self.spawn_backend(&name, &backend);
        }
        if self.systemd.enabled() {
            self.systemd_ready();
            // STATUS= follows the backends every report interval (built only
            // under systemd: it reads every backend's row).
            ctx.run_interval(self.plan.report_interval, |act, _| {
                let line = act.status_line();
                act.systemd.status(&line);
            });
        }
    }
}

impl Handler<ControlSignal> for Controller {
    type Result = ();
    fn handle(&mut self, msg: ControlSignal, ctx: &mut Context<Self>) {
        match msg {
            ControlSignal::Reload => {
                let outcome = self.reload(ctx);
                tracing::info!(?outcome, "reload requested");
            }
            ControlSignal::Shutdown => self.shutdown(ctx),
        }
    }
}

impl Handler<RequestReload> for Controller {
    type Result = MessageResult<RequestReload>;
    fn handle(&mut self, _: RequestReload, ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.reload(ctx))
    }
}

impl Handler<ReloadSettled> for Controller {
    type Result = ();
    fn handle(&mut self, msg: ReloadSettled, ctx: &mut Context<Self>) {
        let now = self.shell.clock.now();
        let aborted: BTreeSet<&String> = msg
            .diff
            .changed
            .iter()
            .filter(|name| {
                self.drivers.get(*name).is_some_and(|_| {
                    self.shell
                        .board
                        .backend(name)
                        .is_some_and(|b| b.config < msg.config)
                })
            })
            .collect();
        self.shell.notifier.emit(
            "reload.end",
            None,
            now,
            json!({
                "config": msg.config,
                "added": msg.diff.added,
                "removed": msg.diff.removed,
                "changed": msg.diff.changed,
                "unchanged": msg.diff.unchanged,
                "aborted": aborted,
                "restart_required": msg.diff.restart_required,
                "states": msg.states,
            }),
        );
        self.reloading = false;
        self.systemd_ready();
        if std::mem::take(&mut self.follow_up) {
            let outcome = self.reload(ctx);
            tracing::info!(?outcome, "follow-up reload");
        }
    }
}

impl Handler<ShutdownComplete> for Controller {
    type Result = ();
    fn handle(&mut self, _: ShutdownComplete, ctx: &mut Context<Self>) {
        if let Some(tx) = self.on_stopped.take() {
            let _ = tx.send(());
        }
        ctx.stop();
    }
}

impl Handler<GetPlan> for Controller {
    type Result = MessageResult<GetPlan>;
    fn handle(&mut self, _: GetPlan, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.plan.clone())
    }
}

impl Handler<GetDrivers> for Controller {
    type Result = MessageResult<GetDrivers>;
    fn handle(&mut self, _: GetDrivers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.drivers.clone())
    }
}
