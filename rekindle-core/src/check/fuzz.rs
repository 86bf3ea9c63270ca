//! The fuzz entry point over the checker's world, shared by the cargo-fuzz target and
//! the corpus replay tests: arbitrary event sequences must never break an invariant.

use super::{CheckOptions, deliver, initial, moves};

/// Feeds `data` as a sequence of environment choices to one or two backends
/// (stale timers and late setup results included). Panics if an invariant
/// breaks: that is a finding.
pub fn step_events(data: &[u8]) {
    let Some((&shape, choices)) = data.split_first() else {
        return;
    };
    let options = CheckOptions {
        max_attempts: u32::from(shape % 4),
        max_inflight: u32::from((shape >> 2) % 3),
        backends: 1 + usize::from((shape >> 4) % 2),
        ..CheckOptions::default()
    };
    let mut world = initial(&options);
    for pair in choices.chunks(2) {
        let backend = usize::from(pair[0]) % world.len();
        let available = moves(&world[backend], &options);
        if available.is_empty() {
            continue;
        }
        let pick = usize::from(*pair.get(1).unwrap_or(&0)) % available.len();
        let (event, now) = &available[pick];
        match deliver(&world[backend], event, *now, false) {
            Ok(Some(next)) => world[backend] = next,
            Ok(None) => {}
            Err(violation) => panic!("invariant broken: {violation}"),
        }
    }
}
