//! Export of the lifecycle's transition table to Promela, generated from the real
//! `step`: every reachable abstract state of one driver (time-free, unlimited budget)
//! and, per event, the next state and whether a setup starts or is abandoned.

use std::collections::VecDeque;
use std::fmt::Write;

use rustc_hash::FxHashMap;

use crate::lifecycle::{
    AfterDrain, DriverError, Effect, Event, Lifecycle, Policy, State, StateName, Timer, TimerKind,
};

use super::{BackendWorld, LATE, canonical};

/// The events of the table, in column order (the `E_*` constants).
pub const EVENTS: [&str; 15] = [
    "START",
    "SETUP_OK",
    "SETUP_FAIL",
    "SETUP_FATAL",
    "SETUP_DEADLINE",
    "RETRY_DUE",
    "DRAIN_DEADLINE",
    "TICK",
    "OP_START",
    "OP_FINISH",
    "RELOAD_CHANGED",
    "RELOAD_SAME",
    "SHUTDOWN",
    "HEALTH_LOST",
    "OP_TIMEOUT",
];

/// "No transition": the event is refused or does not apply.
pub const NONE: u16 = 0xffff;

/// Attempts are capped here in the abstraction.
pub const MAX_ATTEMPT: u32 = 1;
/// Operations in flight at most in the exported model.
pub const MAX_INFLIGHT: u32 = 2;

fn abstract_state(lc: &Lifecycle) -> Lifecycle {
    let world = BackendWorld {
        lc: lc.abstracted(MAX_ATTEMPT),
        timers: Default::default(),
        running: Default::default(),
        late: Default::default(),
    };
    canonical(world).lc
}

/// The concrete event for abstract event `index` in `lc`, if it applies.
fn concrete(lc: &Lifecycle, index: usize) -> Option<Event> {
    let state = lc.state();
    let setup = state.setup().map(|s| s.id);
    let timer = |kind, generation| Event::TimerFired(Timer { kind, generation });
    Some(match EVENTS[index] {
        "START" => Event::Start,
        "SETUP_OK" => Event::SetupSucceeded { setup: setup? },
        "SETUP_FAIL" => Event::SetupFailed {
            setup: setup?,
            error: DriverError::backend("down"),
        },
        "SETUP_FATAL" => Event::SetupFailed {
            setup: setup?,
            error: DriverError::Config("bad".into()),
        },
        "SETUP_DEADLINE" => timer(TimerKind::SetupDeadline, setup?),
        "RETRY_DUE" => timer(TimerKind::Retry, state.retry()?.timer),
        "DRAIN_DEADLINE" => match state {
            State::Draining(d) => timer(TimerKind::DrainDeadline, d.deadline?.1),
            _ => return None,
        },
        "TICK" => Event::PublisherTick,
        "OP_START" if state.in_flight() < MAX_INFLIGHT => Event::OperationStarted,
        "OP_FINISH" => Event::OperationFinished,
        "RELOAD_CHANGED" => Event::ReloadRequested {
            config: 3 - lc.config(),
            changed: true,
            policy: Box::new(*lc.policy()),
        },
        "RELOAD_SAME" => Event::ReloadRequested {
            config: lc.config(),
            changed: false,
            policy: Box::new(*lc.policy()),
        },
        "SHUTDOWN" => Event::ShutdownRequested,
        "OP_TIMEOUT" => match state {
            State::Ready(r) if r.in_flight > 0 => Event::OperationTimedOut {
                epoch: r.epoch,
                error: DriverError::backend("stats failed"),
            },
            State::Draining(d) if d.ready.in_flight > 0 => Event::OperationTimedOut {
                epoch: d.ready.epoch,
                error: DriverError::backend("stats failed"),
            },
            _ => return None,
        },
        "HEALTH_LOST" => match state {
            State::Ready(r) => Event::HealthLost {
                epoch: r.epoch,
                error: DriverError::backend("stats failed"),
            },
            State::Draining(d) => Event::HealthLost {
                epoch: d.ready.epoch,
                error: DriverError::backend("stats failed"),
            },
            _ => return None,
        },
        _ => return None,
    })
}

/// One row: the next state per event and the setup flags.
pub(super) struct Row {
    pub(super) next: [u16; EVENTS.len()],
    runs: [bool; EVENTS.len()],
    aborts: [bool; EVENTS.len()],
}

