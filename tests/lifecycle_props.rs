//! Property tests of the lifecycle: random event sequences against the real `step`,
//! the shared invariants, and a flat reference model written from the spec.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use rekindle::lifecycle::{
    DriverError, Effect, Event, Lifecycle, Moment, Policy, State, StateName, Timer, TimerKind,
    invariants,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Recoverable,
    Fatal,
}

#[derive(Debug, Clone)]
enum Op {
    Start,
    SetupOk,
    SetupFail(Class),
    SetupDeadline,
    RetryDue,
    DrainDeadline,
    /// Fire the n-th timer ever armed, whatever state we are in (mostly stale).
    AnyTimer(usize),
    /// Complete the n-th setup ever started, successfully or not (mostly stale).
    AnySetup(usize, bool),
    /// A timer or setup result with generation 0, which is never current.
    Stale(TimerKind),
    StaleSetup(bool),
    Tick,
    Advance(u64),
    OperationStart,
    OperationFinish,
    Reload(bool),
    Shutdown,
    HealthLost(Class),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Start),
        3 => Just(Op::SetupOk),
        4 => prop_oneof![Just(Class::Recoverable), Just(Class::Fatal)].prop_map(Op::SetupFail),
        1 => Just(Op::SetupDeadline),
        3 => Just(Op::RetryDue),
        1 => Just(Op::DrainDeadline),
        2 => any::<usize>().prop_map(Op::AnyTimer),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| Op::AnySetup(i, ok)),
        1 => prop_oneof![Just(TimerKind::Retry), Just(TimerKind::SetupDeadline), Just(TimerKind::DrainDeadline)].prop_map(Op::Stale),
        1 => any::<bool>().prop_map(Op::StaleSetup),
        2 => Just(Op::Tick),
        2 => (0u64..700).prop_map(Op::Advance),
        4 => Just(Op::OperationStart),
        4 => Just(Op::OperationFinish),
        2 => any::<bool>().prop_map(Op::Reload),
        1 => Just(Op::Shutdown),
        1 => prop_oneof![Just(Class::Recoverable), Just(Class::Fatal)].prop_map(Op::HealthLost),
    ]
}

fn error(class: Class) -> DriverError {
    match class {
        Class::Recoverable => DriverError::backend("array down"),
        Class::Fatal => DriverError::Config("san_ip missing".into()),
    }
}

fn policy() -> impl Strategy<Value = Policy> {
    (0u32..5, prop_oneof![Just(0u32), Just(250_000u32)]).prop_map(|(count, jitter)| Policy {
        reinit_driver_count: count,
        reinit_backoff_jitter_ppm: jitter,
        reinit_backoff_max: Duration::from_secs(16),
        ..Policy::default()
    })
}

/// The environment around one lifecycle: time, armed timers, started setups.
struct Env {
    lc: Lifecycle,
    now: Moment,
    timers: Vec<Timer>,
    setups: Vec<u64>,
    running: BTreeSet<u64>,
    accepted_in_flight: u32,
}

impl Env {
    fn new(policy: Policy, seed: u64) -> Self {
        Env {
            lc: Lifecycle::new(policy, 1, seed),
            now: Moment::ZERO,
            timers: Vec::new(),
            setups: Vec::new(),
            running: BTreeSet::new(),
            accepted_in_flight: 0,
        }
    }

