//! Model-checking the policies a config file declares (`rekindle check --config`): backends
//! grouped by their policy as the checker abstracts it, one search per group, a report per group.
//!
//! The file is read as `rekindle run` reads it ([`Config::load_all`]: every
//! structural problem; driver options are not the checker's concern). Each
//! backend's effective policy (its section over `[DEFAULT]`; the backup
//! backend's, with `backup_periodic_initialization`) is abstracted by
//! [`CheckedPolicy::of`]; backends whose abstractions are equal share one
//! search, run with the same bounds as a plain `rekindle check`.

use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::abstraction::{ABSTRACTED_OPTIONS, CheckedPolicy, abstracted_values};
use super::{CheckOptions, CheckReport, check};
use crate::config::{BACKUP_BACKEND, Config, ConfigError};
use crate::lifecycle::Policy;

/// Why a config file was not checked.
#[derive(Debug, Error)]
pub enum ConfigCheckError {
    /// The file cannot be read or is not a valid config: every problem,
    /// one a line, as `rekindle config check` words them.
    #[error("{}", lines(.problems))]
    Invalid {
        /// The problems, in file order.
        problems: Vec<ConfigError>,
    },
}

fn lines(problems: &[ConfigError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One value of an abstracted option (as a config file writes it) and the
/// backends that wrote it.
pub type Written<'a> = (String, Vec<&'a str>);

/// Backends whose policies the checker cannot tell apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyGroup {
    /// Their policy as the checker sees it.
    pub checked: CheckedPolicy,
    /// Each backend's name and effective policy as written, in file order
    /// (`enabled_backends`, then the backup backend).
    pub backends: Vec<(String, Policy)>,
}

