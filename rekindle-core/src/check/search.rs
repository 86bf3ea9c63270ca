//! The search: breadth-first by levels expanded in parallel against the states seen,
//! or depth-first with a bounded stack; both return the shortest counter-example found.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, PoisonError, RwLock};

use rustc_hash::FxHashSet;
use std::time::Instant;

use crate::lifecycle::{Event, Moment};

use super::CheckOptions;
use super::canonical::{fingerprint128, symmetric, world_key};
use super::report::{CheckReport, CounterExample, Limit, Progress};
use super::world::{
    BackendWorld, Delivered, World, deliver, deliver_into, initial, label, moves, moves_into,
};

/// One step of the search: which backend got which event when.
pub(super) type Step = (usize, Event, Moment);

pub(super) fn describe(step: &Step) -> String {
    format!("backend {}: {}", step.0, label(&step.1, step.2))
}

/// The world `world` with backend `i` replaced by `next`, in canonical order.
pub(super) fn build(world: &World, i: usize, next: BackendWorld) -> World {
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
pub(super) struct Found {
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
pub(super) struct Expanded {
    found: Vec<Found>,
    transitions: u64,
    /// The first broken invariant: message, the parent's id, the step.
    violation: Option<(String, usize, Step)>,
}

/// A level of the search: the parts the previous level's slices found, in
/// order, each world with its id (duplicates stay in place, marked).
pub(super) type Level = Vec<Vec<Found>>;

/// Expands the new worlds of `parts`, skipping successors whose key `seen`
/// already holds. Pure, so parts of a level expand in parallel.
pub(super) fn expand(
    parts: &[Vec<Found>],
    seen: &FxHashSet<u128>,
    options: &CheckOptions,
) -> Expanded {
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

/// How often a running search reports its progress.
pub(super) const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// Bytes a breadth-first search holds for `stored` states seen (their keys,
/// in a table kept at most 7/8 full, and the way back to each) and
/// `frontier` worlds of `backends` backends waiting to be expanded.
pub(super) fn bfs_bytes(stored: usize, frontier: usize, backends: usize) -> u64 {
    let parent = std::mem::size_of::<(usize, Option<Step>)>();
    let world = std::mem::size_of::<Found>() + backends * std::mem::size_of::<BackendWorld>();
    // Both tables grow by doubling.
    (key_table_bytes(stored) + stored.next_power_of_two() * parent + frontier * world) as u64
}

/// A table of `stored` 128-bit keys: a power of two of buckets, at most 7/8
/// full, a control byte each.
fn key_table_bytes(stored: usize) -> usize {
    let buckets = (stored.saturating_mul(8) / 7 + 1).next_power_of_two();
    buckets * (std::mem::size_of::<u128>() + 1)
}

/// Bytes a depth-first search holds: `stored` fingerprints and a stack of
/// `depth` worlds with their pending moves.
pub(super) fn dfs_bytes(stored: usize, depth: usize, backends: usize) -> u64 {
    let frame = backends * std::mem::size_of::<BackendWorld>() + 16 * std::mem::size_of::<Step>();
    (key_table_bytes(stored) + depth * frame) as u64
}

/// Levels smaller than this expand on the calling thread.
pub(super) const PARALLEL_LEVEL: usize = 64;
/// States a worker takes at a time from a level (small enough to balance
/// the load, large enough that taking work costs nothing).
pub(super) const SLICE: usize = 32;

/// What the search threads share: the current level and the states of the
/// earlier ones (read while a level expands, written by the calling thread
/// between levels, when the helpers wait at `start`).
pub(super) struct Shared<'a> {
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
pub(super) fn breadth_first(
    options: &CheckOptions,
    progress: &mut dyn FnMut(&Progress),
) -> CheckReport {
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
        let report = search_levels(&shared, threads > 1, progress);
        shared.stop_helpers(threads > 1);
        report
    })
}

pub(super) fn search_levels(
    shared: &Shared<'_>,
    helpers: bool,
    progress: &mut dyn FnMut(&Progress),
) -> CheckReport {
    let started = Instant::now();
    let mut reported = started;
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
    let mut limit = None;
    let mut memory = bfs_bytes(1, 1, options.backends);
    while shared.frontier_states.load(Ordering::Relaxed) > 0 {
        let level = shared.expand_level(helpers);
        let found: usize = level.iter().map(|part| part.found.len()).sum();
        // The level just expanded, the one it found and the states seen:
        // past the budget, nothing more is stored (a violation this level
        // found is still reported: its memory is already spent).
        let frontier = shared.frontier_states.load(Ordering::Relaxed);
        let holding = bfs_bytes(states + found, frontier + found, options.backends);
        let violated = level.iter().any(|part| part.violation.is_some());
        if options.max_memory > 0 && holding > options.max_memory && !violated {
            limit = Some(Limit::Memory(options.max_memory));
            break;
        }
        memory = memory.max(holding);
        let mut next_frontier: Level = Vec::with_capacity(level.len());
        let mut new_states = 0;
        let mut index = write_index();
        index.reserve(found);
        for part in level {
            transitions += part.transitions;
            if let Some((message, parent, step)) = part.violation {
                let trace = trace_to(&parents, parent, &step);
                return CheckReport {
                    states,
                    transitions,
                    depth,
                    elapsed: started.elapsed(),
                    truncated: limit.is_some(),
                    limit,
                    memory_bytes: memory,
                    product: None,
                    violation: Some(CounterExample { message, trace }),
                };
            }
            // New worlds get their ids in order and stay where they are:
            // the part becomes a slice of the next level as it stands.
            let mut part = part.found;
            for found in &mut part {
                if index.len() >= options.max_states && !index.contains(&found.key) {
                    limit = Some(Limit::States(options.max_states));
                    continue;
                }
                if !index.insert(found.key) {
                    continue;
                }
                found.id = parents.len();
                parents.push((found.parent, found.step.take()));
                new_states += 1;
            }
            push_sliced(&mut next_frontier, part);
        }
        states = index.len();
        drop(index);
        if new_states > 0 {
            depth += 1;
        }
        shared.frontier_states.store(new_states, Ordering::Relaxed);
        *write_frontier() = next_frontier;
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            progress(&Progress {
                states,
                depth,
                elapsed: started.elapsed(),
                memory_bytes: memory,
            });
        }
    }
    CheckReport {
        states,
        transitions,
        depth,
        elapsed: started.elapsed(),
        truncated: limit.is_some(),
        limit,
        memory_bytes: memory,
        product: None,
        violation: None,
    }
}

