//! The volume driver trait (`VolumeDriver`) and the values it exchanges:
//! volumes, capabilities for the scheduler, connection info for the attaching host.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Connector;
use crate::lifecycle::DriverError;

/// A volume as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The volume's id (a UUID for real drivers).
    pub id: VolumeId,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Where its data lives on this host, when a backup or restore needs it
    /// (filled in from the volume driver's [`VolumeDriver::locate`]).
    /// Boxed: most volumes have none, and every operation message moves
    /// a volume through a mailbox.
    #[serde(default)]
    pub location: Option<Box<VolumeLocation>>,
}

impl Volume {
    /// A volume with no known location.
    pub fn new(id: impl Into<VolumeId>, size_bytes: u64) -> Self {
        Volume {
            id: id.into(),
            size_bytes,
            location: None,
        }
    }
}

/// A volume's id. Shared, not copied: cloning a volume into an operation
/// message costs no allocation. Reads as a `&str` (it derefs to one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VolumeId(Arc<str>);

impl VolumeId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for VolumeId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for VolumeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for VolumeId {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&*self.0)
    }
}

impl std::borrow::Borrow<str> for VolumeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for VolumeId {
    fn from(id: &str) -> Self {
        VolumeId(id.into())
    }
}

impl From<String> for VolumeId {
    fn from(id: String) -> Self {
        VolumeId(id.into())
    }
}

impl From<&String> for VolumeId {
    fn from(id: &String) -> Self {
        VolumeId(id.as_str().into())
    }
}

impl From<VolumeId> for String {
    fn from(id: VolumeId) -> Self {
        id.0.to_string()
    }
}

impl From<VolumeId> for serde_json::Value {
    fn from(id: VolumeId) -> Self {
        serde_json::Value::String(id.0.to_string())
    }
}

impl PartialEq<str> for VolumeId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for VolumeId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// A volume's data on this host: an image file and its format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeLocation {
    /// The image file.
    pub path: std::path::PathBuf,
    /// `raw` or `qcow2`.
    pub format: String,
}

/// Capabilities a Ready volume driver reports to the scheduler.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `volume_backend_name`.
    pub volume_backend_name: String,
    /// Driver version string.
    pub driver_version: String,
    /// Storage protocol (`nbd`, `iSCSI`, ...).
    pub storage_protocol: String,
    /// Total capacity in bytes.
    pub total_capacity_bytes: u64,
    /// Free capacity in bytes.
    pub free_capacity_bytes: u64,
    /// Anything else the driver reports.
    pub extra: BTreeMap<String, String>,
}

/// What `initialize_connection` returns: how the host reaches the volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// `nbd`, `iscsi`, `fibre_channel`, ...
    pub driver_volume_type: String,
    /// Protocol-specific data (host, port, export name, target iqn, ...).
    pub data: BTreeMap<String, serde_json::Value>,
}

/// A volume driver. rekindle calls `do_setup` then `check_for_setup_error`
/// (never two setups at once), calls `get_volume_stats` on every publisher
/// tick while Ready (a failure there means the backend's health is lost), and
/// routes operations only while the driver is Ready.
///
/// Export flow on attach: `create_export(volume, connector)` then
/// `initialize_connection(volume, connector)`; if the second fails, rekindle
/// calls `remove_export(volume)`. `initialize_connection` must be cheap and
/// idempotent: it only returns connection info, and never an endpoint that
/// does not accept connections (check and repair the export first).
#[async_trait(?Send)]
pub trait VolumeDriver {
    /// Connects to the backend and prepares the driver.
    async fn do_setup(&self) -> Result<(), DriverError>;
    /// Verifies the setup (tools present, backend reachable); also what a
    /// reload's rollback to this instance must pass. Default: nothing more
    /// to check.
    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        Ok(())
    }
    /// Capabilities for the scheduler; an error means health is lost.
    async fn get_volume_stats(&self) -> Result<Capabilities, DriverError>;
    /// Creates a volume.
    async fn create_volume(&self, volume: &Volume) -> Result<(), DriverError>;
    /// Deletes a volume.
    async fn delete_volume(&self, volume: &Volume) -> Result<(), DriverError>;
    /// Exports the volume for the host described by `connector`.
    async fn create_export(
        &self,
        volume: &Volume,
        connector: &Connector,
    ) -> Result<(), DriverError>;
    /// Removes the volume's export.
    async fn remove_export(&self, volume: &Volume) -> Result<(), DriverError>;
    /// Returns how `connector`'s host reaches the (already exported) volume.
    async fn initialize_connection(
        &self,
        volume: &Volume,
        connector: &Connector,
    ) -> Result<ConnectionInfo, DriverError>;
    /// Ends `connector`'s connection to the volume (the export stays while
    /// other hosts use it; `remove_export` follows for the last). Default:
    /// nothing to end.
    async fn terminate_connection(
        &self,
        _volume: &Volume,
        _connector: &Connector,
    ) -> Result<(), DriverError> {
        Ok(())
    }

    /// Grows the volume to `new_size_bytes`. Default: not supported.
    async fn extend_volume(
        &self,
        volume: &Volume,
        _new_size_bytes: u64,
    ) -> Result<(), DriverError> {
        Err(DriverError::Other(
            format!(
                "extending volume {} is not supported by this driver",
                volume.id
            )
            .into(),
        ))
    }

    /// Checks every export this driver serves and restarts dead ones,
    /// reporting each through its [`DriverEvents`](super::DriverEvents)
    /// (Cinder's `ensure_export`, which Cinder runs only at start; rekindle
    /// runs this on every publisher tick while Ready). An error is logged,
    /// not health lost: one volume's export does not take the backend down.
    /// Default: nothing to check.
    async fn ensure_exports(&self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Where the volume's data lives on this host, if the driver keeps it
    /// locally (backups read it from there). Default: not local.
    async fn locate(&self, _volume: &Volume) -> Result<Option<VolumeLocation>, DriverError> {
        Ok(None)
    }
}

/// Refuses any volume id that is not a UUID, before a path is built from it.
#[cfg(any(feature = "qemu", feature = "posix"))]
pub fn checked_volume_id(id: &str) -> Result<uuid::Uuid, DriverError> {
    uuid::Uuid::parse_str(id)
        .ok()
        .filter(|u| u.hyphenated().to_string() == id.to_ascii_lowercase())
        .ok_or_else(|| DriverError::Other(format!("invalid volume id {id:?}: volume ids are UUIDs (for example 1b4e28ba-2fa1-11d2-883f-0016d3cca427)").into()))
}
