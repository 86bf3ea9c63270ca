//! Benchmark of the simulator: 1,000 backends x 24 virtual hours with the default
//! fault profile, on the real actor system. Prints sim_1000x24h_wall_ms and sim_events_per_sec.

use std::time::{Duration, Instant};

use rekindle::sim::scenario::{Profile, generate};

fn main() {
    // Injected driver panics are part of the profile, not news.
    rekindle::sim::quiet_injected_panics();
    let sim = generate(1, 1000, Duration::from_secs(24 * 3600), Profile::Default);
    let started = Instant::now();
    let report = sim.run().expect("runtime");
    let wall = started.elapsed();
    assert!(report.passed(), "{}", report.render());
    let events = report.events + report.refused;
    println!("sim_backends: 1000");
    println!("sim_virtual_hours: 24");
    println!("sim_events: {events}");
    println!("sim_1000x24h_wall_ms: {}", wall.as_millis());
    println!(
        "sim_events_per_sec: {:.0}",
        events as f64 / wall.as_secs_f64()
    );
}
