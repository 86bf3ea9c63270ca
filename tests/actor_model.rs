//! Property test: the actor system on virtual time is a faithful executor of the
//! core. Generated environment sequences (setup outcomes, ticks, reloads, operations,
//! shutdown) run through a real DriverActor; its recorded event stream must replay
//! through the pure `Lifecycle::step` to the same states and effects, timers must fire
//! exactly when scheduled, and every setup must complete or be aborted. Shrinks.

#[path = "common/drivers.rs"]
mod drivers;

use drivers::{Script, Scripted};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use actix::clock::sleep;
use actix::prelude::*;
use proptest::prelude::*;
use rekindle::actors::driver_actor::{
    GetLifecycle, Observed, ReloadBackend, Shutdown, Start, Tick, spec,
};
use rekindle::actors::{DriverActor, Operation, Shell};
use rekindle::driver::registry::AnyDriver;
use rekindle::driver::{DriverRegistry, Kind, Volume};
use rekindle::engine::clock::ServiceClock;
use rekindle::engine::runtime::run_virtual;
use rekindle::events::notify::Notifier;
use rekindle::lifecycle::{DriverError, Effect, Event, Lifecycle, Moment, Policy, TimerKind};

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Recoverable,
    Fatal,
    Hang,
}

/// A driver whose setups take their outcome from a queue the test fills.
struct Queued {
    outcomes: Rc<RefCell<VecDeque<Outcome>>>,
}

#[async_trait::async_trait(?Send)]
impl Script for Queued {
    async fn do_setup(&self) -> Result<(), DriverError> {
        let next = self
            .outcomes
            .borrow_mut()
            .pop_front()
            .unwrap_or(Outcome::Ok);
        sleep(Duration::from_millis(200)).await;
        match next {
            Outcome::Ok => Ok(()),
            Outcome::Recoverable => Err(DriverError::backend("array down")),
            Outcome::Fatal => Err(DriverError::Config("bad san_ip".into())),
            Outcome::Hang => std::future::pending().await,
        }
    }
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        Ok(())
    }
    async fn create_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        sleep(Duration::from_secs(volume.size_bytes)).await;
        Ok(())
    }
    async fn delete_volume(&self, _: &Volume) -> Result<(), DriverError> {
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Step {
    Outcome(Outcome),
    Wait(u64),
    Tick,
    Reload(bool),
    Operation(u64),
    Shutdown,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop_oneof![Just(Outcome::Ok), Just(Outcome::Recoverable), Just(Outcome::Fatal), Just(Outcome::Hang)]
            .prop_map(Step::Outcome),
        6 => (0u64..90).prop_map(Step::Wait),
        2 => Just(Step::Tick),
        2 => any::<bool>().prop_map(Step::Reload),
        4 => (0u64..40).prop_map(Step::Operation),
        1 => Just(Step::Shutdown),
    ]
}

type Trace = Rc<RefCell<Vec<(Moment, Event, Vec<Effect>)>>>;

