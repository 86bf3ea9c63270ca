//! Lifecycle: the pure transition function `step(state, event, now) -> (state, effects)`.
//! No clock, no I/O, no runtime: time comes in, effects go out as values.

use std::mem;

use super::{
    AfterDrain, ConfigId, Draining, DriverError, Effect, Effects, Event, Failed, Generation,
    Jitter, Moment, Notification, PendingConfig, Policy, Ready, Refused, Retry, RollingBack, Setup,
    State, Timer, TimerKind, Why,
};

/// One driver's lifecycle: its [`State`] plus the bookkeeping a transition
/// needs (policy, current config, generation counter, jitter generator).
/// Everything is plain data, so a `Lifecycle` can be cloned, hashed and
/// compared (the model checker does all three).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Lifecycle {
    state: State,
    policy: Policy,
    config: ConfigId,
    /// The config (and policy) the driver served on before the reload in
    /// progress: what a failed reload rolls back to. `Some` only from a
    /// reload that left Ready until that reload settles. Boxed: reloads are
    /// rare, and every `step` clones the lifecycle.
    previous: Option<Box<PendingConfig>>,
    last_generation: Generation,
    jitter: Jitter,
    /// The driver lost its health while Ready and has not been Ready
    /// since: its setup succeeded on this config, so the backend itself is
    /// away (a store unmounted, a directory moved). Its retries are not
    /// limited by `reinit_driver_count` (Cinder's option counts failed
    /// initializations): it keeps retrying at its last attempt's backoff, attempt
    /// numbers staying within the budget, and comes back by itself when the
    /// backend returns. Cleared on Ready, on a reload, on stop.
    recovering: bool,
}

