//! DriverActor: owns one backend's `Lifecycle` and driver, turns messages into core
//! events and performs the resulting effects (driver calls, timers, notifications).

mod effects;
mod operations;

pub use operations::OperationResponse;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use actix::prelude::*;
use futures_util::FutureExt;
use tokio::sync::oneshot;

use crate::driver::registry::AnyDriver;
use crate::driver::{Capabilities, DriverContext, DriverRegistry, DriverSpec, Kind};
use crate::engine::clock::ServiceClock;
use crate::events::notify::Notifier;
use crate::events::status::{BackendStatus, InFlight, StaleConfig, StatusBoard};
use crate::lifecycle::{
    ConfigId, DriverError, Effect, Effects, Event, Generation, Lifecycle, Moment, Notification,
    Policy, Refused, StateName, Timer,
};

use super::driver_call::{CallSlot, DriverCall, FirstPoll, WrongKind, guarded, panicked};
pub use super::operation::{Operation, OperationError, OperationOutput};
use super::scheduler::CapabilitiesReport;

/// One step of one backend's lifecycle, as seen by an [`Observer`].
#[derive(Debug)]
pub enum Observed<'a> {
    /// An accepted transition.
    Transition {
        /// The backend.
        backend: &'a str,
        /// When.
        at: Moment,
        /// The lifecycle before.
        before: &'a Lifecycle,
        /// The event.
        event: &'a Event,
        /// The lifecycle after.
        after: &'a Lifecycle,
        /// The effects, in order.
        effects: &'a [Effect],
    },
    /// A refused event (the lifecycle did not change).
    Refused {
        /// The backend.
        backend: &'a str,
        /// When.
        at: Moment,
        /// The refusal.
        refused: &'a Refused,
    },
}

/// Sees every step of every driver actor (simulator, invariant checks).
pub type Observer = std::rc::Rc<dyn Fn(&Observed<'_>)>;

/// What every driver actor shares with the rest of the shell.
#[derive(Clone)]
pub struct Shell {
    /// The service clock.
    pub clock: ServiceClock,
    /// Where notifications go.
    pub notifier: Notifier,
    /// Where statuses go.
    pub board: StatusBoard,
    /// Builds drivers by name.
    pub registry: DriverRegistry,
    /// Receives capabilities of Ready volume drivers.
    pub scheduler: Option<Recipient<CapabilitiesReport>>,
    /// Sees every step (costs a lifecycle clone per event when set).
    pub observer: Option<Observer>,
    /// The service front, told when a backend's state changes so its
    /// service row follows at once (set by `Controller::start`).
    pub service: Option<Recipient<super::service::BackendChanged>>,
    /// Durable records (service rows are written here when set).
    #[cfg(feature = "sqlite")]
    pub records: Option<std::rc::Rc<dyn crate::records::ServiceRows>>,
    /// Told every service row at each heartbeat and on each change (fleet
    /// records, an embedder's own monitoring).
    pub service_rows: Option<super::service::RowSink>,
    /// A planted bug, for showing that the simulator catches it: timed-out
    /// or replaced setups are not abandoned. Never set in production.
    pub plant_bug_keep_hung_setups: bool,
}

impl Shell {
    /// A shell with a fresh status board, the embedded scheduler (set by
    /// `Controller::start`) and no observer.
    pub fn new(clock: ServiceClock, notifier: Notifier, registry: DriverRegistry) -> Self {
        Shell {
            clock,
            notifier,
            board: StatusBoard::default(),
            registry,
            scheduler: None,
            service: None,
            observer: None,
            #[cfg(feature = "sqlite")]
            records: None,
            service_rows: None,
            plant_bug_keep_hung_setups: false,
        }
    }
}

/// Start the driver (first setup).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Start;

/// A publisher tick.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Tick;

/// Stop the driver (drain first).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A reload removed the backend: drain, then stop; if the drain deadline
/// passes first, the removal is aborted and the backend keeps serving.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Remove;

/// A reload: the backend's new spec, its policy, and whether it changed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ReloadBackend {
    /// Which config.
    pub config: ConfigId,
    /// The backend's spec in that config.
    pub spec: DriverSpec,
    /// The backend's policy in that config.
    pub policy: Policy,
    /// Whether the backend's effective config differs from the running one.
    pub changed: bool,
}

