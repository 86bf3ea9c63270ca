//! Config: reads a cinder.conf-style INI file into a validated `Config` (service
//! options, one section per backend, the backup driver), turns it into a `Plan`, and checks a file whole (`rekindle config check`).
//!
//! Inheritance follows oslo.config as Cinder uses it: lifecycle options set in
//! `[DEFAULT]` apply to every backend unless its section overrides them, and a
//! `[backend_defaults]` section holds driver options every backend inherits.

mod sections;

use sections::Sections;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ini::{Ini, ParseOption};
use thiserror::Error;

use crate::driver::options::{SpecOrigin, SpecProblem, did_you_mean};
use crate::driver::{DriverRegistry, DriverSpec, Kind};
use crate::lifecycle::{Policy, PolicyError, parse_duration};
use crate::plan::{BackendPlan, Plan};

/// The name of the backup backend in plans, statuses and notifications.
pub const BACKUP_BACKEND: &str = "backup";

/// Service options read from `[DEFAULT]`, with their defaults.
pub const SERVICE_OPTIONS: [(&str, &str); 13] = [
    ("enabled_backends", ""),
    ("host", "this machine's hostname"),
    ("periodic_interval", "60s"),
    ("report_interval", "10s"),
    ("service_down_time", "60s"),
    ("backup_driver", "none"),
    ("backup_periodic_initialization", "false"),
    ("backup_initialization_timeout", "service_down_time"),
    ("state_dir", "none"),
    ("cluster", "none"),
    ("graceful_shutdown_timeout", "60s"),
    ("http_listen", "none"),
    (
        "reinit_backoff_jitter_seed",
        "random per process, host and backend",
    ),
];

/// Why a config was refused: names the file, and the section, option and
/// problem where they apply.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid INI: a line is neither blank, a comment, a
    /// `[section]` header nor an `option = value` line.
    #[error("{file}:{line}: {problem}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What was expected and what was found, in words.
        problem: String,
    },
    /// A value is missing or wrong.
    #[error("{file}: [{section}] {option}: {problem}")]
    Invalid {
        /// The file.
        file: String,
        /// The section.
        section: String,
        /// The option.
        option: String,
        /// What is wrong.
        problem: String,
    },
    /// A backend's driver options break its driver's declaration (found by
    /// [`check`] and on reload; at start-up, the backend fails instead).
    #[error(transparent)]
    Driver(Box<SpecProblem>),
}

/// One volume backend's section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// The section name.
    pub name: String,
    /// `volume_driver`.
    pub volume_driver: String,
    /// `volume_backend_name` (default: the section name).
    pub volume_backend_name: String,
    /// Driver options (the section's own, over `[backend_defaults]`).
    pub options: BTreeMap<String, String>,
    /// The backend's lifecycle policy (`[DEFAULT]`, then its section).
    pub policy: Policy,
    /// Where its driver options were written.
    pub origin: Arc<SpecOrigin>,
}

/// The backup service's driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// `backup_driver`.
    pub driver: String,
    /// `backup_periodic_initialization`.
    pub periodic_initialization: bool,
    /// Driver options: `[DEFAULT]` options starting with `backup_`
    /// (`backup_fault_*` are passed to the driver as `fault_*`).
    pub options: BTreeMap<String, String>,
    /// Its policy.
    pub policy: Policy,
    /// Where its driver options were written (`[DEFAULT]`, `backup_*`).
    pub origin: Arc<SpecOrigin>,
}