    /// Turns an abstract op into a concrete event for the current state.
    fn event(&mut self, op: &Op) -> Option<Event> {
        let state = self.lc.state();
        let setup = state.setup().map(|s| s.id);
        let timer = |kind, generation| Event::TimerFired(Timer { kind, generation });
        Some(match op {
            Op::Start => Event::Start,
            Op::SetupOk => Event::SetupSucceeded { setup: setup? },
            Op::SetupFail(c) => Event::SetupFailed {
                setup: setup?,
                error: error(*c),
            },
            Op::SetupDeadline => timer(TimerKind::SetupDeadline, setup?),
            Op::RetryDue => {
                let r = state.retry()?;
                self.now = self.now.max(r.at);
                timer(TimerKind::Retry, r.timer)
            }
            Op::DrainDeadline => match state {
                State::Draining(d) => {
                    let (at, g) = d.deadline?;
                    self.now = self.now.max(at);
                    timer(TimerKind::DrainDeadline, g)
                }
                _ => return None,
            },
            Op::AnyTimer(i) if !self.timers.is_empty() => {
                Event::TimerFired(self.timers[i % self.timers.len()])
            }
            Op::AnySetup(i, ok) if !self.setups.is_empty() => {
                let setup = self.setups[i % self.setups.len()];
                if *ok {
                    Event::SetupSucceeded { setup }
                } else {
                    Event::SetupFailed {
                        setup,
                        error: error(Class::Recoverable),
                    }
                }
            }
            Op::AnyTimer(_) | Op::AnySetup(..) => return None,
            Op::Stale(kind) => timer(*kind, 0),
            Op::StaleSetup(true) => Event::SetupSucceeded { setup: 0 },
            Op::StaleSetup(false) => Event::SetupFailed {
                setup: 0,
                error: error(Class::Fatal),
            },
            Op::Tick => Event::PublisherTick,
            Op::Advance(s) => {
                self.now = self.now + Duration::from_secs(*s);
                return None;
            }
            Op::OperationStart => Event::OperationStarted,
            Op::OperationFinish => Event::OperationFinished,
            Op::Reload(changed) => Event::ReloadRequested {
                config: self.lc.config() + u64::from(*changed),
                changed: *changed,
                policy: Box::new(*self.lc.policy()),
            },
            Op::Shutdown => Event::ShutdownRequested,
            Op::HealthLost(c) => match state {
                State::Ready(r) => Event::HealthLost {
                    epoch: r.epoch,
                    error: error(*c),
                },
                _ => return None,
            },
        })
    }

