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

pub mod export;
pub mod fuzz;

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use arrayvec::ArrayVec;
use rustc_hash::{FxHashMap, FxHashSet};
use std::time::{Duration, Instant};

use crate::lifecycle::{
    DriverError, Effect, Event, Generation, Lifecycle, Moment, Policy, State, Timer, invariants,
};

/// Stale timers kept per backend (the newest ones).
pub const STALE_TIMERS_KEPT: usize = 2;
/// Abandoned setups whose late result is kept deliverable, per backend.
pub const LATE_SETUPS_KEPT: usize = 1;

/// What to explore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// `reinit_driver_count` of every backend (>= 1 keeps the space finite).
    pub max_attempts: u32,
    /// Operations in flight per backend at most.
    pub max_inflight: u32,
    /// Identical backends.
    pub backends: usize,
    /// Depth-first with 64-bit state fingerprints (bounded memory, not
    /// shortest) instead of breadth-first with full states (shortest).
    pub dfs: bool,
    /// Plant a known bug: the shell forgets to abandon timed-out setups.
    pub plant_bug: bool,
    /// Stop after this many states.
    pub max_states: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_attempts: 2,
            max_inflight: 1,
            backends: 1,
            dfs: false,
            plant_bug: false,
            max_states: 20_000_000,
        }
    }
}

/// One backend and its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendWorld {
    /// The real lifecycle.
    pub lc: Lifecycle,
    /// Armed timers not yet fired (current or stale).
    pub timers: ArrayVec<Timer, 8>,
    /// Setups started, neither finished nor abandoned.
    pub running: ArrayVec<Generation, 4>,
    /// Abandoned setups whose result may still arrive late.
    pub late: ArrayVec<Generation, 4>,
}

impl Hash for BackendWorld {
    /// Hashes what varies during a check: the policy is the same for every
    /// backend and every state of one check, and jitter is off, so neither
    /// is hashed.
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.lc.state().hash(h);
        self.lc.config().hash(h);
        self.lc.last_generation().hash(h);
        self.timers.hash(h);
        self.running.hash(h);
        self.late.hash(h);
    }
}

/// The whole system: backends in canonical order.
pub type World = Vec<BackendWorld>;

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

/// Time zero: when every event but a late tick arrives.
pub const EARLY: Moment = Moment::ZERO;
/// The end of time: a tick that finds every deadline passed.
pub const LATE: Moment = Moment(Duration::MAX);

/// The policy every explored backend runs.
pub fn policy(options: &CheckOptions) -> Policy {
    Policy {
        reinit_driver_count: options.max_attempts,
        ..Policy::default()
    }
}

/// The initial world.
pub fn initial(options: &CheckOptions) -> World {
    let backend = BackendWorld {
        lc: Lifecycle::new(policy(options), 1, 0),
        timers: ArrayVec::new(),
        running: ArrayVec::new(),
        late: ArrayVec::new(),
    };
    vec![backend; options.backends.max(1)]
}

thread_local! {
    /// The driver errors the environment injects, built once (cloning an
    /// `Arc<str>` is cheap; building one allocates).
    static ERRORS: [DriverError; 3] = [
        DriverError::backend("down"),
        DriverError::Config("bad".into()),
        DriverError::backend("stats failed"),
    ];
}

/// Every event the environment can deliver to `b`, with its arrival time.
pub fn moves(b: &BackendWorld, options: &CheckOptions) -> Vec<(Event, Moment)> {
    let [down, bad, stats] = ERRORS.with(Clone::clone);
    let mut moves = Vec::with_capacity(16);
    let state = b.lc.state();
    if matches!(state, State::Uninitialized) {
        moves.push((Event::Start, EARLY));
    }
    for setup in b.running.iter().chain(&b.late) {
        moves.push((Event::SetupSucceeded { setup: *setup }, EARLY));
        moves.push((
            Event::SetupFailed {
                setup: *setup,
                error: down.clone(),
            },
            EARLY,
        ));
        moves.push((
            Event::SetupFailed {
                setup: *setup,
                error: bad.clone(),
            },
            EARLY,
        ));
    }
    for timer in &b.timers {
        moves.push((Event::TimerFired(*timer), EARLY));
    }
    moves.push((Event::PublisherTick, EARLY));
    moves.push((Event::PublisherTick, LATE));
    if state.in_flight() < options.max_inflight {
        moves.push((Event::OperationStarted, EARLY));
    }
    if state.in_flight() > 0 {
        moves.push((Event::OperationFinished, EARLY));
    }
    let policy = Box::new(*b.lc.policy());
    let other = 3 - b.lc.config();
    moves.push((
        Event::ReloadRequested {
            config: other,
            changed: true,
            policy: policy.clone(),
        },
        EARLY,
    ));
    moves.push((
        Event::ReloadRequested {
            config: b.lc.config(),
            changed: false,
            policy,
        },
        EARLY,
    ));
    moves.push((Event::ShutdownRequested, EARLY));
    if let State::Ready(r) = state {
        moves.push((
            Event::HealthLost {
                epoch: r.epoch,
                error: stats,
            },
            EARLY,
        ));
    }
    moves
}

