//! Policy: the retry, backoff, timeout and drain limits one driver's lifecycle obeys.
//! Built from layered config options (global `[DEFAULT]`, then per-backend overrides).

use std::time::Duration;

use thiserror::Error;

/// Jitter is stored in parts per million so a `Policy` stays `Eq + Hash`
/// (the model checker hashes states that embed it).
pub const JITTER_PPM_ONE: u32 = 1_000_000;

/// The limits one driver's lifecycle obeys. Every field is a config option of
/// the same name; see [`Policy::OPTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Policy {
    /// Re-initialization attempts after the first failure; `0` = unlimited.
    pub reinit_driver_count: u32,
    /// Delay before re-initialization attempt 1; attempt k waits `base * 2^(k-1)`.
    pub reinit_backoff_base: Duration,
    /// Upper bound of one backoff delay.
    pub reinit_backoff_max: Duration,
    /// Jitter as a fraction of the delay, in parts per million (0..=1_000_000).
    /// A jittered delay lies in `[delay * (1 - jitter), delay]`.
    pub reinit_backoff_jitter_ppm: u32,
    /// The attempt budget is reset once the driver has been Ready this long.
    pub reinit_reset_after: Duration,
    /// Deadline of one setup attempt (`do_setup` + `check_for_setup_error`).
    pub driver_init_timeout: Duration,
    /// How long a drain (reload or shutdown) may wait for in-flight operations.
    pub graceful_shutdown_timeout: Duration,
    /// Deadline of one operation's driver call (create, delete, extend,
    /// attach, detach, a backup's deletion): past it the call is abandoned,
    /// the operation fails and the backend has lost its health. 60 s, as
    /// oslo.messaging's `rpc_response_timeout`, which bounds Cinder's own
    /// synchronous calls to a volume service.
    pub driver_operation_timeout: Duration,
    /// A backup or restore is judged by its progress, not its total time:
    /// it is abandoned (as a call past `driver_operation_timeout`) once its
    /// driver reports no progress for this long.
    pub backup_progress_timeout: Duration,
    /// A backend that was Ready before a reload and whose new config fails
    /// to set up returns to Ready on its old driver instance and old config
    /// (once the old instance passes `check_for_setup_error`).
    pub reload_rollback: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            reinit_driver_count: 3,
            reinit_backoff_base: Duration::from_secs(1),
            reinit_backoff_max: Duration::from_secs(300),
            reinit_backoff_jitter_ppm: 0,
            reinit_reset_after: Duration::from_secs(600),
            driver_init_timeout: Duration::from_secs(120),
            graceful_shutdown_timeout: Duration::from_secs(60),
            driver_operation_timeout: Duration::from_secs(60),
            backup_progress_timeout: Duration::from_secs(600),
            reload_rollback: true,
        }
    }
}

