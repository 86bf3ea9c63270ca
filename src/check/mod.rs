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
pub mod config_file;
pub mod export;
pub mod fuzz;

use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, PoisonError, RwLock};

use arrayvec::ArrayVec;
use rustc_hash::FxHashSet;
use std::time::{Duration, Instant};

use crate::lifecycle::{
    AfterDrain, Draining, DriverError, Effect, ErrorText, Event, Generation, Lifecycle, Moment,
    PendingConfig, Policy, State, Timer, TimerKind, invariants,
};

/// Stale timers kept per backend (the newest ones).
pub const STALE_TIMERS_KEPT: usize = 2;
/// Abandoned setups whose late result is kept deliverable, per backend.
pub const LATE_SETUPS_KEPT: usize = 1;

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
    /// Depth-first with 128-bit state fingerprints (bounded memory, not
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
            policy: None,
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
        hash_state(self.lc.state(), self.lc.policy(), h);
        h.write_u64(self.lc.config());
        // The rollback target: its policy is the backend's own in a check,
        // so its config says it all.
        h.write_u64(self.lc.previous().map_or(0, |p| p.config + 1));
        h.write_u64(self.lc.last_generation());
        // The three list lengths and every timer's kind in one word (two
        // bits per kind), then one word per generation: the same
        // information as hashing each list, in fewer words.
        let mut shape = self.timers.len() as u64
            | (self.running.len() as u64) << 4
            | (self.late.len() as u64) << 8;
        for (i, t) in self.timers.iter().enumerate() {
            let kind: u64 = match t.kind {
                TimerKind::Retry => 0,
                TimerKind::SetupDeadline => 1,
                TimerKind::DrainDeadline => 2,
            };
            shape |= kind << (12 + 2 * i);
        }
        h.write_u64(shape);
        for t in &self.timers {
            h.write_u64(t.generation);
        }
        for g in self.running.iter().chain(&self.late) {
            h.write_u64(*g);
        }
    }
}

/// Hashes `state` as its derived `Hash` would, except that a pending
/// reload's policy hashes as one word when it equals `policy` (the
/// backend's own, as every reload the checker delivers carries) and in full
/// otherwise: the same information, without walking a policy per state.
/// Every struct is destructured field by field, so a field added to the
/// core is a compile error here, never a silently unhashed field.
fn hash_state<H: Hasher>(state: &State, policy: &Policy, h: &mut H) {
    match state {
        State::Uninitialized => h.write_u8(0),
        State::Initializing(setup) => {
            h.write_u8(1);
            setup.hash(h);
        }
        State::Ready(ready) => {
            h.write_u8(2);
            ready.hash(h);
        }
        State::Failed(failed) => {
            h.write_u8(3);
            failed.hash(h);
        }
        State::Draining(Draining {
            ready,
            deadline,
            then,
        }) => {
            h.write_u8(4);
            ready.hash(h);
            deadline.hash(h);
            match then {
                AfterDrain::Reload(pending) => {
                    let PendingConfig {
                        config,
                        policy: pending,
                    } = **pending;
                    h.write_u8(0);
                    h.write_u64(config);
                    if pending == *policy {
                        h.write_u8(1);
                    } else {
                        h.write_u8(0);
                        pending.hash(h);
                    }
                }
                AfterDrain::Shutdown => h.write_u8(1),
                AfterDrain::Remove => h.write_u8(3),
                AfterDrain::HealthLost(error) => {
                    h.write_u8(2);
                    error.hash(h);
                }
            }
        }
        State::Reloading(setup) => {
            h.write_u8(5);
            setup.hash(h);
        }
        State::RollingBack(r) => {
            h.write_u8(7);
            r.hash(h);
        }
        State::Stopped => h.write_u8(6),
    }
}

/// The whole system: backends in canonical order. One backend is stored
/// inline (no allocation per state, and none freed on another thread).
pub type World = smallvec::SmallVec<[BackendWorld; 1]>;

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

