//! Driver option declarations: what each driver reads (name, value rule, default,
//! whether it may change on reload, help), the problems found in a backend's options, and typed reading.
//!
//! A driver declares its options once (a `const` slice of [`OptionDecl`] next
//! to its `from_context`), registers them with its factory
//! ([`DriverRegistry::register`](super::DriverRegistry::register)), and reads
//! its values through an [`OptionReader`] over the same slice: the registry's
//! check, the docs test and the driver's own parsing cannot disagree.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use thiserror::Error;

use super::DriverSpec;
use super::registry::Kind;
use crate::lifecycle::{DriverError, parse_duration};

/// What values an option accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Any non-empty text (a path, a program name).
    Text,
    /// `true` or `false` (also `yes`/`no`, `on`/`off`, `1`/`0`, any case).
    Bool,
    /// A whole number in `min..=max`.
    Whole {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// A duration: plain seconds (`90`) or humantime (`90s`, `2m`), at most
    /// ten years; with `nonzero`, greater than zero.
    Duration {
        /// Zero is refused.
        nonzero: bool,
    },
    /// Exactly one of these words.
    OneOf(&'static [&'static str]),
    /// A size in bytes (`4096`, `64M`, `1G`), at least `min` bytes.
    Size {
        /// Smallest accepted size in bytes.
        min: u64,
    },
    /// An IPv4 or IPv6 address.
    IpAddr,
    /// A TCP port range `FIRST-LAST` with `1 <= FIRST <= LAST <= 65535`.
    PortRange,
    /// Periods after the service started, `START..END` (durations as in
    /// [`Rule::Duration`]), comma-separated, each ending after it starts,
    /// in order and not overlapping (`10m..25m, 2h..2h 30m`).
    Periods,
}

/// A parsed option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// [`Rule::Text`].
    Text(String),
    /// [`Rule::Bool`].
    Bool(bool),
    /// [`Rule::Whole`] and [`Rule::Size`] (bytes).
    Whole(u64),
    /// [`Rule::Duration`].
    Duration(Duration),
    /// [`Rule::OneOf`]: the declared word.
    Word(&'static str),
    /// [`Rule::IpAddr`].
    Ip(IpAddr),
    /// [`Rule::PortRange`].
    Ports(RangeInclusive<u16>),
    /// [`Rule::Periods`]: `(start, end)` offsets from the service's start.
    Periods(Vec<(Duration, Duration)>),
}

impl Rule {
    /// The rule in an operator's words, after "expected" (`one of qcow2, raw`).
    pub fn describe(&self) -> String {
        match self {
            Rule::Text => "a non-empty text".to_string(),
            Rule::Bool => "true or false (also yes/no, on/off, 1/0)".to_string(),
            Rule::Whole { min, max } if *max == u64::MAX => format!("a whole number >= {min}"),
            Rule::Whole { min, max } => format!("a whole number from {min} to {max}"),
            Rule::Duration { nonzero } => format!(
                "seconds (`90`) or a duration (`90s`, `2m`) of at most 10 years{}",
                if *nonzero { ", greater than zero" } else { "" }
            ),
            Rule::OneOf(words) => format!("one of {}", words.join(", ")),
            Rule::Size { min } => {
                format!("a size in bytes (`4096`, `64M`, `1G`) of at least {min} bytes")
            }
            Rule::IpAddr => "an IP address (`127.0.0.1`, `::1`)".to_string(),
            Rule::PortRange => "a port range FIRST-LAST within 1-65535 (`10809-10908`)".to_string(),
            Rule::Periods => "periods START..END after the service started, comma-separated, \
                each ending after it starts, in order, not overlapping (`10m..25m, 2h..3h`)"
                .to_string(),
        }
    }

    /// Parses `value` (trimmed); the error is [`Rule::describe`].
    pub fn parse(&self, value: &str) -> Result<Value, String> {
        let value = value.trim();
        let parsed = match self {
            Rule::Text => Some(Value::Text(value.to_string())).filter(|_| !value.is_empty()),
            Rule::Bool => match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(Value::Bool(true)),
                "false" | "no" | "off" | "0" => Some(Value::Bool(false)),
                _ => None,
            },
            Rule::Whole { min, max } => value
                .parse::<u64>()
                .ok()
                .filter(|n| (*min..=*max).contains(n))
                .map(Value::Whole),
            Rule::Duration { nonzero } => parse_duration("", value)
                .ok()
                .filter(|d| !(*nonzero && d.is_zero()))
                .map(Value::Duration),
            Rule::OneOf(words) => words.iter().find(|w| **w == value).map(|w| Value::Word(w)),
            Rule::Size { min } => parse_size(value).filter(|s| s >= min).map(Value::Whole),
            Rule::IpAddr => value.parse().ok().map(Value::Ip),
            Rule::PortRange => value
                .split_once('-')
                .and_then(|(a, b)| {
                    Some(a.trim().parse::<u16>().ok()?..=b.trim().parse::<u16>().ok()?)
                })
                .filter(|r| r.start() <= r.end() && *r.start() > 0)
                .map(Value::Ports),
            Rule::Periods => parse_periods(value).map(Value::Periods),
        };
        parsed.ok_or_else(|| self.describe())
    }
}

