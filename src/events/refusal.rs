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
    /// While draining, what the drain is for ("a reload", "its removal",
    /// "shutdown", "a lost backend").
    pub draining_for: Option<&'static str>,
    /// The deadline of the setup or drain under way (wall clock), if any.
    pub until: Option<SystemTime>,
}

/// `in 7s at 12:04:31 UTC`, `in 1 day 6h at 2026-12-01 03:33:09 UTC` (the
/// date once it is not today), or `now (12:04:31 UTC)` when due.
pub fn when(at: SystemTime, now: SystemTime) -> String {
    let (left, clock) = in_and_at(at, now);
    match left {
        Some(left) => format!("in {left} at {clock}"),
        None => format!("now ({clock})"),
    }
}

/// How long from `now` until `at` (rounded up to seconds, `None` when due)
/// and `at` on the wall clock (`HH:MM:SS UTC`, with the date when it is not
/// on `now`'s day).
pub fn in_and_at(at: SystemTime, now: SystemTime) -> (Option<String>, String) {
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    let today = humantime::format_rfc3339_seconds(now).to_string();
    let clock = match (stamp.get(..10), stamp.get(11..19)) {
        (Some(day), Some(time)) if today.get(..10) == Some(day) => format!("{time} UTC"),
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => stamp.clone(),
    };
    let left = match at.duration_since(now) {
        Ok(left) if left > Duration::ZERO => {
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            Some(
                humantime::format_duration(Duration::from_secs(secs))
                    .to_string()
                    .replace("day", " day")
                    .replace("  ", " "),
            )
        }
        _ => None,
    };
    (left, clock)
}

/// What an operator does about a fatal error, by its class.
fn remedy(error: Option<&str>) -> &'static str {
    match error {
        Some(e) if e.starts_with("missing library") => {
            "install what it needs (or fix its path in the config), then reload"
        }
        Some(e) if e.starts_with("driver not supported") => {
            "fix the driver name in the config, then reload"
        }
        _ => "fix the config, then reload",
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
            "the backend is setting up its driver (attempt {}{}); retry once it is ready",
            s.attempt.saturating_add(1),
            s.until
                .map(|t| format!(", abandoned if not done {}", when(t, now)))
                .unwrap_or_default()
        ),
        StateName::RollingBack => "the backend's new config failed to set up and it is checking its previous driver to serve on its old config again; retry shortly".to_string(),
        StateName::Draining if s.draining_for == Some("shutdown") => {
            "the service is shutting down: the backend only finishes its in-flight operations".to_string()
        }
        StateName::Draining => format!(
            "the backend is finishing its in-flight operations before {}{}; retry after that",
            s.draining_for.unwrap_or("a reload"),
            s.until
                .map(|t| match in_and_at(t, now) {
                    (Some(left), clock) => format!(" (until {clock} at the latest, in {left})"),
                    (None, clock) => format!(" (its deadline, {clock}, has passed)"),
                })
                .unwrap_or_default()
        ),
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
            "the backend's driver cannot run{}; {}",
            s.last_error.map(|e| format!(": {e}")).unwrap_or_default(),
            remedy(s.last_error)
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
            draining_for: None,
            until: None,
        };
        assert_eq!(
            describe(&s, at("2026-11-30T12:04:24Z")),
            "the backend is retrying its setup after \"backend error: array down\"; next attempt in 7s at 12:04:31 UTC"
        );
    }

    #[test]
    fn times_far_off_carry_their_date_and_days_read_as_words() {
        assert_eq!(
            when(at("2026-12-01T03:33:09Z"), at("2026-11-30T21:33:09Z")),
            "in 6h at 2026-12-01 03:33:09 UTC"
        );
        assert_eq!(
            when(at("2026-12-02T03:33:09Z"), at("2026-11-30T21:33:09Z")),
            "in 1 day 6h at 2026-12-02 03:33:09 UTC"
        );
    }

    #[test]
    fn a_fatal_error_says_what_to_do_about_its_class() {
        let s = |e| Situation {
            state: StateName::FailedFatal,
            attempt: 0,
            gave_up: false,
            last_error: Some(e),
            next_retry: None,
            draining_for: None,
            until: None,
        };
        let now = SystemTime::UNIX_EPOCH;
        assert!(
            describe(&s("missing library: qemu-img not found"), now)
                .ends_with("install what it needs (or fix its path in the config), then reload")
        );
        assert!(
            describe(&s("driver not supported: lvm"), now)
                .ends_with("fix the driver name in the config, then reload")
        );
        assert!(
            describe(&s("configuration error: x"), now).ends_with("fix the config, then reload")
        );
    }

    #[test]
    fn a_drain_says_what_for_and_until_when_and_shutdown_says_no_retry() {
        let now = at("2026-11-30T12:00:00Z");
        let mut s = Situation {
            state: StateName::Draining,
            attempt: 0,
            gave_up: false,
            last_error: None,
            next_retry: None,
            draining_for: Some("a reload"),
            until: Some(at("2026-11-30T12:01:00Z")),
        };
        assert_eq!(
            describe(&s, now),
            "the backend is finishing its in-flight operations before a reload (until 12:01:00 UTC at the latest, in 1m); retry after that"
        );
        s.draining_for = Some("shutdown");
        assert!(
            !describe(&s, now).contains("retry"),
            "{}",
            describe(&s, now)
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
                draining_for: Some("a reload"),
                until: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(3)),
            };
            let text = describe(&s, SystemTime::UNIX_EPOCH);
            assert!(!text.contains('_'), "{state}: {text}");
            assert!(!text.contains("Some("), "{state}: {text}");
        }
    }
}
