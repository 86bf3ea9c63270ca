//! Simulating *your* driver with proptest (feature `proptest`): rekindle generates fault
//! plans and environment scripts over your backends, runs each on virtual time with every
//! invariant checked, and proptest shrinks a failure to a minimal script (and keeps it
//! in a regressions file when run from a `proptest!` test).
//!
//! Run: `cargo run --example simulate_my_driver --features proptest`

use std::cell::RefCell;
use std::collections::BTreeMap;

use async_trait::async_trait;
use proptest::prelude::*;
use rekindle::sim::strategy::{self, hours};
use rekindle::{Capabilities, ConnectionInfo, Connector, DriverError, Volume, VolumeDriver};

/// Your driver: here a toy that keeps volumes in memory.
#[derive(Default)]
struct MyArray {
    volumes: RefCell<BTreeMap<String, u64>>,
}

#[async_trait(?Send)]
impl VolumeDriver for MyArray {
    async fn do_setup(&self) -> Result<(), DriverError> {
        Ok(())
    }
    async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities::default())
    }
    async fn create_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        self.volumes
            .borrow_mut()
            .insert(volume.id.to_string(), volume.size_bytes);
        Ok(())
    }
    async fn delete_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        self.volumes.borrow_mut().remove(volume.id.as_str());
        Ok(())
    }
    async fn create_export(&self, _: &Volume, _: &Connector) -> Result<(), DriverError> {
        Ok(())
    }
    async fn remove_export(&self, _: &Volume) -> Result<(), DriverError> {
        Ok(())
    }
    async fn initialize_connection(
        &self,
        _: &Volume,
        _: &Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        Ok(ConnectionInfo {
            driver_volume_type: "my-array".into(),
            data: Default::default(),
        })
    }
}

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