/// [`Rule::Periods`]: `None` unless every period parses, ends after it
/// starts and starts at or after the previous one's end.
fn parse_periods(value: &str) -> Option<Vec<(Duration, Duration)>> {
    let mut periods: Vec<(Duration, Duration)> = Vec::new();
    for period in value.split(',') {
        let (start, end) = period.split_once("..")?;
        let start = parse_duration("", start).ok()?;
        let end = parse_duration("", end).ok()?;
        let after_previous = periods.last().is_none_or(|(_, last)| *last <= start);
        if end <= start || !after_previous {
            return None;
        }
        periods.push((start, end));
    }
    Some(periods)
}

/// The value an option has when the file does not set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionDefault {
    /// The file must set it.
    Required,
    /// Unset means "off" (the driver does without it).
    Unset,
    /// This value (parsed by the option's rule).
    Value(&'static str),
}

/// One option a driver reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionDecl {
    /// The name the driver reads (for the backup driver, `fault_*` options
    /// are written `backup_fault_*` in `[DEFAULT]`).
    pub name: &'static str,
    /// What values it accepts.
    pub rule: Rule,
    /// Its value when unset.
    pub default: OptionDefault,
    /// Whether a reload may change it; if not, changing it needs a restart
    /// and a reload that changes it is rejected.
    pub reloadable: bool,
    /// One line for operators (docs, `config check`).
    pub help: &'static str,
}

impl OptionDecl {
    /// A reloadable option.
    pub const fn new(
        name: &'static str,
        rule: Rule,
        default: OptionDefault,
        help: &'static str,
    ) -> Self {
        OptionDecl {
            name,
            rule,
            default,
            reloadable: true,
            help,
        }
    }

    /// The same option, but changing it needs a restart.
    pub const fn restart_only(self) -> Self {
        OptionDecl {
            reloadable: false,
            ..self
        }
    }

    /// The default in an operator's words, for docs: the value, `(required)`
    /// or `(unset)`.
    pub fn default_text(&self) -> String {
        match self.default {
            OptionDefault::Required => "(required)".to_string(),
            OptionDefault::Unset => "(unset)".to_string(),
            OptionDefault::Value(v) => v.to_string(),
        }
    }
}

/// Where a spec's options were written, for messages that point into the
/// file. Ignored when specs are compared (a reload that only moves an option
/// between sections changes nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecOrigin {
    /// The config file (`cinder.conf` path or a label).
    pub file: String,
    /// The section the backend is configured in (`DEFAULT` for the backup
    /// service).
    pub section: String,
    /// The option naming the driver (`volume_driver`, `backup_driver`).
    pub driver_option: String,
    /// Options written in another section or under another name: option ->
    /// (section, name as written).
    pub written: BTreeMap<String, (String, String)>,
    /// Options not in `written` are written with this prefix unless they
    /// already start with it (`backup_` for the backup service: its
    /// `fault_*` options are written `backup_fault_*`).
    pub prefix: String,
}

/// Where a problem is: file, section and option as the operator wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file, if the spec came from one.
    pub file: Option<String>,
    /// The section.
    pub section: String,
    /// The option as written.
    pub option: String,
    /// The backend section that inherits it, if it was written elsewhere
    /// (`[backend_defaults]`).
    pub inherited_by: Option<String>,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        write!(f, "[{}] {}", self.section, self.option)?;
        if let Some(backend) = &self.inherited_by {
            write!(f, " (inherited by [{backend}])")?;
        }
        Ok(())
    }
}

impl Place {
    /// Where option `key` of `spec` was written.
    pub fn of(spec: &DriverSpec, key: &str) -> Place {
        match spec.origin.as_deref() {
            None => Place {
                file: None,
                section: spec.backend.clone(),
                option: key.to_string(),
                inherited_by: None,
            },
            Some(origin) => {
                let (section, option) = origin
                    .written
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| (origin.section.clone(), written_name(origin, key)));
                Place {
                    file: Some(origin.file.clone()),
                    inherited_by: (section != origin.section).then(|| origin.section.clone()),
                    section,
                    option,
                }
            }
        }
    }

    /// Where `spec` names its driver.
    pub fn of_driver(spec: &DriverSpec) -> Place {
        match spec.origin.as_deref() {
            Some(origin) if !origin.driver_option.is_empty() => {
                Place::of(spec, &origin.driver_option)
            }
            _ => Place {
                option: match spec.kind {
                    Kind::Volume => "volume_driver",
                    Kind::Backup => "backup_driver",
                }
                .to_string(),
                ..Place::of(spec, "")
            },
        }
    }
}

