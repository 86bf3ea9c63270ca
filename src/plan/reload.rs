//! The reload decision, pure: what a reload request becomes (refused, coalesced, rejected,
//! or the steps that apply a new plan), decided from the controller's state and the new file.
//!
//! The controller actor asks [`decide`], then only carries the answer out
//! (notifications, sd_notify, messages to the driver actors); the rows in
//! this module's tests pin every branch, as `tests/lifecycle_rows.rs` does
//! for the lifecycle.

use std::collections::BTreeMap;

use super::{BackendPlan, Plan};
use crate::events::PlanDiff;

/// What the controller is doing when a reload is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadState {
    /// A shutdown has begun.
    pub shutting_down: bool,
    /// A reload is running (not every backend has settled).
    pub reloading: bool,
    /// The number of the config running now (the reload's is the next one).
    pub config: u64,
}

/// What a reload request becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadDecision {
    /// Refused: the service is shutting down. The file is not read.
    Refuse,
    /// A reload is running: one follow-up reload runs when it settles
    /// (several requests meanwhile make one). The file is not read now.
    Coalesce,
    /// The new file (or a backend's options in it) is bad: rejected, and the
    /// running config keeps serving untouched.
    Reject {
        /// Every problem, one a line, naming the file.
        error: String,
    },
    /// The new plan is applied (boxed: the other answers are a word).
    Apply(Box<ReloadSteps>),
}

/// How a new plan is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSteps {
    /// The new config's number.
    pub config: u64,
    /// Per backend: added, removed, changed, unchanged; and the service
    /// options that need a restart.
    pub diff: PlanDiff,
    /// Backends kept, in name order, each told to reload with its new spec
    /// and policy; `true` if its spec or policy changed (it drains and
    /// sets up again), `false` if it keeps serving (only its config number
    /// moves on).
    pub reload: Vec<(String, BackendPlan, bool)>,
    /// Backends to drain and stop, in name order.
    pub remove: Vec<String>,
    /// Backends to start, in name order.
    pub add: Vec<(String, BackendPlan)>,
    /// What each changed or removed backend ran before (what a rollback
    /// returns to, and what the report compares with).
    pub old: BTreeMap<String, BackendPlan>,
    /// The plan that runs from now on: the new backends and the new
    /// `graceful_shutdown_timeout`, with the running host name, intervals and
    /// jitter seed, which take effect on a restart (`diff.restart_required`
    /// says which changed).
    pub plan: Plan,
}

