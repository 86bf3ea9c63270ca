//! One test per row of the lifecycle transition table, driving the real `step`.
//! Rows are reached by replaying events from `Uninitialized`, never by building states by hand.

use std::time::Duration;

use rekindle::lifecycle::{
    DriverError, Effect, Event, Lifecycle, Moment, Notification, Policy, Refused, State, StateName,
    Timer, TimerKind, Why,
};

const T0: Moment = Moment::ZERO;

fn secs(s: u64) -> Moment {
    Moment::from_secs(s)
}

fn backend_down() -> DriverError {
    DriverError::backend("array not reachable")
}

/// A small harness: a lifecycle plus the effects of its last step.
struct Drive {
    lc: Lifecycle,
    fx: Vec<Effect>,
}

impl Drive {
    fn new(policy: Policy) -> Self {
        Drive {
            lc: Lifecycle::new(policy, 1, 7),
            fx: Vec::new(),
        }
    }

    fn defaults() -> Self {
        Self::new(Policy::default())
    }

    fn ok(&mut self, event: Event, now: Moment) -> &mut Self {
        let before = self.lc.clone();
        let (next, fx) = self
            .lc
            .step(event.clone(), now)
            .unwrap_or_else(|r| panic!("{event:?} refused: {r}"));
        rekindle::lifecycle::invariants::check_transition(&before, &event, &next, &fx)
            .unwrap_or_else(|v| panic!("{v}"));
        self.lc = next;
        self.fx = fx.to_vec();
        self
    }

    fn refused(&mut self, event: Event, now: Moment) -> Refused {
        let before = self.lc.clone();
        let refused = self.lc.step(event, now).expect_err("event must be refused");
        assert_eq!(self.lc, before, "a refused event changes nothing");
        refused
    }

    fn name(&self) -> StateName {
        self.lc.state().name()
    }

    fn setup_id(&self) -> u64 {
        self.lc.state().setup().expect("a setup is in flight").id
    }

    fn succeed(&mut self, now: Moment) -> &mut Self {
        let setup = self.setup_id();
        self.ok(Event::SetupSucceeded { setup }, now)
    }

    fn fail_with(&mut self, error: DriverError, now: Moment) -> &mut Self {
        let setup = self.setup_id();
        self.ok(Event::SetupFailed { setup, error }, now)
    }

    fn fire_retry(&mut self, now: Moment) -> &mut Self {
        let r = *self.lc.state().retry().expect("a retry is scheduled");
        self.ok(
            Event::TimerFired(Timer {
                kind: TimerKind::Retry,
                generation: r.timer,
            }),
            now,
        )
    }

    fn ready(&mut self) -> &mut Self {
        self.ok(Event::Start, T0).succeed(T0)
    }

    fn epoch(&self) -> u64 {
        match self.lc.state() {
            State::Ready(r) => r.epoch,
            State::Draining(d) => d.ready.epoch,
            other => panic!("no epoch in {other:?}"),
        }
    }

    /// The health probe of the current Ready period fails at `now`.
    fn lose_health(&mut self, now: Moment) -> &mut Self {
        let epoch = self.epoch();
        self.ok(
            Event::HealthLost {
                epoch,
                error: backend_down(),
            },
            now,
        )
    }

    fn reload(&mut self, changed: bool, now: Moment) -> &mut Self {
        let config = self.lc.config() + 1;
        let policy = Box::new(*self.lc.policy());
        self.ok(
            Event::ReloadRequested {
                config,
                changed,
                policy,
            },
            now,
        )
    }

    fn notes(&self) -> Vec<Notification> {
        self.fx
            .iter()
            .filter_map(|e| match e {
                Effect::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    fn has(&self, pred: impl Fn(&Effect) -> bool) -> bool {
        self.fx.iter().any(pred)
    }

    fn scheduled(&self, kind: TimerKind) -> Option<Moment> {
        self.fx.iter().find_map(|e| match e {
            Effect::ScheduleTimer { timer, at } if timer.kind == kind => Some(*at),
            _ => None,
        })
    }
}

// ---- Uninitialized -------------------------------------------------------

#[test]
fn start_runs_setup_with_a_deadline() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, secs(5));
    assert_eq!(d.name(), StateName::Initializing);
    let id = d.setup_id();
    assert_eq!(d.notes(), vec![Notification::InitStart { attempt: 0 }]);
    assert!(d.has(|e| *e
        == Effect::RunSetup {
            setup: id,
            attempt: 0,
            previous: false
        }));
    assert_eq!(d.scheduled(TimerKind::SetupDeadline), Some(secs(125)));
}

#[test]
fn start_twice_is_refused() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0);
    assert_eq!(d.refused(Event::Start, T0).why, Why::AlreadyStarted);
}

#[test]
fn operations_before_start_are_refused_as_not_ready() {
    let mut d = Drive::defaults();
    let r = d.refused(Event::OperationStarted, T0);
    assert_eq!(r.state, StateName::Uninitialized);
    assert_eq!(r.why, Why::NotReady { next_retry: None });
}