/// How `key` is written in the file, by the origin's prefix rule.
pub fn written_name(origin: &SpecOrigin, key: &str) -> String {
    if origin.prefix.is_empty() || key.starts_with(&origin.prefix) {
        key.to_string()
    } else {
        format!("{}{key}", origin.prefix)
    }
}

/// One problem of a backend's driver options, in an operator's words: every
/// variant names file (when known), section, option, value and rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecProblem {
    /// No driver of that name is registered (class `NotSupported`).
    #[error("{at}: \"{driver}\": no {kind} driver of that name (known: {known})")]
    UnknownDriver {
        /// Where the driver is named.
        at: Place,
        /// `volume` or `backup`.
        kind: &'static str,
        /// The name as written.
        driver: String,
        /// The registered drivers of that kind, comma-separated.
        known: String,
    },
    /// The driver does not read this option.
    #[error("{at}: \"{value}\": not an option of the {driver} {kind} driver{}",
        suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownOption {
        /// The option.
        at: Place,
        /// Its value.
        value: String,
        /// The driver.
        driver: String,
        /// `volume` or `backup`.
        kind: &'static str,
        /// A known option with a near name, as it would be written.
        suggestion: Option<String>,
    },
    /// The value breaks the option's rule.
    #[error("{at}: \"{value}\": expected {rule}")]
    BadValue {
        /// The option.
        at: Place,
        /// The value as written.
        value: String,
        /// The rule, in words.
        rule: String,
    },
    /// A required option is not set.
    #[error("{at}: missing: the {driver} {kind} driver requires it ({help})")]
    Missing {
        /// The option.
        at: Place,
        /// The driver.
        driver: String,
        /// `volume` or `backup`.
        kind: &'static str,
        /// The option's help line.
        help: &'static str,
    },
    /// A reload changes an option declared not changeable on reload.
    #[error(
        "{at}: \"{value}\": cannot change on reload (running with \"{running}\"); restart rekindle to apply it"
    )]
    NotReloadable {
        /// The option.
        at: Place,
        /// The new value (or default).
        value: String,
        /// The running value (or default).
        running: String,
    },
}

impl SpecProblem {
    /// The driver error a backend built from a spec with these problems
    /// fails with: `NotSupported` for an unknown driver, `Config` otherwise
    /// (both fatal); the message lists every problem, `; `-separated.
    pub fn driver_error(problems: &[SpecProblem]) -> DriverError {
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if problems
            .iter()
            .any(|p| matches!(p, SpecProblem::UnknownDriver { .. }))
        {
            DriverError::NotSupported(message.into())
        } else {
            DriverError::Config(message.into())
        }
    }
}

/// The closest of `candidates` to `name`, if near enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (strsim::normalized_damerau_levenshtein(name, c), c))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Converts a parsed [`Value`] to the type a driver keeps.
pub trait FromValue: Sized {
    /// `None` if the value is of another type.
    fn from_value(value: Value) -> Option<Self>;
}

impl FromValue for String {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl FromValue for bool {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
}

impl FromValue for u64 {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Whole(n) => Some(n),
            _ => None,
        }
    }
}

impl FromValue for u32 {
    fn from_value(value: Value) -> Option<Self> {
        u64::from_value(value).and_then(|n| u32::try_from(n).ok())
    }
}

impl FromValue for Duration {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Duration(d) => Some(d),
            _ => None,
        }
    }
}

impl FromValue for &'static str {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Word(w) => Some(w),
            _ => None,
        }
    }
}

impl FromValue for IpAddr {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Ip(ip) => Some(ip),
            _ => None,
        }
    }
}

impl FromValue for Vec<(Duration, Duration)> {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Periods(p) => Some(p),
            _ => None,
        }
    }
}

impl FromValue for RangeInclusive<u16> {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Ports(r) => Some(r),
            _ => None,
        }
    }
}

/// Reads a spec's options through a driver's declarations: a value is parsed
/// by its declared rule, an unset option takes its declared default. Bad
/// values are fatal `Config` errors worded as [`SpecProblem`]s; reading an
/// option the driver did not declare is a bug, reported as `Other`.
pub struct OptionReader<'a> {
    driver: &'a str,
    decls: &'a [OptionDecl],
    spec: &'a DriverSpec,
}