/// A validated config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where it came from (file path or a label).
    pub origin: String,
    /// `host`.
    pub host: String,
    /// `periodic_interval`.
    pub periodic_interval: Duration,
    /// `report_interval`.
    pub report_interval: Duration,
    /// `service_down_time` (raised to 2.5 x `report_interval` when not larger
    /// than it, as Cinder does).
    pub service_down_time: Duration,
    /// `service_down_time` as the file set it, when it was raised (see
    /// [`Config::service_down_time`]); the daemon logs the change once.
    pub service_down_time_raised_from: Option<Duration>,
    /// `reinit_backoff_jitter_seed`: a fixed seed for the backoff jitter
    /// (reproducible runs); `None` draws one from OS entropy at start-up.
    pub jitter_seed: Option<u64>,
    /// `graceful_shutdown_timeout` of the service shutdown.
    pub graceful_shutdown_timeout: Duration,
    /// `backup_initialization_timeout`.
    pub backup_initialization_timeout: Duration,
    /// `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// `cluster`: the Active/Active cluster this host serves its backends
    /// in (needs `[database] connection`).
    pub cluster: Option<String>,
    /// `[database] connection` (Cinder's option and URL form,
    /// `postgresql://user@host:port/db` or `mysql+pymysql://user@host/db`):
    /// records in PostgreSQL or MariaDB, shared by the fleet; `None` = the
    /// embedded SQLite under `state_dir`.
    pub database: Option<String>,
    /// `http_listen`: where `rekindle run` serves `/metrics`, `/healthz`
    /// and `/readyz` (`None`: it does not).
    pub http_listen: Option<std::net::SocketAddr>,
    /// Volume backends, in `enabled_backends` order.
    pub backends: Vec<BackendConfig>,
    /// The backup driver, if `backup_driver` is set.
    pub backup: Option<BackupConfig>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl Config {
    /// Reads and validates the file at `path`; the error is its first
    /// problem (see [`Config::load_all`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_all(path).map_err(first)
    }

    /// Reads and validates the file at `path`; the error lists every
    /// structural problem found (driver options are checked separately, by
    /// [`check`] or the registry).
    pub fn load_all(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = read(path).map_err(|e| vec![e])?;
        Config::parse_all(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` names it in errors. The error
    /// is the first problem (see [`Config::parse_all`]).
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::parse_all(text, origin).map_err(first)
    }

    /// Parses and validates `text`; the error lists every structural
    /// problem, in file order where it has one.
    pub fn parse_all(text: &str, origin: &str) -> Result<Config, Vec<ConfigError>> {
        let (config, problems) = Config::read_partial(text, origin);
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(problems),
        }
    }

    /// Parses what it can of `text`: every problem, and the config with
    /// defaults in place of bad values and without backends that cannot be
    /// read (`None` if nothing can run), for [`check`] to look further.
    fn read_partial(text: &str, origin: &str) -> (Option<Config>, Vec<ConfigError>) {
        let (text, mut problems) = syntax(text, origin);
        let options = ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            ..ParseOption::default()
        };
        let ini = match Ini::load_from_str_opt(&text, options) {
            Ok(ini) => ini,
            Err(e) => {
                problems.push(ConfigError::Parse {
                    file: origin.to_string(),
                    line: e.line + 1,
                    problem: e.msg.to_string(),
                });
                return (None, problems);
            }
        };
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (name, properties) in ini.iter() {
            let Some(name) = name else {
                if let Some((key, _)) = properties.iter().next() {
                    problems.push(ConfigError::Invalid {
                        file: origin.to_string(),
                        section: "(none)".to_string(),
                        option: key.to_string(),
                        problem: "options must come after a section header such as [DEFAULT]"
                            .to_string(),
                    });
                }
                continue;
            };
            let section = sections.entry(name.to_string()).or_default();
            for (key, value) in properties.iter() {
                // A repeated option: the last value wins, as in oslo.config.
                section.insert(key.trim().to_string(), value.trim().to_string());
            }
        }
        let s = Sections {
            file: origin.to_string(),
            sections,
        };
        let config = Config::validate(&s, &mut problems);
        (config, distinct(problems))
    }

    fn validate(s: &Sections, problems: &mut Vec<ConfigError>) -> Option<Config> {
        let (enabled, listed) = s.enabled_backends(problems);
        let report_interval = take(
            problems,
            s.duration("report_interval", Duration::from_secs(10)),
            Duration::from_secs(10),
        );
        let mut service_down_time = take(
            problems,
            s.duration("service_down_time", Duration::from_secs(60)),
            Duration::from_secs(60),
        );
        let mut service_down_time_raised_from = None;
        if service_down_time <= report_interval {
            // Cinder's rule: a heartbeat must be able to miss once.
            service_down_time_raised_from = Some(service_down_time);
            service_down_time = report_interval.saturating_mul(5) / 2;
        }
        let jitter_seed = s.jitter_seed(problems);
        let periodic_interval = take(
            problems,
            s.duration("periodic_interval", Duration::from_secs(60)),
            Duration::from_secs(60),
        );
        s.check_defaults(periodic_interval, report_interval, problems);
        let default_policy = s.policy("DEFAULT", problems).unwrap_or_default();
        let backend_defaults = s
            .sections
            .get("backend_defaults")
            .cloned()
            .unwrap_or_default();
        for option in backend_defaults.keys().filter(|k| Policy::is_option(k)) {
            problems.push(s.invalid(
                "backend_defaults",
                option,
                "a lifecycle option is not read here: put it in [DEFAULT] (every backend) or in a backend's own section",
            ));
        }
        let backends: Vec<BackendConfig> = enabled
            .iter()
            .filter_map(|name| s.backend(name, &backend_defaults, default_policy, problems))
            .collect();
        let backup = s.backup(default_policy, periodic_interval, problems);
        let backup_initialization_timeout = take(
            problems,
            s.duration("backup_initialization_timeout", service_down_time),
            service_down_time,
        );
        if backends.is_empty() && backup.is_none() {
            if !listed {
                problems.push(s.invalid(
                    "DEFAULT",
                    "enabled_backends",
                    "no backend enabled and no backup_driver: nothing to run",
                ));
            }
            return None;
        }
        let (database, cluster) = s.fleet(problems);
        let http_listen = s.http_listen(problems);
        Some(Config {
            origin: s.file.clone(),
            host: s
                .get("DEFAULT", "host")
                .filter(|h| !h.trim().is_empty())
                .map_or_else(hostname, str::to_string),
            periodic_interval,
            report_interval,
            service_down_time,
            service_down_time_raised_from,
            jitter_seed,
            graceful_shutdown_timeout: default_policy.graceful_shutdown_timeout,
            backup_initialization_timeout,
            state_dir: s.get("DEFAULT", "state_dir").map(PathBuf::from),
            cluster,
            database,
            http_listen,
            backends,
            backup,
        })
    }

    /// The plan the service runs for this config.
    pub fn plan(&self) -> Plan {
        let mut backends = BTreeMap::new();
        for b in &self.backends {
            let mut options = b.options.clone();
            options.insert(
                "volume_backend_name".to_string(),
                b.volume_backend_name.clone(),
            );
            let spec = DriverSpec {
                backend: b.name.clone(),
                kind: Kind::Volume,
                driver: b.volume_driver.clone(),
                options,
                origin: Some(b.origin.clone()),
            };
            backends.insert(
                b.name.clone(),
                BackendPlan {
                    spec,
                    policy: b.policy,
                },
            );
        }
        if let Some(backup) = &self.backup {
            let spec = DriverSpec {
                backend: BACKUP_BACKEND.to_string(),
                kind: Kind::Backup,
                driver: backup.driver.clone(),
                options: backup.options.clone(),
                origin: Some(backup.origin.clone()),
            };
            backends.insert(
                BACKUP_BACKEND.to_string(),
                BackendPlan {
                    spec,
                    policy: backup.policy,
                },
            );
        }
        Plan {
            host: self.host.clone(),
            periodic_interval: self.periodic_interval,
            report_interval: self.report_interval,
            service_down_time: self.service_down_time,
            backup_initialization_timeout: self.backup_initialization_timeout,
            graceful_shutdown_timeout: self.graceful_shutdown_timeout,
            jitter_seed: self.jitter_seed,
            backends,
        }
    }
}

/// `r`'s value, or `default` with its error kept in `problems`.
fn take<T>(problems: &mut Vec<ConfigError>, r: Result<T, ConfigError>, default: T) -> T {
    r.unwrap_or_else(|e| {
        problems.push(e);
        default
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn first(mut problems: Vec<ConfigError>) -> ConfigError {
    // parse_all never fails without a problem; keep a message if it did.
    if problems.is_empty() {
        return ConfigError::Parse {
            file: String::new(),
            line: 0,
            problem: "invalid config".to_string(),
        };
    }
    problems.swap_remove(0)
}

/// Finds the lines that are neither blank, a comment, a `[section]` header
/// nor `option = value` (or `option: value`), one problem each in words, and
/// returns the text with those lines and comments blanked (line numbers
/// kept) for the INI parser: rust-ini would read an indented `# ...` as an
/// option, and words its own errors as `expecting "[Some('='), ...]"`.
fn syntax(text: &str, origin: &str) -> (String, Vec<ConfigError>) {
    let mut problems = Vec::new();
    let mut kept = Vec::new();
    // A byte-order mark some editors write is not part of the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        let problem = if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            kept.push("");
            continue;
        } else if let Some(header) = t.strip_prefix('[') {
            match header.strip_suffix(']') {
                None => Some(format!(
                    "expected a section header closed by `]`, found \"{t}\""
                )),
                Some(name) if name.trim().is_empty() || name.contains(['[', ']']) => Some(format!(
                    "expected a section name between `[` and `]`, found \"{t}\""
                )),
                Some(_) => None,
            }
        } else {
            match t.find(['=', ':']) {
                None => Some(format!(
                    "expected `option = value` or a `[section]` header, found \"{t}\""
                )),
                Some(0) => Some(format!(
                    "expected an option name before `{}`, found \"{t}\"",
                    &t[..1]
                )),
                Some(_) => None,
            }
        };
        match problem {
            Some(problem) => {
                problems.push(ConfigError::Parse {
                    file: origin.to_string(),
                    line: i + 1,
                    problem,
                });
                kept.push("");
            }
            None => kept.push(line),
        }
    }
    (kept.join("\n"), problems)
}