#[test]
fn reload_before_start_records_the_config_only() {
    let mut d = Drive::defaults();
    d.reload(true, T0);
    assert_eq!(d.name(), StateName::Uninitialized);
    assert_eq!(d.lc.config(), 2);
    assert!(d.fx.is_empty());
}

#[test]
fn shutdown_before_start_stops() {
    let mut d = Drive::defaults();
    d.ok(Event::ShutdownRequested, T0);
    assert_eq!(d.name(), StateName::Stopped);
    assert_eq!(d.fx, vec![Effect::Stop]);
}

// ---- Initializing --------------------------------------------------------

#[test]
fn setup_success_makes_ready_and_publishes() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0);
    let id = d.setup_id();
    d.succeed(secs(1));
    assert_eq!(d.name(), StateName::Ready);
    assert_eq!(d.notes(), vec![Notification::InitEnd { attempt: 0 }]);
    assert!(d.has(|e| *e == Effect::PublishCapabilities { epoch: id }));
}

#[test]
fn default_backoff_is_one_two_four_seconds_then_gives_up() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0);
    let mut now = T0;
    let mut setups = 1;
    for (attempt, delay) in [(1u32, 1u64), (2, 2), (3, 4)] {
        d.fail_with(backend_down(), now);
        assert_eq!(d.name(), StateName::FailedRecoverable);
        assert!(d.notes().contains(&Notification::RetryScheduled {
            attempt,
            delay: Duration::from_secs(delay)
        }));
        assert_eq!(
            d.scheduled(TimerKind::Retry),
            Some(now + Duration::from_secs(delay))
        );
        now = now + Duration::from_secs(delay);
        d.fire_retry(now);
        assert_eq!(d.name(), StateName::Initializing);
        assert_eq!(d.lc.state().attempt(), attempt);
        setups += 1;
    }
    d.fail_with(backend_down(), now);
    assert!(d.lc.state().gave_up());
    assert!(d.notes().contains(&Notification::GaveUp { attempts: 4 }));
    assert_eq!(d.scheduled(TimerKind::Retry), None);
    assert_eq!(setups, 4, "reinit_driver_count = 3 means 1 + 3 setups");
}

#[test]
fn zero_budget_is_unlimited() {
    let mut d = Drive::new(Policy {
        reinit_driver_count: 0,
        ..Policy::default()
    });
    d.ok(Event::Start, T0);
    let mut now = T0;
    for _ in 0..50 {
        d.fail_with(backend_down(), now);
        assert!(!d.lc.state().gave_up());
        now = d.lc.state().retry().expect("retry scheduled").at;
        d.fire_retry(now);
    }
    assert_eq!(d.lc.state().attempt(), 50);
    d.succeed(now);
    assert_eq!(d.name(), StateName::Ready);
}

#[test]
fn backoff_is_capped() {
    let policy = Policy {
        reinit_driver_count: 0,
        reinit_backoff_max: Duration::from_secs(10),
        ..Policy::default()
    };
    let delays: Vec<u64> = (1..=7).map(|k| policy.backoff(k).as_secs()).collect();
    assert_eq!(delays, vec![1, 2, 4, 8, 10, 10, 10]);
    assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(10));
}

#[test]
fn jitter_stays_within_the_fraction_and_is_reproducible() {
    let policy = Policy {
        reinit_backoff_jitter_ppm: 500_000,
        ..Policy::default()
    };
    let draw = |seed| {
        let mut j = rekindle::lifecycle::Jitter::from_seed(seed);
        (1..=6)
            .map(|k| policy.backoff_with_jitter(k, &mut j))
            .collect::<Vec<_>>()
    };
    let a = draw(42);
    assert_eq!(a, draw(42), "same seed, same delays");
    assert_ne!(a, draw(43), "another seed, other delays");
    for (k, d) in (1..=6).zip(&a) {
        let full = policy.backoff(k);
        assert!(
            *d <= full && *d >= full / 2,
            "attempt {k}: {d:?} vs {full:?}"
        );
    }
}

#[test]
fn fatal_errors_never_schedule_a_retry() {
    for error in [
        DriverError::Config("bad san_ip".into()),
        DriverError::NotSupported("no such driver".into()),
        DriverError::MissingLibrary("qemu-img".into()),
    ] {
        let mut d = Drive::defaults();
        d.ok(Event::Start, T0).fail_with(error.clone(), T0);
        assert_eq!(d.name(), StateName::FailedFatal);
        assert_eq!(d.scheduled(TimerKind::Retry), None);
        assert_eq!(
            d.notes(),
            vec![Notification::InitError { attempt: 0, error }]
        );
        // Publisher ticks, forever, never retry a fatal driver.
        for t in 1..100 {
            d.ok(Event::PublisherTick, secs(t * 60));
            assert!(d.fx.is_empty());
        }
        assert_eq!(d.name(), StateName::FailedFatal);
    }
}