impl PolicyGroup {
    /// The backends' names, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.backends
            .iter()
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The abstracted options the backends wrote differently: per option,
    /// each value (as a config file writes it) with the backends that have
    /// it. Empty when their policies are identical.
    pub fn folded(&self) -> Vec<(&'static str, Vec<Written<'_>>)> {
        let written: Vec<(&str, [(&'static str, String); 6])> = self
            .backends
            .iter()
            .map(|(name, policy)| (name.as_str(), abstracted_values(policy)))
            .collect();
        let mut folded = Vec::new();
        for (i, option) in ABSTRACTED_OPTIONS.iter().enumerate() {
            let mut values: Vec<Written<'_>> = Vec::new();
            for (name, options) in &written {
                let value = &options[i].1;
                match values.iter_mut().find(|(v, _)| v == value) {
                    Some((_, names)) => names.push(name),
                    None => values.push((value.clone(), vec![name])),
                }
            }
            if values.len() > 1 {
                folded.push((*option, values));
            }
        }
        folded
    }
}

/// Every backend of `config` (volume backends in `enabled_backends` order,
/// then the backup backend), grouped by [`CheckedPolicy`], groups in the
/// order of their first backend.
pub fn groups(config: &Config) -> Vec<PolicyGroup> {
    let backends = config
        .backends
        .iter()
        .map(|b| (b.name.clone(), b.policy))
        .chain(
            config
                .backup
                .iter()
                .map(|b| (BACKUP_BACKEND.to_string(), b.policy)),
        );
    let mut groups: Vec<PolicyGroup> = Vec::new();
    for (name, policy) in backends {
        let checked = CheckedPolicy::of(&policy);
        match groups.iter_mut().find(|g| g.checked == checked) {
            Some(group) => group.backends.push((name, policy)),
            None => groups.push(PolicyGroup {
                checked,
                backends: vec![(name, policy)],
            }),
        }
    }
    groups
}

/// The checks of one config file: one search per distinct policy.
#[derive(Debug, Clone)]
pub struct ConfigCheck {
    /// The file, as named in messages.
    pub file: String,
    /// The bounds every search ran with (`policy` and `max_attempts` are
    /// set per group from the file and ignored here).
    pub options: CheckOptions,
    /// Each group and what its search found, in [`groups`] order.
    pub results: Vec<(PolicyGroup, CheckReport)>,
    /// Wall time of every search together.
    pub elapsed: Duration,
}

impl ConfigCheck {
    /// True if no search found a violation (a search stopped by
    /// `max_states` without one passes, as a plain check does, and says so).
    pub fn passed(&self) -> bool {
        self.results.iter().all(|(_, r)| r.violation.is_none())
    }

    /// The report: a header (file, bounds, the abstraction), one section
    /// per policy naming its backends (with the counter-example of a
    /// violation), and a verdict line.
    pub fn render(&self) -> String {
        let o = &self.options;
        let total = self.results.len();
        let backends: usize = self.results.iter().map(|(g, _)| g.backends.len()).sum();
        let mut out = format!(
            "{}: {backends} {}, {total} distinct {} as the checker sees them\n",
            self.file,
            plural(backends, "backend", "backends"),
            plural(total, "policy", "policies"),
        );
        let _ = writeln!(
            out,
            "bounds: max_inflight {}, {} identical {} per policy, max_states {}, {}",
            o.max_inflight,
            o.backends.max(1),
            plural(o.backends.max(1), "backend", "backends"),
            o.max_states,
            if o.dfs {
                "depth-first"
            } else {
                "breadth-first"
            },
        );
        out.push_str(
            "time is abstracted (a duration is zero or positive): backends whose policies differ only in positive timeouts share a policy\n",
        );
        for (i, (group, report)) in self.results.iter().enumerate() {
            self.render_policy(&mut out, i, group, report);
        }
        let states: u64 = self.results.iter().map(|(_, r)| r.states as u64).sum();
        let truncated = self.results.iter().filter(|(_, r)| r.truncated).count();
        let failing: Vec<&(PolicyGroup, CheckReport)> = self
            .results
            .iter()
            .filter(|(_, r)| r.violation.is_some())
            .collect();
        if failing.is_empty() {
            let _ = write!(
                out,
                "{}: no violation in {} states ({:.2}s)",
                if total == 1 {
                    "the policy passes".to_string()
                } else {
                    format!("all {total} policies pass")
                },
                thousands(states),
                self.elapsed.as_secs_f64(),
            );
        } else {
            let blamed: Vec<String> = failing.iter().map(|(g, _)| g.names().join(", ")).collect();
            let _ = write!(
                out,
                "{} of {total} {} an invariant (backends: {}); exit status 1",
                failing.len(),
                if failing.len() == 1 {
                    "policy violates"
                } else {
                    "policies violate"
                },
                blamed.join("; "),
            );
        }
        if truncated > 0 {
            let _ = write!(
                out,
                "; {truncated} {} truncated at max_states",
                plural(truncated, "search", "searches")
            );
        }
        out.push('\n');
        out
    }

    /// One policy's section of the report: its figures, its verdict (the
    /// counter-example of a violation), and the options it folded.
    fn render_policy(&self, out: &mut String, i: usize, group: &PolicyGroup, report: &CheckReport) {
        let o = &self.options;
        let total = self.results.len();
        let names = group.names().join(", ");
        let _ = write!(
            out,
            "policy {} of {total} (backends: {names}): {}: {} states, {} transitions, depth {}, {:.2}s",
            i + 1,
            group.checked,
            thousands(report.states as u64),
            thousands(report.transitions),
            report.depth,
            report.elapsed.as_secs_f64(),
        );
        if let Some(product) = &report.product {
            let _ = write!(
                out,
                " for one backend, {} states for {} composed",
                thousands(u64::try_from(product.states).unwrap_or(u64::MAX)),
                product.backends
            );
        }
        match report.limit {
            Some(super::Limit::Memory(_)) => out.push_str(&format!(
                ", truncated at the memory budget, {} (not every state explored)",
                super::memory_text(report.memory_bytes)
            )),
            Some(super::Limit::Depth(max)) => out.push_str(&format!(
                ", truncated at the depth-first stack's limit, {max} (not every state explored)"
            )),
            Some(super::Limit::States(_)) => {
                out.push_str(", truncated at max_states (not every state explored)");
            }
            None => {}
        }
        match &report.violation {
            None => out.push_str(", no violation\n"),
            Some(v) => {
                out.push_str(", VIOLATION\n");
                let _ = writeln!(out, "  violation: {}", v.message);
                let stands = if o.backends.max(1) == 1 {
                    "backend 0 stands for".to_string()
                } else {
                    format!(
                        "backends 0 to {} stand for copies of",
                        o.backends.max(1) - 1
                    )
                };
                let _ = writeln!(
                    out,
                    "  counter-example ({} steps; {stands} any of: {names}):",
                    v.trace.len()
                );
                for (n, step) in v.trace.iter().enumerate() {
                    let _ = writeln!(out, "    {:>3}. {step}", n + 1);
                }
            }
        }
        for (option, values) in group.folded() {
            let values: Vec<String> = values
                .iter()
                .map(|(value, names)| format!("{value} ({})", names.join(", ")))
                .collect();
            let _ = writeln!(
                out,
                "  same checked model, written differently: {option} {}",
                values.join(", ")
            );
        }
    }
}

/// Checks every distinct policy of `config` with the bounds of `options`.
pub fn check_config(config: &Config, options: &CheckOptions) -> ConfigCheck {
    let started = Instant::now();
    let results = groups(config)
        .into_iter()
        .map(|group| {
            let report = check(&CheckOptions {
                policy: Some(group.checked.policy()),
                ..*options
            });
            (group, report)
        })
        .collect();
    ConfigCheck {
        file: config.origin.clone(),
        options: *options,
        results,
        elapsed: started.elapsed(),
    }
}

/// Reads the file at `path` as `rekindle run` does and checks every
/// distinct policy it declares (see [`check_config`]).
///
/// # Errors
/// [`ConfigCheckError::Invalid`] if the file cannot be read or is not a
/// valid config, with every problem found.
pub fn check_file(path: &Path, options: &CheckOptions) -> Result<ConfigCheck, ConfigCheckError> {
    let config =
        Config::load_all(path).map_err(|problems| ConfigCheckError::Invalid { problems })?;
    Ok(check_config(&config, options))
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `n` with a comma between groups of three digits (`12,345`).
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
[DEFAULT]
enabled_backends = a, b, c, d
reinit_driver_count = 2
graceful_shutdown_timeout = 30s
backup_driver = fault
backup_periodic_initialization = true

[a]
volume_driver = fault

[b]
volume_driver = fault
graceful_shutdown_timeout = 2m

[c]
volume_driver = fault
reload_rollback = false

[d]
volume_driver = fault
reinit_driver_count = 0
";

    fn small() -> CheckOptions {
        CheckOptions {
            max_inflight: 0,
            ..CheckOptions::default()
        }
    }

    #[test]
    fn backends_are_grouped_by_the_abstraction_in_file_order() {
        let config = Config::parse(FILE, "t.conf").expect("valid");
        let groups = groups(&config);
        let names: Vec<Vec<&str>> = groups.iter().map(PolicyGroup::names).collect();
        // d and the periodic backup both have an unlimited budget.
        assert_eq!(names, [vec!["a", "b"], vec!["c"], vec!["d", "backup"]]);
        assert_eq!(groups[0].checked.reinit_driver_count, 2);
        assert!(!groups[1].checked.reload_rollback);
        assert_eq!(groups[2].checked.reinit_driver_count, 0);
        assert_eq!(
            groups[0].folded(),
            [(
                "graceful_shutdown_timeout",
                vec![
                    ("30s".to_string(), vec!["a"]),
                    ("2m".to_string(), vec!["b"])
                ]
            )]
        );
    }

    #[test]
    fn each_group_is_checked_under_its_own_policy_and_the_report_names_its_backends() {
        let config = Config::parse(FILE, "t.conf").expect("valid");
        let result = check_config(&config, &small());
        assert!(result.passed(), "{}", result.render());
        let states: Vec<usize> = result.results.iter().map(|(_, r)| r.states).collect();
        for (group, report) in &result.results {
            let alone = check(&CheckOptions {
                policy: Some(group.checked.policy()),
                ..small()
            });
            assert_eq!(report.states, alone.states);
        }
        assert!(
            states[0] != states[1] && states[1] != states[2],
            "{states:?}"
        );
        let text = result.render();
        assert!(text.contains("policy 1 of 3 (backends: a, b): reinit_driver_count 2, reload_rollback on, timeouts positive: "), "{text}");
        assert!(
            text.contains(
                "policy 2 of 3 (backends: c): reinit_driver_count 2, reload_rollback off"
            ),
            "{text}"
        );
        assert!(text.contains("policy 3 of 3 (backends: d, backup): reinit_driver_count 0 (unlimited: attempts counted up to 2)"), "{text}");
        assert!(text.contains("  same checked model, written differently: graceful_shutdown_timeout 30s (a), 2m (b)\n"), "{text}");
        assert!(
            text.lines()
                .last()
                .is_some_and(|l| l.starts_with("all 3 policies pass: no violation in ")),
            "{text}"
        );
    }

    #[test]
    fn a_violation_names_the_backends_of_its_policy() {
        let config = Config::parse(FILE, "t.conf").expect("valid");
        let result = check_config(
            &config,
            &CheckOptions {
                plant_bug: true,
                ..small()
            },
        );
        assert!(!result.passed());
        let text = result.render();
        assert!(
            text.contains("counter-example (2 steps; backend 0 stands for any of: a, b):"),
            "{text}"
        );
        assert!(text.ends_with("3 of 3 policies violate an invariant (backends: a, b; c; d, backup); exit status 1\n"), "{text}");
    }

    #[test]
    fn an_invalid_file_lists_every_problem() {
        let error = check_file(Path::new("/nonexistent/rekindle.conf"), &small())
            .expect_err("no such file");
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/rekindle.conf: "),
            "{error}"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_345), "12,345");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