/// The policy every explored backend runs: `options.policy`, or the
/// defaults with `options.max_attempts`; without jitter either way (the
/// jitter generator is not part of a state's fingerprint).
pub fn policy(options: &CheckOptions) -> Policy {
    let mut policy = options.policy.unwrap_or(Policy {
        reinit_driver_count: options.max_attempts,
        ..Policy::default()
    });
    policy.reinit_backoff_jitter_ppm = 0;
    policy
}

/// The initial world.
pub fn initial(options: &CheckOptions) -> World {
    let backend = BackendWorld {
        lc: Lifecycle::new(policy(options), 1, 0),
        timers: ArrayVec::new(),
        running: ArrayVec::new(),
        late: ArrayVec::new(),
    };
    smallvec::smallvec![backend; options.backends.max(1)]
}

/// The driver errors the environment injects. Static texts: cloning one
/// copies a pointer, so worker threads sharing states never contend on a
/// reference count.
const ERRORS: [DriverError; 3] = [
    DriverError::Backend(ErrorText::Static("down")),
    DriverError::Config(ErrorText::Static("bad")),
    DriverError::Backend(ErrorText::Static("stats failed")),
];

/// Every event the environment can deliver to `b`, with its arrival time.
pub fn moves(b: &BackendWorld, options: &CheckOptions) -> Vec<(Event, Moment)> {
    let mut moves = Vec::with_capacity(16);
    moves_into(b, options, &mut moves);
    moves
}

/// [`moves`] into `moves` (cleared first): the search reuses one list.
pub fn moves_into(b: &BackendWorld, options: &CheckOptions, moves: &mut Vec<(Event, Moment)>) {
    let [down, bad, stats] = ERRORS;
    moves.clear();
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
    moves.push((Event::RemovalRequested, EARLY));
    if let State::Ready(r) = state {
        moves.push((
            Event::HealthLost {
                epoch: r.epoch,
                error: stats,
            },
            EARLY,
        ));
    }
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
    Ok(match deliver_into(b, event, now, plant_bug, &mut next)? {
        Delivered::Refused => None,
        Delivered::Unchanged => Some(canonical(b.clone())),
        Delivered::Changed => Some(next),
    })
}

/// What delivering one event did (see [`deliver_into`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The core refused the event; nothing happened.
    Refused,
    /// Accepted, and the backend world is exactly what it was (a self-loop:
    /// `next` is not written).
    Unchanged,
    /// Accepted; `next` holds the canonical successor.
    Changed,
}

/// [`deliver`] into `next` (any backend world; overwritten when the result
/// is [`Delivered::Changed`]). The search reuses one `next`, and a
/// self-loop (a tick with nothing due, an unchanged reload) is recognised
/// before canonicalising or fingerprinting anything.
pub fn deliver_into(
    b: &BackendWorld,
    event: &Event,
    now: Moment,
    plant_bug: bool,
    next: &mut BackendWorld,
) -> Result<Delivered, String> {
    next.lc.clone_from(&b.lc);
    let mut effects = crate::lifecycle::Effects::new();
    if next
        .lc
        .apply_into(event.clone(), now, &mut effects)
        .is_err()
    {
        return Ok(Delivered::Refused);
    }
    invariants::check_transition(&b.lc, event, &next.lc, &effects).map_err(|v| v.to_string())?;
    // An unlimited budget: attempt numbers beyond the cap change nothing
    // the abstraction sees (see `abstraction::UNLIMITED_ATTEMPTS_CAP`).
    if next.lc.policy().reinit_driver_count == 0 {
        next.lc.cap_attempts(abstraction::UNLIMITED_ATTEMPTS_CAP);
    }
    // Does anything but the lifecycle change? Finished setups, fired timers,
    // and new setups, aborts and timers do.
    let touches = matches!(
        event,
        Event::SetupSucceeded { .. } | Event::SetupFailed { .. } | Event::TimerFired(_)
    ) || effects.iter().any(|e| {
        matches!(
            e,
            Effect::RunSetup { .. } | Effect::AbortSetup { .. } | Effect::ScheduleTimer { .. }
        )
    });
    if !touches && next.lc == b.lc {
        return Ok(Delivered::Unchanged);
    }
    // `b` is canonical; with the same generations in the same roles (no new
    // generation, same live ones, timers and setups untouched) the renaming
    // is the identity and the successor is canonical as it stands.
    let renamed = touches
        || next.lc.last_generation() != b.lc.last_generation()
        || next.lc.live_generations() != b.lc.live_generations();
    next.timers.clone_from(&b.timers);
    next.running.clone_from(&b.running);
    next.late.clone_from(&b.late);
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
    if renamed {
        canonicalize(next);
    }
    Ok(Delivered::Changed)
}