#[test]
fn setup_deadline_becomes_a_recoverable_timeout_and_aborts_the_setup() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0);
    let id = d.setup_id();
    d.ok(
        Event::TimerFired(Timer {
            kind: TimerKind::SetupDeadline,
            generation: id,
        }),
        secs(120),
    );
    assert_eq!(d.name(), StateName::FailedRecoverable);
    assert!(d.has(|e| *e == Effect::AbortSetup { setup: id }));
    assert_eq!(
        d.lc.state().last_error(),
        Some(&DriverError::Timeout(Duration::from_secs(120)))
    );
    // The hung setup returning late is stale.
    d.ok(Event::SetupSucceeded { setup: id }, secs(121));
    assert_eq!(d.name(), StateName::FailedRecoverable);
    assert!(d.fx.is_empty());
}

#[test]
fn a_tick_past_the_setup_deadline_also_times_out() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0);
    d.ok(Event::PublisherTick, secs(60));
    assert_eq!(d.name(), StateName::Initializing);
    d.ok(Event::PublisherTick, secs(120));
    assert_eq!(d.name(), StateName::FailedRecoverable);
}

#[test]
fn stale_setup_results_and_timers_are_ignored() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0);
    let id = d.setup_id();
    d.ok(
        Event::SetupFailed {
            setup: id + 100,
            error: backend_down(),
        },
        T0,
    );
    assert_eq!(d.name(), StateName::Initializing);
    assert!(d.fx.is_empty());
    d.ok(
        Event::TimerFired(Timer {
            kind: TimerKind::Retry,
            generation: id,
        }),
        T0,
    );
    assert_eq!(d.name(), StateName::Initializing);
    assert!(d.fx.is_empty());
}

#[test]
fn reload_with_changed_config_replaces_the_setup_in_flight() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0);
    let old = d.setup_id();
    d.reload(true, secs(1));
    assert_eq!(d.name(), StateName::Reloading);
    assert!(d.has(|e| *e == Effect::AbortSetup { setup: old }));
    assert!(d.has(|e| *e
        == Effect::ApplyConfig {
            config: 2,
            keep_previous: false
        }));
    assert_ne!(d.setup_id(), old);
}

#[test]
fn reload_with_same_config_keeps_the_setup_but_refreshes_the_budget() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0)
        .fail_with(backend_down(), T0)
        .fire_retry(secs(1));
    let id = d.setup_id();
    assert_eq!(d.lc.state().attempt(), 1);
    d.reload(false, secs(1));
    assert_eq!(d.name(), StateName::Initializing);
    assert_eq!(d.setup_id(), id);
    assert_eq!(d.lc.state().attempt(), 0);
    assert!(d.fx.is_empty());
}

// ---- Failed(Recoverable) ---------------------------------------------------

#[test]
fn the_publisher_reinitializes_a_due_driver_and_the_retry_timer_goes_stale() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0).fail_with(backend_down(), T0);
    let retry = *d.lc.state().retry().expect("retry");
    d.ok(Event::PublisherTick, Moment::from_millis(500));
    assert_eq!(d.name(), StateName::FailedRecoverable, "not due yet");
    d.ok(Event::PublisherTick, secs(1));
    assert_eq!(d.name(), StateName::Initializing);
    let id = d.setup_id();
    // The retry timer fires afterwards: it must not start a second setup.
    d.ok(
        Event::TimerFired(Timer {
            kind: TimerKind::Retry,
            generation: retry.timer,
        }),
        secs(1),
    );
    assert_eq!(d.setup_id(), id);
    assert!(!d.has(|e| matches!(e, Effect::RunSetup { .. })));
}

#[test]
fn operations_on_a_failed_driver_name_the_next_retry() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0).fail_with(backend_down(), secs(3));
    let r = d.refused(Event::OperationStarted, secs(3));
    assert_eq!(r.state, StateName::FailedRecoverable);
    assert_eq!(
        r.why,
        Why::NotReady {
            next_retry: Some(secs(4))
        }
    );
    assert!(r.is_retryable());
    assert!(r.to_string().contains("next retry at +4s"), "{r}");
}

#[test]
fn reload_brings_back_a_driver_that_gave_up_with_a_fresh_budget() {
    let mut d = Drive::new(Policy {
        reinit_driver_count: 1,
        ..Policy::default()
    });
    d.ok(Event::Start, T0)
        .fail_with(backend_down(), T0)
        .fire_retry(secs(1));
    d.fail_with(backend_down(), secs(1));
    assert!(d.lc.state().gave_up());
    d.ok(Event::PublisherTick, secs(1000));
    assert!(
        d.lc.state().gave_up(),
        "a tick never revives a driver that gave up"
    );
    d.reload(false, secs(1000));
    assert_eq!(d.name(), StateName::Reloading);
    assert_eq!(d.lc.state().attempt(), 0);
    d.fail_with(backend_down(), secs(1000));
    assert!(!d.lc.state().gave_up(), "the budget is fresh");
}

#[test]
fn reload_brings_back_a_fatal_driver_even_without_a_config_change() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0)
        .fail_with(DriverError::MissingLibrary("qemu-img".into()), T0);
    d.reload(false, secs(10));
    assert_eq!(d.name(), StateName::Reloading);
    d.succeed(secs(11));
    assert_eq!(d.name(), StateName::Ready);
}

// ---- Ready -------------------------------------------------------------------

