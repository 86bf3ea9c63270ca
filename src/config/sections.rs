//! The sections of a cinder.conf as read, and how each part of a `Config` is read
//! from them: every problem found is collected, never only the first.

use super::*;

pub(super) struct Sections {
    pub(super) file: String,
    pub(super) sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Sections {
    /// `[database] connection` and `cluster`, checked: the URL names a
    /// dialect this build speaks (PostgreSQL, MariaDB), `[database]`
    /// holds nothing else, and a cluster has a shared database.
    pub(super) fn fleet(
        &self,
        problems: &mut Vec<ConfigError>,
    ) -> (Option<String>, Option<String>) {
        let mut database = None;
        for (key, value) in self.sections.get("database").into_iter().flatten() {
            if key != "connection" {
                problems.push(self.invalid(
                    "database",
                    key,
                    format!("\"{value}\": not an option of [database] (known: connection)"),
                ));
            } else if let Err(problem) = database_url(value) {
                problems.push(self.invalid(
                    "database",
                    "connection",
                    format!("\"{}\": {problem}", redact(value)),
                ));
            } else {
                database = Some(value.clone());
            }
        }
        let cluster = match self.get("DEFAULT", "cluster").map(str::trim) {
            None => None,
            Some("") => {
                problems.push(self.invalid(
                    "DEFAULT",
                    "cluster",
                    "empty: name the cluster or remove the line",
                ));
                None
            }
            Some(name) if database.is_none() && !self.sections.contains_key("database") => {
                problems.push(self.invalid(
                    "DEFAULT",
                    "cluster",
                    format!("\"{name}\": a cluster needs [database] connection = postgresql://... or mysql+pymysql://... (its hosts share records there)"),
                ));
                None
            }
            Some(name) => Some(name.to_string()),
        };
        (database, cluster)
    }

    /// The backends `enabled_backends` lists that can run, in order, and
    /// whether it listed any (problems: a name listed twice, reserved, or
    /// without a section).
    pub(super) fn enabled_backends(&self, problems: &mut Vec<ConfigError>) -> (Vec<String>, bool) {
        let mut enabled: Vec<String> = Vec::new();
        let mut listed = false;
        for name in self
            .get("DEFAULT", "enabled_backends")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            listed = true;
            if enabled.iter().any(|n| n == name) {
                problems.push(self.invalid(
                    "DEFAULT",
                    "enabled_backends",
                    format!("backend `{name}` is listed twice"),
                ));
            } else if name == BACKUP_BACKEND
                || name == "DEFAULT"
                || name == "backend_defaults"
                || name == "database"
            {
                problems.push(self.invalid(
                    "DEFAULT",
                    "enabled_backends",
                    format!("`{name}` is a reserved name"),
                ));
            } else if !self.sections.contains_key(name) {
                problems.push(self.invalid(
                    "DEFAULT",
                    "enabled_backends",
                    format!("backend `{name}` is listed but the file has no [{name}] section"),
                ));
            } else {
                enabled.push(name.to_string());
            }
        }
        (enabled, listed)
    }

    /// `reinit_backoff_jitter_seed`, when set.
    pub(super) fn jitter_seed(&self, problems: &mut Vec<ConfigError>) -> Option<u64> {
        match self.get("DEFAULT", "reinit_backoff_jitter_seed") {
            None => None,
            Some(value) => take(
                problems,
                value.trim().parse::<u64>().map(Some).map_err(|_| {
                    self.invalid(
                        "DEFAULT",
                        "reinit_backoff_jitter_seed",
                        format!(
                            "\"{value}\": expected a whole number from 0 to {}",
                            u64::MAX
                        ),
                    )
                }),
                None,
            ),
        }
    }

