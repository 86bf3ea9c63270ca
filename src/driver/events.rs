//! Driver events: what a driver reports about its resources as they change (an
//! export restarted), handed to the shell, which turns them into notifications.

use std::fmt;
use std::rc::Rc;

use super::VolumeId;

/// Something a driver did to its resources on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// A dead export was restarted (notification `export.restarted`, see
    /// [`crate::Event::ExportRestarted`]).
    ExportRestarted {
        /// The exported volume.
        volume_id: VolumeId,
        /// The address the new server listens on.
        host: String,
        /// The port the dead server had.
        old_port: u16,
        /// The port the new server listens on (the old one unless taken).
        port: u16,
        /// The new server's process id.
        pid: u32,
        /// Why the old one was found dead.
        reason: String,
    },
    /// A dead export could not be restarted (notification
    /// `export.restart_failed`); it is tried again on the next check.
    ExportRestartFailed {
        /// The exported volume.
        volume_id: VolumeId,
        /// Why the old one was found dead, and why the restart failed.
        reason: String,
    },
}

/// Where a driver sends its events (given in its
/// [`DriverContext`](super::DriverContext)). Cloning shares the sink; the
/// default sink drops events.
#[derive(Clone, Default)]
pub struct DriverEvents(Option<Rc<dyn Fn(DriverEvent)>>);

impl DriverEvents {
    /// A sink that calls `deliver` with each event.
    pub fn new(deliver: impl Fn(DriverEvent) + 'static) -> Self {
        DriverEvents(Some(Rc::new(deliver)))
    }

    /// Sends one event.
    pub fn emit(&self, event: DriverEvent) {
        if let Some(deliver) = &self.0 {
            deliver(event);
        }
    }
}

impl fmt::Debug for DriverEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "DriverEvents(sink)"
        } else {
            "DriverEvents(none)"
        })
    }
}