/// The actor of one backend.
pub struct DriverActor {
    spec: DriverSpec,
    lifecycle: Lifecycle,
    driver: Result<AnyDriver, DriverError>,
    /// The instance (and spec) a reload set aside, drained but not torn
    /// down, until the new config is up: what a failed reload rolls back to.
    /// Boxed: rare, and every backend's actor carries the slot.
    previous: Option<Box<(DriverSpec, Result<AnyDriver, DriverError>)>>,
    /// Set while the backend runs an older config than the file's.
    stale_config: Option<StaleConfig>,
    /// Shared by every backend of a service (one per service, not per actor).
    shell: Rc<Shell>,
    pending_specs: BTreeMap<ConfigId, DriverSpec>,
    setup_task: Option<(Generation, SpawnHandle)>,
    /// Armed timers. One whose generation the lifecycle left is cancelled:
    /// the core would ignore it, and a pending timer in the context is
    /// polled again on every message the actor handles.
    timers: Vec<(Timer, SpawnHandle)>,
    settle_waiters: Vec<(bool, oneshot::Sender<Settled>)>,
    /// What the status board last got (state, attempt, config, generation).
    published: Option<(StateName, u32, ConfigId, Generation)>,
    /// This backend's in-flight cell on the status board.
    in_flight: Option<InFlight>,
    /// Where operations' driver calls start (its heap slot is reused).
    calls: CallSlot,
    /// Whether the shell has an observer (every step is then an event).
    observed: bool,
}

impl DriverActor {
    /// A driver actor for `spec` on config `config`; `seed` seeds its jitter.
    /// Pass an `Rc<Shell>` to share one shell among many backends (as the
    /// `Controller` does), or a `Shell` to give this one its own.
    pub fn new(
        spec: DriverSpec,
        policy: Policy,
        config: ConfigId,
        seed: u64,
        shell: impl Into<Rc<Shell>>,
    ) -> Self {
        let shell = shell.into();
        let driver = build(&shell, &spec);
        DriverActor {
            lifecycle: Lifecycle::new(policy, config, seed),
            spec,
            driver,
            previous: None,
            stale_config: None,
            observed: shell.observer.is_some(),
            shell,
            pending_specs: BTreeMap::new(),
            setup_task: None,
            timers: Vec::new(),
            settle_waiters: Vec::new(),
            published: None,
            in_flight: None,
            calls: CallSlot::default(),
        }
    }

    /// The lifecycle (for embedding and tests through `actix` messages).
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Feeds `event` to the core and performs its effects.
    fn event(&mut self, event: Event, ctx: &mut Context<Self>) -> Result<(), Refused> {
        let now = self.shell.clock.now();
        self.event_at(event, now, ctx)
    }

    /// Counts an operation in (`started`) or out. In Ready with no observer
    /// this is the core's allocation- and clock-free hot path, and the
    /// status board's in-flight count is left to [`Self::publish_in_flight`]
    /// (an operation finished inline moves it by nothing); anything else is
    /// an ordinary event, which publishes the whole status.
    fn count_operation(&mut self, started: bool, ctx: &mut Context<Self>) -> Result<(), Refused> {
        if !self.observed && self.lifecycle.count_ready_operation(started) {
            return Ok(());
        }
        let event = if started {
            Event::OperationStarted
        } else {
            Event::OperationFinished
        };
        self.event(event, ctx)
    }

    /// Stores the in-flight count on the status board.
    fn publish_in_flight(&self) {
        if let Some(cell) = &self.in_flight {
            cell.set(self.lifecycle.state().in_flight());
        }
    }

    /// [`Self::event`] at a known `now` (one clock read serves a whole turn).
    fn event_at(
        &mut self,
        event: Event,
        now: Moment,
        ctx: &mut Context<Self>,
    ) -> Result<(), Refused> {
        let mut effects = Effects::new();
        match &self.shell.observer {
            None => self.lifecycle.apply_into(event, now, &mut effects)?,
            Some(observer) => {
                let before = self.lifecycle.clone();
                match self.lifecycle.apply_into(event.clone(), now, &mut effects) {
                    Ok(()) => {
                        observer(&Observed::Transition {
                            backend: &self.spec.backend,
                            at: now,
                            before: &before,
                            event: &event,
                            after: &self.lifecycle,
                            effects: &effects,
                        });
                    }
                    Err(refused) => {
                        observer(&Observed::Refused {
                            backend: &self.spec.backend,
                            at: now,
                            refused: &refused,
                        });
                        return Err(refused);
                    }
                }
            }
        };
        for effect in effects.drain(..) {
            self.perform(effect, now, ctx);
        }
        if !self.timers.is_empty() {
            self.cancel_stale_timers(ctx);
        }
        self.publish_status(now);
        self.wake_settle_waiters();
        Ok(())
    }