/// Renames generations densely (live ones first, then the rest oldest
/// first) and keeps only the newest stale timers and late setups.
pub fn canonical(mut b: BackendWorld) -> BackendWorld {
    canonicalize(&mut b);
    b
}

/// Sorts a handful of items in place (insertion sort: the lists here hold
/// at most a few entries, where the general sort's set-up dominates).
#[inline]
fn sort_small<T: Copy, K: Ord>(items: &mut [T], key: impl Fn(&T) -> K) {
    for i in 1..items.len() {
        let item = items[i];
        let mut j = i;
        while j > 0 && key(&items[j - 1]) > key(&item) {
            items[j] = items[j - 1];
            j -= 1;
        }
        items[j] = item;
    }
}

/// Generations of one backend world, on the stack (at most: two live, one
/// running, the kept late setups and every timer).
struct Names {
    items: [Generation; 16],
    len: usize,
}

impl Names {
    #[inline]
    fn has(&self, g: Generation) -> bool {
        self.items[..self.len].contains(&g)
    }
    #[inline]
    fn add(&mut self, g: Generation) {
        if !self.has(g) && self.len < self.items.len() {
            self.items[self.len] = g;
            self.len += 1;
        }
    }
    /// The canonical name of `g`: its position plus one.
    #[inline]
    fn rename(&self, g: Generation) -> Generation {
        self.items[..self.len]
            .iter()
            .position(|n| *n == g)
            .map_or(g, |i| i as Generation + 1)
    }
}

/// [`canonical`] in place. Runs on every step: generations below 64 (all
/// of them, as a canonical world's successor has only a handful) take a
/// bitmask path; anything else takes the general one. Debug builds (the
/// test suite) run both and require the same result.
fn canonicalize(b: &mut BackendWorld) {
    #[cfg(debug_assertions)]
    let raw = b.clone();
    if !canonicalize_small(b) {
        canonicalize_general(b);
    } else {
        #[cfg(debug_assertions)]
        {
            let mut expected = raw;
            canonicalize_general(&mut expected);
            assert_eq!(
                *b, expected,
                "the bitmask canonicalisation differs from the general one"
            );
        }
    }
}

/// [`canonicalize`] for worlds whose generations are all below 64 and that
/// need no trimming of stale timers or late setups: names are marked in a
/// bitmask, so "the rest, oldest first" is the bitmask read upwards and a
/// rename is one table lookup. Returns false, changing nothing, otherwise.
fn canonicalize_small(b: &mut BackendWorld) -> bool {
    const BITS: u64 = 64;
    let live = b.lc.live_generations();
    // Every generation's bits or-ed together: below 64 iff each one is.
    let mut all_bits = 0;
    for &g in live.as_slice() {
        all_bits |= g;
    }
    for &g in b.running.as_slice() {
        all_bits |= g;
    }
    for &g in b.late.as_slice() {
        all_bits |= g;
    }
    for t in b.timers.as_slice() {
        all_bits |= t.generation;
    }
    if all_bits >= BITS || b.late.len() > LATE_SETUPS_KEPT {
        return false;
    }
    let bit = |g: Generation| 1u64 << g;
    // Live generations, then running setups, in that order.
    let mut table = [0u8; BITS as usize];
    let mut named = 0u64;
    let mut count = 0u8;
    for &g in live.iter().chain(b.running.iter()) {
        if named & bit(g) == 0 {
            named |= bit(g);
            count += 1;
            table[g as usize] = count;
        }
    }
    let stale = b
        .timers
        .iter()
        .filter(|t| named & bit(t.generation) == 0)
        .count();
    if stale > STALE_TIMERS_KEPT {
        return false;
    }
    // The rest (late setups and timers), oldest first.
    let mut rest = 0u64;
    for &g in b.late.as_slice() {
        rest |= bit(g);
    }
    for t in b.timers.as_slice() {
        rest |= bit(t.generation);
    }
    rest &= !named;
    while rest != 0 {
        let g = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        count += 1;
        table[g] = count;
    }
    let rename = |g: Generation| match table.get(g as usize) {
        Some(&name) if name != 0 => Generation::from(name),
        _ => g,
    };
    b.lc.rename_generations(rename, Generation::from(count));
    for t in b.timers.iter_mut() {
        t.generation = rename(t.generation);
    }
    for g in b.running.iter_mut() {
        *g = rename(*g);
    }
    for g in b.late.iter_mut() {
        *g = rename(*g);
    }
    sort_timers(b);
    true
}

