//! DriverActor on virtual time: retries at +1s, +2s, +4s, fatal errors, panics,
//! hung setups, operations refused unless Ready, the connector reaching create_export.

#[path = "common/drivers.rs"]
mod drivers;

use drivers::{Script, Scripted};
use std::time::Duration;

use actix::clock::sleep;
use actix::prelude::*;
use rekindle::actors::driver_actor::{GetLifecycle, ReloadBackend, Shutdown, Start, spec};
use rekindle::actors::{DriverActor, Operation, OperationError, OperationOutput, Shell};
use rekindle::driver::registry::AnyDriver;
use rekindle::driver::{Connector, DriverRegistry, Kind, Volume};
use rekindle::engine::clock::ServiceClock;
use rekindle::engine::runtime::run_virtual;
use rekindle::events::notify::Notifier;
use rekindle::lifecycle::{DriverError, Policy, StateName};

struct Rig {
    shell: Shell,
}

impl Rig {
    fn new(registry: DriverRegistry) -> Self {
        let clock = ServiceClock::start_at(std::time::UNIX_EPOCH);
        Rig {
            shell: Shell::new(clock, Notifier::in_memory(clock), registry),
        }
    }

    fn start(&self, backend: &str, options: &[(&str, &str)], policy: Policy) -> Addr<DriverActor> {
        let spec = spec(backend, Kind::Volume, "fault", options);
        let addr = DriverActor::new(spec, policy, 1, 1, self.shell.clone()).start();
        addr.do_send(Start);
        addr
    }

    /// Seconds after start of every notification of `event_type` for `backend`.
    fn times(&self, backend: &str, event_type: &str) -> Vec<String> {
        self.shell
            .notifier
            .history()
            .into_iter()
            .filter(|r| r.event_type == event_type && r.backend.as_deref() == Some(backend))
            .map(|r| r.timestamp)
            .collect()
    }

    fn state(&self, backend: &str) -> StateName {
        self.shell
            .board
            .backend(backend)
            .expect("backend on the board")
            .state
    }
}

fn at(secs: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[test]
fn a_backend_not_ready_at_start_is_retried_at_1_2_4_seconds_then_ready() {
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        rig.start(
            "flaky",
            &[("fault_fail_setup_times", "3")],
            Policy::default(),
        );
        sleep(Duration::from_millis(6_900)).await;
        assert_ne!(rig.state("flaky"), StateName::Ready, "not before +7s");
        sleep(Duration::from_millis(200)).await;
        assert_eq!(rig.state("flaky"), StateName::Ready);
        assert_eq!(
            rig.times("flaky", "driver.init.start"),
            vec![at(0), at(1), at(3), at(7)]
        );
        assert_eq!(rig.times("flaky", "driver.init.end"), vec![at(7)]);
        assert_eq!(rig.shell.registry.fault_probe("flaky").setup_calls.get(), 4);
    })
    .expect("runtime");
}

#[test]
fn a_backend_that_always_fails_gets_exactly_four_setup_calls_then_gives_up() {
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        rig.start(
            "dead",
            &[("fault_fail_setup_times", "1000000")],
            Policy::default(),
        );
        sleep(Duration::from_secs(3600)).await;
        assert_eq!(rig.shell.registry.fault_probe("dead").setup_calls.get(), 4);
        assert_eq!(rig.times("dead", "driver.gave_up").len(), 1);
        let status = rig.shell.board.backend("dead").expect("status");
        assert_eq!(status.state, StateName::FailedRecoverable);
        assert_eq!(status.next_retry, None);
        assert!(
            status
                .last_error
                .expect("error")
                .contains("injected setup failure")
        );
    })
    .expect("runtime");
}

#[test]
fn a_fatal_error_is_never_retried() {
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        rig.start(
            "broken",
            &[
                ("fault_fail_setup_times", "5"),
                ("fault_error", "missing_library"),
            ],
            Policy::default(),
        );
        sleep(Duration::from_secs(3600)).await;
        assert_eq!(
            rig.shell.registry.fault_probe("broken").setup_calls.get(),
            1
        );
        assert_eq!(rig.state("broken"), StateName::FailedFatal);
        assert!(rig.times("broken", "driver.retry.scheduled").is_empty());
    })
    .expect("runtime");
}

