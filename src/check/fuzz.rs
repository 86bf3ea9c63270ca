//! Fuzz entry points shared by the cargo-fuzz targets and the corpus replay tests:
//! arbitrary event sequences through the checker's world, the cinder.conf parser,
//! and connector JSON. None may panic; invariants must hold.

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

/// Parses `data` as a cinder.conf; a valid one must also make a plan, and
/// the whole-file check (every problem, driver options included) must not
/// panic.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::config::check(
        &text,
        "fuzz.conf",
        &crate::driver::DriverRegistry::with_builtin(),
    );
    if let Ok(config) = crate::config::Config::parse(&text, "fuzz.conf") {
        let plan = config.plan();
        assert_eq!(
            plan.backends.len(),
            config.backends.len() + usize::from(config.backup.is_some())
        );
    }
}

/// Parses `data` as connector JSON and runs every validation.
pub fn connector(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = crate::driver::Connector::from_json(&text) {
        let _ = c.require_host();
        let _ = c.require_ip();
        let _ = c.require_initiator();
        let _ = c.require_wwpns();
    }
}