/// Sorts the timers by generation and kind and drops exact duplicates.
/// Called after renaming, so generations are canonical names (a handful)
/// and each timer sorts as one word, `generation << 2 | kind`.
fn sort_timers(b: &mut BackendWorld) {
    let len = b.timers.len();
    if len < 2 {
        return;
    }
    let word = |t: &Timer| t.generation << 2 | t.kind as u64;
    if b.timers.iter().all(|t| t.generation < 1 << 60) {
        let mut words = [0u64; 8];
        for (w, t) in words.iter_mut().zip(b.timers.iter()) {
            *w = word(t);
        }
        sort_small(&mut words[..len], |w| *w);
        for (t, w) in b.timers.iter_mut().zip(words.iter()) {
            t.generation = w >> 2;
            t.kind = match w & 3 {
                0 => TimerKind::Retry,
                1 => TimerKind::SetupDeadline,
                _ => TimerKind::DrainDeadline,
            };
        }
    } else {
        sort_small(&mut b.timers, |t| (t.generation, t.kind as u8));
    }
    let mut kept = 1;
    for i in 1..len {
        if b.timers[i] != b.timers[kept - 1] {
            b.timers[kept] = b.timers[i];
            kept += 1;
        }
    }
    b.timers.truncate(kept);
}

/// [`canonicalize`] for any world: names collected in a small list.
fn canonicalize_general(b: &mut BackendWorld) {
    // Names in canonical order: live generations, running setups, then the
    // rest (late setups and timers) oldest first.
    let mut names = Names {
        items: [0; 16],
        len: 0,
    };
    for &g in b.lc.live_generations().as_slice() {
        names.add(g);
    }
    for &g in b.running.as_slice() {
        names.add(g);
    }
    let settled = names.len;
    // Keep only the newest stale timers (stale: not live, not running).
    let stale = b
        .timers
        .iter()
        .filter(|t| !names.items[..settled].contains(&t.generation))
        .count();
    if stale > STALE_TIMERS_KEPT {
        let mut gens: ArrayVec<Generation, 8> = b
            .timers
            .iter()
            .map(|t| t.generation)
            .filter(|g| !names.items[..settled].contains(g))
            .collect();
        gens.sort_unstable();
        let dropped = &gens[..gens.len() - STALE_TIMERS_KEPT];
        b.timers.retain(|t| !dropped.contains(&t.generation));
    }
    if b.late.len() > LATE_SETUPS_KEPT {
        b.late.sort_unstable();
        let extra = b.late.len() - LATE_SETUPS_KEPT;
        b.late.drain(..extra);
    }
    for &g in b.late.as_slice() {
        names.add(g);
    }
    for i in 0..b.timers.len() {
        names.add(b.timers[i].generation);
    }
    let len = names.len;
    sort_small(&mut names.items[settled..len], |g| *g);
    let identity = (0..len).all(|i| names.items[i] == i as Generation + 1);
    if identity {
        // Every generation keeps its name; only the count is recorded.
        b.lc.rename_generations(|g| g, len as Generation);
    } else {
        b.lc.rename_generations(|g| names.rename(g), len as Generation);
        for t in b.timers.iter_mut() {
            t.generation = names.rename(t.generation);
        }
        for g in b.running.iter_mut().chain(b.late.iter_mut()) {
            *g = names.rename(*g);
        }
    }
    sort_timers(b);
}

