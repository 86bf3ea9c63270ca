//! Fuzz entry points shared by the cargo-fuzz targets and the corpus replay tests:
//! arbitrary event sequences through the checker's world (from the core), the
//! cinder.conf parser, and connector JSON. None may panic; invariants must hold.

pub use rekindle_core::check::fuzz::step_events;

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