impl<'a> OptionReader<'a> {
    /// A reader of `spec`'s options for the driver `driver` declaring `decls`.
    pub fn new(driver: &'a str, decls: &'a [OptionDecl], spec: &'a DriverSpec) -> Self {
        OptionReader {
            driver,
            decls,
            spec,
        }
    }

    fn value(&self, name: &str) -> Result<(Option<Value>, &OptionDecl), DriverError> {
        let decl = self.decls.iter().find(|d| d.name == name).ok_or_else(|| {
            DriverError::Other(
                format!(
                    "the {} driver reads option `{name}` it does not declare",
                    self.driver
                )
                .into(),
            )
        })?;
        let value = match self.spec.options.get(name) {
            Some(raw) => Some(decl.rule.parse(raw).map_err(|rule| {
                SpecProblem::driver_error(&[SpecProblem::BadValue {
                    at: Place::of(self.spec, name),
                    value: raw.trim().to_string(),
                    rule,
                }])
            })?),
            None => match decl.default {
                OptionDefault::Value(default) => Some(decl.rule.parse(default).map_err(|rule| {
                    DriverError::Other(
                        format!(
                            "the {} driver declares default `{default}` for `{name}`, which is not {rule}",
                            self.driver
                        )
                        .into(),
                    )
                })?),
                OptionDefault::Unset => None,
                OptionDefault::Required => {
                    return Err(SpecProblem::driver_error(&[SpecProblem::Missing {
                        at: Place::of(self.spec, name),
                        driver: self.driver.to_string(),
                        kind: self.spec.kind.as_str(),
                        help: decl.help,
                    }]));
                }
            },
        };
        Ok((value, decl))
    }

    /// The value of `name` (or its default), `None` if unset without one.
    pub fn optional<T: FromValue>(&self, name: &str) -> Result<Option<T>, DriverError> {
        let (value, decl) = self.value(name)?;
        value
            .map(|v| {
                T::from_value(v).ok_or_else(|| {
                    DriverError::Other(
                        format!(
                            "the {} driver reads `{name}` as another type than its rule ({})",
                            self.driver,
                            decl.rule.describe()
                        )
                        .into(),
                    )
                })
            })
            .transpose()
    }

    /// The value of `name` or its default; an option declared without a
    /// default is a bug here (read it with [`OptionReader::optional`]).
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T, DriverError> {
        self.optional(name)?.ok_or_else(|| {
            DriverError::Other(
                format!(
                    "the {} driver reads `{name}` as always set, but it has no default",
                    self.driver
                )
                .into(),
            )
        })
    }
}

/// Parses `64M`, `1G`, `4096` (bytes).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits.parse().ok()?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_what_they_describe() {
        assert_eq!(
            Rule::OneOf(&["qcow2", "raw"]).parse("qcow3"),
            Err("one of qcow2, raw".to_string())
        );
        assert_eq!(Rule::Bool.parse(" Yes "), Ok(Value::Bool(true)));
        assert!(Rule::Whole { min: 0, max: 3 }.parse("4").is_err());
        assert_eq!(
            Rule::Size { min: 4096 }.parse("64M"),
            Ok(Value::Whole(64 << 20))
        );
        assert!(Rule::Size { min: 4096 }.parse("1K").is_err());
        assert!(Rule::Duration { nonzero: true }.parse("0").is_err());
        assert_eq!(
            Rule::Duration { nonzero: false }.parse("2m"),
            Ok(Value::Duration(Duration::from_secs(120)))
        );
        assert_eq!(Rule::PortRange.parse("10-12"), Ok(Value::Ports(10..=12)));
        assert!(Rule::PortRange.parse("0-12").is_err());
        assert_eq!(
            Rule::Periods.parse("10m..25m, 2h..2h 30m"),
            Ok(Value::Periods(vec![
                (Duration::from_secs(600), Duration::from_secs(1500)),
                (Duration::from_secs(7200), Duration::from_secs(9000)),
            ]))
        );
        assert!(
            Rule::Periods.parse("25m..10m").is_err(),
            "ends before it starts"
        );
        assert!(Rule::Periods.parse("10m..10m").is_err(), "empty");
        assert!(Rule::Periods.parse("10m..30m,20m..40m").is_err(), "overlap");
        assert!(
            Rule::Periods.parse("2h..3h,10m..20m").is_err(),
            "out of order"
        );
        assert!(Rule::Periods.parse("10m").is_err());
        assert!(Rule::Periods.parse("").is_err());
        assert!(Rule::Text.parse("  ").is_err());
    }

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        let names = ["volume_format", "volumes_dir", "export_host"];
        assert_eq!(did_you_mean("volume_fromat", names), Some("volume_format"));
        assert_eq!(did_you_mean("volume_dir", names), Some("volumes_dir"));
        assert_eq!(did_you_mean("auth_strategy", names), None);
    }
}