/// Decides what a reload request becomes. `load` reads and checks the new
/// file (its error rejects the reload); it is called only when the reload
/// is neither refused nor coalesced, so a refused request reads nothing.
pub fn decide(
    state: ReloadState,
    running: &Plan,
    load: impl FnOnce() -> Result<Plan, String>,
) -> ReloadDecision {
    if state.shutting_down {
        return ReloadDecision::Refuse;
    }
    if state.reloading {
        return ReloadDecision::Coalesce;
    }
    let new = match load() {
        Ok(plan) => plan,
        Err(error) => return ReloadDecision::Reject { error },
    };
    let diff = running.diff(&new);
    let reload = diff
        .changed
        .iter()
        .chain(&diff.unchanged)
        .filter_map(|name| {
            let backend = new.backends.get(name)?;
            Some((name.clone(), backend.clone(), diff.changed.contains(name)))
        })
        .collect();
    let add = diff
        .added
        .iter()
        .filter_map(|name| Some((name.clone(), new.backends.get(name)?.clone())))
        .collect();
    let old = diff
        .changed
        .iter()
        .chain(&diff.removed)
        .filter_map(|name| Some((name.clone(), running.backends.get(name)?.clone())))
        .collect();
    let plan = Plan {
        host: running.host.clone(),
        periodic_interval: running.periodic_interval,
        report_interval: running.report_interval,
        service_down_time: running.service_down_time,
        backup_initialization_timeout: running.backup_initialization_timeout,
        jitter_seed: running.jitter_seed,
        ..new
    };
    ReloadDecision::Apply(Box::new(ReloadSteps {
        config: state.config + 1,
        remove: diff.removed.clone(),
        reload,
        add,
        old,
        plan,
        diff,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::driver::{DriverSpec, Kind};
    use crate::lifecycle::Policy;

    /// A fault backend whose option `x` is `option`.
    fn backend(option: &str) -> BackendPlan {
        BackendPlan {
            spec: DriverSpec::new(
                "any",
                Kind::Volume,
                "fault",
                [("x".to_string(), option.to_string())],
            ),
            policy: Policy::default(),
        }
    }

    fn plan(host: &str, report_s: u64, backends: &[(&str, BackendPlan)]) -> Plan {
        Plan {
            host: host.to_string(),
            periodic_interval: Duration::from_secs(60),
            report_interval: Duration::from_secs(report_s),
            service_down_time: Duration::from_secs(60),
            backup_initialization_timeout: Duration::from_secs(600),
            graceful_shutdown_timeout: Duration::from_secs(report_s * 3),
            jitter_seed: None,
            backends: backends
                .iter()
                .map(|(name, b)| ((*name).to_string(), b.clone()))
                .collect(),
        }
    }

    const IDLE: ReloadState = ReloadState {
        shutting_down: false,
        reloading: false,
        config: 4,
    };

    fn running() -> Plan {
        plan(
            "h1",
            10,
            &[
                ("a", backend("1")),
                ("b", backend("1")),
                ("c", backend("1")),
            ],
        )
    }

    /// Rows: (state, what loading gives) -> the decision's kind; loading is
    /// counted, since a refused or coalesced request must not read the file.
    #[test]
    fn a_request_is_refused_coalesced_rejected_or_applied_and_reads_the_file_only_to_apply() {
        let rows: [(ReloadState, Result<Plan, String>, &str, usize); 5] = [
            (
                ReloadState {
                    shutting_down: true,
                    reloading: true,
                    ..IDLE
                },
                Ok(running()),
                "refuse",
                0,
            ),
            (
                ReloadState {
                    shutting_down: true,
                    ..IDLE
                },
                Err("bad".into()),
                "refuse",
                0,
            ),
            (
                ReloadState {
                    reloading: true,
                    ..IDLE
                },
                Err("bad".into()),
                "coalesce",
                0,
            ),
            (IDLE, Err("c.conf: [a] x: bad".into()), "reject", 1),
            (IDLE, Ok(running()), "apply", 1),
        ];
        for (state, loaded, expected, reads) in rows {
            let read = std::cell::Cell::new(0);
            let decision = decide(state, &running(), || {
                read.set(read.get() + 1);
                loaded.clone()
            });
            let kind = match &decision {
                ReloadDecision::Refuse => "refuse",
                ReloadDecision::Coalesce => "coalesce",
                ReloadDecision::Reject { error } => {
                    assert_eq!(error, "c.conf: [a] x: bad");
                    "reject"
                }
                ReloadDecision::Apply(_) => "apply",
            };
            assert_eq!(
                (kind, read.get()),
                (expected, reads),
                "{state:?} {loaded:?}"
            );
        }
    }

    #[test]
    fn a_new_plan_reloads_kept_backends_removes_and_adds_and_keeps_what_needs_a_restart() {
        let new = plan(
            "h2",
            30,
            &[
                ("a", backend("1")),
                ("b", backend("2")),
                ("d", backend("1")),
            ],
        );
        let ReloadDecision::Apply(steps) = decide(IDLE, &running(), || Ok(new.clone())) else {
            panic!("a good file is applied");
        };
        assert_eq!(steps.config, 5);
        assert_eq!(
            steps.reload,
            vec![
                ("b".to_string(), backend("2"), true),
                ("a".to_string(), backend("1"), false),
            ],
            "changed first, then unchanged"
        );
        assert_eq!(steps.remove, vec!["c".to_string()]);
        assert_eq!(steps.add, vec![("d".to_string(), backend("1"))]);
        assert_eq!(
            steps.old.into_iter().collect::<Vec<_>>(),
            vec![
                ("b".to_string(), backend("1")),
                ("c".to_string(), backend("1")),
            ],
            "what changed and removed backends ran before"
        );
        assert_eq!(
            steps.diff.restart_required,
            vec!["host".to_string(), "report_interval".to_string()]
        );
        // The running host and intervals stay until a restart; the
        // backends and the shutdown timeout are the new file's.
        assert_eq!(steps.plan.host, "h1");
        assert_eq!(steps.plan.report_interval, Duration::from_secs(10));
        assert_eq!(
            steps.plan.graceful_shutdown_timeout,
            Duration::from_secs(90)
        );
        assert_eq!(steps.plan.backends, new.backends);
    }
}