/// Two 64-bit lanes of folded-multiply hashing (the wyhash/foldhash mixing
/// step), each with its own seed and multiplier, fed in one walk over the
/// value: a 128-bit fingerprint without a buffer or a second pass.
struct Fingerprinter {
    a: u64,
    b: u64,
}

const LANE_A: (u64, u64) = (0x243F_6A88_85A3_08D3, 0xA076_1D64_78BD_642F);
const LANE_B: (u64, u64) = (0x1319_8A2E_0370_7344, 0xE703_7ED1_A0B4_28DB);
const FINISH: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Fingerprinter {
    #[inline(always)]
    fn mix(&mut self, x: u64) {
        self.a = folded_multiply(self.a ^ x, LANE_A.1);
        self.b = folded_multiply(self.b ^ x.rotate_left(29), LANE_B.1);
    }
}

impl Hasher for Fingerprinter {
    fn finish(&self) -> u64 {
        self.a
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let mut word = [0u8; 8];
        let rest = chunks.remainder();
        word[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
    }
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.mix(i as u64);
    }
}

/// A 128-bit state fingerprint (two independently seeded lanes, each
/// finished by one more folded multiply). The visited set stores 16 bytes
/// per state and never compares states.
fn fingerprint128<T: Hash>(value: &T) -> u128 {
    let mut h = Fingerprinter {
        a: LANE_A.0,
        b: LANE_B.0,
    };
    value.hash(&mut h);
    let a = folded_multiply(h.a ^ LANE_B.0, LANE_A.1 ^ FINISH);
    let b = folded_multiply(h.b ^ LANE_A.0, LANE_B.1 ^ FINISH);
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

fn describe(step: &Step) -> String {
    format!("backend {}: {}", step.0, label(&step.1, step.2))
}

/// The world `world` with backend `i` replaced by `next`, in canonical order.
fn build(world: &World, i: usize, next: BackendWorld) -> World {
    let mut next = Some(next);
    let w: World = (0..world.len())
        .map(|j| match next.take_if(|_| j == i) {
            Some(changed) => changed,
            None => world[j].clone(),
        })
        .collect();
    symmetric(w)
}

/// A world not seen before the current level: its key, where it came from
/// (the parent's id and the step) and the world itself.
struct Found {
    key: u128,
    parent: usize,
    /// Moved to the parent table when the world is merged as new.
    step: Option<Step>,
    world: World,
    /// Its id once merged as new; `usize::MAX` if it was a duplicate.
    id: usize,
}

/// What expanding one slice of a level found.
#[derive(Default)]
struct Expanded {
    found: Vec<Found>,
    transitions: u64,
    /// The first broken invariant: message, the parent's id, the step.
    violation: Option<(String, usize, Step)>,
}

/// A level of the search: the parts the previous level's slices found, in
/// order, each world with its id (duplicates stay in place, marked).
type Level = Vec<Vec<Found>>;

/// Expands the new worlds of `parts`, skipping successors whose key `seen`
/// already holds. Pure, so parts of a level expand in parallel.
fn expand(parts: &[Vec<Found>], seen: &FxHashSet<u128>, options: &CheckOptions) -> Expanded {
    let size: usize = parts.iter().map(Vec::len).sum();
    let mut out = Expanded {
        found: Vec::with_capacity(size + 8),
        ..Expanded::default()
    };
    let mut here: FxHashSet<u128> =
        FxHashSet::with_capacity_and_hasher(2 * size + 8, Default::default());
    let mut keys: Vec<u128> = Vec::new();
    let mut scratch: Option<BackendWorld> = None;
    let mut available = Vec::with_capacity(16);
    let worlds = parts
        .iter()
        .flatten()
        .filter(|f| f.id != usize::MAX)
        .map(|f| (&f.world, &f.id));
    for (world, id) in worlds {
        let fps: Vec<u128> = if world.len() > 1 {
            world.iter().map(fingerprint128).collect()
        } else {
            Vec::new()
        };
        for (i, b) in world.iter().enumerate() {
            let next = scratch.get_or_insert_with(|| b.clone());
            moves_into(b, options, &mut available);
            for (event, now) in available.drain(..) {
                match deliver_into(b, &event, now, options.plant_bug, next) {
                    Ok(Delivered::Refused) => {}
                    // A self-loop: its successor is this world, already seen.
                    Ok(Delivered::Unchanged) => out.transitions += 1,
                    Ok(Delivered::Changed) => {
                        out.transitions += 1;
                        let key = if world.len() == 1 {
                            fingerprint128(&*next)
                        } else {
                            keys.clear();
                            keys.extend_from_slice(&fps);
                            keys[i] = fingerprint128(&*next);
                            world_key(&mut keys)
                        };
                        if seen.contains(&key) || !here.insert(key) {
                            continue;
                        }
                        out.found.push(Found {
                            key,
                            parent: *id,
                            step: Some((i, event, now)),
                            world: build(world, i, next.clone()),
                            id: usize::MAX,
                        });
                    }
                    Err(message) => {
                        out.transitions += 1;
                        out.violation = Some((message, *id, (i, event, now)));
                        return out;
                    }
                }
            }
        }
    }
    out
}

/// Levels smaller than this expand on the calling thread.
const PARALLEL_LEVEL: usize = 64;
/// States a worker takes at a time from a level (small enough to balance
/// the load, large enough that taking work costs nothing).
const SLICE: usize = 32;

/// What the search threads share: the current level and the states of the
/// earlier ones (read while a level expands, written by the calling thread
/// between levels, when the helpers wait at `start`).
struct Shared<'a> {
    options: &'a CheckOptions,
    frontier: RwLock<Level>,
    /// New worlds in the current level.
    frontier_states: AtomicUsize,
    index: RwLock<FxHashSet<u128>>,
    next_slice: AtomicUsize,
    results: Mutex<Vec<(usize, Expanded)>>,
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    stop: AtomicBool,
    start: Barrier,
    done: Barrier,
}

