//! Recorder: the simulator's observer. Checks the shared invariants on every
//! transition, the global ones across the run, and keeps the run's statistics.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use crate::actors::driver_actor::Observed;
use crate::actors::{OperationError, OperationOutput};
use crate::driver::DriverRegistry;
use crate::driver::fault::{Probe, Probes};
use crate::events::notify::Notifier;
use crate::lifecycle::{
    Effect, Event, EventName, Generation, Moment, Notification, StateName, invariants,
};
use crate::plan::Plan;

use super::Action;

/// How many recent steps per backend are kept for a failure report.
pub const RECENT_STEPS: usize = 24;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimViolation {
    /// When.
    pub at: Moment,
    /// Which backend (empty for service-wide ones).
    pub backend: String,
    /// What broke.
    pub message: String,
}

/// A mark on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A SIGHUP.
    Sighup,
    /// An operation routed to the backend with this index in `timeline`.
    Operation,
}

/// Counts of operation outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperationStats {
    /// Sent by the environment.
    pub routed: u64,
    /// Completed by the driver.
    pub done: u64,
    /// Refused because the backend was not Ready (or unknown).
    pub refused: u64,
    /// Failed in the driver (including those abandoned at their deadline).
    pub failed: u64,
    /// Abandoned at their deadline (`driver_operation_timeout`,
    /// `backup_progress_timeout`): counted in `failed` too.
    pub timed_out: u64,
    /// Cut because the backend stopped.
    pub cancelled: u64,
    /// Refused while the backend's driver said it was unhealthy (its last
    /// health probe failed): the refusals the health probe is for.
    pub refused_unhealthy: u64,
}

/// A liveness obligation: `backend` must be Ready by `ready_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyBy {
    /// The backend.
    pub backend: String,
    /// Its backend comes up at this time.
    pub up_at: Moment,
    /// Deadline: up time plus the backoff bound.
    pub ready_by: Moment,
}

/// Everything observed in one run.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Accepted transitions.
    pub events: u64,
    /// Refused events.
    pub refused: u64,
    /// Entries into each state.
    pub entered: BTreeMap<StateName, u64>,
    /// Re-initializations scheduled.
    pub retries: u64,
    /// Setups started.
    pub setups: u64,
    /// First time each backend was Ready.
    pub first_ready: BTreeMap<String, Moment>,
    /// State changes per backend.
    pub timeline: BTreeMap<String, Vec<(Moment, StateName)>>,
    /// SIGHUPs and operations on the timeline.
    pub marks: Vec<(Moment, Mark, String)>,
    /// Broken invariants.
    pub violations: Vec<SimViolation>,
    /// Operation outcomes.
    pub operations: OperationStats,
    /// A hash of every observed step (determinism check).
    pub hash: u64,
    /// Environment actions run: (script index, time, description).
    pub environment: Vec<(usize, Moment, String)>,
    /// Liveness obligations.
    pub obligations: Vec<ReadyBy>,
    /// Reload notifications: started, ended, rejected, aborted.
    pub reloads: [u64; 4],
    /// Health probes of backup drivers that answered an error.
    pub health_probes_failed: u64,
    traces: BTreeMap<String, Trace>,
    /// The last valid config written (the plan at start, at first).
    last_valid_config: Option<Plan>,
    /// The fault drivers' own counters (what each driver saw).
    probes: Probes,
    touched: BTreeMap<String, Moment>,
    cut: Vec<(Moment, String)>,
}

/// What the recorder keeps of one backend between its steps.
#[derive(Debug, Default)]
struct Trace {
    /// The last steps, for a failure report.
    recent: VecDeque<(Moment, EventName, StateName)>,
    /// Setups started and not yet finished or aborted.
    running: BTreeSet<Generation>,
    /// Whether the backend has a timeline row yet.
    on_timeline: bool,
    /// Its fault driver's counters.
    driver: Option<Rc<Probe>>,
}

impl Trace {
    /// Whether the backend's driver says it is unhealthy: its last health
    /// probe answered an error and no probe, setup or check succeeded since.
    fn unhealthy(&mut self, probes: &Probes, backend: &str) -> bool {
        self.driver
            .get_or_insert_with(|| probes.probe(backend))
            .health_failing
            .get()
    }
}

fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Recorder {
    /// A recorder for a run starting with `plan`; derives the liveness
    /// obligations of backends that are only slow to come up.
    pub fn new(plan: &Plan) -> Self {
        let mut recorder = Recorder {
            hash: 0xcbf2_9ce4_8422_2325,
            last_valid_config: Some(plan.clone()),
            ..Recorder::default()
        };
        for (name, backend) in &plan.backends {
            let options = &backend.spec.options;
            let only_slow = options
                .keys()
                .all(|k| k == "fault_ready_after" || k == "fault_op_delay");
            let ready_after = options
                .get("fault_ready_after")
                .and_then(|v| crate::lifecycle::parse_duration("fault_ready_after", v).ok());
            if backend.spec.driver == "fault"
                && only_slow
                && backend.policy.reinit_driver_count == 0
            {
                let up_at = Moment(ready_after.unwrap_or_default());
                recorder.obligations.push(ReadyBy {
                    backend: name.clone(),
                    up_at,
                    ready_by: up_at + backend.policy.reinit_backoff_max + Duration::from_secs(1),
                });
            }
        }
        recorder
    }

    /// Reads the drivers' own counters from `registry` (the fault drivers of
    /// this run): with it, each step also checks that no operation is
    /// accepted while the backend's driver failed its last health probe.
    pub fn watch_fault_probes(&mut self, registry: &DriverRegistry) {
        self.probes = registry.fault_probes();
    }

    /// Whether `backend`'s driver says it is unhealthy (see [`Trace::unhealthy`]).
    fn unhealthy(&mut self, backend: &str) -> bool {
        match self.traces.get_mut(backend) {
            Some(trace) => trace.unhealthy(&self.probes, backend),
            None => self.probes.probe(backend).health_failing.get(),
        }
    }

    fn violation(&mut self, at: Moment, backend: &str, message: String) {
        self.violations.push(SimViolation {
            at,
            backend: backend.to_string(),
            message,
        });
    }

    /// Observes one step of one driver actor.
    pub fn observe(&mut self, observation: &Observed<'_>) {
        match observation {
            Observed::Transition {
                backend,
                at,
                before,
                event,
                after,
                effects,
            } => self.transition(backend, *at, before, event, after, effects),
            Observed::Refused {
                backend,
                at,
                refused,
            } => {
                self.refused += 1;
                let operation = refused.event == EventName::OperationStarted;
                if operation && self.unhealthy(backend) {
                    self.operations.refused_unhealthy += 1;
                }
                self.hash = fnv(self.hash, backend.as_bytes());
                self.hash = fnv(self.hash, &at.since_epoch().as_millis().to_le_bytes());
                self.hash = fnv(self.hash, refused.event.as_str().as_bytes());
            }
        }
    }

    fn transition(
        &mut self,
        backend: &str,
        at: Moment,
        before: &crate::lifecycle::Lifecycle,
        event: &Event,
        after: &crate::lifecycle::Lifecycle,
        effects: &[Effect],
    ) {
        self.events += 1;
        if matches!(event, Event::OperationTimedOut { .. }) {
            self.operations.timed_out += 1;
        }
        let (from, to) = (before.state().name(), after.state().name());
        self.hash = fnv(self.hash, backend.as_bytes());
        self.hash = fnv(self.hash, &at.since_epoch().as_millis().to_le_bytes());
        self.hash = fnv(self.hash, event.name().as_str().as_bytes());
        self.hash = fnv(self.hash, to.as_str().as_bytes());
        if let Err(v) = invariants::check_transition(before, event, after, effects) {
            self.violation(at, backend, v.to_string());
        }
        // One lookup per step; the name is copied only the first time.
        let trace = match self.traces.get_mut(backend) {
            Some(trace) => trace,
            None => self.traces.entry(backend.to_string()).or_default(),
        };
        // An operation is accepted here, before its driver call starts.
        let unhealthy =
            matches!(event, Event::OperationStarted) && trace.unhealthy(&self.probes, backend);
        let running = &mut trace.running;
        if let Event::SetupSucceeded { setup } | Event::SetupFailed { setup, .. } = event {
            running.remove(setup);
        }
        for effect in effects {
            match effect {
                Effect::RunSetup { setup, .. } => {
                    running.insert(*setup);
                    self.setups += 1;
                }
                Effect::AbortSetup { setup } => {
                    running.remove(setup);
                }
                Effect::Notify(Notification::RetryScheduled { .. }) => self.retries += 1,
                _ => {}
            }
        }
        let overlap =
            (running.len() > 1).then(|| format!("two setups in flight at once: {running:?}"));
        // Quiet ticks (no state change, no effect) would drown the story.
        let quiet_tick = matches!(event, Event::PublisherTick) && from == to && effects.is_empty();
        if !quiet_tick {
            if trace.recent.len() == RECENT_STEPS {
                trace.recent.pop_front();
            }
            trace.recent.push_back((at, event.name(), to));
        }
        if from != to || !trace.on_timeline {
            trace.on_timeline = true;
            *self.entered.entry(to).or_default() += 1;
            // The name is copied only for a backend's first entry.
            match self.timeline.get_mut(backend) {
                Some(line) => line.push((at, to)),
                None => {
                    self.timeline.insert(backend.to_string(), vec![(at, to)]);
                }
            }
        }
        if let Some(message) = overlap {
            self.violation(at, backend, message);
        }
        if unhealthy {
            let message = "an operation was accepted while the backend's health probe was failing \
                (its last probe answered an error; no probe, setup or check succeeded since)";
            self.violation(at, backend, message.to_string());
        }
        if to == StateName::Ready && from != to && !self.first_ready.contains_key(backend) {
            self.first_ready.insert(backend.to_string(), at);
        }
    }

    /// Records an environment action.
    pub fn environment(&mut self, index: usize, at: Moment, action: &Action) {
        let text = match action {
            Action::WriteConfig(Ok(_)) => "write a valid config".to_string(),
            Action::WriteConfig(Err(e)) => format!("write an invalid config ({e})"),
            Action::Sighup => {
                self.marks.push((at, Mark::Sighup, String::new()));
                "SIGHUP".to_string()
            }
            Action::CreateVolume { backend, volume } => {
                self.operations.routed += 1;
                self.marks.push((at, Mark::Operation, backend.clone()));
                format!("create volume {volume} on {backend}")
            }
            Action::CreateBackup { backend, backup } => {
                self.operations.routed += 1;
                self.marks.push((at, Mark::Operation, backend.clone()));
                format!("create backup {backup} on {backend}")
            }
            Action::RestoreBackup { backend, backup } => {
                self.operations.routed += 1;
                self.marks.push((at, Mark::Operation, backend.clone()));
                format!("restore backup {backup} on {backend}")
            }
        };
        self.environment.push((index, at, text));
    }

    /// A valid config `new` was written: backends it changes from the last
    /// valid one written (the plan at start, at first) are exempt from
    /// liveness obligations from then on. An invalid file in between changes
    /// nothing: a reload keeps the last valid config, so the next valid one
    /// is compared with it.
    pub fn config_written(&mut self, at: Moment, new: &Plan) {
        if let Some(old) = &self.last_valid_config {
            for (name, backend) in &old.backends {
                if new.backends.get(name) != Some(backend) {
                    self.touched.entry(name.clone()).or_insert(at);
                }
            }
        }
        self.last_valid_config = Some(new.clone());
    }

    /// Records an operation's outcome.
    pub fn operation_done(
        &mut self,
        at: Moment,
        backend: &str,
        result: &Result<OperationOutput, OperationError>,
    ) {
        match result {
            Ok(_) => self.operations.done += 1,
            Err(
                OperationError::Refused(_)
                | OperationError::UnknownBackend { .. }
                | OperationError::Stopped { .. }
                | OperationError::Busy { .. },
            ) => {
                self.operations.refused += 1;
            }
            Err(OperationError::Driver { .. } | OperationError::WrongKind { .. }) => {
                self.operations.failed += 1
            }
            Err(OperationError::Cancelled { .. }) => {
                self.operations.cancelled += 1;
                self.cut.push((at, backend.to_string()));
            }
        }
    }

    /// The checks that need the whole run.
    pub fn finish(
        &mut self,
        shutdown_at: Moment,
        stopped: bool,
        notifier: &Notifier,
        registry: &DriverRegistry,
        plan: &Plan,
    ) {
        if !stopped {
            self.violation(
                shutdown_at,
                "",
                "graceful shutdown did not complete".to_string(),
            );
        }
        // Only the shutdown deadline may cut an accepted operation.
        for (at, backend) in std::mem::take(&mut self.cut) {
            if at < shutdown_at {
                self.violation(
                    at,
                    &backend,
                    "an accepted operation was cut before shutdown".to_string(),
                );
            }
        }
        self.reloads = [
            notifier.count("reload.start"),
            notifier.count("reload.end"),
            notifier.count("reload.rejected"),
            notifier.count("reload.aborted"),
        ];
        if self.reloads[0] != self.reloads[1] {
            let message = format!(
                "{} reload.start but {} reload.end",
                self.reloads[0], self.reloads[1]
            );
            self.violation(shutdown_at, "", message);
        }
        let names: BTreeSet<String> = plan
            .backends
            .keys()
            .chain(self.timeline.keys())
            .cloned()
            .collect();
        for name in names {
            let driver = registry.fault_probe(&name);
            let overlap = driver.max_concurrent_setups.get();
            if overlap > 1 {
                let message = format!("the driver saw {overlap} setups running at once");
                self.violation(shutdown_at, &name, message);
            }
            let unhealthy = driver.operations_while_unhealthy.get();
            if unhealthy > 0 {
                let message = format!(
                    "the driver ran {unhealthy} operation(s) while its health probe was failing"
                );
                self.violation(shutdown_at, &name, message);
            }
            self.health_probes_failed += u64::from(driver.health_probes_failed.get());
        }
        for obligation in self.obligations.clone() {
            let exempt = self
                .touched
                .get(&obligation.backend)
                .is_some_and(|t| *t <= obligation.ready_by);
            if exempt || obligation.ready_by > shutdown_at {
                continue;
            }
            let ready_in_time = self.timeline.get(&obligation.backend).is_some_and(|steps| {
                steps
                    .iter()
                    .any(|(t, s)| *s == StateName::Ready && *t <= obligation.ready_by)
            });
            if !ready_in_time {
                let message = format!(
                    "backend up at {} but not Ready by {} (backoff bound)",
                    obligation.up_at, obligation.ready_by
                );
                self.violation(obligation.ready_by, &obligation.backend, message);
            }
        }
    }

    /// The last steps of `backend`, oldest first, one per line.
    pub fn recent_steps(&self, backend: &str) -> Vec<String> {
        self.traces
            .get(backend)
            .map(|trace| {
                trace
                    .recent
                    .iter()
                    .map(|(at, event, state)| format!("{at} {backend}: {event} -> {state}"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Lifecycle, Policy};

    fn ready() -> Lifecycle {
        let mut lifecycle = Lifecycle::new(Policy::default(), 1, 1);
        let effects = lifecycle.apply(Event::Start, Moment::ZERO).expect("start");
        let setup = effects
            .iter()
            .find_map(|e| match e {
                Effect::RunSetup { setup, .. } => Some(*setup),
                _ => None,
            })
            .expect("a setup");
        lifecycle
            .apply(Event::SetupSucceeded { setup }, Moment::ZERO)
            .expect("ready");
        lifecycle
    }

    #[test]
    fn an_operation_accepted_while_the_driver_failed_its_probe_is_a_violation() {
        let registry = DriverRegistry::with_builtin();
        let mut recorder = Recorder::default();
        recorder.watch_fault_probes(&registry);
        let before = ready();
        let event = Event::OperationStarted;
        let (after, effects) = before.step(event.clone(), Moment::ZERO).expect("accepted");
        let observation = Observed::Transition {
            backend: "backup",
            at: Moment::ZERO,
            before: &before,
            event: &event,
            after: &after,
            effects: &effects,
        };
        recorder.observe(&observation);
        assert!(recorder.violations.is_empty(), "{:?}", recorder.violations);
        registry.fault_probe("backup").health_failing.set(true);
        recorder.observe(&observation);
        assert_eq!(recorder.violations.len(), 1, "{:?}", recorder.violations);
        assert_eq!(recorder.violations[0].backend, "backup");
        assert!(
            recorder.violations[0]
                .message
                .contains("accepted while the backend's health probe was failing"),
            "{:?}",
            recorder.violations
        );
        // Another backend's health is its own.
        recorder.observe(&Observed::Transition {
            backend: "other",
            at: Moment::ZERO,
            before: &before,
            event: &event,
            after: &after,
            effects: &effects,
        });
        assert_eq!(recorder.violations.len(), 1);
    }
}
