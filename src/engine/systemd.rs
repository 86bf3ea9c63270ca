//! systemd `Type=notify-reload` protocol: READY=1, RELOADING=1 with MONOTONIC_USEC,
//! STOPPING=1 and STATUS= lines, sent only when started under systemd (NOTIFY_SOCKET).
//!
//! The messages are sent with the `systemd` feature (sd-notify). Without it
//! [`Systemd`] keeps its API but is never enabled: every call does nothing.

#[cfg(feature = "systemd")]
use sd_notify::NotifyState;

/// Talks to systemd when `NOTIFY_SOCKET` is set (and the `systemd` feature
/// is on); does nothing otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Systemd {
    enabled: bool,
}

impl Systemd {
    /// Enabled when the service manager gave us a notification socket
    /// (never without the `systemd` feature).
    pub fn from_env() -> Self {
        Systemd {
            enabled: cfg!(feature = "systemd") && std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    /// A notifier that never sends (tests, simulations).
    pub fn disabled() -> Self {
        Systemd { enabled: false }
    }

    /// Whether notifications are sent (a status line worth building).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    #[cfg(feature = "systemd")]
    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(error) = sd_notify::notify(states) {
            tracing::warn!(%error, "cannot notify systemd");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        #[cfg(feature = "systemd")]
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        #[cfg(not(feature = "systemd"))]
        let _ = status;
    }

    /// `RELOADING=1` with `MONOTONIC_USEC`, as `Type=notify-reload` requires.
    pub fn reloading(&self) {
        #[cfg(feature = "systemd")]
        if self.enabled {
            match NotifyState::monotonic_usec_now() {
                Ok(now) => self.send(&[
                    NotifyState::Reloading,
                    now,
                    NotifyState::Status("reloading"),
                ]),
                Err(error) => tracing::warn!(%error, "cannot read CLOCK_MONOTONIC for RELOADING=1"),
            }
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        #[cfg(feature = "systemd")]
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// `STATUS=...`.
    pub fn status(&self, status: &str) {
        #[cfg(feature = "systemd")]
        self.send(&[NotifyState::Status(status)]);
        #[cfg(not(feature = "systemd"))]
        let _ = status;
    }
}
