//! The explicit-state model checker of the real transition function: explores every
//! reachable state of `Lifecycle::step` for B backends (bounded by budget and in-flight
//! limit), checks the shared invariants on every transition, finds shortest counter-examples.
//!
//! Time is abstracted: events arrive at time zero, and a "late" publisher tick
//! arrives at the end of time (everything due). Timers are events tagged with
//! their generation; stale timers and late results of abandoned setups stay
//! deliverable after the state moved on (the bug class of a stale retry timer
//! starting a second setup). Generations are renamed to a dense canonical
//! order, identical backends are sorted (symmetry reduction), and only the
//! newest stale timers and abandoned setups are kept, so the space is finite.

pub mod abstraction;
mod canonical;
mod compose;
pub mod diagram;
#[doc(hidden)]
pub mod export;
#[doc(hidden)]
pub mod fuzz;
mod report;
mod search;
mod world;

use crate::lifecycle::Policy;

use canonical::canonical;
pub use report::{CheckReport, CounterExample, Limit, Product, Progress, memory_text};
pub use search::DFS_MAX_DEPTH;
use search::{breadth_first, depth_first};
use world::{BackendWorld, EARLY, LATE, deliver, initial, moves};
pub use world::{LATE_SETUPS_KEPT, STALE_TIMERS_KEPT};

/// What to explore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// `reinit_driver_count` of every backend when `policy` is `None`
    /// (0 = unlimited: attempts are then counted up to
    /// [`abstraction::UNLIMITED_ATTEMPTS_CAP`]).
    pub max_attempts: u32,
    /// The lifecycle policy every backend runs (a config file's, see
    /// [`abstraction::CheckedPolicy`]), jitter off; `None`: the defaults
    /// with `reinit_driver_count = max_attempts`.
    pub policy: Option<Policy>,
    /// Operations in flight per backend at most.
    pub max_inflight: u32,
    /// Identical backends.
    pub backends: usize,
    /// With several backends: search the product, every interleaving of
    /// every backend's events (symmetry-reduced), instead of exploring one
    /// backend and composing (the default: the same verdict, length of the
    /// shortest counter-example, states and depth, since no event and no
    /// invariant relates two backends; see [`CheckReport::product`]).
    pub product: bool,
    /// Depth-first with 128-bit state fingerprints (bounded memory, not
    /// shortest) instead of breadth-first with full states (shortest).
    pub dfs: bool,
    /// Plant a known bug: the shell forgets to abandon timed-out setups.
    pub plant_bug: bool,
    /// Stop after this many states.
    pub max_states: usize,
    /// Stop before the search's tables ([`CheckReport::memory_bytes`]) grow
    /// past this many bytes; 0: no budget.
    pub max_memory: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_attempts: 2,
            policy: None,
            max_inflight: 1,
            backends: 1,
            dfs: false,
            plant_bug: false,
            max_states: 20_000_000,
            product: false,
            max_memory: 0,
        }
    }
}

/// Explores from the initial world.
pub fn check(options: &CheckOptions) -> CheckReport {
    check_with_progress(options, &mut |_| {})
}

/// [`check`], telling `progress` where the search is every few seconds.
pub fn check_with_progress(
    options: &CheckOptions,
    progress: &mut dyn FnMut(&Progress),
) -> CheckReport {
    if options.backends > 1 && !options.product {
        let one = CheckOptions {
            backends: 1,
            ..*options
        };
        return compose::compose(explore(&one, progress), options.backends);
    }
    explore(options, progress)
}

fn explore(options: &CheckOptions, progress: &mut dyn FnMut(&Progress)) -> CheckReport {
    if options.dfs {
        depth_first(options, progress)
    } else {
        breadth_first(options, progress)
    }
}
