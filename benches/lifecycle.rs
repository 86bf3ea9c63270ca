//! Benchmark of the pure core: `Lifecycle::step` over a realistic event mix.
//! Prints `step_transitions_per_sec: N` (goal: >= 20 million on one core).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rekindle::lifecycle::{DriverError, Event, Lifecycle, Moment, Policy, State, Timer, TimerKind};

/// The next event of a busy backend's life: mostly operations and ticks,
/// now and then a lost backend, its retries, and a reload.
fn next_event(lc: &Lifecycle, i: u64, error: &DriverError) -> Event {
    match lc.state() {
        State::Uninitialized => Event::Start,
        State::Initializing(s) | State::Reloading(s) => {
            if i.is_multiple_of(3) {
                Event::SetupFailed {
                    setup: s.id,
                    error: error.clone(),
                }
            } else {
                Event::SetupSucceeded { setup: s.id }
            }
        }
        State::RollingBack(r) => Event::SetupSucceeded { setup: r.check.id },
        State::Failed(_) => match lc.state().retry() {
            Some(r) => Event::TimerFired(Timer {
                kind: TimerKind::Retry,
                generation: r.timer,
            }),
            None => Event::ReloadRequested {
                config: 1,
                changed: false,
                policy: Box::new(*lc.policy()),
            },
        },
        State::Ready(r) => match i % 64 {
            0 => Event::PublisherTick,
            1 if r.in_flight == 0 => Event::HealthLost {
                epoch: r.epoch,
                error: error.clone(),
            },
            2 => Event::ReloadRequested {
                config: 2,
                changed: true,
                policy: Box::new(*lc.policy()),
            },
            _ if r.in_flight < 8 && i.is_multiple_of(2) => Event::OperationStarted,
            _ if r.in_flight > 0 => Event::OperationFinished,
            _ => Event::OperationStarted,
        },
        State::Draining(_) => Event::OperationFinished,
        State::Stopped => Event::Start,
    }
}

fn main() {
    let error = DriverError::backend("array down");
    let steps: u64 = 20_000_000;
    let mut lc = Lifecycle::new(Policy::default(), 1, 1);
    // Warm up, then measure.
    for i in 0..1_000_000 {
        let event = next_event(&lc, i, &error);
        if let Ok((next, fx)) = lc.step(event, Moment::from_secs(i / 1000)) {
            black_box(&fx);
            lc = next;
        }
    }
    let started = Instant::now();
    let mut accepted = 0u64;
    for i in 0..steps {
        let event = next_event(&lc, i, &error);
        if let Ok((next, fx)) = lc.step(black_box(event), Moment::from_secs(i / 1000)) {
            black_box(&fx);
            lc = next;
            accepted += 1;
        }
    }
    let elapsed = started.elapsed().max(Duration::from_nanos(1));
    let per_sec = steps as f64 / elapsed.as_secs_f64();
    println!("step_transitions: {steps}");
    println!("step_accepted: {accepted}");
    println!("step_transitions_per_sec: {per_sec:.0}");
}
