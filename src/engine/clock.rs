//! ServiceClock: the shell's one clock, mapping the runtime's (possibly paused,
//! virtual) time to the core's `Moment`s and to wall-clock timestamps.

use std::time::{Duration, SystemTime};

use actix::clock::Instant;

use crate::lifecycle::Moment;

/// The service's clock: `Moment::ZERO` is when the service started.
#[derive(Debug, Clone, Copy)]
pub struct ServiceClock {
    started: Instant,
    started_wall: SystemTime,
    /// On the real clock, the OS monotonic clock is read directly (tokio's
    /// clock takes a lock per read to support pausing).
    real: Option<std::time::Instant>,
}

impl ServiceClock {
    /// A clock starting now on the real clock, stamping notifications with
    /// real wall time. Use [`ServiceClock::start_at`] under a paused runtime.
    pub fn start() -> Self {
        ServiceClock {
            started: Instant::now(),
            started_wall: SystemTime::now(),
            real: Some(std::time::Instant::now()),
        }
    }

    /// A clock starting now on the runtime's clock (virtual under a paused
    /// runtime) whose wall time starts at `wall` (simulations use a fixed one
    /// so their output is reproducible).
    pub fn start_at(wall: SystemTime) -> Self {
        ServiceClock {
            started: Instant::now(),
            started_wall: wall,
            real: None,
        }
    }

    /// When the service started, on the runtime's clock.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Now, as a `Moment` for the core.
    pub fn now(&self) -> Moment {
        match self.real {
            Some(started) => Moment(started.elapsed()),
            None => Moment(Instant::now().saturating_duration_since(self.started)),
        }
    }

    /// The wall-clock time of `moment`.
    pub fn wall(&self, moment: Moment) -> SystemTime {
        self.started_wall + moment.since_epoch()
    }

    /// RFC 3339 timestamp (milliseconds, UTC) of `moment`.
    pub fn timestamp(&self, moment: Moment) -> String {
        humantime::format_rfc3339_millis(self.wall(moment)).to_string()
    }

    /// How long until `moment` (zero if it passed).
    pub fn until(&self, moment: Moment) -> Duration {
        moment.saturating_since(self.now())
    }
}