/// A bad policy option: names the option, the value and the problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("option `{option}`: invalid value `{value}`: {problem}")]
    /// A value that does not parse or is out of range.
    InvalidValue {
        /// The option's name.
        option: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl Policy {
    /// Every option a `Policy` reads, with its default as written in a config file.
    pub const OPTIONS: [(&'static str, &'static str); 10] = [
        ("reinit_driver_count", "3"),
        ("reinit_backoff_base", "1s"),
        ("reinit_backoff_max", "300s"),
        ("reinit_backoff_jitter", "0"),
        ("reinit_reset_after", "10m"),
        ("driver_init_timeout", "120s"),
        ("graceful_shutdown_timeout", "60s"),
        ("driver_operation_timeout", "60s"),
        ("backup_progress_timeout", "10m"),
        ("reload_rollback", "true"),
    ];

    /// True if `option` is one of [`Policy::OPTIONS`].
    pub fn is_option(option: &str) -> bool {
        Self::OPTIONS.iter().any(|(name, _)| *name == option)
    }

    /// Builds a policy from layered options: defaults, then `global`
    /// (`[DEFAULT]`), then `backend` (the backend's own section). Options that
    /// are not policy options are ignored here; the config layer owns them.
    pub fn from_layers<'a, G, B>(global: G, backend: B) -> Result<Policy, PolicyError>
    where
        G: IntoIterator<Item = (&'a str, &'a str)>,
        B: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut policy = Policy::default();
        for (option, value) in global.into_iter().chain(backend) {
            policy.set(option, value)?;
        }
        policy.validate()?;
        Ok(policy)
    }

    /// Sets one option from its config-file text. Unknown options are ignored
    /// (returns `Ok(false)`); known ones return `Ok(true)`.
    pub fn set(&mut self, option: &str, value: &str) -> Result<bool, PolicyError> {
        let value = value.trim();
        match option {
            "reinit_driver_count" => {
                self.reinit_driver_count = value.parse().map_err(|_| {
                    invalid(
                        option,
                        value,
                        "expected a whole number >= 0 (0 = unlimited)",
                    )
                })?;
            }
            "reinit_backoff_base" => self.reinit_backoff_base = parse_duration(option, value)?,
            "reinit_backoff_max" => self.reinit_backoff_max = parse_duration(option, value)?,
            "reinit_backoff_jitter" => {
                self.reinit_backoff_jitter_ppm = parse_fraction(option, value)?
            }
            "reinit_reset_after" => self.reinit_reset_after = parse_duration(option, value)?,
            "driver_init_timeout" => self.driver_init_timeout = parse_duration(option, value)?,
            "graceful_shutdown_timeout" => {
                self.graceful_shutdown_timeout = parse_duration(option, value)?
            }
            "driver_operation_timeout" => {
                self.driver_operation_timeout = parse_duration(option, value)?
            }
            "backup_progress_timeout" => {
                self.backup_progress_timeout = parse_duration(option, value)?
            }
            "reload_rollback" => self.reload_rollback = parse_bool(option, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks relations between options that no single value shows.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.reinit_backoff_base.is_zero() {
            return Err(invalid(
                "reinit_backoff_base",
                "0",
                "must be greater than zero",
            ));
        }
        if self.reinit_backoff_max < self.reinit_backoff_base {
            return Err(invalid(
                "reinit_backoff_max",
                &humantime::format_duration(self.reinit_backoff_max).to_string(),
                &format!(
                    "must not be smaller than reinit_backoff_base ({}); set reinit_backoff_max at least that high (its default is 300s)",
                    humantime::format_duration(self.reinit_backoff_base)
                ),
            ));
        }
        for (option, value) in [
            ("driver_init_timeout", self.driver_init_timeout),
            ("driver_operation_timeout", self.driver_operation_timeout),
            ("backup_progress_timeout", self.backup_progress_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(option, "0", "must be greater than zero"));
            }
        }
        Ok(())
    }

    /// True if a driver that failed re-initialization attempt `attempt`
    /// (0 = the first setup) may try attempt `attempt + 1`.
    pub fn may_retry_after(&self, attempt: u32) -> bool {
        self.reinit_driver_count == 0 || attempt < self.reinit_driver_count
    }

    /// The un-jittered delay before re-initialization attempt `attempt` (>= 1):
    /// `base * 2^(attempt-1)`, capped at `reinit_backoff_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1);
        let factor = 1u32.checked_shl(exponent).filter(|f| *f != 0);
        factor
            .and_then(|f| self.reinit_backoff_base.checked_mul(f))
            .map_or(self.reinit_backoff_max, |d| d.min(self.reinit_backoff_max))
    }

    /// The delay before attempt `attempt`, with jitter drawn from `jitter`.
    /// The generator is consulted only when jitter is configured, so runs
    /// without jitter do not depend on it.
    pub fn backoff_with_jitter(&self, attempt: u32, jitter: &mut super::Jitter) -> Duration {
        let delay = self.backoff(attempt);
        if self.reinit_backoff_jitter_ppm == 0 {
            return delay;
        }
        let cut_ppm = jitter.below(u64::from(self.reinit_backoff_jitter_ppm) + 1);
        let nanos = delay.as_nanos();
        let cut = nanos * u128::from(cut_ppm) / u128::from(JITTER_PPM_ONE);
        Duration::from_nanos(u64::try_from(nanos - cut).unwrap_or(u64::MAX))
    }
}

fn invalid(option: &str, value: &str, problem: &str) -> PolicyError {
    PolicyError::InvalidValue {
        option: option.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
    }
}

/// Parses a duration as Cinder does (plain seconds, `90`) or as humantime
/// (`90s`, `2m`, `1h 30m`).
///
/// Durations longer than [`MAX_DURATION`] (ten years) are refused: no
/// interval or timeout of a volume service is meant to be longer, and a
/// bound keeps every deadline computed from one far from overflowing.
pub fn parse_duration(option: &str, value: &str) -> Result<Duration, PolicyError> {
    let value = value.trim();
    let duration = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(value).map_err(|_| {
            invalid(
                option,
                value,
                "expected whole seconds (`90`) or a duration such as `90s`, `2m` or `1h 30m`",
            )
        })?,
    };
    if duration > MAX_DURATION {
        return Err(invalid(
            option,
            value,
            "longer than the longest duration accepted (10 years)",
        ));
    }
    Ok(duration)
}

/// The longest duration any option accepts: ten years (of 365 days).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Parses a boolean as oslo.config does (`true`/`false`, `yes`/`no`,
/// `on`/`off`, `1`/`0`, any case).
fn parse_bool(option: &str, value: &str) -> Result<bool, PolicyError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(invalid(
            option,
            value,
            "expected true or false (also yes/no, on/off, 1/0)",
        )),
    }
}

fn parse_fraction(option: &str, value: &str) -> Result<u32, PolicyError> {
    let fraction: f64 = value
        .parse()
        .map_err(|_| invalid(option, value, "expected a fraction between 0 and 1"))?;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(invalid(
            option,
            value,
            "expected a fraction between 0 and 1",
        ));
    }
    // In range [0, 1], so the product fits u32 exactly after rounding.
    Ok((fraction * f64::from(JITTER_PPM_ONE)).round() as u32)
}