impl Shared<'_> {
    /// Takes slices of the current level until none is left.
    fn take_slices(&self) {
        let frontier = self.frontier.read().unwrap_or_else(PoisonError::into_inner);
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let mut done = Vec::new();
        let work = std::panic::catch_unwind(AssertUnwindSafe(|| {
            loop {
                let i = self.next_slice.fetch_add(1, Ordering::Relaxed);
                let Some(part) = frontier.get(i) else {
                    break;
                };
                done.push((i, expand(std::slice::from_ref(part), &index, self.options)));
            }
        }));
        if let Err(panic) = work {
            *self.panic.lock().unwrap_or_else(PoisonError::into_inner) = Some(panic);
        }
        self.results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(done);
    }

    /// A helper thread: one level per round, until stopped.
    fn help(&self) {
        loop {
            self.start.wait();
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            self.take_slices();
            self.done.wait();
        }
    }

    /// Expands the current level: on the calling thread alone when it is
    /// small, otherwise with every helper. The slices come back in frontier
    /// order, so the search (states, transitions, counter-examples) is the
    /// same for any number of threads.
    fn expand_level(&self, helpers: bool) -> Vec<Expanded> {
        if !helpers || self.frontier_len() < PARALLEL_LEVEL {
            let frontier = self.frontier.read().unwrap_or_else(PoisonError::into_inner);
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            return vec![expand(&frontier, &index, self.options)];
        }
        self.next_slice.store(0, Ordering::Relaxed);
        self.start.wait();
        self.take_slices();
        self.done.wait();
        if let Some(panic) = self
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            self.stop_helpers(helpers);
            std::panic::resume_unwind(panic);
        }
        let mut parts =
            std::mem::take(&mut *self.results.lock().unwrap_or_else(PoisonError::into_inner));
        parts.sort_unstable_by_key(|(i, _)| *i);
        parts.into_iter().map(|(_, part)| part).collect()
    }

    fn frontier_len(&self) -> usize {
        self.frontier_states.load(Ordering::Relaxed)
    }

    fn stop_helpers(&self, helpers: bool) {
        if helpers && !self.stop.swap(true, Ordering::AcqRel) {
            self.start.wait();
        }
    }
}

