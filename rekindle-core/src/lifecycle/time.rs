//! Moment: a point in (virtual or real) time, as an offset from the shell's epoch.
//! The core never reads a clock; every instant it sees came in as an argument.

use std::fmt;
use std::ops::Add;
use std::time::Duration;

/// A point in time: the offset from an epoch the shell chose (process start,
/// or virtual time zero in a simulation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Moment(pub Duration);

impl Moment {
    /// The epoch itself.
    pub const ZERO: Moment = Moment(Duration::ZERO);

    /// `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Moment {
        Moment(Duration::from_secs(secs))
    }

    /// `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Moment {
        Moment(Duration::from_millis(millis))
    }

    /// Time since the epoch.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Moment) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Moment {
    type Output = Moment;
    /// Saturates instead of overflowing: a deadline past the end of time is
    /// simply never reached.
    fn add(self, rhs: Duration) -> Moment {
        Moment(self.0.saturating_add(rhs))
    }
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", humantime::format_duration(self.0))
    }
}
