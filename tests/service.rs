//! The whole service on virtual time: reloads (drain, abort, reject, coalesce,
//! add/remove), budget exhaustion and recovery by reload, service up/down, shutdown.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use actix::clock::sleep;
use rekindle::actors::controller::{BackendPlan, RequestReload};
use rekindle::actors::driver_actor::spec;
use rekindle::actors::service::Route;
use rekindle::actors::signal::ControlSignal;
use rekindle::actors::{
    Controller, Handles, Operation, OperationOutput, Plan, ReloadOutcome, Shell,
};
use rekindle::clock::ServiceClock;
use rekindle::driver::{DriverRegistry, Kind, Volume};
use rekindle::lifecycle::{Policy, StateName};
use rekindle::notify::{Notifier, Record};
use rekindle::runtime::run_virtual;
use rekindle::systemd::Systemd;
use tokio::sync::oneshot;

type Source = Rc<RefCell<Result<Plan, String>>>;

fn backend(name: &str, kind: Kind, options: &[(&str, &str)]) -> (String, BackendPlan) {
    (
        name.to_string(),
        BackendPlan {
            spec: spec(name, kind, "fault", options),
            policy: Policy {
                graceful_shutdown_timeout: Duration::from_secs(60),
                ..Policy::default()
            },
        },
    )
}

fn plan(backends: Vec<(String, BackendPlan)>) -> Plan {
    Plan {
        host: "node-1".to_string(),
        periodic_interval: Duration::from_secs(60),
        report_interval: Duration::from_secs(10),
        service_down_time: Duration::from_secs(60),
        backup_initialization_timeout: Duration::from_secs(120),
        graceful_shutdown_timeout: Duration::from_secs(60),
        jitter_seed: None,
        backends: backends.into_iter().collect::<BTreeMap<_, _>>(),
    }
}

struct Running {
    handles: Handles,
    source: Source,
    stopped: Option<oneshot::Receiver<()>>,
}

fn start(initial: Plan) -> Running {
    let clock = ServiceClock::start_at(std::time::UNIX_EPOCH);
    let shell = Shell::new(
        clock,
        Notifier::in_memory(clock),
        DriverRegistry::with_builtin(),
    );
    let source: Source = Rc::new(RefCell::new(Ok(initial.clone())));
    let reader = source.clone();
    let loader = Box::new(move || reader.borrow().clone());
    let (tx, rx) = oneshot::channel();
    let handles = Controller::start(initial, loader, shell, 7, Systemd::disabled(), Some(tx));
    Running {
        handles,
        source,
        stopped: Some(rx),
    }
}

impl Running {
    fn set_config(&self, next: Result<Plan, String>) {
        *self.source.borrow_mut() = next;
    }

    fn events(&self, event_type: &str) -> Vec<Record> {
        self.handles
            .shell
            .notifier
            .history()
            .into_iter()
            .filter(|r| r.event_type == event_type)
            .collect()
    }

    fn count(&self, event_type: &str, backend: &str) -> usize {
        self.events(event_type)
            .iter()
            .filter(|r| r.backend.as_deref() == Some(backend))
            .count()
    }

    fn state(&self, backend: &str) -> StateName {
        self.handles
            .shell
            .board
            .backend(backend)
            .map_or(StateName::Stopped, |b| b.state)
    }

    async fn reload(&self) -> ReloadOutcome {
        self.handles
            .controller
            .send(RequestReload)
            .await
            .expect("controller alive")
    }

    fn create(
        &self,
        backend: &str,
        id: &str,
    ) -> tokio::task::JoinHandle<Result<OperationOutput, rekindle::actors::OperationError>> {
        let request = self.handles.service.send(Route {
            backend: backend.to_string(),
            operation: Operation::CreateVolume(Volume::new(id, 1)),
        });
        actix::spawn(async move { request.await.expect("service alive") })
    }
}