#[test]
fn operations_count_in_and_out() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0)
        .ok(Event::OperationStarted, T0);
    assert_eq!(d.lc.state().in_flight(), 2);
    d.ok(Event::OperationFinished, T0)
        .ok(Event::OperationFinished, T0);
    assert_eq!(d.lc.state().in_flight(), 0);
    assert_eq!(
        d.refused(Event::OperationFinished, T0).why,
        Why::NoneInFlight
    );
}

#[test]
fn ticks_publish_capabilities_of_the_current_epoch() {
    let mut d = Drive::defaults();
    d.ready();
    let epoch = d.epoch();
    d.ok(Event::PublisherTick, secs(60));
    assert_eq!(d.fx, vec![Effect::PublishCapabilities { epoch }]);
}

#[test]
fn health_lost_fails_recoverably_and_retries() {
    let mut d = Drive::defaults();
    d.ready();
    d.lose_health(secs(60));
    assert_eq!(d.name(), StateName::FailedRecoverable);
    assert!(d.notes().contains(&Notification::HealthLost {
        error: backend_down()
    }));
    assert_eq!(d.scheduled(TimerKind::Retry), Some(secs(61)));
}

#[test]
fn stale_health_lost_from_an_earlier_ready_period_is_ignored() {
    let mut d = Drive::defaults();
    d.ready();
    let old_epoch = d.epoch();
    d.reload(true, secs(1)).succeed(secs(2));
    assert_ne!(d.epoch(), old_epoch);
    d.ok(
        Event::HealthLost {
            epoch: old_epoch,
            error: backend_down(),
        },
        secs(3),
    );
    assert_eq!(d.name(), StateName::Ready);
}

#[test]
fn health_lost_with_operations_in_flight_drains_first() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.lose_health(secs(1));
    assert_eq!(d.name(), StateName::Draining);
    assert_eq!(
        d.refused(Event::OperationStarted, secs(1)).why,
        Why::Draining
    );
    d.ok(Event::OperationFinished, secs(2));
    assert_eq!(d.name(), StateName::FailedRecoverable);
}

fn timed_out(epoch: u64) -> Event {
    Event::OperationTimedOut {
        epoch,
        error: DriverError::Timeout(Duration::from_secs(60)),
    }
}

#[test]
fn an_operation_past_its_deadline_counts_out_and_takes_a_ready_backend_out() {
    let mut d = Drive::defaults();
    d.ready();
    let epoch = d.epoch();
    d.ok(Event::OperationStarted, T0);
    d.ok(timed_out(epoch), secs(60));
    assert_eq!(d.name(), StateName::FailedRecoverable);
    assert!(d.notes().contains(&Notification::HealthLost {
        error: DriverError::Timeout(Duration::from_secs(60))
    }));
    assert_eq!(d.scheduled(TimerKind::Retry), Some(secs(61)));
    // Counted out: nothing is left in flight to finish.
    assert_eq!(
        d.refused(Event::OperationFinished, secs(61)).why,
        Why::NoneInFlight
    );
}

#[test]
fn an_operation_past_its_deadline_with_others_in_flight_drains_them_first() {
    let mut d = Drive::defaults();
    d.ready();
    let epoch = d.epoch();
    d.ok(Event::OperationStarted, T0)
        .ok(Event::OperationStarted, T0);
    d.ok(timed_out(epoch), secs(60));
    assert_eq!(d.name(), StateName::Draining);
    d.ok(Event::OperationFinished, secs(61));
    assert_eq!(d.name(), StateName::FailedRecoverable);
}

#[test]
fn an_operation_past_its_deadline_in_a_reload_drain_lets_the_reload_go_on() {
    let mut d = Drive::defaults();
    d.ready();
    let epoch = d.epoch();
    d.ok(Event::OperationStarted, T0);
    d.reload(true, secs(1));
    assert_eq!(d.name(), StateName::Draining);
    d.ok(timed_out(epoch), secs(60));
    assert_eq!(d.name(), StateName::Reloading, "the drain is over");
    assert_eq!(
        d.refused(timed_out(epoch), secs(61)).why,
        Why::NoneInFlight,
        "nothing is left to time out"
    );
}

#[test]
fn the_budget_resets_after_ten_minutes_ready() {
    let mut d = Drive::new(Policy {
        reinit_driver_count: 1,
        ..Policy::default()
    });
    d.ok(Event::Start, T0)
        .fail_with(backend_down(), T0)
        .fire_retry(secs(1))
        .succeed(secs(1));
    assert_eq!(d.lc.state().attempt(), 1);
    // Lost after 5 minutes: the budget (1) is spent; a health loss is
    // retried anyway (recovering), at the same attempt, the last backoff.
    let mut early = Drive {
        lc: d.lc.clone(),
        fx: vec![],
    };
    early.lose_health(secs(301));
    assert!(!early.lc.state().gave_up());
    assert_eq!(early.lc.state().retry().map(|r| r.attempt), Some(1));
    // Lost after 10 minutes: the budget was reset, so it retries from 1.
    d.lose_health(secs(601));
    assert_eq!(d.lc.state().retry().map(|r| r.attempt), Some(1));
}

#[test]
fn reload_unchanged_on_a_ready_driver_is_a_no_op() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    let before = d.lc.clone();
    d.reload(false, secs(1));
    assert_eq!(d.lc, before);
    assert!(d.fx.is_empty());
}

