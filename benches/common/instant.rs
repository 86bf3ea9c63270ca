//! A driver whose every call returns at once, and a shell that knows it as `instant`:
//! what the actor benchmarks run on, so they measure the actors, not a driver.

use std::rc::Rc;

use rekindle::actors::Shell;
use rekindle::driver::registry::AnyDriver;
use rekindle::driver::{
    Capabilities, ConnectionInfo, Connector, DriverRegistry, Kind, Volume, VolumeDriver,
};
use rekindle::engine::clock::ServiceClock;
use rekindle::events::notify::Notifier;
use rekindle::lifecycle::DriverError;

/// A driver whose every call returns at once: the bench measures the actor.
pub struct Instant0;

#[async_trait::async_trait(?Send)]
impl VolumeDriver for Instant0 {
    async fn do_setup(&self) -> Result<(), DriverError> {
        Ok(())
    }
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        Ok(())
    }
    async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities::default())
    }
    async fn create_volume(&self, _: &Volume) -> Result<(), DriverError> {
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
        _: &Volume,
        _: &Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        Err(DriverError::Other("not exported".into()))
    }
    async fn terminate_connection(&self, _: &Volume, _: &Connector) -> Result<(), DriverError> {
        Ok(())
    }
}

/// A shell on a fresh clock whose registry builds `instant` drivers.
pub fn shell() -> Shell {
    let clock = ServiceClock::start();
    let mut registry = DriverRegistry::with_builtin();
    let instant: Rc<dyn VolumeDriver> = Rc::new(Instant0);
    registry.register(Kind::Volume, "instant", &[], move |_| {
        Ok(AnyDriver::Volume(instant.clone()))
    });
    Shell::new(clock, Notifier::in_memory(clock), registry)
}
