//! A reference model of the lifecycle, written independently of `step`: the property
//! tests compare the two on generated event sequences.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Reload(u64),
    Shutdown,
    Remove,
    Fail(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    name: StateName,
    attempt: u32,
    in_flight: u32,
    retry: Option<(u32, Moment)>,
    config: u64,
    previous: Option<u64>,
}

pub fn observe(lc: &Lifecycle) -> Observed {
    Observed {
        name: lc.state().name(),
        attempt: lc.state().attempt(),
        in_flight: lc.state().in_flight(),
        retry: lc.state().retry().map(|r| (r.attempt, r.at)),
        config: lc.config(),
        previous: lc.previous().map(|p| p.config),
    }
}

pub struct Model {
    policy: Policy,
    name: StateName,
    attempt: u32,
    in_flight: u32,
    retry: Option<(u32, Moment)>,
    config: u64,
    setup_deadline: Moment,
    ready_since: Moment,
    drain_deadline: Option<Moment>,
    after_drain: After,
    /// The config a failed reload rolls back to.
    previous: Option<u64>,
    /// Whether the failed new config's error was fatal (while rolling back).
    new_fatal: bool,
    /// Lost its health while Ready and not Ready since: retries are not
    /// limited by the budget (the attempt stays at its last number).
    recovering: bool,
    /// Lost its health during a reload's or removal's drain (whether the
    /// error was fatal): that drain, if aborted, fails instead of serving.
    lost: Option<bool>,
}

impl Model {
    pub fn new(policy: Policy) -> Self {
        Model {
            policy,
            name: StateName::Uninitialized,
            attempt: 0,
            in_flight: 0,
            retry: None,
            config: 1,
            setup_deadline: Moment::ZERO,
            ready_since: Moment::ZERO,
            drain_deadline: None,
            after_drain: After::Shutdown,
            previous: None,
            new_fatal: false,
            recovering: false,
            lost: None,
        }
    }

    pub fn observe(&self) -> Observed {
        Observed {
            name: self.name,
            attempt: self.attempt,
            in_flight: self.in_flight,
            retry: self.retry,
            config: self.config,
            previous: self.previous,
        }
    }

    fn setup(&mut self, name: StateName, attempt: u32, now: Moment) {
        self.name = name;
        self.attempt = attempt;
        self.retry = None;
        self.setup_deadline = now + self.policy.driver_init_timeout;
    }

    fn fail(&mut self, fatal: bool, now: Moment) {
        self.in_flight = 0;
        if fatal {
            self.name = StateName::FailedFatal;
            self.attempt = 0;
            return;
        }
        self.name = StateName::FailedRecoverable;
        let count = self.policy.reinit_driver_count;
        let next = if count == 0 || self.attempt < count {
            self.attempt + 1
        } else if self.recovering {
            self.attempt
        } else {
            return;
        };
        let delay = (self.policy.reinit_backoff_base * 2u32.pow(next - 1))
            .min(self.policy.reinit_backoff_max);
        self.retry = Some((next, now + delay));
    }

    fn settle_budget(&mut self, now: Moment) {
        if now.saturating_since(self.ready_since) >= self.policy.reinit_reset_after {
            self.attempt = 0;
        }
    }

    /// A setup of the current config failed: roll back when a reload
    /// left Ready and rollback is on, else fail.
    fn setup_failed(&mut self, fatal: bool, now: Moment) {
        if self.previous.is_some() && self.policy.reload_rollback {
            self.name = StateName::RollingBack;
            self.new_fatal = fatal;
            self.setup_deadline = now + self.policy.driver_init_timeout;
        } else {
            self.previous = None;
            self.fail(fatal, now);
        }
    }

    fn rollback_failed(&mut self, now: Moment) {
        self.previous = None;
        self.fail(self.new_fatal, now);
    }

    fn reload(&mut self, config: u64, from_ready: bool, now: Moment) {
        if from_ready {
            self.previous = Some(self.config);
        }
        self.config = config;
        self.in_flight = 0;
        self.recovering = false;
        self.setup(StateName::Reloading, 0, now);
    }

    fn stop(&mut self) {
        self.previous = None;
        self.name = StateName::Stopped;
        self.attempt = 0;
        self.in_flight = 0;
        self.retry = None;
    }

    fn drain(&mut self, deadline: Option<Moment>, after: After) {
        self.name = StateName::Draining;
        self.drain_deadline = deadline;
        self.after_drain = after;
        self.lost = None;
    }

    /// A drain turns into a reload's or a removal's: its deadline is
    /// kept (or armed), and a health loss it drained for is remembered.
    fn redirect_drain(&mut self, after: After, grace: Moment) {
        if let After::Fail(fatal) = self.after_drain {
            self.lost = Some(fatal);
        }
        self.drain_deadline = self.drain_deadline.or(Some(grace));
        self.after_drain = after;
    }

    /// The backend is lost while draining: remembered by a reload's or
    /// a removal's drain (the others stop or fail anyway).
    fn lose_draining(&mut self, fatal: bool, now: Moment) {
        if matches!(self.after_drain, After::Reload(_) | After::Remove) && self.lost.is_none() {
            self.settle_budget(now);
            self.lost = Some(fatal);
        }
    }

    /// A drain ends without what it drained for: serving again, or,
    /// if the backend was lost, draining on to a failure.
    fn end_drain_unapplied(&mut self) {
        let lost = match self.after_drain {
            After::Fail(fatal) => Some(fatal),
            _ => self.lost,
        };
        match lost {
            None => self.name = StateName::Ready,
            Some(fatal) => self.drain(None, After::Fail(fatal)),
        }
    }

