//! Operations: what users ask of volumes and backups (create, delete, attach, detach,
//! back up, restore, list), recorded before acknowledged, and their progress.

#[cfg(feature = "sqlite")]
pub mod listing;
#[cfg(feature = "sqlite")]
mod manager;
pub mod progress;

#[cfg(feature = "sqlite")]
pub use manager::{Manager, ManagerError, Started};
