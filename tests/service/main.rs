//! The whole service on virtual time: reloads (drain, abort, reject, coalesce,
//! add/remove), budget exhaustion and recovery by reload, service up/down, shutdown.

mod arrays;

#[path = "../common/drivers.rs"]
mod drivers;

use arrays::{Arrays, on_array, with_arrays};
use drivers::{Script, Scripted};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use actix::clock::sleep;
use rekindle::actors::controller::{
    BackendPlan, BackendResult, GetPlan, RequestReload, RequestReloadAndWait,
};
use rekindle::actors::driver_actor::spec;
use rekindle::actors::service::Route;
use rekindle::actors::signal::ControlSignal;
use rekindle::actors::{Handles, Operation, OperationOutput, Plan, ReloadOutcome};
use rekindle::driver::{DriverRegistry, Kind, Volume};
use rekindle::engine::clock::ServiceClock;
use rekindle::engine::runtime::run_virtual;
use rekindle::events::notify::Record;
use rekindle::lifecycle::{Policy, StateName};

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
    engine: rekindle::EngineHandle,
}

fn start(initial: Plan) -> Running {
    start_with(initial, DriverRegistry::with_builtin())
}

/// Through the front door, with a loader standing for the config file.
fn start_with(initial: Plan, registry: DriverRegistry) -> Running {
    let source: Source = Rc::new(RefCell::new(Ok(initial)));
    let reader = source.clone();
    let engine = rekindle::Engine::builder()
        .plan_loader(move || reader.borrow().clone())
        .registry(registry)
        .clock(ServiceClock::start_at(std::time::UNIX_EPOCH))
        .jitter_seed(rekindle::JitterSeed(7))
        .start()
        .expect("engine starts");
    Running {
        handles: engine.handles().clone(),
        source,
        engine,
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

    /// Reloads and waits for the per-backend report.
    async fn reload_and_wait(&self) -> rekindle::actors::ReloadReport {
        match self
            .handles
            .controller
            .send(RequestReloadAndWait)
            .await
            .expect("controller alive")
        {
            ReloadOutcome::Finished(report) => report,
            other => panic!("no report: {other:?}"),
        }
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

/// A plan of one backend, `name`, of `kind` with `options`.
fn one(name: &str, kind: Kind, options: &[(&str, &str)]) -> Plan {
    plan(vec![backend(name, kind, options)])
}

/// A plan of one volume backend `a` whose operations take `delay`.
fn delayed(delay: &str) -> Plan {
    one("a", Kind::Volume, &[("fault_op_delay", delay)])
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
        // A slow backend that works: its calls are given the time they take.
        slow.1.policy.driver_operation_timeout = Duration::from_secs(600);
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
        let svc = start(one("a", Kind::Volume, &[]));
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
        let svc = start(one("late", Kind::Volume, &[("fault_ready_after", "10m")]));
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
        let svc = start(delayed("20s"));
        sleep(Duration::from_secs(1)).await;
        let op = svc.create("a", "v1");
        sleep(Duration::from_secs(1)).await;
        svc.set_config(Ok(delayed("21s")));
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
        let svc = start(one("old", Kind::Volume, &[]));
        sleep(Duration::from_secs(1)).await;
        svc.set_config(Ok(one("new", Kind::Volume, &[])));
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
        // Gone from `status` too: no stale backend row or service row.
        assert!(svc.handles.shell.board.backend("old").is_none());
        assert!(
            svc.handles
                .shell
                .board
                .services()
                .iter()
                .all(|r| r.backend != "old")
        );
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
        let svc = start(one(
            "backup",
            Kind::Backup,
            &[("fault_ready_after", "150s")],
        ));
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
        let svc = start(delayed("10s"));
        sleep(Duration::from_secs(1)).await;
        let op = svc.create("a", "v1");
        sleep(Duration::from_secs(1)).await;
        svc.handles.controller.do_send(ControlSignal::Shutdown);
        svc.engine.stopped().await;
        assert_eq!(op.await.expect("joined"), Ok(OperationOutput::Done));
        assert_eq!(svc.state("a"), StateName::Stopped);
    })
    .expect("runtime");
}

#[test]
fn an_operation_during_shutdown_says_the_backend_has_stopped() {
    run_virtual(async {
        let svc = start(plan(vec![
            backend("idle", Kind::Volume, &[]),
            backend("busy", Kind::Volume, &[("fault_op_delay", "10s")]),
        ]));
        sleep(Duration::from_secs(1)).await;
        let op = svc.create("busy", "v1");
        sleep(Duration::from_secs(1)).await;
        svc.handles.controller.do_send(ControlSignal::Shutdown);
        sleep(Duration::from_millis(100)).await;
        // `busy` drains its operation; `idle` stopped at once.
        let refused = svc
            .create("idle", "v2")
            .await
            .expect("joined")
            .expect_err("stopped");
        assert_eq!(
            refused.to_string(),
            "volume create refused: backend `idle` has stopped (the service is shutting down, or a reload removed it) and takes no operations"
        );
        assert_eq!(op.await.expect("joined"), Ok(OperationOutput::Done));
    })
    .expect("runtime");
}

// ---- Reload rollback, removal drains, the reload report ---------------------

#[test]
fn a_reload_whose_new_config_fails_rolls_back_to_the_old_instance() {
    run_virtual(async {
        let arrays = Rc::new(Arrays::default());
        arrays.alive.borrow_mut().insert("A".into());
        let svc = start_with(plan(vec![on_array("b1", "A", true)]), with_arrays(&arrays));
        sleep(Duration::from_secs(1)).await;
        assert_eq!(svc.state("b1"), StateName::Ready);
        let built_before = arrays.built.get();
        // The new array address does not answer.
        svc.set_config(Ok(plan(vec![on_array("b1", "B", true)])));
        let report = svc.reload_and_wait().await;
        assert_eq!(
            report.backends.get("b1"),
            Some(&BackendResult::RolledBack {
                error: "backend error: array B does not answer".into()
            }),
            "{report:?}"
        );
        assert!(!report.as_intended());
        assert_eq!(ReloadOutcome::Finished(report).exit_code(), 3);
        assert_eq!(svc.state("b1"), StateName::Ready);
        // The old instance serves: no driver was built for the rollback.
        assert_eq!(
            arrays.built.get(),
            built_before + 1,
            "only the new instance"
        );
        assert_eq!(
            svc.create("b1", "v1").await.expect("joined"),
            Ok(OperationOutput::Done)
        );
        assert_eq!(*arrays.served_by.borrow(), vec![built_before]);
        // Status says the backend runs an older config than the file.
        let row = svc.handles.shell.board.backend("b1").expect("row");
        assert!(
            matches!(
                row.stale_config,
                Some(rekindle::events::status::StaleConfig::RolledBack { .. })
            ),
            "{row:?}"
        );
        assert_eq!(svc.count("reload.rolled_back", "b1"), 1);
        let end = svc.events("reload.end");
        assert_eq!(end[0].payload["backends"]["b1"]["result"], "rolled_back");
        assert_eq!(end[0].payload["rolled_back"][0], "b1");
        // The plan says what runs, so the same file is tried again next time,
        // and now works.
        let running = svc.handles.controller.send(GetPlan).await.expect("plan");
        assert_eq!(running.backends["b1"].spec.options["array"], "A");
        arrays.alive.borrow_mut().insert("B".into());
        let report = svc.reload_and_wait().await;
        assert_eq!(
            report.backends.get("b1"),
            Some(&BackendResult::Reloaded {
                state: StateName::Ready
            })
        );
        assert!(
            svc.handles
                .shell
                .board
                .backend("b1")
                .expect("row")
                .stale_config
                .is_none()
        );
    })
    .expect("runtime");
}

#[test]
fn with_reload_rollback_off_a_failed_reload_fails_as_before() {
    run_virtual(async {
        let arrays = Rc::new(Arrays::default());
        arrays.alive.borrow_mut().insert("A".into());
        let svc = start_with(plan(vec![on_array("b1", "A", true)]), with_arrays(&arrays));
        sleep(Duration::from_secs(1)).await;
        svc.set_config(Ok(plan(vec![on_array("b1", "B", false)])));
        let report = svc.reload_and_wait().await;
        assert!(
            matches!(
                report.backends.get("b1"),
                Some(BackendResult::Failed {
                    state: StateName::FailedRecoverable,
                    ..
                })
            ),
            "{report:?}"
        );
        assert_eq!(svc.count("reload.rolled_back", "b1"), 0);
    })
    .expect("runtime");
}

#[test]
fn an_old_instance_failing_its_check_leaves_the_new_config_retrying() {
    run_virtual(async {
        let arrays = Rc::new(Arrays::default());
        arrays.alive.borrow_mut().insert("A".into());
        let svc = start_with(plan(vec![on_array("b1", "A", true)]), with_arrays(&arrays));
        sleep(Duration::from_secs(1)).await;
        // The old array goes away too: no rollback is possible.
        arrays.alive.borrow_mut().clear();
        svc.set_config(Ok(plan(vec![on_array("b1", "B", true)])));
        let report = svc.reload_and_wait().await;
        assert!(
            matches!(
                report.backends.get("b1"),
                Some(BackendResult::Failed {
                    state: StateName::FailedRecoverable,
                    error: Some(e),
                }) if e.contains("array B")
            ),
            "{report:?}"
        );
        // The new config is retried with backoff and comes up with its array.
        arrays.alive.borrow_mut().insert("B".into());
        sleep(Duration::from_secs(5)).await;
        assert_eq!(svc.state("b1"), StateName::Ready);
        assert_eq!(
            svc.handles.shell.board.backend("b1").expect("row").config,
            2,
            "on the new config"
        );
    })
    .expect("runtime");
}

#[test]
fn a_removal_past_its_drain_deadline_is_aborted_and_the_backend_keeps_serving() {
    run_virtual(async {
        // A slow backend that works: its calls are given the time they take.
        let mut gone = backend("gone", Kind::Volume, &[("fault_op_delay", "90s")]);
        gone.1.policy.driver_operation_timeout = Duration::from_secs(600);
        let svc = start(plan(vec![backend("stay", Kind::Volume, &[]), gone]));
        sleep(Duration::from_secs(1)).await;
        let op = svc.create("gone", "v1");
        sleep(Duration::from_secs(1)).await;
        svc.set_config(Ok(one("stay", Kind::Volume, &[])));
        let report = svc.reload_and_wait().await;
        assert_eq!(
            report.backends.get("gone"),
            Some(&BackendResult::RemovalAborted { in_flight: 1 }),
            "{report:?}"
        );
        assert_eq!(
            ReloadOutcome::Finished(report).exit_code(),
            3,
            "a script sees it"
        );
        assert_eq!(svc.state("gone"), StateName::Ready);
        assert_eq!(
            op.await.expect("joined"),
            Ok(OperationOutput::Done),
            "the in-flight operation was not cut"
        );
        assert_eq!(svc.count("removal.aborted", "gone"), 1);
        assert_eq!(
            svc.events("reload.end")[0].payload["removal_aborted"][0],
            "gone"
        );
        // It is still routed and in the plan; the next reload removes it.
        assert_eq!(
            svc.create("gone", "v2").await.expect("joined"),
            Ok(OperationOutput::Done)
        );
        let running = svc.handles.controller.send(GetPlan).await.expect("plan");
        assert!(running.backends.contains_key("gone"));
        let report = svc.reload_and_wait().await;
        assert_eq!(report.backends.get("gone"), Some(&BackendResult::Removed));
        assert_eq!(svc.state("gone"), StateName::Stopped);
    })
    .expect("runtime");
}

#[test]
fn a_clean_reload_reports_every_backend_as_intended() {
    run_virtual(async {
        let svc = start(plan(vec![
            backend("same", Kind::Volume, &[]),
            backend("tuned", Kind::Volume, &[]),
            backend("old", Kind::Volume, &[]),
        ]));
        sleep(Duration::from_secs(1)).await;
        svc.set_config(Ok(plan(vec![
            backend("same", Kind::Volume, &[]),
            backend("tuned", Kind::Volume, &[("fault_op_delay", "1s")]),
            backend("new", Kind::Volume, &[]),
        ])));
        let report = svc.reload_and_wait().await;
        let ready = StateName::Ready;
        assert_eq!(
            report.backends.into_iter().collect::<Vec<_>>(),
            vec![
                (
                    "new".to_string(),
                    BackendResult::Added {
                        ready: true,
                        state: ready,
                        error: None
                    }
                ),
                ("old".to_string(), BackendResult::Removed),
                (
                    "same".to_string(),
                    BackendResult::Unchanged { state: ready }
                ),
                (
                    "tuned".to_string(),
                    BackendResult::Reloaded { state: ready }
                ),
            ]
        );
        // A bad file: rejected at once, exit status 1.
        svc.set_config(Err("cinder.conf: [b1] volume_format: bad value".into()));
        let outcome = svc
            .handles
            .controller
            .send(RequestReloadAndWait)
            .await
            .expect("alive");
        assert!(matches!(outcome, ReloadOutcome::Rejected { .. }));
        assert_eq!(outcome.exit_code(), 1);
    })
    .expect("runtime");
}

#[test]
fn a_coalesced_request_is_answered_by_the_follow_up_reload() {
    run_virtual(async {
        let svc = start(delayed("10s"));
        sleep(Duration::from_secs(1)).await;
        let op = svc.create("a", "v1");
        sleep(Duration::from_secs(1)).await;
        svc.set_config(Ok(delayed("5s")));
        let first = svc.handles.controller.send(RequestReloadAndWait);
        let second = svc.handles.controller.send(RequestReloadAndWait);
        let (first, second) = (first.await.expect("alive"), second.await.expect("alive"));
        let (ReloadOutcome::Finished(first), ReloadOutcome::Finished(second)) = (first, second)
        else {
            panic!("both requests get a report")
        };
        assert!(!first.coalesced);
        assert!(second.coalesced);
        assert_eq!(second.config, first.config + 1, "the follow-up's report");
        assert_eq!(svc.events("reload.coalesced").len(), 1);
        assert_eq!(op.await.expect("joined"), Ok(OperationOutput::Done));
    })
    .expect("runtime");
}
