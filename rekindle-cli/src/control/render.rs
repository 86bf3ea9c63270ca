//! What `rekindle status` and `rekindle reload` print: tables and lines in an
//! operator's words, and the exit status of a reload (the daemon's rule, named).

use super::*;

/// Keeps the service rows of `host` (the part before `@`) and of
/// `cluster`, when given: `rekindle status --host/--cluster`.
pub fn filter_services(report: &mut StatusReport, host: Option<&str>, cluster: Option<&str>) {
    report.services.retain(|s| {
        let own_host = s.row.host.split('@').next().unwrap_or(&s.row.host);
        host.is_none_or(|h| own_host == h)
            && cluster.is_none_or(|c| s.cluster.as_deref() == Some(c))
    });
}

/// The human-readable `rekindle status`: services like `cinder service-list`,
/// then one row per backend.
pub fn render_status(report: &StatusReport) -> String {
    // A fleet's rows carry their cluster: shown as a column, like
    // `cinder service-list`'s.
    let fleet = report.services.iter().any(|s| s.cluster.is_some());
    let services: Vec<Vec<String>> = report
        .services
        .iter()
        .map(|s| {
            let mut row = vec![s.row.binary.clone(), s.row.host.clone()];
            if fleet {
                row.push(s.cluster.clone().unwrap_or_else(|| "-".to_string()));
            }
            row.extend([
                s.row.backend.clone(),
                s.row.state.clone(),
                s.row.updated_at.clone(),
            ]);
            row
        })
        .collect();
    let headers: &[&str] = if fleet {
        &[
            "Binary",
            "Host",
            "Cluster",
            "Backend",
            "State",
            "Updated At",
        ]
    } else {
        &["Binary", "Host", "Backend", "State", "Updated At"]
    };
    let mut out = crate::table::render(headers, &services);
    if let Some(fault) = &report.fleet_fault {
        out.push_str(&format!("Fleet database did not answer: {fault}\n"));
    }
    if let Some(fault) = &report.records_fault {
        out.push_str(&format!(
            "Records cannot be written since {}: {}; every service row is down until they can (Updated At is the last heartbeat written)\n",
            fault.since, fault.error
        ));
    }
    out.push('\n');
    let now = std::time::SystemTime::now();
    let backends: Vec<Vec<String>> = report
        .backends
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.kind.clone(),
                b.driver.clone(),
                if b.gave_up {
                    format!("{} (gave up)", b.state)
                } else {
                    b.state.clone()
                },
                attempts(b),
                next_retry(b, now),
                b.config.clone(),
                b.last_error.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    out.push_str(&crate::table::render(
        &[
            "Backend",
            "Kind",
            "Driver",
            "State",
            "Setup Attempts",
            "Next Retry",
            "Config",
            "Last Error",
        ],
        &backends,
    ));
    out
}

/// "2 of 4": setup attempts made in the current budget, of those allowed.
fn attempts(b: &BackendRow) -> String {
    let made = match b.state.as_str() {
        // Not yet counted: the next attempt is the one scheduled.
        "uninitialized" | "stopped" | "failed_fatal" => return "-".to_string(),
        _ => b.attempt.saturating_add(1),
    };
    match b.max_attempts {
        Some(max) => format!("{made} of {max}"),
        None => format!("{made} (no limit)"),
    }
}

/// When the next setup attempt runs, in wall-clock time and from now; or why
/// none will.
fn next_retry(b: &BackendRow, now: std::time::SystemTime) -> String {
    if let Some(at) = b
        .next_retry
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    {
        return match rekindle::events::refusal::in_and_at(at, now) {
            (Some(left), clock) => format!("in {left} ({clock})"),
            (None, clock) => format!("due now ({clock})"),
        };
    }
    match b.state.as_str() {
        "failed_fatal" => "none: fix the config, then reload".to_string(),
        _ if b.gave_up => "none: budget spent; reload to retry".to_string(),
        _ => "-".to_string(),
    }
}

/// The exit status `rekindle reload` gives for `outcome`: the daemon's rule,
/// [`ReloadOutcome::exit_code`] (as intended, or only started or queued;
/// nothing applied; a backend rolled back, failed, or its reload or removal
/// was aborted), named.
pub fn reload_exit(outcome: &ReloadOutcome) -> Exit {
    match outcome.exit_code() {
        0 => Exit::Ok,
        1 => Exit::Failed,
        _ => Exit::NotAsIntended,
    }
}