    /// Steps the real lifecycle and checks every invariant; returns whether
    /// the event was accepted.
    fn step(&mut self, event: Event) -> Result<bool, TestCaseError> {
        let before = self.lc.clone();
        let (after, fx) = match self.lc.step(event.clone(), self.now) {
            Ok(ok) => ok,
            Err(refused) => {
                // A refusal never changes anything; operations are refused
                // exactly when the driver is not Ready.
                if matches!(event, Event::OperationStarted) {
                    prop_assert_ne!(before.state().name(), StateName::Ready, "{}", refused);
                }
                return Ok(false);
            }
        };
        invariants::check_transition(&before, &event, &after, &fx)
            .map_err(|v| TestCaseError::fail(v.to_string()))?;
        match &event {
            Event::SetupSucceeded { setup } | Event::SetupFailed { setup, .. } => {
                self.running.remove(setup);
            }
            Event::OperationStarted => self.accepted_in_flight += 1,
            Event::OperationFinished => self.accepted_in_flight -= 1,
            _ => {}
        }
        for e in &fx {
            match e {
                Effect::RunSetup { setup, .. } => {
                    self.running.insert(*setup);
                    self.setups.push(*setup);
                }
                Effect::AbortSetup { setup } => {
                    self.running.remove(setup);
                }
                Effect::ScheduleTimer { timer, at } => {
                    prop_assert!(*at >= self.now, "timer armed in the past");
                    self.timers.push(*timer);
                }
                _ => {}
            }
        }
        prop_assert!(
            self.running.len() <= 1,
            "two setups in flight: {:?}",
            self.running
        );
        if after.state().name() == StateName::Stopped {
            self.accepted_in_flight = 0;
        } else {
            prop_assert_eq!(after.state().in_flight(), self.accepted_in_flight);
        }
        if let Some(s) = after.state().setup() {
            prop_assert!(self.running.contains(&s.id), "state's setup is not running");
        }
        self.lc = after;
        Ok(true)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_event_sequences_keep_every_invariant(
        policy in policy(),
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut env = Env::new(policy, seed);
        for op in &ops {
            if let Some(event) = env.event(op) {
                env.step(event)?;
            }
            let budget = env.lc.policy().reinit_driver_count;
            if budget > 0 {
                prop_assert!(env.lc.state().attempt() <= budget);
            }
            if env.lc.state().name() == StateName::FailedFatal {
                prop_assert!(env.lc.state().retry().is_none());
            }
        }
    }

    #[test]
    fn unlimited_budget_and_a_backend_that_comes_back_reaches_ready(
        seed in any::<u64>(),
        failures in 0usize..40,
        noise in prop::collection::vec(op(), 0..30),
    ) {
        let policy = Policy { reinit_driver_count: 0, reinit_backoff_jitter_ppm: 500_000, ..Policy::default() };
        let mut env = Env::new(policy, seed);
        // Arbitrary history first (without shutdown or fatal errors, which
        // legitimately end the story until a reload).
        for op in noise.iter().filter(|o| !matches!(o, Op::Shutdown | Op::SetupFail(Class::Fatal) | Op::HealthLost(Class::Fatal))) {
            if let Some(event) = env.event(op) {
                env.step(event)?;
            }
        }
        if env.lc.state().name() == StateName::Uninitialized {
            env.step(Event::Start)?;
        }
        // The backend fails `failures` more times, then stays up. Environment
        // is fair: due timers fire, setups complete, operations finish.
        let mut left = failures;
        let started = env.now;
        for _ in 0..(failures * 4 + 64) {
            let name = env.lc.state().name();
            let op = match name {
                StateName::Ready => break,
                StateName::Initializing | StateName::Reloading if left > 0 => { left -= 1; Op::SetupFail(Class::Recoverable) }
                StateName::Initializing | StateName::Reloading => Op::SetupOk,
                StateName::FailedRecoverable if env.lc.state().gave_up() => {
                    return Err(TestCaseError::fail("gave up with unlimited budget"));
                }
                StateName::FailedRecoverable => Op::RetryDue,
                StateName::Draining => if env.lc.state().in_flight() > 0 { Op::OperationFinish } else { Op::DrainDeadline },
                StateName::FailedFatal => Op::Reload(false),
                StateName::Uninitialized | StateName::Stopped => {
                    return Err(TestCaseError::fail(format!("unexpected {name}")));
                }
            };
            let event = env.event(&op).ok_or_else(|| TestCaseError::fail(format!("{op:?} impossible in {name}")))?;
            env.step(event)?;
        }
        prop_assert_eq!(env.lc.state().name(), StateName::Ready);
        // Within the backoff bound: every delay is at most the cap.
        let bound = env.lc.policy().reinit_backoff_max * (failures as u32 + 1);
        prop_assert!(env.now.saturating_since(started) <= bound);
    }

    #[test]
    fn the_reference_model_agrees_with_step(
        policy in policy(),
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let policy = Policy { reinit_backoff_jitter_ppm: 0, ..policy };
        let mut env = Env::new(policy, seed);
        let mut model = reference::Model::new(policy);
        // Only ops whose currency the model can know: current ones, or
        // generation 0 (never current); `AnyTimer`/`AnySetup` are covered by
        // the invariant property above.
        for op in ops.iter().filter(|o| !matches!(o, Op::AnyTimer(_) | Op::AnySetup(..))) {
            let Some(event) = env.event(op) else { continue };
            let accepted = env.step(event.clone())?;
            let model_accepted = model.apply(&event, env.now);
            prop_assert_eq!(accepted, model_accepted, "acceptance of {:?}", event);
            prop_assert_eq!(model.observe(), reference::observe(&env.lc), "after {:?}", event);
        }
    }
}

/// A flat reference model, written from the issue text (not from machine.rs):
/// a handful of fields and one match on the event. Setup results and timers
/// with generation 0 are stale; every other one the harness sends is current.
mod reference {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum After {
        Reload(u64),
        Shutdown,
        Fail(bool),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Observed {
        name: StateName,
        attempt: u32,
        in_flight: u32,
        retry: Option<(u32, Moment)>,
        config: u64,
    }

    pub fn observe(lc: &Lifecycle) -> Observed {
        Observed {
            name: lc.state().name(),
            attempt: lc.state().attempt(),
            in_flight: lc.state().in_flight(),
            retry: lc.state().retry().map(|r| (r.attempt, r.at)),
            config: lc.config(),
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
            }
        }