#[test]
fn reload_changed_with_nothing_in_flight_reloads_at_once() {
    let mut d = Drive::defaults();
    d.ready();
    d.reload(true, secs(1));
    assert_eq!(d.name(), StateName::Reloading);
    assert_eq!(
        d.fx.iter().take(3).cloned().collect::<Vec<_>>()[..2],
        [
            Effect::ApplyConfig {
                config: 2,
                keep_previous: true
            },
            Effect::Notify(Notification::InitStart { attempt: 0 })
        ]
    );
}

// ---- Draining ------------------------------------------------------------------

#[test]
fn reload_drains_in_flight_operations_then_reloads() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0)
        .ok(Event::OperationStarted, T0);
    d.reload(true, secs(1));
    assert_eq!(d.name(), StateName::Draining);
    assert_eq!(d.scheduled(TimerKind::DrainDeadline), Some(secs(61)));
    let r = d.refused(Event::OperationStarted, secs(2));
    assert!(r.is_retryable());
    d.ok(Event::OperationFinished, secs(3));
    assert_eq!(d.name(), StateName::Draining);
    d.ok(Event::OperationFinished, secs(4));
    assert_eq!(d.name(), StateName::Reloading);
    assert!(d.has(|e| *e
        == Effect::ApplyConfig {
            config: 2,
            keep_previous: true
        }));
}

#[test]
fn drain_deadline_aborts_the_reload_and_keeps_serving() {
    let mut d = Drive::defaults();
    d.ready();
    let epoch = d.epoch();
    d.ok(Event::OperationStarted, T0);
    d.reload(true, secs(1));
    let deadline = match d.lc.state() {
        State::Draining(dr) => dr.deadline.expect("deadline").1,
        s => panic!("{s:?}"),
    };
    d.ok(
        Event::TimerFired(Timer {
            kind: TimerKind::DrainDeadline,
            generation: deadline,
        }),
        secs(61),
    );
    assert_eq!(d.name(), StateName::Ready);
    assert_eq!(d.lc.state().in_flight(), 1, "in-flight work is not cut");
    assert_eq!(d.epoch(), epoch, "same Ready period, old config");
    assert_eq!(d.lc.config(), 1);
    assert_eq!(
        d.notes(),
        vec![Notification::ReloadAborted { in_flight: 1 }]
    );
}

#[test]
fn reverting_the_config_during_a_drain_keeps_serving() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.reload(true, secs(1));
    d.reload(false, secs(2));
    assert_eq!(d.name(), StateName::Ready);
    assert_eq!(d.lc.state().in_flight(), 1);
}

impl Drive {
    fn drain_deadline(&mut self, now: Moment) -> &mut Self {
        let generation = match self.lc.state() {
            State::Draining(dr) => dr.deadline.expect("deadline").1,
            s => panic!("{s:?}"),
        };
        self.ok(
            Event::TimerFired(Timer {
                kind: TimerKind::DrainDeadline,
                generation,
            }),
            now,
        )
    }
}

#[test]
fn a_health_loss_during_a_reload_drain_is_said_and_an_aborted_reload_fails_recoverably() {
    // Seed 199 of the hung-calls simulation: the backup store went away
    // while a reload drained a restore; the reload aborted at its deadline
    // and the backend was Ready again, accepting work it could not do.
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.reload(true, secs(1));
    d.lose_health(secs(5));
    assert_eq!(d.name(), StateName::Draining, "the drain goes on");
    assert_eq!(
        d.notes(),
        vec![Notification::HealthLost {
            error: backend_down()
        }]
    );
    d.lose_health(secs(6));
    assert_eq!(d.notes(), vec![], "said once");
    d.drain_deadline(secs(61));
    assert_eq!(
        d.notes(),
        vec![Notification::ReloadAborted { in_flight: 1 }]
    );
    assert_eq!(
        d.name(),
        StateName::Draining,
        "not Ready: its backend is lost"
    );
    assert_eq!(d.lc.state().in_flight(), 1, "in-flight work is not cut");
    assert_eq!(
        d.refused(Event::OperationStarted, secs(62)).why,
        Why::Draining
    );
    d.ok(Event::OperationFinished, secs(70));
    assert_eq!(d.name(), StateName::FailedRecoverable);
    assert_eq!(d.lc.config(), 1, "the aborted reload is not applied");
    assert_eq!(d.scheduled(TimerKind::Retry), Some(secs(71)));
}

#[test]
fn a_call_past_its_deadline_during_a_removal_drain_fails_the_aborted_removal() {
    let mut d = Drive::defaults();
    d.ready();
    let epoch = d.epoch();
    d.ok(Event::OperationStarted, T0);
    d.ok(Event::OperationStarted, T0);
    d.ok(Event::RemovalRequested, secs(1));
    d.ok(timed_out(epoch), secs(60));
    assert!(d.notes().contains(&Notification::HealthLost {
        error: DriverError::Timeout(Duration::from_secs(60))
    }));
    d.drain_deadline(secs(61));
    assert_eq!(
        d.notes(),
        vec![Notification::RemovalAborted { in_flight: 1 }]
    );
    assert_eq!(d.name(), StateName::Draining);
    d.ok(Event::OperationFinished, secs(62));
    assert_eq!(d.name(), StateName::FailedRecoverable);
}

