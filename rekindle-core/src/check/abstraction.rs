//! What of a lifecycle `Policy` the model checker sees: time is abstracted, so a duration
//! is only zero or positive; the budget and the rollback switch are kept as they are.
//!
//! Every event the checker delivers arrives at time zero, or (a late publisher
//! tick) at the end of time, when every deadline has passed. A duration then
//! only decides whether a deadline is due at once (zero) or later (any
//! positive value): the explored states are the same for every positive
//! `driver_init_timeout`, `graceful_shutdown_timeout`, `reinit_backoff_base`,
//! `reinit_backoff_max` and `reinit_reset_after`. A zero `reinit_reset_after`
//! is a different model (the budget is reset as soon as the driver is
//! Ready); a zero `graceful_shutdown_timeout` is kept apart too. Jitter is
//! off in the checker: it only shortens a positive delay (to zero at most
//! with `reinit_backoff_jitter = 1`, which is the retry timer firing at once,
//! a move the checker explores anyway). Policies that agree on all this are
//! one [`CheckedPolicy`].

use std::fmt;
use std::time::Duration;

use crate::lifecycle::Policy;

/// With an unlimited budget (`reinit_driver_count = 0`) the checker counts
/// attempts up to this number and no further (see
/// [`crate::lifecycle::Lifecycle::cap_attempts`]): the same bound as the
/// default `--max-attempts` of `rekindle check`. Sound under the time
/// abstraction: without a budget, an attempt's number only sets the length
/// of its backoff delay, and every delay is "later".
pub const UNLIMITED_ATTEMPTS_CAP: u32 = 2;

/// The policy options whose positive values the checker does not tell
/// apart, in the order they are listed when backends sharing one checked
/// model wrote different values.
pub const ABSTRACTED_OPTIONS: [&str; 6] = [
    "driver_init_timeout",
    "graceful_shutdown_timeout",
    "reinit_backoff_base",
    "reinit_backoff_max",
    "reinit_backoff_jitter",
    "reinit_reset_after",
];

/// A lifecycle policy as the model checker abstracts it: the part that
/// changes what [`crate::check::check`] explores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckedPolicy {
    /// Re-initialization attempts after the first failure; `0` = unlimited
    /// (attempts then counted up to [`UNLIMITED_ATTEMPTS_CAP`]).
    pub reinit_driver_count: u32,
    /// Whether a reload that left Ready and failed rolls back.
    pub reload_rollback: bool,
    /// `reinit_reset_after` is zero: the budget resets as soon as the
    /// driver is Ready (otherwise: after some positive time).
    pub reset_at_once: bool,
    /// `graceful_shutdown_timeout` is zero: a drain's deadline is due at
    /// once (otherwise: after some positive time).
    pub drain_deadline_at_once: bool,
}

impl CheckedPolicy {
    /// The abstraction of `policy`.
    pub fn of(policy: &Policy) -> CheckedPolicy {
        CheckedPolicy {
            reinit_driver_count: policy.reinit_driver_count,
            reload_rollback: policy.reload_rollback,
            reset_at_once: policy.reinit_reset_after.is_zero(),
            drain_deadline_at_once: policy.graceful_shutdown_timeout.is_zero(),
        }
    }

    /// The policy the checker runs for this abstraction: budget and
    /// rollback as given, zero durations zero, every other abstracted
    /// option at its default (any positive value explores the same
    /// states), no jitter.
    pub fn policy(&self) -> Policy {
        let defaults = Policy::default();
        let zero_if = |zero: bool, d: Duration| if zero { Duration::ZERO } else { d };
        Policy {
            reinit_driver_count: self.reinit_driver_count,
            reload_rollback: self.reload_rollback,
            reinit_reset_after: zero_if(self.reset_at_once, defaults.reinit_reset_after),
            graceful_shutdown_timeout: zero_if(
                self.drain_deadline_at_once,
                defaults.graceful_shutdown_timeout,
            ),
            reinit_backoff_jitter_ppm: 0,
            ..defaults
        }
    }

    /// The cap on attempt numbers when the budget is unlimited, `None`
    /// when the budget itself bounds them.
    pub fn attempt_cap(&self) -> Option<u32> {
        (self.reinit_driver_count == 0).then_some(UNLIMITED_ATTEMPTS_CAP)
    }
}

impl fmt::Display for CheckedPolicy {
    /// `reinit_driver_count 3, reload_rollback on, timeouts positive`: an
    /// unlimited budget says which bound the checker used, a zero duration
    /// says so.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.attempt_cap() {
            Some(cap) => write!(
                f,
                "reinit_driver_count 0 (unlimited: attempts counted up to {cap})"
            )?,
            None => write!(f, "reinit_driver_count {}", self.reinit_driver_count)?,
        }
        let rollback = if self.reload_rollback { "on" } else { "off" };
        write!(f, ", reload_rollback {rollback}")?;
        match (self.reset_at_once, self.drain_deadline_at_once) {
            (false, false) => write!(f, ", timeouts positive"),
            (true, false) => write!(f, ", reinit_reset_after 0, other timeouts positive"),
            (false, true) => write!(f, ", graceful_shutdown_timeout 0, other timeouts positive"),
            (true, true) => write!(
                f,
                ", reinit_reset_after 0, graceful_shutdown_timeout 0, other timeouts positive"
            ),
        }
    }
}

