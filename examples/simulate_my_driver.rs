//! Simulating *your* driver: register it behind rekindle's fault injection, describe a
//! fault plan with `fault_*` options per backend, script the environment, run on
//! virtual time with every invariant checked.
//!
//! Run: `cargo run --example simulate_my_driver`

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use async_trait::async_trait;
use rekindle::actors::controller::{BackendPlan, Plan};
use rekindle::driver::registry::AnyDriver;
use rekindle::driver::{
    Capabilities, ConnectionInfo, Connector, DriverRegistry, DriverSpec, Kind, Volume, VolumeDriver,
};
use rekindle::lifecycle::{DriverError, Policy};
use rekindle::sim::{Action, Scripted, Simulation};

/// Your driver: here a toy that keeps volumes in memory.
#[derive(Default)]
struct MyArray {
    volumes: std::cell::RefCell<BTreeMap<String, u64>>,
}

#[async_trait(?Send)]
impl VolumeDriver for MyArray {
    async fn do_setup(&self) -> Result<(), DriverError> {
        Ok(())
    }
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        Ok(())
    }
    async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities {
            volume_backend_name: "my-array".into(),
            ..Capabilities::default()
        })
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
        volume: &Volume,
        _: &Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        let mut data = BTreeMap::new();
        data.insert("volume".to_string(), volume.id.clone().into());
        Ok(ConnectionInfo {
            driver_volume_type: "my-array".into(),
            data,
        })
    }
    async fn terminate_connection(&self, _: &Volume, _: &Connector) -> Result<(), DriverError> {
        Ok(())
    }
}

fn backend(name: &str, faults: &[(&str, &str)]) -> (String, BackendPlan) {
    let options = faults
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let spec = DriverSpec {
        backend: name.into(),
        kind: Kind::Volume,
        driver: "my-array".into(),
        options,
        origin: None,
    };
    let policy = Policy {
        reinit_driver_count: 0,
        ..Policy::default()
    };
    (name.to_string(), BackendPlan { spec, policy })
}

fn main() {
    // The fault plan: one array that is down for the first 10 minutes, one
    // that flaps every ~20 minutes, one whose driver panics twice at setup.
    let plan = Plan {
        host: "my-host".into(),
        periodic_interval: Duration::from_secs(60),
        report_interval: Duration::from_secs(10),
        service_down_time: Duration::from_secs(60),
        backup_initialization_timeout: Duration::from_secs(60),
        graceful_shutdown_timeout: Duration::from_secs(30),
        jitter_seed: None,
        backends: [
            backend("late", &[("fault_ready_after", "10m")]),
            backend(
                "flapping",
                &[("fault_flap_period", "20m"), ("fault_flap_seed", "7")],
            ),
            backend(
                "buggy",
                &[("fault_panic_setup_times", "2"), ("fault_op_delay", "5s")],
            ),
        ]
        .into_iter()
        .collect(),
    };
    // The environment: operations, an edit of the file, a SIGHUP.
    let mut script: Vec<Scripted> = (0..60)
        .map(|n| Scripted {
            at: Duration::from_secs(n * 60),
            action: Action::CreateVolume {
                backend: ["late", "flapping", "buggy"][n as usize % 3].into(),
                volume: format!("v{n}"),
            },
        })
        .collect();
    let mut edited = plan.clone();
    if let Some(b) = edited.backends.get_mut("buggy") {
        b.spec.options.insert("fault_op_delay".into(), "1s".into());
    }
    script.push(Scripted {
        at: Duration::from_secs(1800),
        action: Action::WriteConfig(Ok(edited)),
    });
    script.push(Scripted {
        at: Duration::from_secs(1801),
        action: Action::Sighup,
    });
    script.sort_by_key(|s| s.at);

    let simulation = Simulation {
        seed: 1,
        duration: Duration::from_secs(3 * 3600),
        plan,
        script,
        registry: Rc::new(|| {
            let mut registry = DriverRegistry::with_builtin();
            registry.register_with_faults(Kind::Volume, "my-array", &[], |_ctx| {
                Ok(AnyDriver::Volume(Rc::new(MyArray::default())))
            });
            registry
        }),
        keep: None,
        plant_bug: false,
        progress: None,
    };
    match simulation.run() {
        Ok(report) => {
            print!("{}", report.render());
            if !report.passed() {
                std::process::exit(1);
            }
        }
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    }
}
