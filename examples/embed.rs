//! Embedding rekindle in your own actix `System`: implement `VolumeDriver`, register it,
//! start a service next to your own actors, read states and notifications.
//!
//! Run: `cargo run --example embed`

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use rekindle::actors::controller::{BackendPlan, Plan};
use rekindle::actors::service::Route;
use rekindle::actors::signal::ControlSignal;
use rekindle::actors::{Controller, Operation, Shell};
use rekindle::clock::ServiceClock;
use rekindle::driver::registry::AnyDriver;
use rekindle::driver::{
    Capabilities, ConnectionInfo, Connector, DriverRegistry, DriverSpec, Kind, Volume, VolumeDriver,
};
use rekindle::lifecycle::{DriverError, Policy};
use rekindle::notify::Notifier;
use rekindle::systemd::Systemd;

/// A toy driver whose array needs two connection attempts before it answers.
struct ToyArray {
    attempts: std::cell::Cell<u32>,
}

#[async_trait(?Send)]
impl VolumeDriver for ToyArray {
    async fn do_setup(&self) -> Result<(), DriverError> {
        self.attempts.set(self.attempts.get() + 1);
        if self.attempts.get() < 3 {
            return Err(DriverError::backend(
                "array management port refused the connection",
            ));
        }
        Ok(())
    }
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        Ok(())
    }
    async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities {
            volume_backend_name: "toy".into(),
            driver_version: "1.0".into(),
            storage_protocol: "toy".into(),
            total_capacity_bytes: 1 << 40,
            free_capacity_bytes: 1 << 39,
            extra: BTreeMap::new(),
        })
    }
    async fn create_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        println!("toy array: created {}", volume.id);
        Ok(())
    }
    async fn delete_volume(&self, _: &Volume) -> Result<(), DriverError> {
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
            driver_volume_type: "toy".into(),
            data,
        })
    }
    async fn terminate_connection(&self, _: &Volume, _: &Connector) -> Result<(), DriverError> {
        Ok(())
    }
}

/// One of *your* actors, living next to rekindle's.
struct Greeter;
impl Actor for Greeter {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Self::Context) {
        println!("your own actor runs in the same System");
    }
}

fn main() -> std::io::Result<()> {
    let system = System::new();
    system.block_on(async {
        Greeter.start();
        let mut registry = DriverRegistry::with_builtin();
        registry.register(Kind::Volume, "toy", &[], |_ctx| {
            Ok(AnyDriver::Volume(Rc::new(ToyArray {
                attempts: Default::default(),
            })))
        });
        let clock = ServiceClock::start();
        let shell = Shell::new(clock, Notifier::in_memory(clock), registry);
        let backend = BackendPlan {
            spec: DriverSpec {
                backend: "toy-1".into(),
                kind: Kind::Volume,
                driver: "toy".into(),
                options: BTreeMap::new(),
                origin: None,
            },
            policy: Policy::default(),
        };
        let plan = Plan {
            host: "embedded".into(),
            periodic_interval: Duration::from_secs(60),
            report_interval: Duration::from_secs(10),
            service_down_time: Duration::from_secs(60),
            backup_initialization_timeout: Duration::from_secs(60),
            graceful_shutdown_timeout: Duration::from_secs(5),
            jitter_seed: None,
            backends: [("toy-1".to_string(), backend)].into_iter().collect(),
        };
        let same = plan.clone();
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
        let handles = Controller::start(
            plan,
            Box::new(move || Ok(same.clone())),
            shell,
            1,
            Systemd::disabled(),
            Some(stopped_tx),
        );

        // Backoff 1s then 2s: the toy array is Ready after about 3 seconds.
        actix::clock::sleep(Duration::from_millis(3_200)).await;
        for backend in handles.shell.board.backends() {
            println!(
                "backend {} is {} (attempt {})",
                backend.name, backend.state, backend.attempt
            );
        }
        let created = handles
            .service
            .send(Route {
                backend: "toy-1".into(),
                operation: Operation::CreateVolume(Volume::new("vol-1", 1 << 30)),
            })
            .await;
        println!("create_volume: {created:?}");
        for record in handles.shell.notifier.history() {
            println!("notification {} {}", record.event_type, record.payload);
        }
        handles.controller.do_send(ControlSignal::Shutdown);
        let _ = stopped_rx.await;
        System::current().stop();
    });
    system.run()
}