impl Lifecycle {
    /// A driver in `Uninitialized` running on `config` with `policy`;
    /// `seed` seeds the backoff jitter.
    pub fn new(policy: Policy, config: ConfigId, seed: u64) -> Self {
        Lifecycle {
            state: State::Uninitialized,
            policy,
            config,
            previous: None,
            last_generation: 0,
            jitter: Jitter::from_seed(seed),
            recovering: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The config the driver runs on (or is being set up with).
    pub fn config(&self) -> ConfigId {
        self.config
    }

    /// The config a failed reload in progress would roll back to (the one
    /// the driver served on before it), if any.
    pub fn previous(&self) -> Option<&PendingConfig> {
        self.previous.as_deref()
    }

    /// The last generation handed out (timers and setups use fresh ones).
    pub fn last_generation(&self) -> Generation {
        self.last_generation
    }

    /// Whether the driver is recovering from a health loss: it was Ready on
    /// this config, then its backend went away, and it retries without the
    /// `reinit_driver_count` limit until it is Ready again.
    pub fn recovering(&self) -> bool {
        self.recovering
    }

    /// The same lifecycle with every generation renamed by `rename` (the
    /// model checker renames live generations to a dense canonical order so
    /// its state space stays finite). `rename` must be injective on the
    /// generations in use; the last generation handed out becomes `last`.
    pub fn map_generations(
        &self,
        rename: impl Fn(Generation) -> Generation,
        last: Generation,
    ) -> Lifecycle {
        let mut next = self.clone();
        next.rename_generations(rename, last);
        next
    }

    /// [`Lifecycle::map_generations`] in place.
    pub fn rename_generations(
        &mut self,
        rename: impl Fn(Generation) -> Generation,
        last: Generation,
    ) {
        self.last_generation = last;
        match &mut self.state {
            State::Initializing(s) | State::Reloading(s) => s.id = rename(s.id),
            State::RollingBack(r) => r.check.id = rename(r.check.id),
            State::Ready(r) => r.epoch = rename(r.epoch),
            State::Failed(Failed::Recoverable { retry: Some(r), .. }) => r.timer = rename(r.timer),
            State::Draining(d) => {
                d.ready.epoch = rename(d.ready.epoch);
                if let Some((_, g)) = &mut d.deadline {
                    *g = rename(*g);
                }
            }
            _ => {}
        }
    }

    /// The same lifecycle with every instant set to the epoch and attempts
    /// capped at `max_attempt`: the time-free abstraction the exported spin
    /// model uses (with an unlimited budget and time abstracted, neither the
    /// instants nor attempts beyond the cap change what can happen next).
    pub fn abstracted(&self, max_attempt: u32) -> Lifecycle {
        let mut next = self.clone();
        // With an unlimited budget every failure is retried anyway.
        next.recovering = false;
        let cap = |a: u32| a.min(max_attempt);
        next.state = match &self.state {
            State::Initializing(s) => State::Initializing(Setup {
                attempt: cap(s.attempt),
                deadline: Moment::ZERO,
                ..*s
            }),
            State::Reloading(s) => State::Reloading(Setup {
                attempt: cap(s.attempt),
                deadline: Moment::ZERO,
                ..*s
            }),
            State::RollingBack(r) => State::RollingBack(RollingBack {
                check: Setup {
                    attempt: cap(r.check.attempt),
                    deadline: Moment::ZERO,
                    ..r.check
                },
                error: r.error.clone(),
            }),
            State::Ready(r) => State::Ready(Ready {
                attempt: cap(r.attempt),
                since: Moment::ZERO,
                ..*r
            }),
            State::Failed(Failed::Recoverable {
                attempt,
                retry,
                last_error,
            }) => State::Failed(Failed::Recoverable {
                attempt: cap(*attempt),
                retry: retry.map(|r| Retry {
                    attempt: cap(r.attempt),
                    at: Moment::ZERO,
                    ..r
                }),
                last_error: last_error.clone(),
            }),
            State::Draining(d) => State::Draining(Draining {
                ready: Ready {
                    attempt: cap(d.ready.attempt),
                    since: Moment::ZERO,
                    ..d.ready
                },
                deadline: d.deadline.map(|(_, g)| (Moment::ZERO, g)),
                then: d.then.clone(),
                lost: d.lost.clone(),
            }),
            other => other.clone(),
        };
        next
    }

    /// Caps every attempt number the state holds (setup, Ready, failure,
    /// scheduled retry, drain, rollback check) at `max`, in place; nothing
    /// else changes. The model checker applies it to a driver with an
    /// unlimited budget (`reinit_driver_count = 0`), where an attempt's
    /// number decides nothing but the length of its backoff delay, so the
    /// explored space stays finite.
    pub fn cap_attempts(&mut self, max: u32) {
        let cap = |a: &mut u32| *a = (*a).min(max);
        match &mut self.state {
            State::Initializing(s) | State::Reloading(s) => cap(&mut s.attempt),
            State::RollingBack(r) => cap(&mut r.check.attempt),
            State::Ready(r) => cap(&mut r.attempt),
            State::Draining(d) => cap(&mut d.ready.attempt),
            State::Failed(Failed::Recoverable { attempt, retry, .. }) => {
                cap(attempt);
                if let Some(r) = retry {
                    cap(&mut r.attempt);
                }
            }
            State::Uninitialized | State::Failed(Failed::Fatal { .. }) | State::Stopped => {}
        }
    }

    /// Whether firing `t` now would do anything: the timer the state waits
    /// on (its setup deadline, its retry, its drain deadline). Any other
    /// timer is stale and its firing is ignored, so a shell may cancel it.
    pub fn timer_is_current(&self, t: Timer) -> bool {
        waits_on(&self.state, t)
    }

    /// Every generation the state refers to (setup, epoch, timers).
    pub fn live_generations(&self) -> arrayvec::ArrayVec<Generation, 2> {
        let mut live = arrayvec::ArrayVec::new();
        match &self.state {
            State::Initializing(s) | State::Reloading(s) => live.push(s.id),
            State::RollingBack(r) => live.push(r.check.id),
            State::Ready(r) => live.push(r.epoch),
            State::Failed(Failed::Recoverable { retry: Some(r), .. }) => live.push(r.timer),
            State::Draining(d) => {
                live.push(d.ready.epoch);
                if let Some((_, g)) = d.deadline {
                    live.push(g);
                }
            }
            _ => {}
        }
        live
    }

    /// The pure transition: the lifecycle after `event` at `now`, and the
    /// effects the shell must perform in order. A refused event leaves
    /// `self` as it was and says why; nothing here panics.
    #[inline]
    pub fn step(&self, event: Event, now: Moment) -> Result<(Lifecycle, Effects), Refused> {
        let mut next = self.clone();
        let effects = next.apply(event, now)?;
        Ok((next, effects))
    }

    /// [`Lifecycle::step`] in place: on `Err` nothing changed.
    #[inline]
    pub fn apply(&mut self, event: Event, now: Moment) -> Result<Effects, Refused> {
        let mut effects = Effects::new();
        self.apply_into(event, now, &mut effects)?;
        Ok(effects)
    }

    /// [`Lifecycle::apply`] writing the effects into `effects` (cleared
    /// first; a shell keeps them on its stack instead of moving a list).
    #[inline]
    pub fn apply_into(
        &mut self,
        event: Event,
        now: Moment,
        effects: &mut Effects,
    ) -> Result<(), Refused> {
        effects.clear();
        match event {
            Event::OperationStarted if self.count_ready_operation(true) => return Ok(()),
            Event::OperationFinished if self.count_ready_operation(false) => return Ok(()),
            _ => {}
        }
        let event_name = event.name();
        let state = mem::replace(&mut self.state, State::Uninitialized);
        match self.transition(state, event, now, effects) {
            Ok(next) => {
                self.state = next;
                Ok(())
            }
            Err((old, why)) => {
                let refused = Refused {
                    state: old.name(),
                    event: event_name,
                    why,
                };
                self.state = old;
                Err(refused)
            }
        }
    }

    /// The hot path of `OperationStarted` (`started`) and
    /// `OperationFinished` in Ready: counts the operation in or out and
    /// returns true, exactly as the transition table does (no effects, no
    /// clock). Returns false, changing nothing, in any other case, which
    /// then goes through [`Lifecycle::apply`]. `apply` itself takes this
    /// path, so the checked transition function and a shell calling this
    /// directly cannot disagree.
    #[inline]
    pub fn count_ready_operation(&mut self, started: bool) -> bool {
        let State::Ready(r) = &mut self.state else {
            return false;
        };
        if started && r.in_flight < u32::MAX {
            r.in_flight += 1;
            true
        } else if !started && r.in_flight > 0 {
            r.in_flight -= 1;
            true
        } else {
            false
        }
    }

    fn transition(
        &mut self,
        state: State,
        event: Event,
        now: Moment,
        fx: &mut Effects,
    ) -> Result<State, (State, Why)> {
        use State as S;
        match (state, event) {
            // ---- start ---------------------------------------------------
            (S::Uninitialized, Event::Start) => Ok(self.begin_setup(0, now, fx, S::Initializing)),
            (s @ S::Stopped, Event::Start) => Err((s, Why::Stopped)),
            (s, Event::Start) => Err((s, Why::AlreadyStarted)),

            // ---- operations ----------------------------------------------
            // Counting in and out of Ready is `count_ready_operation`, which
            // `apply_into` tries first; what reaches here from Ready is a
            // start at the in-flight limit or a finish with none in flight.
            (s @ S::Ready(_), Event::OperationStarted) => Err((s, Why::InFlightLimit)),
            (s @ S::Draining(_), Event::OperationStarted) => Err((s, Why::Draining)),
            (s @ S::Stopped, Event::OperationStarted) => Err((s, Why::Stopped)),
            (s, Event::OperationStarted) => {
                let next_retry = s.retry().map(|r| r.at);
                Err((s, Why::NotReady { next_retry }))
            }
            (S::Draining(mut d), Event::OperationFinished) if d.ready.in_flight > 0 => {
                d.ready.in_flight -= 1;
                if d.ready.in_flight == 0 {
                    Ok(self.finish_drain(d, now, fx))
                } else {
                    Ok(S::Draining(d))
                }
            }
            (s, Event::OperationFinished) => Err((s, Why::NoneInFlight)),
            (S::Ready(mut r), Event::OperationTimedOut { epoch, error }) if r.in_flight > 0 => {
                r.in_flight -= 1;
                if epoch == r.epoch {
                    Ok(self.lose_health(r, error, now, fx))
                } else {
                    Ok(S::Ready(r))
                }
            }
            (S::Draining(mut d), Event::OperationTimedOut { epoch, error })
                if d.ready.in_flight > 0 =>
            {
                d.ready.in_flight -= 1;
                if epoch == d.ready.epoch {
                    self.lose_health_draining(&mut d, error, now, fx);
                }
                if d.ready.in_flight == 0 {
                    Ok(self.finish_drain(d, now, fx))
                } else {
                    Ok(S::Draining(d))
                }
            }
            (s, Event::OperationTimedOut { .. }) => Err((s, Why::NoneInFlight)),

            // ---- setup results (stale ones are ignored) ------------------
            (S::Initializing(s) | S::Reloading(s), Event::SetupSucceeded { setup })
                if setup == s.id =>
            {
                // The new config is up: the instance kept for a rollback goes.
                if self.previous.take().is_some() {
                    fx.push(Effect::DropPrevious);
                }
                fx.push(Effect::Notify(Notification::InitEnd { attempt: s.attempt }));
                fx.push(Effect::PublishCapabilities { epoch: s.id });
                self.recovering = false;
                Ok(S::Ready(Ready {
                    in_flight: 0,
                    since: now,
                    attempt: s.attempt,
                    epoch: s.id,
                }))
            }
            (S::Initializing(s) | S::Reloading(s), Event::SetupFailed { setup, error })
                if setup == s.id =>
            {
                Ok(self.setup_failed(s, error, now, fx))
            }
            (S::RollingBack(r), Event::SetupSucceeded { setup }) if setup == r.check.id => {
                Ok(self.rolled_back(r, now, fx))
            }
            (S::RollingBack(r), Event::SetupFailed { setup, .. }) if setup == r.check.id => {
                Ok(self.rollback_failed(r, now, fx))
            }
            (s, Event::SetupSucceeded { .. } | Event::SetupFailed { .. }) => Ok(s),

            // ---- timers (stale ones are ignored) -------------------------
            (s, Event::TimerFired(t)) if !waits_on(&s, t) => Ok(s),
            (S::Initializing(s) | S::Reloading(s), Event::TimerFired(_)) => {
                Ok(self.setup_timed_out(s, now, fx))
            }
            (S::RollingBack(r), Event::TimerFired(_)) => {
                fx.push(Effect::AbortSetup { setup: r.check.id });
                Ok(self.rollback_failed(r, now, fx))
            }
            (S::Failed(Failed::Recoverable { retry: Some(r), .. }), Event::TimerFired(_)) => {
                Ok(self.begin_setup(r.attempt, now, fx, S::Initializing))
            }
            (S::Draining(d), Event::TimerFired(_)) => Ok(self.drain_deadline_passed(d, fx)),
            (s, Event::TimerFired(_)) => Ok(s),

            // ---- publisher tick: publish, reinit when due, sweep deadlines --
            (S::Ready(mut r), Event::PublisherTick) => {
                self.settle_budget(&mut r, now);
                fx.push(Effect::PublishCapabilities { epoch: r.epoch });
                Ok(S::Ready(r))
            }
            (S::Failed(Failed::Recoverable { retry: Some(r), .. }), Event::PublisherTick)
                if now >= r.at =>
            {
                Ok(self.begin_setup(r.attempt, now, fx, S::Initializing))
            }
            (S::Initializing(s) | S::Reloading(s), Event::PublisherTick) if now >= s.deadline => {
                Ok(self.setup_timed_out(s, now, fx))
            }
            (S::RollingBack(r), Event::PublisherTick) if now >= r.check.deadline => {
                fx.push(Effect::AbortSetup { setup: r.check.id });
                Ok(self.rollback_failed(r, now, fx))
            }
            (S::Draining(d), Event::PublisherTick)
                if d.deadline.is_some_and(|(at, _)| now >= at) =>
            {
                Ok(self.drain_deadline_passed(d, fx))
            }
            (s, Event::PublisherTick) => Ok(s),

            // ---- health ----------------------------------------------------
            (S::Ready(r), Event::HealthLost { epoch, error }) if epoch == r.epoch => {
                Ok(self.lose_health(r, error, now, fx))
            }
            (S::Draining(mut d), Event::HealthLost { epoch, error }) if epoch == d.ready.epoch => {
                self.lose_health_draining(&mut d, error, now, fx);
                Ok(S::Draining(d))
            }
            (s, Event::HealthLost { .. }) => Ok(s),

            // ---- reload ----------------------------------------------------
            (S::Uninitialized, Event::ReloadRequested { config, policy, .. }) => {
                self.config = config;
                self.policy = *policy;
                Ok(S::Uninitialized)
            }
            (S::Ready(r), Event::ReloadRequested { changed: false, .. }) => Ok(S::Ready(r)),
            (S::Ready(r), Event::ReloadRequested { config, policy, .. }) => {
                let pending = PendingConfig {
                    config,
                    policy: *policy,
                };
                if r.in_flight == 0 {
                    Ok(self.reload_now(pending, true, now, fx))
                } else {
                    Ok(self.drain(r, AfterDrain::Reload(Box::new(pending)), now, fx))
                }
            }
            (
                S::Draining(mut d),
                Event::ReloadRequested {
                    config,
                    changed,
                    policy,
                },
            ) => match d.then {
                AfterDrain::Shutdown => Ok(S::Draining(d)),
                // The operator reverted the change (or put a removed backend
                // back as it runs): keep serving, untouched, unless the
                // backend was lost meanwhile.
                AfterDrain::Reload(_) | AfterDrain::Remove if !changed => {
                    Ok(Self::end_drain_unapplied(d))
                }
                AfterDrain::Reload(_) | AfterDrain::Remove | AfterDrain::HealthLost(_) => {
                    let then = AfterDrain::Reload(Box::new(PendingConfig {
                        config,
                        policy: *policy,
                    }));
                    if let AfterDrain::HealthLost(error) = mem::replace(&mut d.then, then) {
                        d.lost = Some(Box::new(error));
                    }
                    if d.deadline.is_none() {
                        d.deadline = Some(self.arm_drain_deadline(now, fx));
                    }
                    Ok(S::Draining(d))
                }
            },
            (
                s @ (S::Initializing(_) | S::Reloading(_) | S::RollingBack(_)),
                Event::ReloadRequested {
                    config,
                    changed: true,
                    policy,
                },
            ) => {
                if let Some(setup) = s.setup() {
                    fx.push(Effect::AbortSetup { setup: setup.id });
                }
                let pending = PendingConfig {
                    config,
                    policy: *policy,
                };
                // A rollback target kept by an earlier reload stays: it is
                // still the last config that served.
                Ok(self.reload_now(pending, false, now, fx))
            }
            // Same config: the setup in flight goes on, with a fresh budget.
            (S::Initializing(s), Event::ReloadRequested { .. }) => {
                Ok(S::Initializing(Setup { attempt: 0, ..s }))
            }
            (S::Reloading(s), Event::ReloadRequested { .. }) => {
                Ok(S::Reloading(Setup { attempt: 0, ..s }))
            }
            (S::RollingBack(r), Event::ReloadRequested { .. }) => Ok(S::RollingBack(RollingBack {
                check: Setup {
                    attempt: 0,
                    ..r.check
                },
                error: r.error,
            })),
            // A failed driver (fatal or given up or waiting) is set up again
            // with a fresh budget, changed config or not.
            (S::Failed(_), Event::ReloadRequested { config, policy, .. }) => {
                let pending = PendingConfig {
                    config,
                    policy: *policy,
                };
                Ok(self.reload_now(pending, false, now, fx))
            }
            (s @ S::Stopped, Event::ReloadRequested { .. }) => Err((s, Why::Stopped)),

            // ---- shutdown --------------------------------------------------
            (S::Ready(r), Event::ShutdownRequested) if r.in_flight > 0 => {
                Ok(self.drain(r, AfterDrain::Shutdown, now, fx))
            }
            (S::Draining(d), Event::ShutdownRequested) => match d.then {
                AfterDrain::Shutdown => Ok(S::Draining(d)),
                _ => Ok(self.drain(d.ready, AfterDrain::Shutdown, now, fx)),
            },
            (S::Stopped, Event::ShutdownRequested | Event::RemovalRequested) => Ok(S::Stopped),

            // ---- removal by a reload: a drain whose deadline aborts it -----
            (S::Ready(r), Event::RemovalRequested) if r.in_flight > 0 => {
                Ok(self.drain(r, AfterDrain::Remove, now, fx))
            }
            (S::Draining(mut d), Event::RemovalRequested) => match d.then {
                AfterDrain::Shutdown | AfterDrain::Remove => Ok(S::Draining(d)),
                AfterDrain::Reload(_) | AfterDrain::HealthLost(_) => {
                    if let AfterDrain::HealthLost(error) =
                        mem::replace(&mut d.then, AfterDrain::Remove)
                    {
                        d.lost = Some(Box::new(error));
                    }
                    if d.deadline.is_none() {
                        d.deadline = Some(self.arm_drain_deadline(now, fx));
                    }
                    Ok(S::Draining(d))
                }
            },

            (s, Event::ShutdownRequested | Event::RemovalRequested) => {
                if let Some(setup) = s.setup() {
                    fx.push(Effect::AbortSetup { setup: setup.id });
                }
                self.previous = None;
                fx.push(Effect::Stop);
                Ok(S::Stopped)
            }
        }
    }

    fn fresh_generation(&mut self) -> Generation {
        self.last_generation = self.last_generation.wrapping_add(1);
        self.last_generation
    }

    /// Starts setup attempt `attempt` with its deadline; `into` picks
    /// Initializing or Reloading.
    fn begin_setup(
        &mut self,
        attempt: u32,
        now: Moment,
        fx: &mut Effects,
        into: fn(Setup) -> State,
    ) -> State {
        fx.push(Effect::Notify(Notification::InitStart { attempt }));
        into(self.arm_setup(attempt, false, now, fx))
    }

    /// A fresh setup (or, with `previous`, a check of the instance set
    /// aside) under the setup deadline: runs it and arms the deadline.
    fn arm_setup(&mut self, attempt: u32, previous: bool, now: Moment, fx: &mut Effects) -> Setup {
        let id = self.fresh_generation();
        let deadline = now + self.policy.driver_init_timeout;
        fx.push(Effect::RunSetup {
            setup: id,
            attempt,
            previous,
        });
        fx.push(Effect::ScheduleTimer {
            timer: timer(TimerKind::SetupDeadline, id),
            at: deadline,
        });
        Setup {
            attempt,
            id,
            deadline,
        }
    }

    fn setup_failed(
        &mut self,
        s: Setup,
        error: DriverError,
        now: Moment,
        fx: &mut Effects,
    ) -> State {
        fx.push(Effect::Notify(Notification::InitError {
            attempt: s.attempt,
            error: error.clone(),
        }));
        if self.previous.is_some() {
            if self.policy.reload_rollback {
                return self.begin_rollback_check(s.attempt, error, now, fx);
            }
            self.previous = None;
            fx.push(Effect::DropPrevious);
        }
        self.fail(s.attempt, error, now, fx)
    }

    /// The new config of a reload that left Ready failed to set up: check
    /// the instance set aside before it (`check_for_setup_error`), with the
    /// setup deadline.
    fn begin_rollback_check(
        &mut self,
        attempt: u32,
        error: DriverError,
        now: Moment,
        fx: &mut Effects,
    ) -> State {
        State::RollingBack(RollingBack {
            check: self.arm_setup(attempt, true, now, fx),
            error,
        })
    }

    /// The old instance passed its check: Ready on the old config again.
    fn rolled_back(&mut self, r: RollingBack, now: Moment, fx: &mut Effects) -> State {
        let Some(previous) = self.previous.take() else {
            // Not reachable (RollingBack is entered only with a target);
            // treated as a failed rollback rather than a panic.
            return self.fail(r.check.attempt, r.error, now, fx);
        };
        let PendingConfig { config, policy } = *previous;
        self.config = config;
        self.policy = policy;
        fx.push(Effect::RestorePrevious);
        self.recovering = false;
        fx.push(Effect::Notify(Notification::ReloadRolledBack {
            error: r.error,
        }));
        fx.push(Effect::PublishCapabilities { epoch: r.check.id });
        State::Ready(Ready {
            in_flight: 0,
            since: now,
            attempt: 0,
            epoch: r.check.id,
        })
    }

    /// The old instance failed its check (or did not answer in time): the
    /// new config's failure stands and is retried as any failed setup.
    fn rollback_failed(&mut self, r: RollingBack, now: Moment, fx: &mut Effects) -> State {
        self.previous = None;
        fx.push(Effect::DropPrevious);
        self.fail(r.check.attempt, r.error, now, fx)
    }

    fn setup_timed_out(&mut self, s: Setup, now: Moment, fx: &mut Effects) -> State {
        fx.push(Effect::AbortSetup { setup: s.id });
        let error = DriverError::Timeout(self.policy.driver_init_timeout);
        self.setup_failed(s, error, now, fx)
    }

    /// Classifies a failure of attempt `attempt`: fatal, retry with backoff,
    /// or give up when the budget is spent (never while [`recovering`]
    /// from a health loss).
    ///
    /// [`recovering`]: Lifecycle::recovering
    fn fail(&mut self, attempt: u32, error: DriverError, now: Moment, fx: &mut Effects) -> State {
        if error.is_fatal() {
            return State::Failed(Failed::Fatal { reason: error });
        }
        let within_budget = self.policy.may_retry_after(attempt);
        if !within_budget && !self.recovering {
            fx.push(Effect::Notify(Notification::GaveUp {
                attempts: attempt.saturating_add(1),
            }));
            return State::Failed(Failed::Recoverable {
                attempt,
                retry: None,
                last_error: error,
            });
        }
        // Recovering from a health loss past the budget: the same attempt
        // again, at its (capped) backoff.
        let next = if within_budget {
            attempt.saturating_add(1)
        } else {
            attempt
        };
        let delay = self.policy.backoff_with_jitter(next, &mut self.jitter);
        let timer_id = self.fresh_generation();
        let at = now + delay;
        fx.push(Effect::Notify(Notification::RetryScheduled {
            attempt: next,
            delay,
        }));
        fx.push(Effect::ScheduleTimer {
            timer: timer(TimerKind::Retry, timer_id),
            at,
        });
        State::Failed(Failed::Recoverable {
            attempt,
            retry: Some(Retry {
                attempt: next,
                at,
                timer: timer_id,
            }),
            last_error: error,
        })
    }

    /// Resets the attempt budget of a driver Ready for `reinit_reset_after`.
    fn settle_budget(&self, r: &mut Ready, now: Moment) {
        if now.saturating_since(r.since) >= self.policy.reinit_reset_after {
            r.attempt = 0;
        }
    }

    fn arm_drain_deadline(&mut self, now: Moment, fx: &mut Effects) -> (Moment, Generation) {
        let id = self.fresh_generation();
        let at = now + self.policy.graceful_shutdown_timeout;
        fx.push(Effect::ScheduleTimer {
            timer: timer(TimerKind::DrainDeadline, id),
            at,
        });
        (at, id)
    }

    fn drain(&mut self, ready: Ready, then: AfterDrain, now: Moment, fx: &mut Effects) -> State {
        let deadline = Some(self.arm_drain_deadline(now, fx));
        State::Draining(Draining {
            ready,
            deadline,
            then,
            lost: None,
        })
    }

    /// A Ready driver lost its backend (a stats call failed, or an
    /// operation's call passed its deadline): said, then failed
    /// recoverably at once, or once the operations still in flight end.
    fn lose_health(
        &mut self,
        mut r: Ready,
        error: DriverError,
        now: Moment,
        fx: &mut Effects,
    ) -> State {
        self.settle_budget(&mut r, now);
        fx.push(Effect::Notify(Notification::HealthLost {
            error: error.clone(),
        }));
        if r.in_flight == 0 {
            self.recovering = true;
            self.fail(r.attempt, error, now, fx)
        } else {
            State::Draining(Draining {
                ready: r,
                deadline: None,
                then: AfterDrain::HealthLost(error),
                lost: None,
            })
        }
    }

    /// A draining driver lost its backend: said once, and remembered, so a
    /// reload or a removal that is aborted or reverted does not return it
    /// to Ready. A shutdown drain (stopping anyway) and a health-lost drain
    /// (failing anyway) need nothing more.
    fn lose_health_draining(
        &mut self,
        d: &mut Draining,
        error: DriverError,
        now: Moment,
        fx: &mut Effects,
    ) {
        if matches!(d.then, AfterDrain::Reload(_) | AfterDrain::Remove) && d.lost.is_none() {
            self.settle_budget(&mut d.ready, now);
            fx.push(Effect::Notify(Notification::HealthLost {
                error: error.clone(),
            }));
            d.lost = Some(Box::new(error));
        }
    }

    /// A drain ends without applying what it drained for (its deadline
    /// passed, or the operator reverted the change): the driver serves on,
    /// or, if its backend was lost meanwhile, keeps draining without a
    /// deadline (in-flight work is never cut) and then fails recoverably.
    fn end_drain_unapplied(d: Draining) -> State {
        match d.health_lost().cloned() {
            None => State::Ready(d.ready),
            Some(error) => State::Draining(Draining {
                ready: d.ready,
                deadline: None,
                then: AfterDrain::HealthLost(error),
                lost: None,
            }),
        }
    }

    fn finish_drain(&mut self, d: Draining, now: Moment, fx: &mut Effects) -> State {
        match d.then {
            AfterDrain::Reload(pending) => self.reload_now(*pending, true, now, fx),
            AfterDrain::Shutdown | AfterDrain::Remove => {
                fx.push(Effect::Stop);
                State::Stopped
            }
            AfterDrain::HealthLost(error) => {
                self.recovering = true;
                self.fail(d.ready.attempt, error, now, fx)
            }
        }
    }

    fn drain_deadline_passed(&mut self, d: Draining, fx: &mut Effects) -> State {
        let in_flight = d.ready.in_flight;
        let aborted = match d.then {
            // In-flight work is never cut by a reload: abort it instead.
            AfterDrain::Reload(_) | AfterDrain::HealthLost(_) => {
                Notification::ReloadAborted { in_flight }
            }
            // A removal never cuts work either: the backend keeps serving.
            AfterDrain::Remove => Notification::RemovalAborted { in_flight },
            AfterDrain::Shutdown => {
                fx.push(Effect::Stop);
                return State::Stopped;
            }
        };
        fx.push(Effect::Notify(aborted));
        Self::end_drain_unapplied(d)
    }

    /// Applies `pending` and starts its setup. `from_ready`: the driver
    /// served on the running config until now, which becomes the rollback
    /// target (its instance is set aside, not torn down).
    fn reload_now(
        &mut self,
        pending: PendingConfig,
        from_ready: bool,
        now: Moment,
        fx: &mut Effects,
    ) -> State {
        if from_ready {
            self.previous = Some(Box::new(PendingConfig {
                config: self.config,
                policy: self.policy,
            }));
        }
        self.config = pending.config;
        self.policy = pending.policy;
        self.recovering = false;
        fx.push(Effect::ApplyConfig {
            config: pending.config,
            keep_previous: from_ready,
        });
        self.begin_setup(0, now, fx, State::Reloading)
    }
}

/// Whether `state` waits on `t`: its setup deadline, its retry, or its
/// drain deadline. The transition table acts on exactly these timers.
fn waits_on(state: &State, t: Timer) -> bool {
    match state {
        State::Initializing(s) | State::Reloading(s) => t == timer(TimerKind::SetupDeadline, s.id),
        State::RollingBack(r) => t == timer(TimerKind::SetupDeadline, r.check.id),
        State::Failed(Failed::Recoverable { retry: Some(r), .. }) => {
            t == timer(TimerKind::Retry, r.timer)
        }
        State::Draining(d) => {
            d.deadline.map(|(_, g)| timer(TimerKind::DrainDeadline, g)) == Some(t)
        }
        _ => false,
    }
}

fn timer(kind: TimerKind, generation: Generation) -> Timer {
    Timer { kind, generation }
}
