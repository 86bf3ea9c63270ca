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
    /// An operation's call passed its deadline and was abandoned.
    OperationTimeout,
    Reload(bool),
    Shutdown,
    /// A reload removed the backend.
    Remove,
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
        1 => Just(Op::OperationTimeout),
        2 => any::<bool>().prop_map(Op::Reload),
        1 => Just(Op::Shutdown),
        1 => Just(Op::Remove),
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
    (
        0u32..5,
        prop_oneof![Just(0u32), Just(250_000u32)],
        any::<bool>(),
    )
        .prop_map(|(count, jitter, rollback)| Policy {
            reinit_driver_count: count,
            reinit_backoff_jitter_ppm: jitter,
            reinit_backoff_max: Duration::from_secs(16),
            reload_rollback: rollback,
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
            Op::OperationTimeout => match state {
                State::Ready(r) => Event::OperationTimedOut {
                    epoch: r.epoch,
                    error: DriverError::Timeout(Duration::from_secs(60)),
                },
                State::Draining(d) => Event::OperationTimedOut {
                    epoch: d.ready.epoch,
                    error: DriverError::Timeout(Duration::from_secs(60)),
                },
                _ => return None,
            },
            Op::Reload(changed) => Event::ReloadRequested {
                config: self.lc.config() + u64::from(*changed),
                changed: *changed,
                policy: Box::new(*self.lc.policy()),
            },
            Op::Shutdown => Event::ShutdownRequested,
            Op::Remove => Event::RemovalRequested,
            Op::HealthLost(c) => match state {
                State::Ready(r) => Event::HealthLost {
                    epoch: r.epoch,
                    error: error(*c),
                },
                State::Draining(d) => Event::HealthLost {
                    epoch: d.ready.epoch,
                    error: error(*c),
                },
                _ => return None,
            },
        })
    }

    /// Delivers `op`, which must apply and be accepted.
    fn must(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let event = self
            .event(op)
            .ok_or_else(|| TestCaseError::fail(format!("{op:?} does not apply")))?;
        prop_assert!(self.step(event)?, "{:?} refused", op);
        Ok(())
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
            Event::OperationFinished | Event::OperationTimedOut { .. } => {
                self.accepted_in_flight -= 1
            }
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
            // Only the final shutdown may cut accepted work.
            if self.accepted_in_flight > 0 {
                prop_assert!(
                    matches!(event, Event::ShutdownRequested)
                        || matches!(before.state(), State::Draining(d) if d.then == rekindle::lifecycle::AfterDrain::Shutdown),
                    "{} operations cut by {:?}",
                    self.accepted_in_flight,
                    event
                );
            }
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
        for op in noise.iter().filter(|o| !matches!(o, Op::Shutdown | Op::Remove | Op::SetupFail(Class::Fatal) | Op::HealthLost(Class::Fatal))) {
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
                StateName::Initializing | StateName::Reloading | StateName::RollingBack if left > 0 => { left -= 1; Op::SetupFail(Class::Recoverable) }
                StateName::Initializing | StateName::Reloading | StateName::RollingBack => Op::SetupOk,
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

/// How the new config's setup fails in the rollback properties.
#[derive(Debug, Clone, Copy)]
enum NewFails {
    Recoverable,
    Fatal,
    Deadline,
}

fn new_fails() -> impl Strategy<Value = NewFails> {
    prop_oneof![
        Just(NewFails::Recoverable),
        Just(NewFails::Fatal),
        Just(NewFails::Deadline)
    ]
}

/// Brings `env` to Ready after an arbitrary history (shutdowns and
/// removals left out), then reloads a changed config and fails its setup
/// as `how` says. Returns the config the backend served on before.
fn ready_then_failed_reload(
    env: &mut Env,
    noise: &[Op],
    in_flight: u32,
    how: NewFails,
) -> Result<u64, TestCaseError> {
    for op in noise
        .iter()
        .filter(|o| !matches!(o, Op::Shutdown | Op::Remove))
    {
        if let Some(event) = env.event(op) {
            env.step(event)?;
        }
    }
    // Drive to Ready: finish operations, make setups succeed, reload failed drivers.
    for _ in 0..64 {
        let op = match env.lc.state().name() {
            StateName::Ready if env.lc.state().in_flight() == 0 => break,
            StateName::Ready | StateName::Draining => Op::OperationFinish,
            StateName::Uninitialized => Op::Start,
            StateName::Initializing | StateName::Reloading | StateName::RollingBack => Op::SetupOk,
            StateName::FailedRecoverable | StateName::FailedFatal => Op::Reload(true),
            StateName::Stopped => return Err(TestCaseError::fail("stopped")),
        };
        let event = env
            .event(&op)
            .ok_or_else(|| TestCaseError::fail(format!("{op:?}")))?;
        env.step(event)?;
    }
    prop_assert_eq!(env.lc.state().name(), StateName::Ready);
    for _ in 0..in_flight {
        env.step(Event::OperationStarted)?;
    }
    let old = env.lc.config();
    env.must(&Op::Reload(true))?;
    // Operations in flight finish first (the drain).
    while env.lc.state().name() == StateName::Draining {
        env.step(Event::OperationFinished)?;
    }
    prop_assert_eq!(env.lc.state().name(), StateName::Reloading);
    prop_assert_eq!(env.lc.config(), old + 1);
    let op = match how {
        NewFails::Recoverable => Op::SetupFail(Class::Recoverable),
        NewFails::Fatal => Op::SetupFail(Class::Fatal),
        NewFails::Deadline => Op::SetupDeadline,
    };
    env.must(&op)?;
    Ok(old)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A reload never turns a Ready backend into a failed one while its old
    /// config still passes its check: whatever the history, however the new
    /// config fails, the old instance passing its check means Ready again on
    /// the old config.
    #[test]
    fn a_failed_reload_rolls_back_to_the_old_config(
        policy in policy(),
        seed in any::<u64>(),
        noise in prop::collection::vec(op(), 0..60),
        in_flight in 0u32..3,
        how in new_fails(),
    ) {
        let policy = Policy { reload_rollback: true, ..policy };
        let mut env = Env::new(policy, seed);
        let old = ready_then_failed_reload(&mut env, &noise, in_flight, how)?;
        prop_assert_eq!(env.lc.state().name(), StateName::RollingBack);
        // The old instance passes its check.
        env.must(&Op::SetupOk)?;
        prop_assert_eq!(env.lc.state().name(), StateName::Ready);
        prop_assert_eq!(env.lc.config(), old);
        prop_assert!(env.lc.previous().is_none());
        // And it serves.
        env.step(Event::OperationStarted)?;
    }

    /// The old instance failing its check (or not answering) lets the new
    /// config's failure stand, retried as any failed setup; with
    /// `reload_rollback = false` the failure stands at once.
    #[test]
    fn without_a_passing_old_instance_the_failure_stands(
        policy in policy(),
        seed in any::<u64>(),
        noise in prop::collection::vec(op(), 0..60),
        how in new_fails(),
        check_fails in prop_oneof![Just(None), Just(Some(false)), Just(Some(true))],
    ) {
        // None: rollback off; Some(true): the check times out; Some(false): it fails.
        let policy = Policy { reload_rollback: check_fails.is_some(), reinit_driver_count: 0, ..policy };
        let mut env = Env::new(policy, seed);
        let old = ready_then_failed_reload(&mut env, &noise, 0, how)?;
        if let Some(timeout) = check_fails {
            prop_assert_eq!(env.lc.state().name(), StateName::RollingBack);
            let op = if timeout { Op::SetupDeadline } else { Op::SetupFail(Class::Recoverable) };
            env.must(&op)?;
        }
        let expected = match how {
            NewFails::Fatal => StateName::FailedFatal,
            _ => StateName::FailedRecoverable,
        };
        prop_assert_eq!(env.lc.state().name(), expected);
        prop_assert_eq!(env.lc.config(), old + 1, "the new config is the one retried");
        prop_assert!(env.lc.previous().is_none());
        if expected == StateName::FailedRecoverable {
            prop_assert!(env.lc.state().retry().is_some(), "retried with backoff");
        }
    }

    /// A removal with work in flight drains; its deadline passing aborts it
    /// (Ready, nothing cut); with nothing left in flight the backend stops.
    #[test]
    fn a_removal_never_cuts_work(
        seed in any::<u64>(),
        in_flight in 1u32..4,
        finish in any::<bool>(),
    ) {
        let mut env = Env::new(Policy::default(), seed);
        env.step(Event::Start)?;
        env.must(&Op::SetupOk)?;
        for _ in 0..in_flight {
            env.step(Event::OperationStarted)?;
        }
        env.step(Event::RemovalRequested)?;
        prop_assert_eq!(env.lc.state().name(), StateName::Draining);
        prop_assert!(env.lc.step(Event::OperationStarted, env.now).is_err());
        if finish {
            for _ in 0..in_flight {
                env.step(Event::OperationFinished)?;
            }
            prop_assert_eq!(env.lc.state().name(), StateName::Stopped);
        } else {
            env.must(&Op::DrainDeadline)?;
            prop_assert_eq!(env.lc.state().name(), StateName::Ready);
            prop_assert_eq!(env.lc.state().in_flight(), in_flight);
        }
    }
}

/// A flat reference model, written from the issue text (not from machine.rs):
/// a handful of fields and one match on the event. Setup results and timers
/// with generation 0 are stale; every other one the harness sends is current.
mod reference;