#[test]
fn a_health_loss_during_a_reload_drain_still_lets_the_drained_reload_go_on() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.reload(true, secs(1));
    d.lose_health(secs(2));
    d.ok(Event::OperationFinished, secs(3));
    assert_eq!(d.name(), StateName::Reloading, "the new config is tried");
    assert_eq!(d.lc.config(), 2);
}

#[test]
fn reverting_the_config_after_a_health_loss_fails_once_drained() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.reload(true, secs(1));
    d.lose_health(secs(2));
    d.reload(false, secs(3));
    assert_eq!(
        d.name(),
        StateName::Draining,
        "not Ready: its backend is lost"
    );
    d.ok(Event::OperationFinished, secs(4));
    assert_eq!(d.name(), StateName::FailedRecoverable);
}

#[test]
fn a_reload_during_a_health_lost_drain_remembers_the_loss() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.lose_health(secs(1));
    d.reload(true, secs(2));
    d.drain_deadline(secs(62));
    assert_eq!(d.name(), StateName::Draining, "aborted, and still lost");
    d.ok(Event::OperationFinished, secs(63));
    assert_eq!(d.name(), StateName::FailedRecoverable);
}

#[test]
fn a_second_changed_reload_during_a_drain_replaces_the_pending_config() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.reload(true, secs(1));
    d.ok(
        Event::ReloadRequested {
            config: 9,
            changed: true,
            policy: Box::default(),
        },
        secs(2),
    );
    d.ok(Event::OperationFinished, secs(3));
    assert!(d.has(|e| *e
        == Effect::ApplyConfig {
            config: 9,
            keep_previous: true
        }));
}

#[test]
fn shutdown_drains_then_stops() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.ok(Event::ShutdownRequested, secs(1));
    assert_eq!(d.name(), StateName::Draining);
    d.ok(Event::OperationFinished, secs(2));
    assert_eq!(d.name(), StateName::Stopped);
    assert_eq!(d.fx, vec![Effect::Stop]);
}

#[test]
fn shutdown_stops_at_its_deadline() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.ok(Event::ShutdownRequested, secs(1));
    d.ok(Event::PublisherTick, secs(61));
    assert_eq!(d.name(), StateName::Stopped);
}

#[test]
fn shutdown_during_setup_aborts_it() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0);
    let id = d.setup_id();
    d.ok(Event::ShutdownRequested, T0);
    assert_eq!(d.fx, vec![Effect::AbortSetup { setup: id }, Effect::Stop]);
}

// ---- Stopped ---------------------------------------------------------------------

#[test]
fn a_stopped_driver_refuses_everything_but_shutdown() {
    let mut d = Drive::defaults();
    d.ok(Event::ShutdownRequested, T0);
    assert_eq!(d.refused(Event::Start, T0).why, Why::Stopped);
    assert_eq!(d.refused(Event::OperationStarted, T0).why, Why::Stopped);
    let r = d.refused(
        Event::ReloadRequested {
            config: 2,
            changed: true,
            policy: Box::default(),
        },
        T0,
    );
    assert_eq!(r.why, Why::Stopped);
    assert!(
        r.to_string()
            .contains("reload_requested refused in state stopped"),
        "{r}"
    );
    d.ok(Event::ShutdownRequested, T0);
    assert!(d.fx.is_empty());
}

// ---- Policy ------------------------------------------------------------------------

#[test]
fn policy_layers_backend_over_global_over_defaults() {
    let p = Policy::from_layers(
        [("reinit_driver_count", "5"), ("reinit_backoff_max", "2m")],
        [("reinit_driver_count", "0"), ("driver_init_timeout", "90")],
    )
    .expect("valid");
    assert_eq!(p.reinit_driver_count, 0);
    assert_eq!(p.reinit_backoff_max, Duration::from_secs(120));
    assert_eq!(p.driver_init_timeout, Duration::from_secs(90));
    assert_eq!(p.reinit_reset_after, Duration::from_secs(600));
}

#[test]
fn bad_policy_values_name_the_option_and_the_value() {
    let e = Policy::from_layers([("reinit_driver_count", "-1")], []).expect_err("invalid");
    assert!(
        e.to_string().contains("`reinit_driver_count`") && e.to_string().contains("-1"),
        "{e}"
    );
    let e = Policy::from_layers([("reinit_backoff_jitter", "1.5")], []).expect_err("invalid");
    assert!(e.to_string().contains("reinit_backoff_jitter"), "{e}");
    let e = Policy::from_layers([("driver_init_timeout", "soon")], []).expect_err("invalid");
    assert!(e.to_string().contains("driver_init_timeout"), "{e}");
    let e = Policy::from_layers([("reinit_backoff_max", "0")], []).expect_err("invalid");
    assert!(e.to_string().contains("reinit_backoff_base"), "{e}");
}

// ---- which timer is current (shells cancel the others) --------------------

