//! SimReport: what one simulation run found, rendered as a summary that is
//! byte-identical for the same seed and flags (no wall-clock figures in it).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::lifecycle::{Moment, StateName};

use super::recorder::{OperationStats, Recorder, SimViolation};

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// Virtual duration.
    pub duration: Duration,
    /// Backends seen.
    pub backends: usize,
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
    /// Operation outcomes.
    pub operations: OperationStats,
    /// Reloads: started, ended, rejected, aborted.
    pub reloads: [u64; 4],
    /// Health probes of backup drivers that answered an error.
    pub health_probes_failed: u64,
    /// Time to first Ready, per backend that got there.
    pub time_to_ready: Vec<Duration>,
    /// Backends never Ready.
    pub never_ready: usize,
    /// Broken invariants.
    pub violations: Vec<SimViolation>,
    /// The last steps of the first violating backend.
    pub failing_steps: Vec<String>,
    /// Hash of every step: equal for equal runs.
    pub trace_hash: u64,
}

impl SimReport {
    /// Builds the report of a finished run.
    pub fn from_recorder(recorder: &Recorder, duration: Duration) -> Self {
        let mut time_to_ready: Vec<Duration> = recorder
            .first_ready
            .values()
            .map(|m: &Moment| m.since_epoch())
            .collect();
        time_to_ready.sort();
        let backends = recorder.timeline.len();
        let failing_steps = recorder
            .violations
            .first()
            .map(|v| recorder.recent_steps(&v.backend))
            .unwrap_or_default();
        SimReport {
            duration,
            backends,
            events: recorder.events,
            refused: recorder.refused,
            entered: recorder.entered.clone(),
            retries: recorder.retries,
            setups: recorder.setups,
            operations: recorder.operations,
            reloads: recorder.reloads,
            health_probes_failed: recorder.health_probes_failed,
            never_ready: backends - time_to_ready.len(),
            time_to_ready,
            violations: recorder.violations.clone(),
            failing_steps,
            trace_hash: recorder.hash,
        }
    }

    /// True if no invariant broke.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    fn percentile(&self, p: usize) -> String {
        if self.time_to_ready.is_empty() {
            return "-".to_string();
        }
        let index = ((self.time_to_ready.len() - 1) * p) / 100;
        format!("{}", humantime::format_duration(self.time_to_ready[index]))
    }

    /// The summary, one `name: value` figure per line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "backends: {}", self.backends);
        let _ = writeln!(
            out,
            "virtual_duration: {}",
            humantime::format_duration(self.duration)
        );
        let _ = writeln!(out, "events: {}", self.events + self.refused);
        let _ = writeln!(out, "transitions: {}", self.events);
        let _ = writeln!(out, "refused_events: {}", self.refused);
        for (state, count) in &self.entered {
            let _ = writeln!(out, "entered_{state}: {count}");
        }
        let _ = writeln!(out, "setups: {}", self.setups);
        let _ = writeln!(out, "retries_scheduled: {}", self.retries);
        let [started, ended, rejected, aborted] = self.reloads;
        let _ = writeln!(out, "reloads_started: {started}");
        let _ = writeln!(out, "reloads_ended: {ended}");
        let _ = writeln!(out, "reloads_rejected: {rejected}");
        let _ = writeln!(out, "reloads_aborted: {aborted}");
        let ops = self.operations;
        let _ = writeln!(out, "operations_routed: {}", ops.routed);
        let _ = writeln!(out, "operations_done: {}", ops.done);
        let _ = writeln!(out, "operations_refused: {}", ops.refused);
        let _ = writeln!(out, "operations_failed: {}", ops.failed);
        let _ = writeln!(out, "operations_timed_out: {}", ops.timed_out);
        let _ = writeln!(out, "operations_cut: {}", ops.cancelled);
        let _ = writeln!(
            out,
            "operations_refused_unhealthy: {}",
            ops.refused_unhealthy
        );
        let _ = writeln!(out, "health_probes_failed: {}", self.health_probes_failed);
        let _ = writeln!(out, "time_to_ready_p50: {}", self.percentile(50));
        let _ = writeln!(out, "time_to_ready_p90: {}", self.percentile(90));
        let _ = writeln!(out, "time_to_ready_p99: {}", self.percentile(99));
        let _ = writeln!(out, "time_to_ready_max: {}", self.percentile(100));
        let _ = writeln!(out, "never_ready: {}", self.never_ready);
        let _ = writeln!(out, "trace_hash: {:016x}", self.trace_hash);
        let _ = writeln!(out, "violations: {}", self.violations.len());
        for v in self.violations.iter().take(20) {
            let backend = if v.backend.is_empty() {
                "service"
            } else {
                &v.backend
            };
            let _ = writeln!(out, "  {} {backend}: {}", v.at, v.message);
        }
        out
    }
}