fn run(steps: &[Step], count: u32) -> (Trace, Lifecycle, Policy) {
    let policy = Policy {
        reinit_driver_count: count,
        driver_init_timeout: Duration::from_secs(20),
        graceful_shutdown_timeout: Duration::from_secs(25),
        ..Policy::default()
    };
    let trace: Trace = Rc::default();
    let recorded = trace.clone();
    let final_state = run_virtual(async move {
        let outcomes: Rc<RefCell<VecDeque<Outcome>>> = Rc::default();
        let queue = outcomes.clone();
        let mut registry = DriverRegistry::with_builtin();
        registry.register(Kind::Volume, "scripted", &[], move |_| {
            Ok(AnyDriver::Volume(Rc::new(Scripted(Queued {
                outcomes: queue.clone(),
            }))))
        });
        let clock = ServiceClock::start_at(std::time::UNIX_EPOCH);
        let mut shell = Shell::new(clock, Notifier::in_memory(clock), registry);
        shell.observer = Some(Rc::new(move |o| {
            if let Observed::Transition {
                at, event, effects, ..
            } = o
            {
                recorded
                    .borrow_mut()
                    .push((*at, (*event).clone(), effects.to_vec()));
            }
        }));
        let the_spec = spec("b", Kind::Volume, "scripted", &[]);
        let addr = DriverActor::new(the_spec.clone(), policy, 1, 9, shell).start();
        addr.do_send(Start);
        let mut config = 1;
        for s in steps {
            match s {
                Step::Outcome(o) => outcomes.borrow_mut().push_back(*o),
                Step::Wait(secs) => sleep(Duration::from_secs(*secs)).await,
                Step::Tick => addr.do_send(Tick),
                Step::Reload(changed) => {
                    config += 1;
                    addr.do_send(ReloadBackend {
                        config,
                        spec: the_spec.clone(),
                        policy,
                        changed: *changed,
                    });
                }
                Step::Operation(secs) => {
                    let op = addr.send(Operation::CreateVolume(Volume::new("v", *secs)));
                    actix::spawn(async move {
                        let _ = op.await;
                    });
                }
                Step::Shutdown => addr.do_send(Shutdown),
            }
            sleep(Duration::from_millis(1)).await;
        }
        sleep(Duration::from_secs(600)).await;
        addr.send(GetLifecycle).await.ok()
    })
    .expect("runtime");
    let trace_done = trace.clone();
    let last = final_state.unwrap_or_else(|| {
        // The actor stopped: replay gives the state.
        let mut lc = Lifecycle::new(policy, 1, 9);
        for (at, event, _) in trace_done.borrow().iter() {
            let _ = lc.apply(event.clone(), *at);
        }
        lc
    });
    (trace, last, policy)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_actor_system_executes_the_core_faithfully(
        steps in prop::collection::vec(step(), 1..40),
        count in 0u32..4,
    ) {
        let (trace, last, policy) = run(&steps, count);
        let trace = trace.borrow();
        // 1. The recorded events replay through the pure core to the same
        //    effects at every step and the same final lifecycle.
        let mut replay = Lifecycle::new(policy, 1, 9);
        for (at, event, effects) in trace.iter() {
            let (next, fx) = replay.step(event.clone(), *at).map_err(|r| TestCaseError::fail(format!("replay refused {event:?}: {r}")))?;
            prop_assert_eq!(&fx.to_vec(), effects, "effects of {:?} at {}", event, at);
            replay = next;
        }
        prop_assert_eq!(&replay, &last);
        // 2. Every timer that fired fired exactly when it was scheduled; every
        //    timer still current at its instant fired.
        let mut scheduled = std::collections::HashMap::new();
        for (_, _, effects) in trace.iter() {
            for e in effects {
                if let Effect::ScheduleTimer { timer, at } = e {
                    scheduled.insert(*timer, *at);
                }
            }
        }
        for (at, event, _) in trace.iter() {
            if let Event::TimerFired(timer) = event {
                prop_assert_eq!(Some(at), scheduled.get(timer), "timer {:?}", timer);
            }
        }
        // 3. Every setup started completed or was aborted (or is still the
        //    current one, hanging).
        let mut open = BTreeMap::new();
        for (_, event, effects) in trace.iter() {
            if let Event::SetupSucceeded { setup } | Event::SetupFailed { setup, .. } = event {
                open.remove(setup);
            }
            for e in effects {
                match e {
                    Effect::RunSetup { setup, .. } => { open.insert(*setup, ()); }
                    Effect::AbortSetup { setup } => { open.remove(setup); }
                    _ => {}
                }
            }
        }
        let current = last.state().setup().map(|s| s.id);
        prop_assert!(open.keys().all(|g| Some(*g) == current), "setups neither done nor aborted: {:?}", open);
        // 4. A retry timer is always armed with the exact backoff.
        for (at, _, effects) in trace.iter() {
            for e in effects {
                if let Effect::ScheduleTimer { timer, at: due } = e
                    && timer.kind == TimerKind::Retry
                {
                    let delay = due.saturating_since(*at);
                    prop_assert!(delay >= policy.reinit_backoff_base && delay <= policy.reinit_backoff_max);
                }
            }
        }
    }
}
