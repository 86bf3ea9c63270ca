//! The driver of examples/simulate_my_driver.rs (and of `cargo bench --bench strategy`,
//! which times that example's setup): a toy array that keeps volumes in memory.

use std::cell::RefCell;
use std::collections::BTreeMap;

use async_trait::async_trait;
use rekindle::{Capabilities, ConnectionInfo, Connector, DriverError, Volume, VolumeDriver};

/// Your driver: here a toy that keeps volumes in memory.
#[derive(Default)]
pub struct MyArray {
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
