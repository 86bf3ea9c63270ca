//! The transition table of `Lifecycle::step`: one function per family of events, and
//! the steps the rows share (setups, failures, drains, reloads, rollbacks).

use std::mem;

use super::*;

impl Lifecycle {
    /// The transition table, one family of events at a time: each family's
    /// rows, in order, in its own function below; the last row of each is
    /// the family's default.
    pub(super) fn transition(
        &mut self,
        state: State,
        event: Event,
        now: Moment,
        fx: &mut Effects,
    ) -> Result<State, (State, Why)> {
        match event {
            Event::Start => self.on_start(state, event, now, fx),
            Event::OperationStarted
            | Event::OperationFinished
            | Event::OperationTimedOut { .. } => self.on_operation(state, event, now, fx),
            Event::SetupSucceeded { .. } | Event::SetupFailed { .. } => {
                self.on_setup_result(state, event, now, fx)
            }
            Event::TimerFired(_) => self.on_timer(state, event, now, fx),
            Event::PublisherTick => self.on_tick(state, event, now, fx),
            Event::HealthLost { .. } => self.on_health(state, event, now, fx),
            Event::ReloadRequested { .. } => self.on_reload(state, event, now, fx),
            Event::ShutdownRequested | Event::RemovalRequested => {
                self.on_stop(state, event, now, fx)
            }
        }
    }

    /// Start.
    #[inline]
    fn on_start(
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
            (s, _) => Err((s, Why::AlreadyStarted)),
        }
    }

    /// Operations counted in and out, and timed out.
    #[inline]
    fn on_operation(
        &mut self,
        state: State,
        event: Event,
        now: Moment,
        fx: &mut Effects,
    ) -> Result<State, (State, Why)> {
        use State as S;
        match (state, event) {
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
            (s, _) => Err((s, Why::NoneInFlight)),
        }
    }

    /// Setup results (stale ones are ignored).
    #[inline]
    fn on_setup_result(
        &mut self,
        state: State,
        event: Event,
        now: Moment,
        fx: &mut Effects,
    ) -> Result<State, (State, Why)> {
        use State as S;
        match (state, event) {
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
            (s, _) => Ok(s),
        }
    }

    /// Timers (stale ones are ignored).
    #[inline]
    fn on_timer(
        &mut self,
        state: State,
        event: Event,
        now: Moment,
        fx: &mut Effects,
    ) -> Result<State, (State, Why)> {
        use State as S;
        match (state, event) {
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
            (s, _) => Ok(s),
        }
    }

    /// The publisher's tick: publish, reinit when due, sweep deadlines.
    #[inline]
    fn on_tick(
        &mut self,
        state: State,
        event: Event,
        now: Moment,
        fx: &mut Effects,
    ) -> Result<State, (State, Why)> {
        use State as S;
        match (state, event) {
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
            (s, _) => Ok(s),
        }
    }

    /// Health lost.
    #[inline]
    fn on_health(
        &mut self,
        state: State,
        event: Event,
        now: Moment,
        fx: &mut Effects,
    ) -> Result<State, (State, Why)> {
        use State as S;
        match (state, event) {
            // ---- health ----------------------------------------------------
            (S::Ready(r), Event::HealthLost { epoch, error }) if epoch == r.epoch => {
                Ok(self.lose_health(r, error, now, fx))
            }
            (S::Draining(mut d), Event::HealthLost { epoch, error }) if epoch == d.ready.epoch => {
                self.lose_health_draining(&mut d, error, now, fx);
                Ok(S::Draining(d))
            }
            (s, _) => Ok(s),
        }
    }

    /// A reload requested.
    #[inline]
    fn on_reload(
        &mut self,
        state: State,
        event: Event,
        now: Moment,
        fx: &mut Effects,
    ) -> Result<State, (State, Why)> {
        use State as S;
        match (state, event) {
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
            // Only reloads are dispatched here.
            (s, _) => Ok(s),
        }
    }

    /// Shutdown, and removal by a reload (a drain whose deadline aborts it).
    #[inline]
    fn on_stop(
        &mut self,
        state: State,
        event: Event,
        now: Moment,
        fx: &mut Effects,
    ) -> Result<State, (State, Why)> {
        use State as S;
        match (state, event) {
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

            (s, _) => {
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
pub(super) fn waits_on(state: &State, t: Timer) -> bool {
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
