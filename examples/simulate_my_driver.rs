//! Simulating *your* driver with proptest (feature `proptest`): rekindle generates fault
//! plans and environment scripts over your backends, runs each on virtual time with every
//! invariant checked, and proptest shrinks a failure to a minimal script (and keeps it
//! in a regressions file when run from a `proptest!` test).
//!
//! Run: `cargo run --example simulate_my_driver --features proptest`

use proptest::prelude::*;
use rekindle::sim::strategy::{self, hours};

/// Your driver: here a toy that keeps volumes in memory (`examples/my_array/`).
mod my_array;
use my_array::MyArray;

fn main() {
    rekindle::sim::quiet_injected_panics();
    let runs = std::cell::Cell::new(0);
    // In a test file, `proptest!` finds its regressions file next to the
    // source; an example names it (written only when a case fails).
    let config = ProptestConfig {
        cases: 32,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "simulate_my_driver.proptest-regressions",
            ),
        )),
        ..ProptestConfig::default()
    };
    proptest!(config, |(sim in strategy::simulation(&["array-1", "array-2"], hours(6)))| {
        let report = sim.run(|_ctx| Ok(MyArray::default())).expect("runtime");
        runs.set(runs.get() + 1);
        // rekindle's invariants ...
        prop_assert!(report.violations.is_empty(), "{:?}", report.violations);
        // ... and your own: a volume create that reached the driver never fails.
        prop_assert_eq!(report.operations.failed, 0);
    });
    println!(
        "{} simulations of 6 virtual hours: every invariant held",
        runs.get()
    );
}