/// Checks the config file `text` whole, offline, as `rekindle config check`
/// does: every structural problem, then every backend's driver options
/// against `registry`'s declarations (unknown driver, unknown option with a
/// "did you mean", bad value, missing required option). Empty if valid.
pub fn check(text: &str, origin: &str, registry: &DriverRegistry) -> Vec<ConfigError> {
    let (config, mut problems) = Config::read_partial(text, origin);
    if let Some(config) = config {
        for backend in config.plan().backends.values() {
            problems.extend(
                registry
                    .check(&backend.spec)
                    .into_iter()
                    .map(|problem| ConfigError::Driver(Box::new(problem))),
            );
        }
    }
    distinct(problems)
}

/// `problems` without repeats, in order: a bad `[DEFAULT]` value is found
/// once per section that inherits it, and said once.
fn distinct(problems: Vec<ConfigError>) -> Vec<ConfigError> {
    let mut seen = BTreeSet::new();
    problems
        .into_iter()
        .filter(|p| seen.insert(p.to_string()))
        .collect()
}

/// [`check`] of the file at `path`.
pub fn check_file(path: &Path, registry: &DriverRegistry) -> Vec<ConfigError> {
    match read(path) {
        Ok(text) => check(&text, &path.display().to_string(), registry),
        Err(e) => vec![e],
    }
}