    /// Cancels the armed timers the state no longer waits on (their firing
    /// would be ignored by the core as stale).
    fn cancel_stale_timers(&mut self, ctx: &mut Context<Self>) {
        let lifecycle = &self.lifecycle;
        self.timers.retain(|(timer, handle)| {
            let keep = lifecycle.timer_is_current(*timer);
            if !keep {
                ctx.cancel_future(*handle);
            }
            keep
        });
    }

    /// Neither draining, reloading nor rolling back (with `setup`, nor
    /// before or in its first setup): a reload or shutdown of this backend
    /// is over.
    fn settled(&self, setup: bool) -> bool {
        let name = self.lifecycle.state().name();
        let busy = matches!(
            name,
            StateName::Draining | StateName::Reloading | StateName::RollingBack
        );
        let first_setup = matches!(name, StateName::Uninitialized | StateName::Initializing);
        !busy && (!setup || !first_setup)
    }

    /// What a settle waiter is told.
    fn settled_as(&self) -> Settled {
        let state = self.lifecycle.state();
        Settled {
            state: state.name(),
            config: self.lifecycle.config(),
            last_error: state.last_error().map(|e| e.to_string()),
            stale_config: self.stale_config.clone(),
        }
    }

    fn wake_settle_waiters(&mut self) {
        if self.settle_waiters.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.settle_waiters);
        for (setup, waiter) in waiters {
            if self.settled(setup) {
                let _ = waiter.send(self.settled_as());
            } else {
                self.settle_waiters.push((setup, waiter));
            }
        }
    }

    /// Records why the backend runs an older config than the file's (or
    /// that it no longer does), republishing its status.
    fn set_stale_config(&mut self, stale: Option<StaleConfig>) {
        if self.stale_config != stale {
            self.stale_config = stale;
            self.published = None;
        }
    }

    fn event_or_log(&mut self, event: Event, ctx: &mut Context<Self>) {
        if let Err(refused) = self.event(event, ctx) {
            tracing::debug!(backend = %self.spec.backend, %refused, "event refused");
        }
    }

    fn capabilities(
        &mut self,
        epoch: Generation,
        result: Result<Capabilities, DriverError>,
        ctx: &mut Context<Self>,
    ) {
        match result {
            Ok(capabilities) => {
                if let Some(scheduler) = &self.shell.scheduler {
                    let report = CapabilitiesReport {
                        backend: self.spec.backend.clone(),
                        capabilities,
                        at: self.shell.clock.now(),
                    };
                    // The scheduler never calls back; do_send never drops a
                    // message to a live actor.
                    scheduler.do_send(report);
                }
            }
            Err(error) => self.event_or_log(Event::HealthLost { epoch, error }, ctx),
        }
    }

    fn publish_status(&mut self, now: Moment) {
        let state = self.lifecycle.state();
        let key = (
            state.name(),
            state.attempt(),
            self.lifecycle.config(),
            self.lifecycle.last_generation(),
        );
        if self.published == Some(key) {
            // Only the in-flight count moved: one store on the hot path.
            if let Some(cell) = &self.in_flight {
                cell.set(state.in_flight());
            }
            return;
        }
        let state_changed = self.published.is_none_or(|(name, ..)| name != key.0);
        self.published = Some(key);
        let status = BackendStatus {
            name: self.spec.backend.clone(),
            kind: self.spec.kind,
            driver: self.spec.driver.clone(),
            state: state.name(),
            attempt: state.attempt(),
            max_attempts: match self.lifecycle.policy().reinit_driver_count {
                0 => None,
                count => Some(count.saturating_add(1)),
            },
            gave_up: state.gave_up(),
            last_error: state.last_error().map(|e| e.to_string()),
            next_retry: state.retry().map(|r| self.shell.clock.timestamp(r.at)),
            in_flight: state.in_flight(),
            config: self.lifecycle.config(),
            stale_config: self.stale_config.clone(),
            last_ready: None,
            changed_at: None,
        };
        self.in_flight = Some(self.shell.board.set_backend(status, now));
        if state_changed && let Some(service) = &self.shell.service {
            // The service never waits on a driver actor in a handler, and
            // do_send never blocks: no cycle.
            service.do_send(super::service::BackendChanged(self.spec.backend.clone()));
        }
    }
}

