//! The checker's world and its moves: one backend's state with its pending timers,
//! late setup results and in-flight work, every event the environment can deliver, and delivery.

use std::hash::{Hash, Hasher};

use arrayvec::ArrayVec;
use std::time::Duration;

use crate::lifecycle::{
    AfterDrain, Draining, DriverError, Effect, ErrorText, Event, Generation, Lifecycle, Moment,
    PendingConfig, Policy, State, Timer, TimerKind, invariants,
};

use super::CheckOptions;
use super::abstraction;
use super::canonical::{canonical, canonicalize};

/// Stale timers kept per backend (the newest ones).
pub const STALE_TIMERS_KEPT: usize = 2;
/// Abandoned setups whose late result is kept deliverable, per backend.
pub const LATE_SETUPS_KEPT: usize = 1;

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
        // Recovering from a health loss only matters where giving up can
        // happen: with an unlimited budget it changes no transition.
        if self.lc.policy().reinit_driver_count > 0 {
            h.write_u8(u8::from(self.lc.recovering()));
        }
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
pub(super) fn hash_state<H: Hasher>(state: &State, policy: &Policy, h: &mut H) {
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
            lost,
        }) => {
            h.write_u8(4);
            ready.hash(h);
            deadline.hash(h);
            lost.hash(h);
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
pub(super) const ERRORS: [DriverError; 3] = [
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
        // A call that hangs until its deadline (the health error stands
        // for it: the same class, and no extra states for its text).
        let epoch = match state {
            State::Ready(r) => Some(r.epoch),
            State::Draining(d) => Some(d.ready.epoch),
            _ => None,
        };
        if let Some(epoch) = epoch {
            moves.push((
                Event::OperationTimedOut {
                    epoch,
                    error: stats.clone(),
                },
                EARLY,
            ));
        }
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
    // The publisher's stats call fails while the driver serves (Ready, or
    // draining for a reload, a removal or a shutdown).
    let serving = match state {
        State::Ready(r) => Some(r.epoch),
        State::Draining(d) => Some(d.ready.epoch),
        _ => None,
    };
    if let Some(epoch) = serving {
        moves.push((
            Event::HealthLost {
                epoch,
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
        Event::OperationTimedOut { .. } => "operation timed out".to_string(),
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