        pub fn observe(&self) -> Observed {
            Observed {
                name: self.name,
                attempt: self.attempt,
                in_flight: self.in_flight,
                retry: self.retry,
                config: self.config,
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
            if count == 0 || self.attempt < count {
                let next = self.attempt + 1;
                let delay = (self.policy.reinit_backoff_base * 2u32.pow(next - 1))
                    .min(self.policy.reinit_backoff_max);
                self.retry = Some((next, now + delay));
            }
        }

        fn settle_budget(&mut self, now: Moment) {
            if now.saturating_since(self.ready_since) >= self.policy.reinit_reset_after {
                self.attempt = 0;
            }
        }

        fn reload(&mut self, config: u64, now: Moment) {
            self.config = config;
            self.in_flight = 0;
            self.setup(StateName::Reloading, 0, now);
        }

        fn stop(&mut self) {
            self.name = StateName::Stopped;
            self.attempt = 0;
            self.in_flight = 0;
            self.retry = None;
        }

        fn drain(&mut self, deadline: Option<Moment>, after: After) {
            self.name = StateName::Draining;
            self.drain_deadline = deadline;
            self.after_drain = after;
        }

        fn end_drain(&mut self, now: Moment) {
            match self.after_drain {
                After::Reload(config) => self.reload(config, now),
                After::Shutdown => self.stop(),
                After::Fail(fatal) => self.fail(fatal, now),
            }
        }

        fn drain_deadline_passed(&mut self) {
            match self.after_drain {
                After::Shutdown => self.stop(),
                _ => self.name = StateName::Ready,
            }
        }

        /// Applies `event` at `now`; returns whether it was accepted.
        pub fn apply(&mut self, event: &Event, now: Moment) -> bool {
            use StateName as N;
            let setting_up = matches!(self.name, N::Initializing | N::Reloading);
            let grace = now + self.policy.graceful_shutdown_timeout;
            match event {
                Event::Start if self.name == N::Uninitialized => {
                    self.setup(N::Initializing, 0, now)
                }
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
                    self.name = N::Ready;
                    self.ready_since = now;
                }
                Event::SetupFailed { setup, error } if *setup != 0 && setting_up => {
                    self.fail(error.is_fatal(), now)
                }
                Event::SetupSucceeded { .. } | Event::SetupFailed { .. } => {}
                Event::TimerFired(t) if t.generation == 0 => {}
                Event::TimerFired(t) => match t.kind {
                    TimerKind::SetupDeadline => self.fail(false, now),
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
                        self.fail(false, now)
                    }
                    (N::Draining, _, Some(at)) if now >= at => self.drain_deadline_passed(),
                    _ => {}
                },
                Event::HealthLost { error, .. } => {
                    self.settle_budget(now);
                    if self.in_flight == 0 {
                        self.fail(error.is_fatal(), now);
                    } else {
                        self.drain(None, After::Fail(error.is_fatal()));
                    }
                }
                Event::ReloadRequested {
                    config, changed, ..
                } => match self.name {
                    N::Stopped => return false,
                    N::Uninitialized => self.config = *config,
                    N::Ready if !changed => {}
                    N::Ready if self.in_flight == 0 => self.reload(*config, now),
                    N::Ready => self.drain(Some(grace), After::Reload(*config)),
                    N::Draining => match self.after_drain {
                        After::Shutdown => {}
                        After::Reload(_) if !changed => self.name = N::Ready,
                        _ => {
                            let deadline = self.drain_deadline.or(Some(grace));
                            self.drain(deadline, After::Reload(*config));
                        }
                    },
                    N::Initializing | N::Reloading if *changed => self.reload(*config, now),
                    N::Initializing | N::Reloading => self.attempt = 0,
                    N::FailedRecoverable | N::FailedFatal => self.reload(*config, now),
                },
                Event::ShutdownRequested => match self.name {
                    N::Ready if self.in_flight > 0 => self.drain(Some(grace), After::Shutdown),
                    N::Draining if self.after_drain == After::Shutdown => {}
                    N::Draining => self.drain(Some(grace), After::Shutdown),
                    _ => self.stop(),
                },
            }
            true
        }
    }
}