    /// The problems of [DEFAULT]'s own options: an empty `host`, zero
    /// intervals, and near misses of our option names.
    pub(super) fn check_defaults(
        &self,
        periodic_interval: Duration,
        report_interval: Duration,
        problems: &mut Vec<ConfigError>,
    ) {
        if self
            .get("DEFAULT", "host")
            .is_some_and(|h| h.trim().is_empty())
        {
            problems.push(self.invalid(
                "DEFAULT",
                "host",
                "must not be empty (leave it out to use this machine's hostname)",
            ));
        }
        for (option, value) in [
            ("periodic_interval", periodic_interval),
            ("report_interval", report_interval),
        ] {
            if value.is_zero() {
                problems.push(self.invalid("DEFAULT", option, "must be greater than zero"));
            }
        }
        // [DEFAULT] also holds options of other services (a real
        // cinder.conf has hundreds): only a near miss of one of ours is
        // reported, as the typo it almost surely is.
        let ours: Vec<&str> = SERVICE_OPTIONS
            .iter()
            .chain(Policy::OPTIONS.iter())
            .map(|(name, _)| *name)
            .collect();
        for (key, value) in self.sections.get("DEFAULT").into_iter().flatten() {
            if ours.contains(&key.as_str()) || key.starts_with("backup_") {
                continue;
            }
            if let Some(meant) = did_you_mean(key, ours.iter().copied()) {
                problems.push(self.invalid(
                    "DEFAULT",
                    key,
                    format!("\"{value}\": unknown option; did you mean `{meant}`?"),
                ));
            }
        }
    }

    /// The backend `name` (an enabled backend's section, over
    /// [backend_defaults]); `None` without a `volume_driver`.
    pub(super) fn backend(
        &self,
        name: &str,
        backend_defaults: &BTreeMap<String, String>,
        default_policy: Policy,
        problems: &mut Vec<ConfigError>,
    ) -> Option<BackendConfig> {
        let own = &self.sections[name];
        let mut written = BTreeMap::new();
        let volume_driver = match own.get("volume_driver") {
            Some(driver) => Some(driver),
            None => backend_defaults.get("volume_driver").inspect(|_| {
                written.insert(
                    "volume_driver".to_string(),
                    ("backend_defaults".to_string(), "volume_driver".to_string()),
                );
            }),
        }
        .filter(|v| !v.is_empty());
        let Some(volume_driver) = volume_driver.cloned() else {
            problems.push(self.invalid(
                name,
                "volume_driver",
                "missing: every backend needs a volume_driver",
            ));
            return None;
        };
        let mut options = BTreeMap::new();
        for (section, values) in [("backend_defaults", backend_defaults), (name, own)] {
            for (k, v) in values {
                if Policy::is_option(k) || k == "volume_driver" || k == "volume_backend_name" {
                    continue;
                }
                options.insert(k.clone(), v.clone());
                if section == "backend_defaults" {
                    written.insert(k.clone(), (section.to_string(), k.clone()));
                } else {
                    written.remove(k);
                }
            }
        }
        Some(BackendConfig {
            name: name.to_string(),
            volume_driver,
            volume_backend_name: own
                .get("volume_backend_name")
                .cloned()
                .unwrap_or_else(|| name.to_string()),
            options,
            policy: self.policy(name, problems).unwrap_or(default_policy),
            origin: Arc::new(SpecOrigin {
                file: self.file.clone(),
                section: name.to_string(),
                driver_option: "volume_driver".to_string(),
                written,
                prefix: String::new(),
            }),
        })
    }

    /// The backup service (`backup_driver` and its `backup_*` options),
    /// when configured.
    pub(super) fn backup(
        &self,
        default_policy: Policy,
        periodic_interval: Duration,
        problems: &mut Vec<ConfigError>,
    ) -> Option<BackupConfig> {
        match self
            .get("DEFAULT", "backup_driver")
            .filter(|d| !d.is_empty())
        {
            None => None,
            Some(driver) => {
                let periodic_initialization = take(
                    problems,
                    self.boolean("backup_periodic_initialization", false),
                    false,
                );
                let service_keys: BTreeSet<&str> =
                    SERVICE_OPTIONS.iter().map(|(k, _)| *k).collect();
                let options = self.sections["DEFAULT"]
                    .iter()
                    .filter(|(k, _)| k.starts_with("backup_") && !service_keys.contains(k.as_str()))
                    .map(|(k, v)| {
                        let key = k
                            .strip_prefix("backup_")
                            .filter(|rest| rest.starts_with("fault_"))
                            .unwrap_or(k);
                        (key.to_string(), v.clone())
                    })
                    .collect();
                let mut policy = default_policy;
                if periodic_initialization {
                    // Retried for ever, at least every periodic_interval.
                    policy.reinit_driver_count = 0;
                    policy.reinit_backoff_max = periodic_interval.max(policy.reinit_backoff_base);
                }
                Some(BackupConfig {
                    driver: driver.to_string(),
                    periodic_initialization,
                    options,
                    policy,
                    origin: Arc::new(SpecOrigin {
                        file: self.file.clone(),
                        section: "DEFAULT".to_string(),
                        driver_option: "backup_driver".to_string(),
                        written: BTreeMap::new(),
                        prefix: "backup_".to_string(),
                    }),
                })
            }
        }
    }