/// The values `policy` gives the options the checker abstracts, as a
/// config file writes them (`2m`, `0.1`), in [`ABSTRACTED_OPTIONS`] order.
pub fn abstracted_values(policy: &Policy) -> [(&'static str, String); 6] {
    let time = |d: Duration| {
        if d.is_zero() {
            "0".to_string()
        } else {
            humantime::format_duration(d).to_string()
        }
    };
    let jitter =
        f64::from(policy.reinit_backoff_jitter_ppm) / f64::from(crate::lifecycle::JITTER_PPM_ONE);
    [
        (ABSTRACTED_OPTIONS[0], time(policy.driver_init_timeout)),
        (
            ABSTRACTED_OPTIONS[1],
            time(policy.graceful_shutdown_timeout),
        ),
        (ABSTRACTED_OPTIONS[2], time(policy.reinit_backoff_base)),
        (ABSTRACTED_OPTIONS[3], time(policy.reinit_backoff_max)),
        (ABSTRACTED_OPTIONS[4], jitter.to_string()),
        (ABSTRACTED_OPTIONS[5], time(policy.reinit_reset_after)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{CheckOptions, CheckReport, check};

    fn explore(policy: Policy, inflight: u32) -> CheckReport {
        check(&CheckOptions {
            policy: Some(policy),
            max_inflight: inflight,
            ..CheckOptions::default()
        })
    }

    fn checked(budget: u32, rollback: bool) -> CheckedPolicy {
        CheckedPolicy {
            reinit_driver_count: budget,
            reload_rollback: rollback,
            reset_at_once: false,
            drain_deadline_at_once: false,
        }
    }

    #[test]
    fn positive_durations_explore_the_same_states_as_the_representative() {
        for budget in [1, 3] {
            for rollback in [true, false] {
                let checked = checked(budget, rollback);
                let expected = explore(checked.policy(), 2);
                assert!(expected.violation.is_none() && !expected.truncated);
                let written = Policy {
                    driver_init_timeout: Duration::from_millis(1),
                    graceful_shutdown_timeout: Duration::from_secs(3600),
                    reinit_backoff_base: Duration::from_secs(7),
                    reinit_backoff_max: Duration::from_secs(7),
                    reinit_reset_after: Duration::from_millis(5),
                    reinit_backoff_jitter_ppm: 500_000,
                    ..checked.policy()
                };
                assert_eq!(CheckedPolicy::of(&written), checked);
                let report = explore(written, 2);
                assert_eq!(
                    (report.states, report.transitions, report.depth),
                    (expected.states, expected.transitions, expected.depth),
                    "{checked}"
                );
                assert!(report.violation.is_none() && !report.truncated);
            }
        }
    }

    #[test]
    fn a_zero_reset_after_is_another_model_and_is_checked_as_written() {
        let positive = checked(1, true);
        let zero = CheckedPolicy {
            reset_at_once: true,
            ..positive
        };
        assert_eq!(zero.policy().reinit_reset_after, Duration::ZERO);
        assert_eq!(CheckedPolicy::of(&zero.policy()), zero);
        let (a, b) = (explore(positive.policy(), 2), explore(zero.policy(), 2));
        assert!(a.violation.is_none() && b.violation.is_none());
        assert_ne!(a.states, b.states);
    }

    #[test]
    fn an_unlimited_budget_is_finite_and_differs_from_every_bounded_one() {
        let unlimited = explore(checked(0, true).policy(), 1);
        assert!(!unlimited.truncated, "{}", unlimited.render());
        assert!(unlimited.violation.is_none(), "{}", unlimited.render());
        for budget in 1..=3 {
            let bounded = explore(checked(budget, true).policy(), 1);
            assert_ne!(bounded.states, unlimited.states, "budget {budget}");
        }
    }

    #[test]
    fn the_abstraction_names_the_bound_it_used_and_zero_durations() {
        assert_eq!(
            checked(0, false).to_string(),
            "reinit_driver_count 0 (unlimited: attempts counted up to 2), reload_rollback off, timeouts positive"
        );
        let written = Policy {
            graceful_shutdown_timeout: Duration::ZERO,
            ..Policy::default()
        };
        assert_eq!(
            CheckedPolicy::of(&written).to_string(),
            "reinit_driver_count 3, reload_rollback on, graceful_shutdown_timeout 0, other timeouts positive"
        );
        assert_eq!(
            abstracted_values(&written),
            [
                ("driver_init_timeout", "2m".to_string()),
                ("graceful_shutdown_timeout", "0".to_string()),
                ("reinit_backoff_base", "1s".to_string()),
                ("reinit_backoff_max", "5m".to_string()),
                ("reinit_backoff_jitter", "0".to_string()),
                ("reinit_reset_after", "10m".to_string()),
            ]
        );
    }
}