/// Breadth-first, level by level: each level expands in parallel against the
/// states of earlier levels (helper threads started once per search), then
/// the calling thread merges the new worlds in order.
fn breadth_first(options: &CheckOptions) -> CheckReport {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let shared = Shared {
        options,
        frontier: RwLock::new(Vec::new()),
        frontier_states: AtomicUsize::new(0),
        index: RwLock::new(FxHashSet::default()),
        next_slice: AtomicUsize::new(0),
        results: Mutex::new(Vec::new()),
        panic: Mutex::new(None),
        stop: AtomicBool::new(false),
        start: Barrier::new(threads),
        done: Barrier::new(threads),
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|| shared.help());
        }
        let report = search_levels(&shared, threads > 1);
        shared.stop_helpers(threads > 1);
        report
    })
}

fn search_levels(shared: &Shared<'_>, helpers: bool) -> CheckReport {
    let started = Instant::now();
    let options = shared.options;
    let start = symmetric(initial(options));
    // Per state: parent and the step that led here.
    let mut parents: Vec<(usize, Option<Step>)> = vec![(usize::MAX, None)];
    let mut start_keys: Vec<u128> = start.iter().map(fingerprint128).collect();
    let write_index = || shared.index.write().unwrap_or_else(PoisonError::into_inner);
    let write_frontier = || {
        shared
            .frontier
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    };
    let start_key = world_key(&mut start_keys);
    write_index().insert(start_key);
    *write_frontier() = vec![vec![Found {
        key: start_key,
        parent: usize::MAX,
        step: None,
        world: start,
        id: 0,
    }]];
    shared.frontier_states.store(1, Ordering::Relaxed);
    let mut states = 1;
    let mut transitions = 0u64;
    let mut depth = 0;
    let mut truncated = false;
    while shared.frontier_states.load(Ordering::Relaxed) > 0 {
        let level = shared.expand_level(helpers);
        let found: usize = level.iter().map(|part| part.found.len()).sum();
        let mut next_frontier: Level = Vec::with_capacity(level.len());
        let mut new_states = 0;
        let mut index = write_index();
        index.reserve(found);
        for part in level {
            transitions += part.transitions;
            if let Some((message, parent, step)) = part.violation {
                let mut trace = vec![describe(&step)];
                let mut at = parent;
                while let Some(step) = &parents[at].1 {
                    trace.push(describe(step));
                    at = parents[at].0;
                }
                trace.reverse();
                return CheckReport {
                    states,
                    transitions,
                    depth,
                    elapsed: started.elapsed(),
                    truncated,
                    violation: Some(CounterExample { message, trace }),
                };
            }
            // New worlds get their ids in order and stay where they are:
            // the part becomes a slice of the next level as it stands.
            let mut part = part.found;
            for found in &mut part {
                if index.len() >= options.max_states && !index.contains(&found.key) {
                    truncated = true;
                    continue;
                }
                if !index.insert(found.key) {
                    continue;
                }
                found.id = parents.len();
                parents.push((found.parent, found.step.take()));
                new_states += 1;
            }
            // A part from a level expanded in one piece is split, so the
            // next level still spreads over the threads.
            if part.len() > 2 * SLICE {
                let mut rest = part.into_iter();
                loop {
                    let piece: Vec<Found> = rest.by_ref().take(SLICE).collect();
                    if piece.is_empty() {
                        break;
                    }
                    next_frontier.push(piece);
                }
            } else if !part.is_empty() {
                next_frontier.push(part);
            }
        }
        states = index.len();
        drop(index);
        if new_states > 0 {
            depth += 1;
        }
        shared.frontier_states.store(new_states, Ordering::Relaxed);
        *write_frontier() = next_frontier;
    }
    CheckReport {
        states,
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
        let (i, event, now) = &step;
        match deliver(&world[*i], event, *now, options.plant_bug) {
            Ok(None) => {}
            Err(message) => {
                transitions += 1;
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
                transitions += 1;
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