    /// `http_listen`, when set.
    pub(super) fn http_listen(
        &self,
        problems: &mut Vec<ConfigError>,
    ) -> Option<std::net::SocketAddr> {
        match self.get("DEFAULT", "http_listen").map(str::trim) {
            None | Some("") => None,
            Some(value) => take(
                problems,
                value.parse::<std::net::SocketAddr>().map(Some).map_err(|_| {
                    self.invalid(
                        "DEFAULT",
                        "http_listen",
                        format!(
                            "\"{value}\": expected an address and port such as 127.0.0.1:9437 (or [::1]:9437)"
                        ),
                    )
                }),
                None,
            ),
        }
    }

    pub(super) fn invalid(
        &self,
        section: &str,
        option: &str,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            section: section.to_string(),
            option: option.to_string(),
            problem: problem.into(),
        }
    }

    pub(super) fn get(&self, section: &str, option: &str) -> Option<&str> {
        self.sections.get(section)?.get(option).map(String::as_str)
    }

    pub(super) fn duration(
        &self,
        option: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.get("DEFAULT", option) {
            None => Ok(default),
            Some(value) => {
                parse_duration(option, value).map_err(|e| self.policy_error("DEFAULT", e))
            }
        }
    }

    pub(super) fn boolean(&self, option: &str, default: bool) -> Result<bool, ConfigError> {
        match self
            .get("DEFAULT", option)
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => Ok(default),
            Some(v) if ["true", "yes", "on", "1"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["false", "no", "off", "0"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(self.invalid(
                "DEFAULT",
                option,
                format!("\"{v}\": expected true or false (also yes/no, on/off, 1/0)"),
            )),
        }
    }

    pub(super) fn policy_error(&self, section: &str, error: PolicyError) -> ConfigError {
        let PolicyError::InvalidValue {
            option,
            value,
            problem,
        } = error;
        self.invalid(section, &option, format!("\"{value}\": {problem}"))
    }

    pub(super) fn policy_options(&self, section: &str) -> Vec<(&str, &str)> {
        self.sections
            .get(section)
            .map(|options| {
                options
                    .iter()
                    .filter(|(k, _)| Policy::is_option(k))
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The policy of `section` (`[DEFAULT]`, then the section), every bad
    /// value reported and blamed on the section that set it.
    pub(super) fn policy(&self, section: &str, problems: &mut Vec<ConfigError>) -> Option<Policy> {
        let layers: Vec<(&str, Vec<(&str, &str)>)> = if section == "DEFAULT" {
            vec![("DEFAULT", self.policy_options("DEFAULT"))]
        } else {
            vec![
                ("DEFAULT", self.policy_options("DEFAULT")),
                (section, self.policy_options(section)),
            ]
        };
        let mut policy = Policy::default();
        let mut bad = false;
        for (layer, options) in &layers {
            for (option, value) in options {
                if let Err(e) = policy.set(option, value) {
                    problems.push(self.policy_error(layer, e));
                    bad = true;
                }
            }
        }
        if bad {
            return None;
        }
        if let Err(e) = policy.validate() {
            problems.push(self.policy_error(section, e));
            return None;
        }
        Some(policy)
    }
}