#[test]
fn a_hung_setup_times_out_and_is_retried_without_two_setups_at_once() {
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        let policy = Policy {
            driver_init_timeout: Duration::from_secs(10),
            ..Policy::default()
        };
        rig.start("hung", &[("fault_setup_hang", "true")], policy);
        sleep(Duration::from_secs(25)).await;
        // Setups at 0, 11 (10s timeout + 1s backoff), 23 (+10s, +2s); each
        // hung one was aborted before the next started.
        assert_eq!(
            rig.times("hung", "driver.init.start"),
            vec![at(0), at(11), at(23)]
        );
        let probe = rig.shell.registry.fault_probe("hung");
        assert_eq!(probe.setup_calls.get(), 3);
        assert_eq!(probe.max_concurrent_setups.get(), 1);
        assert_eq!(
            probe.concurrent_setups.get(),
            1,
            "the third is still hanging"
        );
        let errors = rig.shell.notifier.history();
        let timeout = errors
            .iter()
            .find(|r| r.event_type == "driver.init.error")
            .expect("an init error");
        assert_eq!(timeout.payload["class"], "recoverable");
        assert!(
            timeout.payload["message"]
                .as_str()
                .expect("message")
                .contains("timed out")
        );
    })
    .expect("runtime");
}

/// A driver with bugs: `do_setup` panics when `setup_panics` is set, and
/// `create_volume` panics for volumes "now" (at once) and "later" (after a
/// second).
struct PanickyDriver {
    setup_panics: bool,
}

#[async_trait::async_trait(?Send)]
impl Script for PanickyDriver {
    async fn do_setup(&self) -> Result<(), DriverError> {
        if self.setup_panics {
            panic!("driver bug: index out of bounds")
        }
        Ok(())
    }
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        Ok(())
    }
    async fn create_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        match volume.id.as_str() {
            "now" => panic!("driver bug in create_volume"),
            "later" => {
                sleep(Duration::from_secs(1)).await;
                panic!("driver bug after a second")
            }
            _ => Ok(()),
        }
    }
    async fn delete_volume(&self, _: &Volume) -> Result<(), DriverError> {
        Ok(())
    }
}

/// A rig and a started backend "p" on a [`PanickyDriver`].
fn start_panicky(setup_panics: bool) -> (Rig, Addr<DriverActor>) {
    let mut registry = DriverRegistry::with_builtin();
    registry.register(Kind::Volume, "panicky", &[], move |_| {
        Ok(AnyDriver::Volume(std::rc::Rc::new(Scripted(
            PanickyDriver { setup_panics },
        ))))
    });
    let rig = Rig::new(registry);
    let addr = DriverActor::new(
        spec("p", Kind::Volume, "panicky", &[]),
        Policy::default(),
        1,
        1,
        rig.shell.clone(),
    )
    .start();
    addr.do_send(Start);
    (rig, addr)
}

#[test]
fn a_panicking_driver_becomes_a_recoverable_failure_and_the_actor_lives() {
    run_virtual(async {
        let (rig, addr) = start_panicky(true);
        // A neighbour on the same arbiter keeps working.
        rig.start("neighbour", &[], Policy::default());
        sleep(Duration::from_secs(60)).await;
        assert_eq!(rig.state("neighbour"), StateName::Ready);
        let lifecycle = addr.send(GetLifecycle).await.expect("actor alive");
        assert!(lifecycle.state().gave_up(), "{:?}", lifecycle.state());
        assert!(
            lifecycle
                .state()
                .last_error()
                .expect("error")
                .to_string()
                .contains("driver panicked: driver bug")
        );
        assert_eq!(
            rig.times("p", "driver.init.start").len(),
            4,
            "backoff, no hot loop"
        );
    })
    .expect("runtime");
}

#[test]
fn an_operation_whose_driver_panics_fails_recoverably_and_the_actor_serves_on() {
    run_virtual(async {
        let (rig, addr) = start_panicky(false);
        sleep(Duration::from_millis(10)).await;
        assert_eq!(rig.state("p"), StateName::Ready);
        // Panics on the first poll (finished inline) and on a later poll
        // (the call was running concurrently).
        for (id, message) in [
            ("now", "driver bug in create_volume"),
            ("later", "driver bug after a second"),
        ] {
            let answer = addr
                .send(Operation::CreateVolume(volume(id)))
                .await
                .expect("the actor answers");
            match answer {
                Err(OperationError::Driver { backend, error, .. }) => {
                    assert_eq!(backend, "p");
                    assert_eq!(error, DriverError::Panicked(message.into()));
                    assert!(!error.is_fatal());
                }
                other => panic!("volume {id}: expected a driver error, got {other:?}"),
            }
            let status = rig.shell.board.backend("p").expect("backend on the board");
            assert_eq!(status.in_flight, 0, "volume {id}: counted out on the board");
            assert_eq!(status.state, StateName::Ready);
            let lifecycle = addr.send(GetLifecycle).await.expect("actor alive");
            assert_eq!(
                lifecycle.state().in_flight(),
                0,
                "volume {id}: counted out in the lifecycle"
            );
        }
        for _ in 0..3 {
            let done = addr
                .send(Operation::CreateVolume(volume("fine")))
                .await
                .expect("the actor answers");
            assert_eq!(done, Ok(OperationOutput::Done));
        }
    })
    .expect("runtime");
}

