//! The driver API rekindle hosts: volume and backup driver traits, the connector,
//! and the registry that builds drivers by name from a backend's config.
//!
//! Drivers are async (`async_trait(?Send)`): rekindle runs each driver's calls
//! on its actor's arbiter without blocking it, catches panics at the actor
//! boundary, and never calls two setups of one driver at once.

pub mod backup;
pub mod connector;
pub mod events;
pub mod fault;
pub mod options;
#[cfg(feature = "posix")]
pub mod posix;
#[cfg(feature = "qemu")]
pub mod qemu;
pub mod registry;
pub mod staging;
#[cfg(any(feature = "qemu", feature = "posix"))]
mod store_root;
pub mod volume;

pub use backup::{BackupDriver, BackupId, BackupRecord};
pub use connector::Connector;
pub use events::{DriverEvent, DriverEvents};
pub use registry::{DriverContext, DriverRegistry, DriverSpec, Kind};
pub use volume::{Capabilities, ConnectionInfo, Volume, VolumeDriver, VolumeId, VolumeLocation};