/// Every timer a step scheduled, as the shell would arm it.
fn armed(d: &Drive) -> Vec<Timer> {
    d.fx.iter()
        .filter_map(|e| match e {
            Effect::ScheduleTimer { timer, .. } => Some(*timer),
            _ => None,
        })
        .collect()
}

#[test]
fn the_current_timer_is_the_one_the_state_acts_on_and_stale_ones_do_nothing() {
    let mut d = Drive::defaults();
    d.ok(Event::Start, T0);
    let deadline = armed(&d)[0];
    assert_eq!(deadline.kind, TimerKind::SetupDeadline);
    assert!(d.lc.timer_is_current(deadline));
    // A failed setup arms a retry; the old deadline is stale from then on.
    d.fail_with(backend_down(), secs(1));
    let retry = armed(&d)[0];
    assert_eq!(retry.kind, TimerKind::Retry);
    assert!(d.lc.timer_is_current(retry));
    assert!(!d.lc.timer_is_current(deadline));
    let before = d.lc.clone();
    d.ok(Event::TimerFired(deadline), secs(200));
    assert_eq!(d.lc, before, "a stale timer changes nothing");
    assert!(d.fx.is_empty());
    // The current one acts: the retry starts a new setup with a new deadline.
    d.ok(Event::TimerFired(retry), secs(2));
    assert_eq!(d.name(), StateName::Initializing);
    let second = armed(&d)[0];
    assert!(d.lc.timer_is_current(second));
    assert!(!d.lc.timer_is_current(retry));
    // Ready waits on no timer at all.
    d.succeed(secs(3));
    assert!(!d.lc.timer_is_current(second));
    assert!(!d.lc.timer_is_current(retry));
}

#[test]
fn error_texts_compare_and_hash_by_their_text() {
    use rekindle::lifecycle::ErrorText;
    use std::hash::{BuildHasher, RandomState};
    let fixed = DriverError::Backend(ErrorText::Static("array not reachable"));
    let built = DriverError::backend(String::from("array not reachable"));
    assert_eq!(fixed, built);
    let hasher = RandomState::new();
    assert_eq!(hasher.hash_one(&fixed), hasher.hash_one(&built));
    assert_ne!(fixed, DriverError::backend("array unreachable"));
    assert_eq!(fixed.to_string(), "backend error: array not reachable");
}

// ---- Reload rollback -------------------------------------------------------------

#[test]
fn a_reload_that_succeeds_releases_the_old_instance() {
    let mut d = Drive::defaults();
    d.ready();
    d.reload(true, secs(1));
    assert!(d.has(|e| *e
        == Effect::ApplyConfig {
            config: 2,
            keep_previous: true
        }));
    assert_eq!(d.lc.previous().map(|p| p.config), Some(1));
    d.succeed(secs(2));
    assert_eq!(d.name(), StateName::Ready);
    assert!(d.has(|e| *e == Effect::DropPrevious));
    assert_eq!(d.lc.previous(), None);
    assert_eq!(d.lc.config(), 2);
}

#[test]
fn a_failed_reload_checks_the_old_instance_and_rolls_back() {
    let mut d = Drive::defaults();
    d.ready();
    d.reload(true, secs(1));
    d.fail_with(DriverError::Config("volume_format: qcow3".into()), secs(2));
    assert_eq!(d.name(), StateName::RollingBack);
    let check = d.setup_id();
    assert!(d.has(|e| *e
        == Effect::RunSetup {
            setup: check,
            attempt: 0,
            previous: true
        }));
    assert_eq!(d.scheduled(TimerKind::SetupDeadline), Some(secs(122)));
    // Operations wait for the rollback (retryable: not ready yet).
    assert!(matches!(
        d.refused(Event::OperationStarted, secs(3)).why,
        Why::NotReady { next_retry: None }
    ));
    d.succeed(secs(3));
    assert_eq!(d.name(), StateName::Ready);
    assert_eq!(d.lc.config(), 1, "the old config serves again");
    assert_eq!(d.lc.previous(), None);
    assert!(d.has(|e| *e == Effect::RestorePrevious));
    assert_eq!(
        d.notes(),
        vec![Notification::ReloadRolledBack {
            error: DriverError::Config("volume_format: qcow3".into())
        }]
    );
    d.ok(Event::OperationStarted, secs(4));
}

#[test]
fn a_reload_setup_timeout_rolls_back_too() {
    let mut d = Drive::defaults();
    d.ready();
    d.reload(true, secs(1));
    let setup = d.setup_id();
    d.ok(
        Event::TimerFired(Timer {
            kind: TimerKind::SetupDeadline,
            generation: setup,
        }),
        secs(121),
    );
    assert_eq!(d.name(), StateName::RollingBack);
    assert!(d.has(|e| *e == Effect::AbortSetup { setup }));
    d.succeed(secs(122));
    assert_eq!(d.name(), StateName::Ready);
    assert_eq!(d.lc.config(), 1);
}

#[test]
fn an_old_instance_failing_its_check_leaves_the_new_config_retrying() {
    let mut d = Drive::defaults();
    d.ready();
    d.reload(true, secs(1));
    d.fail_with(backend_down(), secs(2));
    d.fail_with(DriverError::backend("old array gone too"), secs(3));
    assert_eq!(d.name(), StateName::FailedRecoverable);
    assert!(d.has(|e| *e == Effect::DropPrevious));
    assert_eq!(d.lc.config(), 2, "the new config is retried");
    assert_eq!(d.lc.state().last_error(), Some(&backend_down()));
    assert_eq!(d.scheduled(TimerKind::Retry), Some(secs(4)));
}