/// The steps from the start to `parent` and then `step`, in words.
fn trace_to(parents: &[(usize, Option<Step>)], parent: usize, step: &Step) -> Vec<String> {
    let mut trace = vec![describe(step)];
    let mut at = parent;
    while let Some(step) = &parents[at].1 {
        trace.push(describe(step));
        at = parents[at].0;
    }
    trace.reverse();
    trace
}

/// Adds `part` to the next level; a part from a level expanded in one
/// piece is split, so that the next level still spreads over the threads.
fn push_sliced(next: &mut Level, part: Vec<Found>) {
    if part.len() > 2 * SLICE {
        let mut rest = part.into_iter();
        loop {
            let piece: Vec<Found> = rest.by_ref().take(SLICE).collect();
            if piece.is_empty() {
                break;
            }
            next.push(piece);
        }
    } else if !part.is_empty() {
        next.push(part);
    }
}

/// Deepest stack the depth-first search keeps (like spin's `-m`); deeper
/// states are not expanded and the report says the search was truncated.
pub const DFS_MAX_DEPTH: usize = 10_000;

pub(super) fn depth_first(
    options: &CheckOptions,
    progress: &mut dyn FnMut(&Progress),
) -> CheckReport {
    let started = Instant::now();
    let mut reported = started;
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
    let mut limit = None;
    let mut memory = dfs_bytes(1, 1, options.backends);
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
                    truncated: limit.is_some(),
                    limit,
                    memory_bytes: memory,
                    product: None,
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
                let holding = dfs_bytes(seen.len(), stack.len() + 1, options.backends);
                if options.max_memory > 0 && holding > options.max_memory {
                    limit = Some(Limit::Memory(options.max_memory));
                    break;
                }
                memory = memory.max(holding);
                if seen.len() >= options.max_states {
                    limit = Some(Limit::States(options.max_states));
                    continue;
                }
                if stack.len() >= DFS_MAX_DEPTH {
                    limit = Some(Limit::Depth(DFS_MAX_DEPTH));
                    continue;
                }
                if seen.len().is_multiple_of(65_536) && reported.elapsed() >= PROGRESS_EVERY {
                    reported = Instant::now();
                    progress(&Progress {
                        states: seen.len(),
                        depth,
                        elapsed: started.elapsed(),
                        memory_bytes: memory,
                    });
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
        truncated: limit.is_some(),
        limit,
        memory_bytes: memory,
        product: None,
        violation: None,
    }
}