/// The config shipped in `examples/cinder.conf`, used when no file is given.
pub const EMBEDDED_CONFIG: &str = include_str!("../../examples/cinder.conf");

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file, re-read on every reload.
    File(PathBuf),
    /// The embedded default (reload re-reads the same text).
    Embedded,
}

/// Loads and validates the config `source` names. The error lists every
/// structural problem of the file, one a line. Driver options are not
/// checked here: at start-up an invalid backend fails on its own (the others
/// start), and a reload checks them whole in the controller.
pub fn load_config(source: &ConfigSource) -> Result<crate::config::Config, String> {
    match source {
        ConfigSource::File(path) => Config::load_all(path),
        ConfigSource::Embedded => Config::parse_all(EMBEDDED_CONFIG, "embedded cinder.conf"),
    }
    .map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Loads `source` as a plan (see [`load_config`]).
pub fn load_plan(source: &ConfigSource) -> Result<Plan, String> {
    load_config(source).map(|c| c.plan())
}

/// The `state_dir` of `source`, if it sets one.
pub fn state_dir(source: &ConfigSource) -> Result<Option<PathBuf>, String> {
    load_config(source).map(|c| c.state_dir)
}

/// `[database] connection`, checked as far as it can be without a
/// connection: a dialect this build speaks, and for MariaDB the URL's
/// parts and parameters (`crate::records::mariadb::connect_options`).
fn database_url(url: &str) -> Result<(), String> {
    use crate::records::database::Dialect;
    let dialect = Dialect::of(url)?;
    if !dialect.built() {
        return Err(dialect.not_built());
    }
    #[cfg(feature = "mariadb")]
    if dialect == Dialect::MariaDb {
        crate::records::mariadb::connect_options(url)?;
    }
    Ok(())
}

pub use crate::records::database::redact;