/// Short text for an event in a trace.
pub fn label(event: &Event, now: Moment) -> String {
    let when = if now == LATE { " (late)" } else { "" };
    match event {
        Event::SetupSucceeded { setup } => format!("setup {setup} succeeded"),
        Event::SetupFailed { setup, error } => {
            format!("setup {setup} failed ({})", error.class().as_str())
        }
        Event::TimerFired(t) => format!("{:?} timer {} fired", t.kind, t.generation),
        Event::ReloadRequested { changed, .. } => format!(
            "reload ({})",
            if *changed { "changed" } else { "unchanged" }
        ),
        Event::HealthLost { .. } => "health lost".to_string(),
        other => format!("{}{when}", other.name()),
    }
}

/// Delivers `event` to `b`: `Ok(None)` if the core refused it, the next
/// (canonical) backend world otherwise, or the broken invariant.
pub fn deliver(
    b: &BackendWorld,
    event: &Event,
    now: Moment,
    plant_bug: bool,
) -> Result<Option<BackendWorld>, String> {
    let mut next = b.clone();
    let Ok(effects) = next.lc.apply(event.clone(), now) else {
        return Ok(None);
    };
    invariants::check_transition(&b.lc, event, &next.lc, &effects).map_err(|v| v.to_string())?;
    match event {
        Event::SetupSucceeded { setup } | Event::SetupFailed { setup, .. } => {
            next.running.retain(|g| g != setup);
            next.late.retain(|g| g != setup);
        }
        Event::TimerFired(t) => next.timers.retain(|x| x != t),
        _ => {}
    }
    let full = |what: &str| format!("checker bound exceeded: too many {what} in one backend");
    for effect in &effects {
        match effect {
            Effect::RunSetup { setup, .. } => {
                next.running.try_push(*setup).map_err(|_| full("setups"))?
            }
            Effect::AbortSetup { .. } if plant_bug => {}
            Effect::AbortSetup { setup } => {
                next.running.retain(|g| g != setup);
                if next.late.is_full() {
                    next.late.remove(0);
                }
                next.late.push(*setup);
            }
            Effect::ScheduleTimer { timer, .. } => {
                next.timers.try_push(*timer).map_err(|_| full("timers"))?
            }
            _ => {}
        }
    }
    if next.running.len() > 1 {
        return Err(format!("two setups in flight at once: {:?}", next.running));
    }
    Ok(Some(canonical(next)))
}