#[test]
fn unchanged_backends_are_never_interrupted_and_changed_ones_drain_then_reload() {
    run_virtual(async {
        let slow = [("fault_op_delay", "30s")];
        let svc = start(plan(vec![
            backend("steady", Kind::Volume, &slow),
            backend("tuned", Kind::Volume, &slow),
        ]));
        sleep(Duration::from_secs(1)).await;
        let steady_op = svc.create("steady", "v1");
        let tuned_op = svc.create("tuned", "v2");
        sleep(Duration::from_secs(1)).await;
        svc.set_config(Ok(plan(vec![
            backend("steady", Kind::Volume, &slow),
            backend(
                "tuned",
                Kind::Volume,
                &[("fault_op_delay", "30s"), ("fault_fail_stats", "0")],
            ),
        ])));
        let outcome = svc.reload().await;
        let ReloadOutcome::Started { diff, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(diff.changed, vec!["tuned"]);
        assert_eq!(diff.unchanged, vec!["steady"]);
        sleep(Duration::from_millis(10)).await;
        assert_eq!(svc.state("steady"), StateName::Ready);
        assert_eq!(svc.state("tuned"), StateName::Draining);
        assert!(
            svc.events("reload.end").is_empty(),
            "not before the drain ends"
        );
        // Both in-flight operations complete: nothing is cut.
        assert_eq!(steady_op.await.expect("joined"), Ok(OperationOutput::Done));
        assert_eq!(tuned_op.await.expect("joined"), Ok(OperationOutput::Done));
        sleep(Duration::from_millis(10)).await;
        assert_eq!(svc.state("tuned"), StateName::Ready);
        assert_eq!(
            svc.count("driver.init.start", "steady"),
            1,
            "steady was never re-initialized"
        );
        assert_eq!(svc.count("driver.init.start", "tuned"), 2);
        let end = svc.events("reload.end");
        assert_eq!(end.len(), 1);
        assert_eq!(end[0].payload["changed"], serde_json::json!(["tuned"]));
        assert_eq!(end[0].payload["unchanged"], serde_json::json!(["steady"]));
        assert_eq!(end[0].payload["states"]["tuned"], "ready");
    })
    .expect("runtime");
}

#[test]
fn drain_deadline_aborts_the_reload_and_the_old_config_keeps_serving() {
    run_virtual(async {
        let mut slow = backend("slow", Kind::Volume, &[("fault_op_delay", "300s")]);
        slow.1.policy.graceful_shutdown_timeout = Duration::from_secs(5);
        let svc = start(plan(vec![slow.clone()]));
        sleep(Duration::from_secs(1)).await;
        let op = svc.create("slow", "v1");
        sleep(Duration::from_secs(1)).await;
        let mut changed = slow.clone();
        changed
            .1
            .spec
            .options
            .insert("fault_fail_stats".into(), "1".into());
        svc.set_config(Ok(plan(vec![changed])));
        assert!(matches!(svc.reload().await, ReloadOutcome::Started { .. }));
        sleep(Duration::from_secs(6)).await;
        assert_eq!(svc.state("slow"), StateName::Ready);
        assert_eq!(svc.count("reload.aborted", "slow"), 1);
        let end = svc.events("reload.end");
        assert_eq!(end.len(), 1);
        assert_eq!(end[0].payload["aborted"], serde_json::json!(["slow"]));
        let status = svc.handles.shell.board.backend("slow").expect("status");
        assert_eq!(status.config, 1, "still on the old config");
        assert_eq!(
            op.await.expect("joined"),
            Ok(OperationOutput::Done),
            "never cut"
        );
    })
    .expect("runtime");
}

#[test]
fn an_invalid_config_is_rejected_and_the_old_one_keeps_serving() {
    run_virtual(async {
        let svc = start(plan(vec![backend("a", Kind::Volume, &[])]));
        sleep(Duration::from_secs(1)).await;
        let error =
            "cinder.conf: [a] reinit_driver_count = \"x\": expected a whole number".to_string();
        svc.set_config(Err(error.clone()));
        assert_eq!(
            svc.reload().await,
            ReloadOutcome::Rejected {
                error: error.clone()
            }
        );
        let rejected = svc.events("reload.rejected");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].payload["error"], error);
        assert!(svc.events("reload.start").is_empty());
        assert_eq!(svc.state("a"), StateName::Ready);
        assert_eq!(
            svc.create("a", "v1").await.expect("joined"),
            Ok(OperationOutput::Done)
        );
    })
    .expect("runtime");
}

#[test]
fn a_driver_that_gave_up_comes_back_through_a_reload() {
    run_virtual(async {
        let svc = start(plan(vec![backend(
            "late",
            Kind::Volume,
            &[("fault_ready_after", "10m")],
        )]));
        sleep(Duration::from_secs(60)).await;
        assert_eq!(svc.count("driver.gave_up", "late"), 1);
        sleep(Duration::from_secs(600)).await;
        assert_eq!(
            svc.state("late"),
            StateName::FailedRecoverable,
            "ticks never revive it"
        );
        // The backend is up now; the operator reloads the same file.
        assert!(matches!(svc.reload().await, ReloadOutcome::Started { .. }));
        sleep(Duration::from_millis(10)).await;
        assert_eq!(svc.state("late"), StateName::Ready);
    })
    .expect("runtime");
}

#[test]
fn a_burst_of_reloads_during_a_reload_is_coalesced_into_one_follow_up() {
    run_virtual(async {
        let svc = start(plan(vec![backend(
            "a",
            Kind::Volume,
            &[("fault_op_delay", "20s")],
        )]));
        sleep(Duration::from_secs(1)).await;
        let op = svc.create("a", "v1");
        sleep(Duration::from_secs(1)).await;
        svc.set_config(Ok(plan(vec![backend(
            "a",
            Kind::Volume,
            &[("fault_op_delay", "21s")],
        )])));
        assert!(matches!(svc.reload().await, ReloadOutcome::Started { .. }));
        for _ in 0..5 {
            assert_eq!(svc.reload().await, ReloadOutcome::Coalesced);
            svc.handles.controller.do_send(ControlSignal::Reload);
        }
        op.await.expect("joined").expect("done");
        sleep(Duration::from_secs(1)).await;
        assert_eq!(
            svc.events("reload.start").len(),
            2,
            "one reload, one follow-up"
        );
        assert_eq!(svc.events("reload.end").len(), 2);
    })
    .expect("runtime");
}

