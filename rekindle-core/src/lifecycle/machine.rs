//! Lifecycle: the pure transition function `step(state, event, now) -> (state, effects)`.
//! No clock, no I/O, no runtime: time comes in, effects go out as values.

mod transition;

use transition::waits_on;

use std::mem;

use super::{
    AfterDrain, ConfigId, Draining, DriverError, Effect, Effects, Event, Failed, Generation,
    Jitter, Moment, Notification, PendingConfig, Policy, Ready, Refused, Retry, RollingBack, Setup,
    State, Timer, TimerKind, Why,
};

/// One driver's lifecycle: its [`State`] plus the bookkeeping a transition
/// needs (policy, current config, generation counter, jitter generator).
/// Everything is plain data, so a `Lifecycle` can be cloned, hashed and
/// compared (the model checker does all three).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Lifecycle {
    state: State,
    policy: Policy,
    config: ConfigId,
    /// The config (and policy) the driver served on before the reload in
    /// progress: what a failed reload rolls back to. `Some` only from a
    /// reload that left Ready until that reload settles. Boxed: reloads are
    /// rare, and every `step` clones the lifecycle.
    previous: Option<Box<PendingConfig>>,
    last_generation: Generation,
    jitter: Jitter,
    /// The driver lost its health while Ready and has not been Ready
    /// since: its setup succeeded on this config, so the backend itself is
    /// away (a store unmounted, a directory moved). Its retries are not
    /// limited by `reinit_driver_count` (Cinder's option counts failed
    /// initializations): it keeps retrying at its last attempt's backoff, attempt
    /// numbers staying within the budget, and comes back by itself when the
    /// backend returns. Cleared on Ready, on a reload, on stop.
    recovering: bool,
}