/// The backup-init spec's notifications, on top of the driver-level ones.
fn backup_notification(
    notifier: &crate::events::notify::Notifier,
    backend: &str,
    now: Moment,
    n: &Notification,
) {
    // The engine's notification events, not the core's input events this
    // module otherwise speaks of.
    use crate::events::{self, BackupInitFailure};
    let event = match n {
        Notification::InitEnd { attempt } => events::Event::BackupInitSuccess { attempt: *attempt },
        Notification::InitError { attempt, error } => {
            events::Event::BackupInitFailure(BackupInitFailure::Attempt {
                attempt: *attempt,
                class: error.class().as_str().to_string(),
                message: error.to_string(),
            })
        }
        _ => return,
    };
    notifier.emit(Some(backend), now, event);
}

fn build(shell: &Shell, spec: &DriverSpec) -> Result<AnyDriver, DriverError> {
    let (notifier, clock, backend) = (shell.notifier.clone(), shell.clock, spec.backend.clone());
    let ctx = DriverContext {
        spec: spec.clone(),
        started: shell.clock.started(),
        events: crate::driver::DriverEvents::new(move |event| {
            notifier.emit(Some(&backend), clock.now(), event.into());
        }),
    };
    shell.registry.build(&ctx)
}

impl Actor for DriverActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
        self.publish_status(self.shell.clock.now());
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.publish_status(self.shell.clock.now());
    }
}

impl Handler<Start> for DriverActor {
    type Result = ();
    fn handle(&mut self, _: Start, ctx: &mut Context<Self>) {
        self.event_or_log(Event::Start, ctx);
    }
}

impl Handler<Tick> for DriverActor {
    type Result = ();
    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        self.event_or_log(Event::PublisherTick, ctx);
    }
}

impl Handler<Shutdown> for DriverActor {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.event_or_log(Event::ShutdownRequested, ctx);
    }
}

impl Handler<Remove> for DriverActor {
    type Result = ();
    fn handle(&mut self, _: Remove, ctx: &mut Context<Self>) {
        self.event_or_log(Event::RemovalRequested, ctx);
    }
}

impl Handler<ReloadBackend> for DriverActor {
    type Result = ();
    fn handle(&mut self, msg: ReloadBackend, ctx: &mut Context<Self>) {
        if !msg.changed {
            // The file's section is the config this backend runs on.
            self.set_stale_config(None);
        }
        self.pending_specs.insert(msg.config, msg.spec);
        let event = Event::ReloadRequested {
            config: msg.config,
            changed: msg.changed,
            policy: Box::new(msg.policy),
        };
        self.event_or_log(event, ctx);
    }
}

/// Where a backend settled after a reload or shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Its state.
    pub state: StateName,
    /// The config it runs on.
    pub config: ConfigId,
    /// Its last driver error, if failed.
    pub last_error: Option<String>,
    /// Why it runs an older config than the file's, if it does.
    pub stale_config: Option<StaleConfig>,
}

/// Answers once the backend is neither draining, reloading nor rolling
/// back (at once if it already is); with `setup`, also once its first
/// setup is over (a backend a reload added). Dropped unanswered if the
/// actor stops first, which also means settled (stopped).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WhenSettled {
    /// Where the answer goes.
    pub reply: oneshot::Sender<Settled>,
    /// Also wait for the first setup to finish.
    pub setup: bool,
}

impl Handler<WhenSettled> for DriverActor {
    type Result = ();
    fn handle(&mut self, msg: WhenSettled, _: &mut Context<Self>) {
        self.settle_waiters.push((msg.setup, msg.reply));
        self.wake_settle_waiters();
    }
}

/// Reads a driver actor's lifecycle (for tests and embedders).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Lifecycle")]
pub struct GetLifecycle;

impl Handler<GetLifecycle> for DriverActor {
    type Result = MessageResult<GetLifecycle>;
    fn handle(&mut self, _: GetLifecycle, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.lifecycle.clone())
    }
}

/// Builds the spec of a backend that hosts `driver` (helper for embedders).
pub fn spec(backend: &str, kind: Kind, driver: &str, options: &[(&str, &str)]) -> DriverSpec {
    DriverSpec {
        backend: backend.to_string(),
        kind,
        driver: driver.to_string(),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        origin: None,
    }
}
