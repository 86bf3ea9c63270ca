//! What a check found: the states and transitions explored, whether the search was
//! truncated, and the counter-example for a broken invariant.

use std::time::Duration;

/// A broken invariant and the shortest way there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterExample {
    /// What broke.
    pub message: String,
    /// The events from the initial state, one per line (`backend event`).
    pub trace: Vec<String>,
}

/// What the exploration found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Distinct states.
    pub states: usize,
    /// Transitions taken.
    pub transitions: u64,
    /// Deepest level (BFS) or stack (DFS).
    pub depth: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// True if the state limit stopped the search.
    pub truncated: bool,
    /// The first violation.
    pub violation: Option<CounterExample>,
}

impl CheckReport {
    /// States per second.
    pub fn states_per_sec(&self) -> f64 {
        self.states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report as `name: value` lines, then the counter-example if any.
    pub fn render(&self) -> String {
        let mut out = format!(
            "states: {}\ntransitions: {}\ndepth: {}\nstates_per_sec: {:.0}\ntruncated: {}\nviolations: {}\n",
            self.states,
            self.transitions,
            self.depth,
            self.states_per_sec(),
            self.truncated,
            usize::from(self.violation.is_some())
        );
        if let Some(v) = &self.violation {
            out.push_str(&format!(
                "violation: {}\ncounter-example ({} steps):\n",
                v.message,
                v.trace.len()
            ));
            for (i, step) in v.trace.iter().enumerate() {
                out.push_str(&format!("  {:>3}. {step}\n", i + 1));
            }
        }
        out
    }
}
