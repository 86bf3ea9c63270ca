//! Refusal: an operation a backend refused, in an operator's words: what was refused,
//! which backend, its state in words, what happens next and when (relative to now).

use std::time::{Duration, SystemTime};

use crate::lifecycle::{Refused, StateName, Why};

/// What an operator needs to know about a backend that is not serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Situation<'a> {
    /// Its lifecycle state.
    pub state: StateName,
    /// The current (or last) setup attempt of the budget; 0 = the first.
    pub attempt: u32,
    /// Whether the retry budget is spent.
    pub gave_up: bool,
    /// The last driver error, if any.
    pub last_error: Option<&'a str>,
    /// When the next setup attempt runs (wall clock), if one is scheduled.
    pub next_retry: Option<SystemTime>,
}

/// `in 7s at 12:04:31 UTC` (or `now` when due).
pub fn when(at: SystemTime, now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    let clock = stamp.get(11..19).unwrap_or(&stamp);
    match at.duration_since(now) {
        Ok(left) if left > Duration::ZERO => {
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            format!(
                "in {} at {clock} UTC",
                humantime::format_duration(Duration::from_secs(secs))
            )
        }
        _ => format!("now ({clock} UTC)"),
    }
}

/// The backend's situation in words: its state, why, and what happens next
/// and when; for example "the backend is retrying its setup after \"backend
/// error: array down\"; next attempt in 7s at 12:04:31 UTC".
pub fn describe(s: &Situation<'_>, now: SystemTime) -> String {
    let after = s
        .last_error
        .map(|e| format!(" after \"{e}\""))
        .unwrap_or_default();
    match s.state {
        StateName::Ready => "the backend is ready".to_string(),
        StateName::Uninitialized => "the backend has not started its driver yet; retry shortly".to_string(),
        StateName::Initializing | StateName::Reloading => format!(
            "the backend is setting up its driver (attempt {}); retry once it is ready",
            s.attempt.saturating_add(1)
        ),
        StateName::RollingBack => "the backend's new config failed to set up and it is checking its previous driver to serve on its old config again; retry shortly".to_string(),
        StateName::Draining => "the backend is finishing its in-flight operations for a reload or shutdown; retry shortly".to_string(),
        StateName::FailedRecoverable if s.gave_up => format!(
            "the backend gave up setting up its driver{after} ({} attempts); it tries again after a reload (`rekindle reload` or SIGHUP)",
            s.attempt.saturating_add(1)
        ),
        StateName::FailedRecoverable => match s.next_retry {
            Some(at) => format!(
                "the backend is retrying its setup{after}; next attempt {}",
                when(at, now)
            ),
            None => format!("the backend failed{after}; it retries at the next publisher tick"),
        },
        StateName::FailedFatal => format!(
            "the backend's driver cannot run{}; fix the config, then reload",
            s.last_error.map(|e| format!(": {e}")).unwrap_or_default()
        ),
        StateName::Stopped => "the backend has stopped (removed or shutting down)".to_string(),
    }
}

/// An operation refused by a backend's lifecycle, rendered when refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The backend.
    pub backend: String,
    /// What was refused, in words ("volume create").
    pub operation: &'static str,
    /// The core's refusal (state, event, why), for programs.
    pub refused: Refused,
    /// The backend's situation in words (see [`describe`]).
    pub situation: String,
}

impl Refusal {
    /// Renders `refused` for `operation` on `backend` in `situation` at `now`.
    pub fn new(
        backend: &str,
        operation: &'static str,
        refused: Refused,
        situation: &Situation<'_>,
        now: SystemTime,
    ) -> Self {
        let situation = match refused.why {
            Why::InFlightLimit => {
                "the backend has too many operations in flight; retry shortly".to_string()
            }
            _ => describe(situation, now),
        };
        Refusal {
            backend: backend.to_string(),
            operation,
            refused,
            situation,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} refused on backend `{}`: {}",
            self.operation, self.backend, self.situation
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).expect("time")
    }

    #[test]
    fn a_retrying_backend_says_when_in_seconds_from_now_and_on_the_clock() {
        let s = Situation {
            state: StateName::FailedRecoverable,
            attempt: 1,
            gave_up: false,
            last_error: Some("backend error: array down"),
            next_retry: Some(at("2026-11-30T12:04:31Z")),
        };
        assert_eq!(
            describe(&s, at("2026-11-30T12:04:24Z")),
            "the backend is retrying its setup after \"backend error: array down\"; next attempt in 7s at 12:04:31 UTC"
        );
    }

    #[test]
    fn no_state_reads_like_code() {
        for state in StateName::ALL {
            let s = Situation {
                state,
                attempt: 3,
                gave_up: state == StateName::FailedRecoverable,
                last_error: Some("configuration error: x"),
                next_retry: None,
            };
            let text = describe(&s, SystemTime::UNIX_EPOCH);
            assert!(!text.contains('_'), "{state}: {text}");
            assert!(!text.contains("Some("), "{state}: {text}");
        }
    }
}