fn volume(id: &str) -> Volume {
    Volume::new(id, 1 << 30)
}

#[test]
fn operations_are_refused_unless_ready_with_state_and_next_retry() {
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        let addr = rig.start(
            "flaky",
            &[("fault_fail_setup_times", "1")],
            Policy::default(),
        );
        sleep(Duration::from_millis(100)).await;
        let refused = addr
            .send(Operation::CreateVolume(volume("v1")))
            .await
            .expect("delivered")
            .expect_err("not ready");
        let message = refused.to_string();
        assert!(matches!(refused, OperationError::Refused(_)));
        // In an operator's words: what, where, the state, what next and when.
        assert!(
            message.starts_with("volume create refused on backend `flaky`: the backend is retrying its setup after \"backend error:"),
            "{message}"
        );
        assert!(message.contains("; next attempt in 1s at "), "{message}");
        assert!(message.ends_with(" UTC"), "{message}");
        for code_word in ["failed_recoverable", "operation_started", "+1s", "Some("] {
            assert!(!message.contains(code_word), "{code_word} in {message}");
        }
        sleep(Duration::from_secs(2)).await;
        let done = addr
            .send(Operation::CreateVolume(volume("v1")))
            .await
            .expect("delivered");
        assert_eq!(done, Ok(OperationOutput::Done));
    })
    .expect("runtime");
}

#[test]
fn create_export_receives_the_connector_and_initialize_connection_does_not_reexport() {
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        let addr = rig.start("lvm", &[], Policy::default());
        sleep(Duration::from_millis(10)).await;
        let connector = Connector {
            host: Some("compute-1".into()),
            ip: Some("192.0.2.7".into()),
            ..Connector::default()
        };
        let attached = addr
            .send(Operation::Attach {
                volume: volume("v1"),
                connector: Box::new(connector.clone()),
            })
            .await
            .expect("delivered")
            .expect("attached");
        assert!(matches!(attached, OperationOutput::Connection(_)));
        for _ in 0..100 {
            addr.send(Operation::InitializeConnection {
                volume: volume("v1"),
                connector: Box::new(connector.clone()),
            })
            .await
            .expect("delivered")
            .expect("connection info");
        }
        let probe = rig.shell.registry.fault_probe("lvm");
        assert_eq!(
            probe.exports.borrow().clone(),
            vec![("v1".to_string(), connector)]
        );
        assert_eq!(probe.connections.get(), 101);
    })
    .expect("runtime");
}

#[test]
fn the_status_board_counts_operations_in_flight_in_and_out() {
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        let addr = rig.start("slow", &[("fault_op_delay", "30s")], Policy::default());
        sleep(Duration::from_millis(10)).await;
        let in_flight = || {
            rig.shell
                .board
                .backend("slow")
                .expect("backend on the board")
                .in_flight
        };
        assert_eq!(in_flight(), 0);
        let first = actix::spawn(addr.send(Operation::CreateVolume(volume("v1"))));
        let second = actix::spawn(addr.send(Operation::CreateVolume(volume("v2"))));
        sleep(Duration::from_secs(1)).await;
        assert_eq!(in_flight(), 2, "both operations are counted in");
        assert_eq!(rig.state("slow"), StateName::Ready);
        for op in [first, second] {
            let done = op.await.expect("joined").expect("delivered");
            assert_eq!(done, Ok(OperationOutput::Done));
        }
        sleep(Duration::from_millis(10)).await;
        assert_eq!(in_flight(), 0, "both are counted out");
    })
    .expect("runtime");
}