    fn end_drain(&mut self, now: Moment) {
        match self.after_drain {
            After::Reload(config) => self.reload(config, true, now),
            After::Shutdown | After::Remove => self.stop(),
            After::Fail(fatal) => {
                self.recovering = true;
                self.fail(fatal, now)
            }
        }
    }

    /// A Ready backend lost its backend: failed at once, or once the
    /// operations in flight end.
    fn lose_health(&mut self, fatal: bool, now: Moment) {
        self.settle_budget(now);
        if self.in_flight == 0 {
            self.recovering = true;
            self.fail(fatal, now);
        } else {
            self.drain(None, After::Fail(fatal));
        }
    }

    fn drain_deadline_passed(&mut self) {
        match self.after_drain {
            After::Shutdown => self.stop(),
            _ => self.end_drain_unapplied(),
        }
    }

    /// Applies `event` at `now`; returns whether it was accepted.
    pub fn apply(&mut self, event: &Event, now: Moment) -> bool {
        use StateName as N;
        let setting_up = matches!(self.name, N::Initializing | N::Reloading);
        let grace = now + self.policy.graceful_shutdown_timeout;
        match event {
            Event::Start if self.name == N::Uninitialized => self.setup(N::Initializing, 0, now),
            Event::Start => return false,
            Event::OperationStarted if self.name == N::Ready => self.in_flight += 1,
            Event::OperationStarted => return false,
            Event::OperationFinished if self.in_flight == 0 => return false,
            Event::OperationFinished => {
                self.in_flight -= 1;
                if self.name == N::Draining && self.in_flight == 0 {
                    self.end_drain(now);
                }
            }
            Event::SetupSucceeded { setup } if *setup != 0 && setting_up => {
                self.previous = None;
                self.name = N::Ready;
                self.recovering = false;
                self.ready_since = now;
            }
            Event::SetupFailed { setup, error } if *setup != 0 && setting_up => {
                self.setup_failed(error.is_fatal(), now)
            }
            Event::SetupSucceeded { setup } if *setup != 0 && self.name == N::RollingBack => {
                self.config = self.previous.take().unwrap_or(self.config);
                self.name = N::Ready;
                self.recovering = false;
                self.attempt = 0;
                self.ready_since = now;
            }
            Event::SetupFailed { setup, .. } if *setup != 0 && self.name == N::RollingBack => {
                self.rollback_failed(now)
            }
            Event::SetupSucceeded { .. } | Event::SetupFailed { .. } => {}
            Event::TimerFired(t) if t.generation == 0 => {}
            Event::TimerFired(t) => match t.kind {
                TimerKind::SetupDeadline if self.name == N::RollingBack => {
                    self.rollback_failed(now)
                }
                TimerKind::SetupDeadline => self.setup_failed(false, now),
                TimerKind::Retry => {
                    let attempt = self.retry.map_or(0, |r| r.0);
                    self.setup(N::Initializing, attempt, now);
                }
                TimerKind::DrainDeadline => self.drain_deadline_passed(),
            },
            Event::PublisherTick => match (self.name, self.retry, self.drain_deadline) {
                (N::Ready, _, _) => self.settle_budget(now),
                (N::FailedRecoverable, Some((attempt, at)), _) if now >= at => {
                    self.setup(N::Initializing, attempt, now)
                }
                (N::Initializing | N::Reloading, _, _) if now >= self.setup_deadline => {
                    self.setup_failed(false, now)
                }
                (N::RollingBack, _, _) if now >= self.setup_deadline => self.rollback_failed(now),
                (N::Draining, _, Some(at)) if now >= at => self.drain_deadline_passed(),
                _ => {}
            },
            Event::OperationTimedOut { .. } if self.in_flight == 0 => return false,
            Event::OperationTimedOut { error, .. } => {
                self.in_flight -= 1;
                match self.name {
                    // A Ready backend whose call hung has lost its health.
                    N::Ready => self.lose_health(error.is_fatal(), now),
                    N::Draining => {
                        self.lose_draining(error.is_fatal(), now);
                        if self.in_flight == 0 {
                            self.end_drain(now);
                        }
                    }
                    _ => {}
                }
            }
            Event::HealthLost { error, .. } => match self.name {
                N::Draining => self.lose_draining(error.is_fatal(), now),
                _ => self.lose_health(error.is_fatal(), now),
            },
            Event::ReloadRequested {
                config, changed, ..
            } => match self.name {
                N::Stopped => return false,
                N::Uninitialized => self.config = *config,
                N::Ready if !changed => {}
                N::Ready if self.in_flight == 0 => self.reload(*config, true, now),
                N::Ready => self.drain(Some(grace), After::Reload(*config)),
                N::Draining => match self.after_drain {
                    After::Shutdown => {}
                    After::Reload(_) | After::Remove if !changed => self.end_drain_unapplied(),
                    _ => self.redirect_drain(After::Reload(*config), grace),
                },
                N::Initializing | N::Reloading | N::RollingBack if *changed => {
                    self.reload(*config, false, now)
                }
                N::Initializing | N::Reloading | N::RollingBack => self.attempt = 0,
                N::FailedRecoverable | N::FailedFatal => self.reload(*config, false, now),
            },
            Event::ShutdownRequested => match self.name {
                N::Ready if self.in_flight > 0 => self.drain(Some(grace), After::Shutdown),
                N::Draining if self.after_drain == After::Shutdown => {}
                N::Draining => self.drain(Some(grace), After::Shutdown),
                _ => self.stop(),
            },
            // A removal drains like a reload; its deadline aborts it.
            Event::RemovalRequested => match self.name {
                N::Ready if self.in_flight > 0 => self.drain(Some(grace), After::Remove),
                N::Draining if matches!(self.after_drain, After::Shutdown | After::Remove) => {}
                N::Draining => self.redirect_drain(After::Remove, grace),
                _ => self.stop(),
            },
        }
        true
    }
}