/// The reachable abstract states and their rows.
pub(super) fn explore(plant_bug: bool) -> (Vec<Lifecycle>, Vec<Row>) {
    let policy = Policy {
        reinit_driver_count: 0,
        ..Policy::default()
    };
    let start = abstract_state(&Lifecycle::new(policy, 1, 0));
    let mut index: FxHashMap<Lifecycle, u16> = FxHashMap::default();
    let mut states = vec![start.clone()];
    index.insert(start, 0);
    let mut rows = Vec::new();
    let mut queue = VecDeque::from([0usize]);
    while let Some(i) = queue.pop_front() {
        let lc = states[i].clone();
        let mut row = Row {
            next: [NONE; EVENTS.len()],
            runs: [false; EVENTS.len()],
            aborts: [false; EVENTS.len()],
        };
        for (e, name) in EVENTS.iter().enumerate() {
            let Some(event) = concrete(&lc, e) else {
                continue;
            };
            let now = if *name == "TICK" { LATE } else { super::EARLY };
            let Ok((after, effects)) = lc.step(event, now) else {
                continue;
            };
            let next = abstract_state(&after);
            let id = match index.get(&next) {
                Some(id) => *id,
                None => {
                    let id = u16::try_from(states.len()).unwrap_or(NONE - 1);
                    index.insert(next.clone(), id);
                    states.push(next);
                    queue.push_back(id as usize);
                    id
                }
            };
            row.next[e] = id;
            row.runs[e] = effects.iter().any(|x| matches!(x, Effect::RunSetup { .. }));
            row.aborts[e] = effects
                .iter()
                .any(|x| matches!(x, Effect::AbortSetup { .. }));
            // The planted bug: a timed-out setup is not abandoned.
            if plant_bug && *name == "SETUP_DEADLINE" {
                row.aborts[e] = false;
            }
        }
        rows.push(row);
    }
    (states, rows)
}

fn name_code(name: StateName) -> usize {
    StateName::ALL.iter().position(|n| *n == name).unwrap_or(0)
}

/// The Promela table (`model/lifecycle_table.pml`), byte-identical for the
/// same code.
pub fn promela_table(plant_bug: bool) -> String {
    let (states, rows) = explore(plant_bug);
    let n = states.len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "/* GENERATED by `rekindle model export{}` from the real Lifecycle::step. Do not edit. */",
        if plant_bug { " --plant-bug" } else { "" }
    );
    let _ = writeln!(
        out,
        "/* {n} abstract states of one driver (time-free, unlimited budget), {} events. */",
        EVENTS.len()
    );
    let _ = writeln!(
        out,
        "#define N_STATES {n}\n#define N_EVENTS {}\n#define NO_STATE (-1)",
        EVENTS.len()
    );
    for (i, e) in EVENTS.iter().enumerate() {
        let _ = writeln!(out, "#define E_{e} {i}");
    }
    for (i, name) in StateName::ALL.iter().enumerate() {
        let _ = writeln!(out, "#define S_{} {i}", name.as_str().to_ascii_uppercase());
    }
    // `hidden`: the table is constant, so it stays out of the state vector.
    let _ = writeln!(
        out,
        "hidden short next_state[{}];\nhidden byte runs_setup[{}];\nhidden byte aborts_setup[{}];",
        n * EVENTS.len(),
        n * EVENTS.len(),
        n * EVENTS.len()
    );
    let _ = writeln!(
        out,
        "hidden byte state_name[{n}];\nhidden byte state_in_flight[{n}];\nhidden byte state_reload_pending[{n}];\nhidden byte state_health_lost[{n}];"
    );
    let _ = writeln!(out, "\ninline init_table() {{");
    let _ = writeln!(
        out,
        "  int k = 0;\n  do\n  :: k < N_STATES * N_EVENTS -> next_state[k] = NO_STATE; k++\n  :: else -> break\n  od;"
    );
    for (i, (lc, row)) in states.iter().zip(&rows).enumerate() {
        let s = lc.state();
        let reload_pending = matches!(s, State::Reloading(_) | State::RollingBack(_))
            || matches!(s, State::Draining(d) if matches!(d.then, AfterDrain::Reload(_)));
        let health_lost = matches!(s, State::Draining(d) if d.health_lost().is_some());
        let _ = writeln!(
            out,
            "  state_name[{i}] = {}; state_in_flight[{i}] = {}; state_reload_pending[{i}] = {}; state_health_lost[{i}] = {};  /* {} attempt {} */",
            name_code(s.name()),
            s.in_flight(),
            u8::from(reload_pending),
            u8::from(health_lost),
            s.name(),
            s.attempt()
        );
        for e in 0..EVENTS.len() {
            if row.next[e] != NONE {
                let k = i * EVENTS.len() + e;
                let _ = writeln!(
                    out,
                    "  next_state[{k}] = {}; runs_setup[{k}] = {}; aborts_setup[{k}] = {};",
                    row.next[e],
                    u8::from(row.runs[e]),
                    u8::from(row.aborts[e])
                );
            }
        }
    }
    let _ = writeln!(out, "}}");
    out
}

/// Number of abstract states in the exported table.
pub fn table_states() -> usize {
    explore(false).0.len()
}
