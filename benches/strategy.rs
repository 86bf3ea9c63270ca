//! Benchmark of the property-based simulation of your own driver (feature `proptest`):
//! examples/simulate_my_driver.rs's setup (two backends of an in-memory driver, 6 virtual
//! hours per case), 256 cases generated and run by proptest. Prints
//! sim_strategy_cases_per_sec and sim_strategy_256_cases_s.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use async_trait::async_trait;
use proptest::test_runner::{Config, TestRunner};
use rekindle::sim::strategy::{self, hours};
use rekindle::{Capabilities, ConnectionInfo, Connector, DriverError, Volume, VolumeDriver};

/// Cases per run, as a user's `proptest!` with `cases: 256` would run.
const CASES: u32 = 256;

/// The example's driver: volumes kept in memory.
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
