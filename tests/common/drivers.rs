//! A volume driver for the engine's suites: a test scripts only the calls it is about
//! (`Script`); every other call succeeds and does nothing.

#![allow(dead_code)]

use rekindle::driver::{Capabilities, ConnectionInfo, Connector, Volume, VolumeDriver};
use rekindle::lifecycle::DriverError;

/// The calls a test scripts; each succeeds and does nothing unless the test
/// says otherwise.
#[async_trait::async_trait(?Send)]
pub trait Script {
    /// `do_setup`.
    async fn do_setup(&self) -> Result<(), DriverError> {
        Ok(())
    }
    /// `check_for_setup_error`.
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        Ok(())
    }
    /// `create_volume`.
    async fn create_volume(&self, _volume: &Volume) -> Result<(), DriverError> {
        Ok(())
    }
    /// `delete_volume`.
    async fn delete_volume(&self, _volume: &Volume) -> Result<(), DriverError> {
        Ok(())
    }
}

/// A volume driver doing what `S` scripts; exports and connections do
/// nothing (a connection is of type `test`).
pub struct Scripted<S>(pub S);

#[async_trait::async_trait(?Send)]
impl<S: Script> VolumeDriver for Scripted<S> {
    async fn do_setup(&self) -> Result<(), DriverError> {
        self.0.do_setup().await
    }
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        self.0.check_for_setup_error().await
    }
    async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities::default())
    }
    async fn create_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        self.0.create_volume(volume).await
    }
    async fn delete_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        self.0.delete_volume(volume).await
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
            driver_volume_type: "test".into(),
            data: Default::default(),
        })
    }
}
