//! Controller: starts every backend, owns the running plan, and carries out reloads
//! (validate, per-backend diff, drain/reload/remove/start, the per-backend reload report,
//! coalescing, answers to waiting requesters) and graceful shutdown.

mod reload;

use reload::{Change, outcome_words};
pub use reload::{ReloadOutcome, ReloadReport};

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::{LocalBoxFuture, join_all};
use serde::Serialize;
use tokio::sync::oneshot;

use super::driver_actor::{
    DriverActor, ReloadBackend, Remove, Settled, Shell, Shutdown, Start, WhenSettled,
};
use super::publisher::{Publisher, Track, Untrack};
use super::scheduler::{ForgetBackend, Scheduler};
use super::service::{AddBackend, Heartbeat, RemoveBackend, Service};
use super::signal::ControlSignal;
use crate::engine::systemd::Systemd;
use crate::events::Event;
use crate::events::status::StaleConfig;
pub use crate::events::{BackendResult, PlanDiff};
use crate::lifecycle::{ConfigId, StateName};
use crate::plan::reload::{ReloadDecision, ReloadState, ReloadSteps, decide};
pub use crate::plan::{BackendPlan, Loader, Plan};

/// Asks for a reload and says at once what happened (started, coalesced,
/// rejected, shutting down).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ReloadOutcome")]
pub struct RequestReload;

/// Asks for a reload and answers once it settled, with the per-backend
/// report ([`ReloadOutcome::Finished`]); a coalesced request is answered by
/// the follow-up reload that covers it. A rejected file or a shutdown is
/// answered at once.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ReloadOutcome")]
pub struct RequestReloadAndWait;

/// Internal: every backend the reload touched has settled.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct ReloadSettled {
    config: ConfigId,
    diff: PlanDiff,
    settled: Vec<(String, Change, Settled)>,
    /// The running plan's entries of changed and removed backends.
    old: BTreeMap<String, BackendPlan>,
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
    /// Requesters waiting for the report of the reload applying a config
    /// (and whether their request was coalesced into it).
    waiting: Vec<(ConfigId, bool, oneshot::Sender<ReloadOutcome>)>,
    /// Coalesced requesters, waiting for the follow-up reload.
    waiting_follow_up: Vec<oneshot::Sender<ReloadOutcome>>,
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
        );
        #[cfg(feature = "sqlite")]
        let service = service.with_records(shell.records.clone());
        let service = service.with_row_sink(shell.service_rows.clone()).start();
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
            waiting: Vec::new(),
            waiting_follow_up: Vec::new(),
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
            match self.shell.board.backend(name).map(|b| (b.state, b.gave_up)) {
                Some((StateName::Ready, _)) => ready += 1,
                Some((
                    state @ (StateName::FailedFatal | StateName::FailedRecoverable),
                    gave_up,
                )) => {
                    let gave_up = if gave_up { " (gave up)" } else { "" };
                    failed.push(format!("{name} {state}{gave_up}"));
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
                when_settled(name.clone(), Change::Removed, addr, false)
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

/// Waits until the backend's lifecycle is neither draining, reloading nor
/// rolling back (with `setup`, also past its first setup), or the actor
/// stopped, and says where it settled.
fn when_settled(
    name: String,
    change: Change,
    addr: &Addr<DriverActor>,
    setup: bool,
) -> LocalBoxFuture<'static, (String, Change, Settled)> {
    let (tx, rx) = oneshot::channel();
    // Queued behind the reload or shutdown just sent: mailboxes are FIFO.
    addr.do_send(WhenSettled { reply: tx, setup });
    Box::pin(async move {
        let settled = rx.await.unwrap_or(Settled {
            state: StateName::Stopped,
            config: 0,
            last_error: None,
            stale_config: None,
        });
        (name, change, settled)
    })
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
            // STATUS= follows the backends within a second (built only under
            // systemd: it reads every backend's row), sent when it changed.
            let every = self.plan.report_interval.min(Duration::from_secs(1));
            let mut last = String::new();
            ctx.run_interval(every, move |act, _| {
                let line = act.status_line();
                if line != last {
                    act.systemd.status(&line);
                    last = line;
                }
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
                tracing::info!("reload requested: {}", outcome_words(&outcome));
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

impl Handler<RequestReloadAndWait> for Controller {
    type Result = ResponseFuture<ReloadOutcome>;
    fn handle(&mut self, _: RequestReloadAndWait, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        match self.reload(ctx) {
            ReloadOutcome::Started { config, .. } => self.waiting.push((config, false, tx)),
            ReloadOutcome::Coalesced => self.waiting_follow_up.push(tx),
            other => return Box::pin(async move { other }),
        }
        // Dropped unanswered only when the controller stops (shutdown).
        Box::pin(async move { rx.await.unwrap_or(ReloadOutcome::ShuttingDown) })
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