#[test]
fn with_reload_rollback_off_a_failed_reload_fails_as_before() {
    let mut d = Drive::new(Policy {
        reload_rollback: false,
        ..Policy::default()
    });
    d.ready();
    d.reload(true, secs(1));
    d.fail_with(backend_down(), secs(2));
    assert_eq!(d.name(), StateName::FailedRecoverable);
    assert!(d.has(|e| *e == Effect::DropPrevious));
    assert_eq!(d.lc.previous(), None);
}

#[test]
fn a_changed_reload_during_the_rollback_check_keeps_the_rollback_target() {
    let mut d = Drive::defaults();
    d.ready();
    d.reload(true, secs(1));
    d.fail_with(backend_down(), secs(2));
    let check = d.setup_id();
    d.reload(true, secs(3));
    assert_eq!(d.name(), StateName::Reloading);
    assert!(d.has(|e| *e == Effect::AbortSetup { setup: check }));
    assert!(d.has(|e| *e
        == Effect::ApplyConfig {
            config: 3,
            keep_previous: false
        }));
    assert_eq!(d.lc.previous().map(|p| p.config), Some(1));
    d.fail_with(backend_down(), secs(4));
    d.succeed(secs(5));
    assert_eq!(d.lc.config(), 1);
}

// ---- Removal ----------------------------------------------------------------

#[test]
fn removal_of_an_idle_backend_stops_it() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::RemovalRequested, secs(1));
    assert_eq!(d.name(), StateName::Stopped);
    assert_eq!(d.fx, vec![Effect::Stop]);
}

#[test]
fn removal_drains_and_its_deadline_aborts_it() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.ok(Event::RemovalRequested, secs(1));
    assert_eq!(d.name(), StateName::Draining);
    let deadline = match d.lc.state() {
        State::Draining(dr) => dr.deadline.expect("deadline").1,
        s => panic!("{s:?}"),
    };
    d.ok(
        Event::TimerFired(Timer {
            kind: TimerKind::DrainDeadline,
            generation: deadline,
        }),
        secs(61),
    );
    assert_eq!(d.name(), StateName::Ready, "the removal is aborted");
    assert_eq!(d.lc.state().in_flight(), 1, "nothing is cut");
    assert_eq!(
        d.notes(),
        vec![Notification::RemovalAborted { in_flight: 1 }]
    );
}

#[test]
fn removal_stops_once_drained() {
    let mut d = Drive::defaults();
    d.ready();
    d.ok(Event::OperationStarted, T0);
    d.ok(Event::RemovalRequested, secs(1));
    d.ok(Event::OperationFinished, secs(2));
    assert_eq!(d.name(), StateName::Stopped);
}

#[test]
fn a_health_loss_is_retried_past_the_budget_until_the_backend_is_back() {
    // reinit_driver_count counts failed initializations (Cinder's option):
    // a driver that was Ready on this config and lost its backend keeps
    // retrying at the capped backoff, and recovers by itself.
    let mut d = Drive::defaults();
    d.ready();
    d.lose_health(secs(60));
    assert!(d.lc.recovering());
    let mut now = secs(60);
    let mut delays = Vec::new();
    for _ in 0..8 {
        let retry = *d.lc.state().retry().expect("still retrying");
        delays.push(retry.at.saturating_since(now).as_secs());
        assert!(retry.attempt <= 3, "attempts stay within the budget");
        now = retry.at;
        d.fire_retry(now);
        d.fail_with(backend_down(), now);
        assert!(!d.lc.state().gave_up(), "never gives up while recovering");
        assert!(
            !d.notes()
                .iter()
                .any(|n| matches!(n, Notification::GaveUp { .. }))
        );
    }
    assert_eq!(delays, [1, 2, 4, 4, 4, 4, 4, 4]);
    // The backend returns: Ready, and the next failure is budgeted again
    // only once it is a setup failure of a new config.
    let retry = *d.lc.state().retry().expect("retrying");
    d.fire_retry(retry.at).succeed(retry.at);
    assert_eq!(d.name(), StateName::Ready);
    assert!(!d.lc.recovering());
}

#[test]
fn a_reload_that_fails_to_set_up_while_recovering_is_budgeted_again() {
    let mut d = Drive::new(Policy {
        reinit_driver_count: 1,
        reload_rollback: false,
        ..Policy::default()
    });
    d.ready();
    d.lose_health(secs(1));
    assert!(d.lc.recovering());
    // A new config while recovering: its setups are ordinary setups.
    d.reload(true, secs(1));
    assert!(!d.lc.recovering());
    d.fail_with(backend_down(), secs(1));
    let retry = *d.lc.state().retry().expect("one retry");
    d.fire_retry(retry.at).fail_with(backend_down(), retry.at);
    assert!(
        d.lc.state().gave_up(),
        "the budget applies to the new config"
    );
}