/// Renames generations densely (live ones first, then the rest oldest
/// first) and keeps only the newest stale timers and late setups.
pub fn canonical(mut b: BackendWorld) -> BackendWorld {
    type Small = ArrayVec<Generation, 16>;
    let live = b.lc.live_generations();
    let is_live = |g: Generation| live.contains(&g) || b.running.contains(&g);
    // Keep only the newest stale timers.
    let mut stale: Small = b
        .timers
        .iter()
        .map(|t| t.generation)
        .filter(|g| !is_live(*g))
        .collect();
    stale.sort_unstable();
    let drop_before = stale.len().saturating_sub(STALE_TIMERS_KEPT);
    let dropped = &stale[..drop_before];
    b.timers.retain(|t| !dropped.contains(&t.generation));
    b.late.sort_unstable();
    while b.late.len() > LATE_SETUPS_KEPT {
        b.late.remove(0);
    }
    // Dense renaming: live generations first, then running setups, then the
    // rest oldest first. At most a handful: a small vector beats a map.
    let mut rest: Small = b
        .late
        .iter()
        .copied()
        .chain(b.timers.iter().map(|t| t.generation))
        .collect();
    rest.sort_unstable();
    let mut names: Small = ArrayVec::new();
    for g in live.iter().chain(b.running.iter()).chain(rest.iter()) {
        if !names.contains(g) {
            names.push(*g);
        }
    }
    let rename = |g: Generation| {
        names
            .iter()
            .position(|n| *n == g)
            .map_or(g, |i| i as Generation + 1)
    };
    b.lc = b.lc.map_generations(rename, names.len() as Generation);
    for t in &mut b.timers {
        t.generation = rename(t.generation);
    }
    b.timers
        .sort_unstable_by_key(|t| (t.generation, t.kind as u8));
    let mut unique: ArrayVec<Timer, 8> = ArrayVec::new();
    for t in &b.timers {
        if unique.last() != Some(t) {
            unique.push(*t);
        }
    }
    b.timers = unique;
    for g in b.running.iter_mut().chain(b.late.iter_mut()) {
        *g = rename(*g);
    }
    b
}

/// A 128-bit state fingerprint from two independently seeded foldhash runs: the
/// visited set stores 16 bytes per state and never compares states, and a
/// collision among n states has probability about n^2 / 2^129.
fn fingerprint128<T: Hash>(value: &T) -> u128 {
    use std::hash::BuildHasher;
    let a = foldhash::quality::FixedState::with_seed(0x243F_6A88_85A3_08D3).hash_one(value);
    let b = foldhash::quality::FixedState::with_seed(0x1319_8A2E_0370_7344).hash_one(value);
    (u128::from(a) << 64) | u128::from(b)
}

/// Sorts identical backends so permutations are one state.
pub fn symmetric(mut world: World) -> World {
    if world.len() > 1 {
        world.sort_by_cached_key(fingerprint128);
    }
    world
}

/// The key of a world from its backends' fingerprints: order-free (sorted),
/// so permuted backends share one key, and computed without building the
/// world, so a successor already seen costs no copy.
fn world_key(fingerprints: &mut [u128]) -> u128 {
    if fingerprints.len() == 1 {
        return fingerprints[0];
    }
    fingerprints.sort_unstable();
    fingerprint128(&fingerprints)
}

/// Explores from the initial world.
pub fn check(options: &CheckOptions) -> CheckReport {
    if options.dfs {
        depth_first(options)
    } else {
        breadth_first(options)
    }
}

/// One step of the search: which backend got which event when.
type Step = (usize, Event, Moment);

/// A successor (its key, the backend that changed, its new state, the step),
/// or the invariant a step broke.
type Successor = Result<(u128, usize, BackendWorld, Step), (String, Step)>;

fn describe(step: &Step) -> String {
    format!("backend {}: {}", step.0, label(&step.1, step.2))
}

/// The successors of `world`: each changed backend with its key, or a
/// broken invariant. Worlds are built only for new keys (`build`).
fn successors(world: &World, options: &CheckOptions) -> Vec<Successor> {
    let own: Vec<u128> = world.iter().map(fingerprint128).collect();
    let mut out = Vec::new();
    for (i, b) in world.iter().enumerate() {
        for (event, now) in moves(b, options) {
            match deliver(b, &event, now, options.plant_bug) {
                Ok(None) => {}
                Ok(Some(next)) => {
                    let mut keys = own.clone();
                    keys[i] = fingerprint128(&next);
                    out.push(Ok((world_key(&mut keys), i, next, (i, event, now))));
                }
                Err(message) => out.push(Err((message, (i, event, now)))),
            }
        }
    }
    out
}

/// The world `world` with backend `i` replaced by `next`, in canonical order.
fn build(world: &World, i: usize, next: BackendWorld) -> World {
    let mut next = Some(next);
    let w: World = (0..world.len())
        .map(|j| {
            if j == i {
                next.take().unwrap_or_else(|| world[j].clone())
            } else {
                world[j].clone()
            }
        })
        .collect();
    symmetric(w)
}