/// One backend's line of `rekindle reload`, after its name and result.
fn reload_detail(result: &BackendResult) -> String {
    let error = |e: &Option<String>| e.clone().unwrap_or_else(|| "-".to_string());
    match result {
        BackendResult::Unchanged { state } | BackendResult::Reloaded { state } => {
            format!("state {state}")
        }
        BackendResult::RolledBack { error } => {
            format!("the new config failed to set up, the old config serves again: {error}")
        }
        BackendResult::Failed { state, error: e } => format!("state {state}: {}", error(e)),
        BackendResult::Aborted { in_flight } => format!(
            "drain deadline passed with {} in flight; the old config keeps serving",
            rekindle::events::status::operations(*in_flight)
        ),
        BackendResult::Added { ready: true, .. } => "ready".to_string(),
        BackendResult::Added {
            state, error: e, ..
        } => format!("not ready: state {state}: {}", error(e)),
        BackendResult::Removed => "stopped".to_string(),
        BackendResult::RemovalAborted { in_flight } => format!(
            "drain deadline passed with {} in flight; it keeps serving and the next reload tries again",
            rekindle::events::status::operations(*in_flight)
        ),
    }
}

/// The human-readable `rekindle reload`: the outcome, then one line per
/// backend (`b1  rolled_back  the new config failed: ...`).
pub fn render_reload(outcome: &ReloadOutcome) -> String {
    match outcome {
        ReloadOutcome::Finished(report) => {
            let mut out = format!(
                "reload of config {}{}: {}\n",
                report.config,
                if report.coalesced {
                    " (coalesced with a reload already running)"
                } else {
                    ""
                },
                if report.as_intended() {
                    "every backend ended as intended"
                } else {
                    "NOT every backend ended as intended"
                }
            );
            let width = report.backends.keys().map(String::len).max().unwrap_or(0);
            for (name, result) in &report.backends {
                out.push_str(&format!(
                    "{name:<width$}  {:<15}  {}\n",
                    result.name(),
                    reload_detail(result)
                ));
            }
            if !report.restart_required.is_empty() {
                out.push_str(&format!(
                    "restart required for: {}\n",
                    report.restart_required.join(", ")
                ));
            }
            out
        }
        ReloadOutcome::Started { config, .. } => {
            format!("reload of config {config} started (not waiting for its outcome)\n")
        }
        ReloadOutcome::Coalesced => {
            "a reload is running; one follow-up reload will run after it (not waiting)\n"
                .to_string()
        }
        ReloadOutcome::Rejected { error } => {
            format!("reload rejected, the old config keeps serving: {error}\n")
        }
        ReloadOutcome::ShuttingDown => "reload refused: the daemon is shutting down\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, attempt: u32, next_retry: Option<String>, gave_up: bool) -> BackendRow {
        BackendRow {
            name: "b1".to_string(),
            kind: "volume".to_string(),
            driver: "fault".to_string(),
            state: state.to_string(),
            attempt,
            max_attempts: Some(4),
            gave_up,
            last_error: Some("backend error: array down".to_string()),
            next_retry,
            config: current(),
        }
    }

    #[test]
    fn the_backend_table_says_when_the_next_retry_runs_from_now_and_on_the_clock() {
        let now = humantime::parse_rfc3339("2026-11-30T12:04:24Z").expect("time");
        let waiting = row(
            "failed_recoverable",
            1,
            Some("2026-11-30T12:04:31.000Z".to_string()),
            false,
        );
        assert_eq!(next_retry(&waiting, now), "in 7s (12:04:31 UTC)");
        let far = row(
            "failed_recoverable",
            1,
            Some("2026-12-01T18:04:24.000Z".to_string()),
            false,
        );
        assert_eq!(
            next_retry(&far, now),
            "in 1 day 6h (2026-12-01 18:04:24 UTC)"
        );
        assert_eq!(attempts(&waiting), "2 of 4");
        let spent = row("failed_recoverable", 3, None, true);
        assert_eq!(
            next_retry(&spent, now),
            "none: budget spent; reload to retry"
        );
        assert_eq!(attempts(&spent), "4 of 4");
        let fatal = row("failed_fatal", 0, None, false);
        assert_eq!(next_retry(&fatal, now), "none: fix the config, then reload");
        assert_eq!(attempts(&fatal), "-");
        let unlimited = BackendRow {
            max_attempts: None,
            ..row("initializing", 5, None, false)
        };
        assert_eq!(attempts(&unlimited), "6 (no limit)");
        let mut report = StatusReport {
            services: Vec::new(),
            backends: vec![spent],
            records_fault: None,
            fleet_fault: None,
        };
        let table = render_status(&report);
        assert!(!table.contains("Records cannot be written"), "{table}");
        report.records_fault = Some(rekindle::events::status::RecordsFault {
            error: "state_dir /s cannot be written: read-only file system".to_string(),
            since: "2026-12-02T13:00:00Z".to_string(),
        });
        let faulted = render_status(&report);
        assert!(
            faulted.contains("Records cannot be written since 2026-12-02T13:00:00Z: state_dir /s cannot be written: read-only file system"),
            "{faulted}"
        );
        assert!(table.contains("failed_recoverable (gave up)"), "{table}");
        assert!(table.contains("Setup Attempts"), "{table}");
    }
}