#[test]
fn reload_adds_and_removes_backends() {
    run_virtual(async {
        let svc = start(plan(vec![backend("old", Kind::Volume, &[])]));
        sleep(Duration::from_secs(1)).await;
        svc.set_config(Ok(plan(vec![backend("new", Kind::Volume, &[])])));
        let ReloadOutcome::Started { diff, .. } = svc.reload().await else {
            panic!()
        };
        assert_eq!(
            (diff.added, diff.removed),
            (vec!["new".to_string()], vec!["old".to_string()])
        );
        sleep(Duration::from_secs(1)).await;
        assert_eq!(svc.state("new"), StateName::Ready);
        assert_eq!(svc.state("old"), StateName::Stopped);
        let refused = svc
            .create("old", "v1")
            .await
            .expect("joined")
            .expect_err("removed");
        assert!(
            refused.to_string().contains("no backend named `old`"),
            "{refused}"
        );
    })
    .expect("runtime");
}

#[test]
fn a_backup_service_is_down_until_its_driver_is_set_up() {
    run_virtual(async {
        let svc = start(plan(vec![backend(
            "backup",
            Kind::Backup,
            &[("fault_ready_after", "150s")],
        )]));
        sleep(Duration::from_secs(20)).await;
        let rows = svc.handles.shell.board.services();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].binary.as_str(), rows[0].state.as_str()),
            ("cinder-backup", "down")
        );
        assert!(svc.count("backup.init.failure", "backup") >= 1);
        sleep(Duration::from_secs(200)).await;
        // Default budget (3 retries) is spent by then; the operator reloads.
        assert!(matches!(svc.reload().await, ReloadOutcome::Started { .. }));
        // Up the moment it is Ready, not at the next heartbeat (10 s).
        sleep(Duration::from_millis(100)).await;
        let rows = svc.handles.shell.board.services();
        assert_eq!(rows[0].state, "up");
        assert_eq!(svc.count("backup.init.success", "backup"), 1);
        assert_eq!(svc.count("service.up", "backup"), 1);
        // It was never up before: nothing went down.
        assert_eq!(svc.count("service.down", "backup"), 0);
    })
    .expect("runtime");
}

#[test]
fn service_rows_follow_the_backend_state_at_once() {
    run_virtual(async {
        let svc = start(plan(vec![
            backend("quick", Kind::Volume, &[]),
            backend("slow", Kind::Volume, &[("fault_ready_after", "30s")]),
            backend(
                "broken",
                Kind::Volume,
                &[("fault_fail_setup_times", "1"), ("fault_error", "config")],
            ),
        ]));
        // Within the first report_interval (10 s): the Ready backend is up.
        sleep(Duration::from_millis(50)).await;
        let state = |name: &str| {
            svc.handles
                .shell
                .board
                .services()
                .into_iter()
                .find(|r| r.backend == name)
                .map(|r| r.state)
        };
        assert_eq!(state("quick").as_deref(), Some("up"));
        assert_eq!(state("slow").as_deref(), Some("down"));
        assert_eq!(state("broken").as_deref(), Some("down"));
        assert_eq!(svc.count("service.up", "quick"), 1);
        // Never up, so never announced down.
        sleep(Duration::from_secs(25)).await;
        assert_eq!(svc.count("service.down", "slow"), 0);
        assert_eq!(svc.count("service.down", "broken"), 0);
        // Up as soon as its retry succeeds (retries at 1, 3, 7, 15 s fail:
        // the reload gives it a fresh budget after 30 s).
        sleep(Duration::from_secs(10)).await;
        assert!(matches!(svc.reload().await, ReloadOutcome::Started { .. }));
        sleep(Duration::from_millis(50)).await;
        assert_eq!(state("slow").as_deref(), Some("up"));
        assert_eq!(svc.count("service.up", "slow"), 1);
    })
    .expect("runtime");
}

#[test]
fn shutdown_drains_in_flight_operations_then_stops() {
    run_virtual(async {
        let mut svc = start(plan(vec![backend(
            "a",
            Kind::Volume,
            &[("fault_op_delay", "10s")],
        )]));
        sleep(Duration::from_secs(1)).await;
        let op = svc.create("a", "v1");
        sleep(Duration::from_secs(1)).await;
        svc.handles.controller.do_send(ControlSignal::Shutdown);
        let stopped = svc.stopped.take().expect("receiver");
        stopped.await.expect("shutdown completes");
        assert_eq!(op.await.expect("joined"), Ok(OperationOutput::Done));
        assert_eq!(svc.state("a"), StateName::Stopped);
    })
    .expect("runtime");
}