impl Lifecycle {
    /// A driver in `Uninitialized` running on `config` with `policy`;
    /// `seed` seeds the backoff jitter.
    pub fn new(policy: Policy, config: ConfigId, seed: u64) -> Self {
        Lifecycle {
            state: State::Uninitialized,
            policy,
            config,
            previous: None,
            last_generation: 0,
            jitter: Jitter::from_seed(seed),
            recovering: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The config the driver runs on (or is being set up with).
    pub fn config(&self) -> ConfigId {
        self.config
    }

    /// The config a failed reload in progress would roll back to (the one
    /// the driver served on before it), if any.
    pub fn previous(&self) -> Option<&PendingConfig> {
        self.previous.as_deref()
    }

    /// The last generation handed out (timers and setups use fresh ones).
    pub fn last_generation(&self) -> Generation {
        self.last_generation
    }

    /// Whether the driver is recovering from a health loss: it was Ready on
    /// this config, then its backend went away, and it retries without the
    /// `reinit_driver_count` limit until it is Ready again.
    pub fn recovering(&self) -> bool {
        self.recovering
    }

    /// The same lifecycle with every generation renamed by `rename` (the
    /// model checker renames live generations to a dense canonical order so
    /// its state space stays finite). `rename` must be injective on the
    /// generations in use; the last generation handed out becomes `last`.
    pub fn map_generations(
        &self,
        rename: impl Fn(Generation) -> Generation,
        last: Generation,
    ) -> Lifecycle {
        let mut next = self.clone();
        next.rename_generations(rename, last);
        next
    }

    /// [`Lifecycle::map_generations`] in place.
    pub fn rename_generations(
        &mut self,
        rename: impl Fn(Generation) -> Generation,
        last: Generation,
    ) {
        self.last_generation = last;
        match &mut self.state {
            State::Initializing(s) | State::Reloading(s) => s.id = rename(s.id),
            State::RollingBack(r) => r.check.id = rename(r.check.id),
            State::Ready(r) => r.epoch = rename(r.epoch),
            State::Failed(Failed::Recoverable { retry: Some(r), .. }) => r.timer = rename(r.timer),
            State::Draining(d) => {
                d.ready.epoch = rename(d.ready.epoch);
                if let Some((_, g)) = &mut d.deadline {
                    *g = rename(*g);
                }
            }
            _ => {}
        }
    }

    /// The same lifecycle with every instant set to the epoch and attempts
    /// capped at `max_attempt`: the time-free abstraction the exported spin
    /// model uses (with an unlimited budget and time abstracted, neither the
    /// instants nor attempts beyond the cap change what can happen next).
    pub fn abstracted(&self, max_attempt: u32) -> Lifecycle {
        let mut next = self.clone();
        // With an unlimited budget every failure is retried anyway.
        next.recovering = false;
        let cap = |a: u32| a.min(max_attempt);
        next.state = match &self.state {
            State::Initializing(s) => State::Initializing(Setup {
                attempt: cap(s.attempt),
                deadline: Moment::ZERO,
                ..*s
            }),
            State::Reloading(s) => State::Reloading(Setup {
                attempt: cap(s.attempt),
                deadline: Moment::ZERO,
                ..*s
            }),
            State::RollingBack(r) => State::RollingBack(RollingBack {
                check: Setup {
                    attempt: cap(r.check.attempt),
                    deadline: Moment::ZERO,
                    ..r.check
                },
                error: r.error.clone(),
            }),
            State::Ready(r) => State::Ready(Ready {
                attempt: cap(r.attempt),
                since: Moment::ZERO,
                ..*r
            }),
            State::Failed(Failed::Recoverable {
                attempt,
                retry,
                last_error,
            }) => State::Failed(Failed::Recoverable {
                attempt: cap(*attempt),
                retry: retry.map(|r| Retry {
                    attempt: cap(r.attempt),
                    at: Moment::ZERO,
                    ..r
                }),
                last_error: last_error.clone(),
            }),
            State::Draining(d) => State::Draining(Draining {
                ready: Ready {
                    attempt: cap(d.ready.attempt),
                    since: Moment::ZERO,
                    ..d.ready
                },
                deadline: d.deadline.map(|(_, g)| (Moment::ZERO, g)),
                then: d.then.clone(),
                lost: d.lost.clone(),
            }),
            other => other.clone(),
        };
        next
    }

    /// Caps every attempt number the state holds (setup, Ready, failure,
    /// scheduled retry, drain, rollback check) at `max`, in place; nothing
    /// else changes. The model checker applies it to a driver with an
    /// unlimited budget (`reinit_driver_count = 0`), where an attempt's
    /// number decides nothing but the length of its backoff delay, so the
    /// explored space stays finite.
    pub fn cap_attempts(&mut self, max: u32) {
        let cap = |a: &mut u32| *a = (*a).min(max);
        match &mut self.state {
            State::Initializing(s) | State::Reloading(s) => cap(&mut s.attempt),
            State::RollingBack(r) => cap(&mut r.check.attempt),
            State::Ready(r) => cap(&mut r.attempt),
            State::Draining(d) => cap(&mut d.ready.attempt),
            State::Failed(Failed::Recoverable { attempt, retry, .. }) => {
                cap(attempt);
                if let Some(r) = retry {
                    cap(&mut r.attempt);
                }
            }
            State::Uninitialized | State::Failed(Failed::Fatal { .. }) | State::Stopped => {}
        }
    }

    /// Whether firing `t` now would do anything: the timer the state waits
    /// on (its setup deadline, its retry, its drain deadline). Any other
    /// timer is stale and its firing is ignored, so a shell may cancel it.
    pub fn timer_is_current(&self, t: Timer) -> bool {
        waits_on(&self.state, t)
    }

    /// Every generation the state refers to (setup, epoch, timers).
    pub fn live_generations(&self) -> arrayvec::ArrayVec<Generation, 2> {
        let mut live = arrayvec::ArrayVec::new();
        match &self.state {
            State::Initializing(s) | State::Reloading(s) => live.push(s.id),
            State::RollingBack(r) => live.push(r.check.id),
            State::Ready(r) => live.push(r.epoch),
            State::Failed(Failed::Recoverable { retry: Some(r), .. }) => live.push(r.timer),
            State::Draining(d) => {
                live.push(d.ready.epoch);
                if let Some((_, g)) = d.deadline {
                    live.push(g);
                }
            }
            _ => {}
        }
        live
    }

    /// The pure transition: the lifecycle after `event` at `now`, and the
    /// effects the shell must perform in order. A refused event leaves
    /// `self` as it was and says why; nothing here panics.
    #[inline]
    pub fn step(&self, event: Event, now: Moment) -> Result<(Lifecycle, Effects), Refused> {
        let mut next = self.clone();
        let effects = next.apply(event, now)?;
        Ok((next, effects))
    }

    /// [`Lifecycle::step`] in place: on `Err` nothing changed.
    #[inline]
    pub fn apply(&mut self, event: Event, now: Moment) -> Result<Effects, Refused> {
        let mut effects = Effects::new();
        self.apply_into(event, now, &mut effects)?;
        Ok(effects)
    }

    /// [`Lifecycle::apply`] writing the effects into `effects` (cleared
    /// first; a shell keeps them on its stack instead of moving a list).
    #[inline]
    pub fn apply_into(
        &mut self,
        event: Event,
        now: Moment,
        effects: &mut Effects,
    ) -> Result<(), Refused> {
        effects.clear();
        match event {
            Event::OperationStarted if self.count_ready_operation(true) => return Ok(()),
            Event::OperationFinished if self.count_ready_operation(false) => return Ok(()),
            _ => {}
        }
        let event_name = event.name();
        let state = mem::replace(&mut self.state, State::Uninitialized);
        match self.transition(state, event, now, effects) {
            Ok(next) => {
                self.state = next;
                Ok(())
            }
            Err((old, why)) => {
                let refused = Refused {
                    state: old.name(),
                    event: event_name,
                    why,
                };
                self.state = old;
                Err(refused)
            }
        }
    }

    /// The hot path of `OperationStarted` (`started`) and
    /// `OperationFinished` in Ready: counts the operation in or out and
    /// returns true, exactly as the transition table does (no effects, no
    /// clock). Returns false, changing nothing, in any other case, which
    /// then goes through [`Lifecycle::apply`]. `apply` itself takes this
    /// path, so the checked transition function and a shell calling this
    /// directly cannot disagree.
    #[inline]
    pub fn count_ready_operation(&mut self, started: bool) -> bool {
        let State::Ready(r) = &mut self.state else {
            return false;
        };
        if started && r.in_flight < u32::MAX {
            r.in_flight += 1;
            true
        } else if !started && r.in_flight > 0 {
            r.in_flight -= 1;
            true
        } else {
            false
        }
    }
}