#[test]
fn reload_with_in_flight_operations_drains_first_then_reloads() {
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        let addr = rig.start("slow", &[("fault_op_delay", "30s")], Policy::default());
        sleep(Duration::from_millis(10)).await;
        let op = addr.send(Operation::CreateVolume(volume("v1")));
        let op = actix::spawn(op);
        sleep(Duration::from_secs(1)).await;
        addr.do_send(ReloadBackend {
            config: 2,
            spec: spec("slow", Kind::Volume, "fault", &[]),
            policy: Policy::default(),
            changed: true,
        });
        sleep(Duration::from_secs(1)).await;
        assert_eq!(rig.state("slow"), StateName::Draining);
        let refused = addr
            .send(Operation::CreateVolume(volume("v2")))
            .await
            .expect("delivered")
            .expect_err("draining");
        assert!(
            refused.to_string().ends_with(
                "finishing its in-flight operations before a reload (until 00:01:01 UTC at the latest, in 59s); retry after that"
            ),
            "{refused}"
        );
        let finished = op.await.expect("joined").expect("delivered");
        assert_eq!(
            finished,
            Ok(OperationOutput::Done),
            "in-flight work is not cut"
        );
        sleep(Duration::from_millis(10)).await;
        assert_eq!(rig.state("slow"), StateName::Ready);
        assert_eq!(rig.times("slow", "driver.init.start").len(), 2);
    })
    .expect("runtime");
}

#[test]
fn shutdown_stops_the_actor() {
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        let addr = rig.start("a", &[], Policy::default());
        sleep(Duration::from_millis(10)).await;
        addr.do_send(Shutdown);
        sleep(Duration::from_millis(10)).await;
        assert!(!addr.connected());
        assert_eq!(rig.state("a"), StateName::Stopped);
    })
    .expect("runtime");
}

#[test]
fn the_status_board_counts_backends_in_each_state() {
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        let _healthy = rig.start("healthy", &[], Policy::default());
        let _flaky = rig.start(
            "flaky",
            &[("fault_fail_setup_times", "1")],
            Policy::default(),
        );
        let _broken = rig.start(
            "broken",
            &[("fault_error", "config"), ("fault_fail_setup_times", "1")],
            Policy::default(),
        );
        sleep(Duration::from_millis(10)).await;
        let board = &rig.shell.board;
        assert_eq!(board.count_in(StateName::Ready), 1);
        assert_eq!(board.count_in(StateName::FailedRecoverable), 1);
        assert_eq!(board.count_in(StateName::FailedFatal), 1);
        sleep(Duration::from_secs(2)).await;
        assert_eq!(
            board.count_in(StateName::Ready),
            2,
            "flaky came up on its retry"
        );
        assert_eq!(board.count_in(StateName::FailedRecoverable), 0);
    })
    .expect("runtime");
}

#[test]
fn a_call_that_never_returns_fails_at_its_deadline_and_the_backend_is_not_ready_until_set_up_again()
{
    run_virtual(async {
        let rig = Rig::new(DriverRegistry::with_builtin());
        let addr = rig.start(
            "hung",
            &[
                ("fault_op_hang", "while_down"),
                ("fault_outage", "10s..100s"),
            ],
            Policy {
                driver_operation_timeout: Duration::from_secs(30),
                reinit_driver_count: 0,
                ..Policy::default()
            },
        );
        sleep(Duration::from_secs(11)).await;
        // Stats are only called on a publisher tick: still Ready.
        assert_eq!(rig.state("hung"), StateName::Ready);
        let started = actix::clock::Instant::now();
        let answer = addr
            .send(Operation::CreateVolume(volume("v")))
            .await
            .expect("the actor answers");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(30),
            "at the deadline"
        );
        match answer {
            Err(OperationError::Driver { backend, error, .. }) => {
                assert_eq!(backend, "hung");
                let text = error.to_string();
                assert!(
                    text.contains("did not answer within 30s (driver_operation_timeout)"),
                    "{text}"
                );
                assert!(!error.is_fatal());
            }
            other => panic!("expected the call to fail at its deadline, got {other:?}"),
        }
        let lifecycle = addr.send(GetLifecycle).await.expect("actor alive");
        assert_eq!(lifecycle.state().in_flight(), 0, "counted out");
        assert_eq!(rig.state("hung"), StateName::FailedRecoverable);
        assert_eq!(rig.times("hung", "driver.health.lost").len(), 1);
        // Operations are refused meanwhile; after the outage the backend is
        // Ready again by itself and its calls return.
        let refused = addr
            .send(Operation::CreateVolume(volume("w")))
            .await
            .expect("the actor answers");
        assert!(
            matches!(refused, Err(OperationError::Refused(_))),
            "{refused:?}"
        );
        sleep(Duration::from_secs(200)).await;
        assert_eq!(rig.state("hung"), StateName::Ready);
        let done = addr
            .send(Operation::CreateVolume(volume("x")))
            .await
            .expect("the actor answers");
        assert_eq!(done, Ok(OperationOutput::Done));
    })
    .expect("runtime");
}
