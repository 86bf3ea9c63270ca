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

/// What stopped a search before it explored everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_states` states were stored.
    States(usize),
    /// The search's tables would have grown past `max_memory` bytes.
    Memory(u64),
    /// The depth-first stack reached this depth.
    Depth(usize),
}

/// B identical backends checked by composition: one backend was explored,
/// and these are the figures of the product of B of them (what the search
/// over every interleaving, with symmetry reduction, reaches: see
/// [`super::CheckOptions::product`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// Backends composed.
    pub backends: usize,
    /// Distinct states of the product: multisets of B one-backend states,
    /// `C(N + B - 1, B)` (saturating).
    pub states: u128,
    /// Deepest level of the product: B times one backend's.
    pub depth: usize,
}

/// What the exploration found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Distinct states explored (of one backend, when `product` is set).
    pub states: usize,
    /// Transitions taken.
    pub transitions: u64,
    /// Deepest level (BFS) or stack (DFS).
    pub depth: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// True if a limit ([`CheckReport::limit`]) stopped the search.
    pub truncated: bool,
    /// What stopped it, when `truncated`.
    pub limit: Option<Limit>,
    /// The search's own tables at their largest, in bytes, as the search
    /// counts them (states seen, the way back to each, the frontier): an
    /// estimate of its memory, the same on every run.
    pub memory_bytes: u64,
    /// The figures of B backends, when they were composed from one.
    pub product: Option<Product>,
    /// The first violation.
    pub violation: Option<CounterExample>,
}

/// Where a running search is, for progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Distinct states so far.
    pub states: usize,
    /// Levels (BFS) or stack depth (DFS) so far.
    pub depth: usize,
    /// Time since the search started.
    pub elapsed: Duration,
    /// [`CheckReport::memory_bytes`] so far.
    pub memory_bytes: u64,
}

impl Progress {
    /// One line: states, depth, rate and memory.
    pub fn render(&self) -> String {
        format!(
            "check: {} states, depth {}, {:.0} states/s, {}",
            self.states,
            self.depth,
            self.states as f64 / self.elapsed.as_secs_f64().max(1e-9),
            memory_text(self.memory_bytes)
        )
    }
}

/// `bytes` for a person, in the units `--max-memory` reads (powers of
/// 1024): `812 KiB`, `3.4 MiB`, `1.25 GiB`.
pub fn memory_text(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= f64::from(1u32 << 30) {
        format!("{:.2} GiB", b / f64::from(1u32 << 30))
    } else if b >= f64::from(1u32 << 20) {
        format!("{:.1} MiB", b / f64::from(1u32 << 20))
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

impl CheckReport {
    /// States per second.
    pub fn states_per_sec(&self) -> f64 {
        self.states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report as `name: value` lines, then the counter-example if any.
    pub fn render(&self) -> String {
        let mut out = format!(
            "states: {}\ntransitions: {}\ndepth: {}\nstates_per_sec: {:.0}\nmemory: {}\ntruncated: {}\n",
            self.states,
            self.transitions,
            self.depth,
            self.states_per_sec(),
            memory_text(self.memory_bytes),
            self.truncated,
        );
        match self.limit {
            Some(Limit::States(max)) => out.push_str(&format!(
                "limit: max_states ({max}) reached at depth {}: the states beyond were not explored\n",
                self.depth
            )),
            Some(Limit::Memory(budget)) => out.push_str(&format!(
                "limit: truncated at {} states, {} (the memory budget, --max-memory, is {}), depth {} reached: the states beyond were not explored\n",
                self.states,
                memory_text(self.memory_bytes),
                memory_text(budget),
                self.depth
            )),
            Some(Limit::Depth(max)) => out.push_str(&format!(
                "limit: the depth-first stack reached {max}: deeper states were not explored\n"
            )),
            None => {}
        }
        if let Some(product) = &self.product {
            out.push_str(&format!(
                "composed: {} backends from one backend's states (no event and no invariant relates two backends)\nproduct_states: {}\nproduct_depth: {}\n",
                product.backends, product.states, product.depth
            ));
        }
        out.push_str(&format!(
            "violations: {}\n",
            usize::from(self.violation.is_some())
        ));
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
