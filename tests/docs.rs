//! `docs/admin.md` documents every option the code reads: each service and
//! lifecycle option, and each built-in driver's declared options with their defaults.

use rekindle::config::SERVICE_OPTIONS;
use rekindle::driver::DriverRegistry;
use rekindle::driver::options::OptionDefault;
use rekindle::lifecycle::Policy;

const ADMIN: &str = include_str!("../docs/admin.md");

/// The table rows of admin.md whose first cell is `` `name` ``.
fn rows(name: &str) -> Vec<&'static str> {
    let cell = format!("| `{name}` |");
    ADMIN.lines().filter(|l| l.starts_with(&cell)).collect()
}

#[test]
fn every_service_and_lifecycle_option_has_a_row() {
    let missing: Vec<&str> = SERVICE_OPTIONS
        .iter()
        .map(|(name, _)| *name)
        .chain(Policy::OPTIONS.iter().map(|(name, _)| *name))
        .filter(|name| rows(name).is_empty())
        .collect();
    assert!(
        missing.is_empty(),
        "docs/admin.md lacks rows for {missing:?}"
    );
}

#[test]
fn every_declared_driver_option_has_a_row_with_its_default_and_reloadability() {
    let registry = DriverRegistry::with_builtin();
    let mut problems = Vec::new();
    for (kind, driver, options) in registry.drivers() {
        for decl in options {
            let rows = rows(decl.name);
            let default = match decl.default {
                OptionDefault::Value(v) => format!("| `{v}` |"),
                _ => format!("| {} |", decl.default_text()),
            };
            let reload = if decl.reloadable {
                "| yes |"
            } else {
                "| restart |"
            };
            if !rows
                .iter()
                .any(|row| row.contains(&default) && row.contains(reload))
            {
                problems.push(format!(
                    "{} driver `{driver}`: `{}` (default {default}, reload {reload}); rows: {rows:?}",
                    kind.as_str(),
                    decl.name
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/admin.md does not document:\n{}",
        problems.join("\n")
    );
}

#[test]
fn backup_periodic_initialization_is_explained_with_its_default() {
    let row = rows("backup_periodic_initialization");
    assert!(row.iter().any(|r| r.contains("| false |")), "{row:?}");
    assert!(ADMIN.contains("`backup_periodic_initialization`: with `false` (the default)"));
}

/// Every metric the daemon exports has a row in admin.md's metrics table,
/// and every row names one it exports.
#[cfg(feature = "http")]
#[test]
fn every_metric_has_a_row_and_every_row_a_metric() {
    use rekindle::watch::metrics::Metrics;
    let all: Vec<&str> = Metrics::NAMES
        .iter()
        .chain(&Metrics::FLEET_NAMES)
        .copied()
        .collect();
    let missing: Vec<&str> = all
        .iter()
        .copied()
        .filter(|name| rows(name).is_empty())
        .collect();
    assert!(
        missing.is_empty(),
        "docs/admin.md lacks rows for {missing:?}"
    );
    let unknown: Vec<&str> = ADMIN
        .lines()
        .filter_map(|l| l.strip_prefix("| `rekindle_"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| !all.contains(&format!("rekindle_{name}").as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/admin.md lists metrics that are not exported: {unknown:?}"
    );
}

/// The dashboard and the alert rules query only metrics the daemon exports
/// (a histogram's `_bucket` series and Prometheus' own `up` included).
#[cfg(feature = "http")]
#[test]
fn the_dashboard_and_the_alerts_use_only_exported_metrics() {
    use rekindle::watch::metrics::Metrics;
    let dashboard = include_str!("../docs/monitoring/grafana-dashboard.json");
    let alerts = include_str!("../docs/monitoring/alerts.yml");
    let json: serde_json::Value = serde_json::from_str(dashboard).expect("the dashboard is JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 5));
    let mut unknown = Vec::new();
    for text in [dashboard, alerts] {
        for (at, _) in text.match_indices("rekindle_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = name.strip_suffix("_bucket").unwrap_or(&name);
            if !Metrics::NAMES.contains(&base) && !Metrics::FLEET_NAMES.contains(&base) {
                unknown.push(name);
            }
        }
    }
    assert!(unknown.is_empty(), "not exported: {unknown:?}");
}

/// The README's lifecycle picture is a fresh `rekindle model export
/// --format mermaid`: it cannot drift from the code.
#[test]
fn the_readmes_lifecycle_diagram_is_a_fresh_export() {
    use rekindle::check::diagram::{Format, diagram};
    let readme = include_str!("../README.md");
    let block = readme
        .split("```mermaid\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a ```mermaid block");
    assert_eq!(
        block,
        diagram(Format::Mermaid),
        "README.md's lifecycle diagram is stale: replace its ```mermaid block with `rekindle model export --format mermaid`"
    );
}