fn breadth_first(options: &CheckOptions) -> CheckReport {
    let started = Instant::now();
    let start = symmetric(initial(options));
    let mut index: FxHashMap<u128, usize> = FxHashMap::default();
    // Per state: parent, the step that led here, depth.
    let mut parents: Vec<(usize, Option<Step>, usize)> = vec![(usize::MAX, None, 0)];
    let mut start_keys: Vec<u128> = start.iter().map(fingerprint128).collect();
    index.insert(world_key(&mut start_keys), 0);
    let mut queue = VecDeque::from([(start, 0usize)]);
    let mut transitions = 0u64;
    let mut depth = 0;
    let mut truncated = false;
    while let Some((world, id)) = queue.pop_front() {
        let level = parents[id].2;
        depth = depth.max(level);
        for result in successors(&world, options) {
            transitions += 1;
            match result {
                Err((message, step)) => {
                    let mut trace = vec![describe(&step)];
                    let mut at = id;
                    while let Some(step) = &parents[at].1 {
                        trace.push(describe(step));
                        at = parents[at].0;
                    }
                    trace.reverse();
                    return CheckReport {
                        states: index.len(),
                        transitions,
                        depth,
                        elapsed: started.elapsed(),
                        truncated,
                        violation: Some(CounterExample { message, trace }),
                    };
                }
                Ok((key, i, changed, step)) => {
                    if index.contains_key(&key) {
                        continue;
                    }
                    let next = build(&world, i, changed);
                    if index.len() >= options.max_states {
                        truncated = true;
                        continue;
                    }
                    let next_id = parents.len();
                    parents.push((id, Some(step), level + 1));
                    index.insert(key, next_id);
                    queue.push_back((next, next_id));
                }
            }
        }
    }
    CheckReport {
        states: index.len(),
        transitions,
        depth,
        elapsed: started.elapsed(),
        truncated,
        violation: None,
    }
}

/// Deepest stack the depth-first search keeps (like spin's `-m`); deeper
/// states are not expanded and the report says the search was truncated.
pub const DFS_MAX_DEPTH: usize = 10_000;

fn depth_first(options: &CheckOptions) -> CheckReport {
    let started = Instant::now();
    let start = symmetric(initial(options));
    let mut seen: FxHashSet<u128> = FxHashSet::default();
    seen.insert(fingerprint128(&start));
    // One frame per level: the world and the next move to try. Successors
    // are generated one at a time, so memory is the stack plus fingerprints.
    let moves_of = |world: &World| -> Vec<Step> {
        world
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                moves(b, options)
                    .into_iter()
                    .map(move |(e, now)| (i, e, now))
            })
            .collect()
    };
    let mut stack: Vec<(World, Vec<Step>, Option<Step>)> =
        vec![(start.clone(), moves_of(&start), None)];
    let mut transitions = 0u64;
    let mut depth = 0;
    let mut truncated = false;
    while let Some((world, pending, _)) = stack.last_mut() {
        let Some(step) = pending.pop() else {
            stack.pop();
            continue;
        };
        transitions += 1;
        let (i, event, now) = &step;
        match deliver(&world[*i], event, *now, options.plant_bug) {
            Ok(None) => {}
            Err(message) => {
                let mut trace: Vec<String> = stack
                    .iter()
                    .filter_map(|(_, _, s)| s.as_ref())
                    .map(describe)
                    .collect();
                trace.push(describe(&step));
                return CheckReport {
                    states: seen.len(),
                    transitions,
                    depth,
                    elapsed: started.elapsed(),
                    truncated,
                    violation: Some(CounterExample { message, trace }),
                };
            }
            Ok(Some(next)) => {
                let mut w = world.clone();
                w[*i] = next;
                let w = symmetric(w);
                if !seen.insert(fingerprint128(&w)) {
                    continue;
                }
                if seen.len() >= options.max_states || stack.len() >= DFS_MAX_DEPTH {
                    truncated = true;
                    continue;
                }
                let moves = moves_of(&w);
                stack.push((w, moves, Some(step)));
                depth = depth.max(stack.len() - 1);
            }
        }
    }
    CheckReport {
        states: seen.len(),
        transitions,
        depth,
        elapsed: started.elapsed(),
        truncated,
        violation: None,
    }
}
