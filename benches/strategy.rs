//! Benchmark of the property-based simulation of your own driver (feature `proptest`):
//! examples/simulate_my_driver.rs's setup (two backends of an in-memory driver, 6 virtual
//! hours per case), 256 cases generated and run by proptest. Prints
//! sim_strategy_cases_per_sec and sim_strategy_256_cases_s.

use std::time::Instant;

use proptest::test_runner::{Config, TestRunner};
use rekindle::sim::strategy::{self, hours};

/// The example's own driver.
#[path = "../examples/my_array/mod.rs"]
mod my_array;
use my_array::MyArray;

/// Cases per run, as a user's `proptest!` with `cases: 256` would run.
const CASES: u32 = 256;

fn main() {
    rekindle::sim::quiet_injected_panics();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let events = std::cell::Cell::new(0u64);
    let started = Instant::now();
    let result = runner.run(
        &strategy::simulation(&["array-1", "array-2"], hours(6)),
        |sim| {
            let report = sim
                .run(|_ctx| Ok(MyArray::default()))
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            events.set(events.get() + report.events);
            proptest::prop_assert!(report.violations.is_empty(), "{:?}", report.violations);
            Ok(())
        },
    );
    let wall = started.elapsed();
    if let Err(error) = result {
        eprintln!("a case failed: {error}");
        std::process::exit(1);
    }
    println!("sim_strategy_cases: {CASES}");
    println!("sim_strategy_events: {}", events.get());
    println!("sim_strategy_256_cases_s: {:.2}", wall.as_secs_f64());
    println!(
        "sim_strategy_cases_per_sec: {:.1}",
        f64::from(CASES) / wall.as_secs_f64()
    );
}
