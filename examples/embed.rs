//! Embedding rekindle in your own actix `System` through its front door: a driver,
//! `Engine::builder()`, one operation, and one of your actors subscribed to events.
//!
//! Run: `cargo run --example embed`

use std::cell::Cell;
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use rekindle::{
    Capabilities, ConnectionInfo, Connector, DriverError, Engine, Notice, Operation, Policy,
    StateName, Volume, VolumeDriver,
};

/// A toy array that needs two connection attempts before it answers.
#[derive(Default)]
struct ToyArray {
    attempts: Cell<u32>,
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
    async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities {
            total_capacity_bytes: 1 << 40,
            free_capacity_bytes: 1 << 39,
            ..Capabilities::default()
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
        _: &Volume,
        _: &Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        Ok(ConnectionInfo {
            driver_volume_type: "toy".into(),
            data: Default::default(),
        })
    }
}

/// One of *your* actors: told every event rekindle emits.
struct Watcher;

impl Actor for Watcher {
    type Context = Context<Self>;
}

impl Handler<Notice> for Watcher {
    type Result = ();
    fn handle(&mut self, notice: Notice, _: &mut Context<Self>) {
        println!(
            "event {} {}",
            notice.event_type(),
            serde_json::to_string(&notice.event).unwrap_or_default()
        );
    }
}

#[actix::main]
async fn main() -> Result<(), rekindle::EngineError> {
    let engine = Engine::builder()
        .host("embedded")
        .volume_backend("toy-1", ToyArray::default())
        .policy(Policy::default())
        .subscribe(Watcher.start().recipient())
        .start()?;
    // Backoff 1s then 2s (jittered): the toy array is Ready after about 3 seconds.
    while !engine.status().iter().any(|b| b.state == StateName::Ready) {
        actix::clock::sleep(Duration::from_millis(100)).await;
    }
    for backend in engine.status() {
        println!(
            "backend {} is {} (attempt {})",
            backend.name, backend.state, backend.attempt
        );
    }
    let created = engine
        .volume(
            "toy-1",
            Operation::CreateVolume(Volume::new("vol-1", 1 << 30)),
        )
        .await;
    println!("create_volume: {created:?}");
    engine.shutdown().await;
    Ok(())
}
