//! The checkers must pass on the real code and must be able to fail: `rekindle check`
//! over the real step, the committed spin table equals a fresh export, spin proves the
//! LTL properties, and a planted bug is reported by both with a counter-example.

use std::process::Command;

use rekindle::check::{CheckOptions, check};

#[test]
fn every_reachable_state_of_one_and_two_backends_keeps_the_invariants() {
    for options in [
        CheckOptions {
            max_attempts: 2,
            max_inflight: 1,
            backends: 1,
            ..CheckOptions::default()
        },
        CheckOptions {
            max_attempts: 3,
            max_inflight: 2,
            backends: 1,
            ..CheckOptions::default()
        },
        CheckOptions {
            max_attempts: 1,
            max_inflight: 0,
            backends: 2,
            ..CheckOptions::default()
        },
        CheckOptions {
            max_attempts: 1,
            max_inflight: 1,
            backends: 1,
            dfs: true,
            ..CheckOptions::default()
        },
    ] {
        let report = check(&options);
        assert!(
            report.violation.is_none(),
            "{options:?}\n{}",
            report.render()
        );
        assert!(!report.truncated);
        assert!(
            report.states > 500,
            "{options:?} explored only {} states",
            report.states
        );
    }
}

#[test]
fn breadth_first_in_parallel_and_depth_first_find_the_same_states() {
    // Breadth-first expands large levels on several threads and merges them
    // in order; depth-first is sequential. Both must reach exactly the same
    // reachable set, and breadth-first must be the same on every run.
    for (attempts, inflight, backends) in [(3, 2, 1), (4, 3, 1)] {
        let options = CheckOptions {
            max_attempts: attempts,
            max_inflight: inflight,
            backends,
            ..CheckOptions::default()
        };
        let bfs = check(&options);
        let again = check(&options);
        let dfs = check(&CheckOptions {
            dfs: true,
            ..options
        });
        assert!(bfs.violation.is_none() && dfs.violation.is_none());
        assert!(!bfs.truncated && !dfs.truncated);
        assert!(bfs.states > 1_000, "{options:?}: {}", bfs.states);
        assert_eq!(bfs.states, dfs.states, "{options:?}");
        assert_eq!(
            (bfs.states, bfs.transitions, bfs.depth),
            (again.states, again.transitions, again.depth),
            "{options:?}"
        );
    }
}

#[test]
fn the_planted_bug_is_found_with_a_shortest_counter_example() {
    let report = check(&CheckOptions {
        plant_bug: true,
        ..CheckOptions::default()
    });
    let violation = report.violation.expect("the planted bug must be found");
    assert!(
        violation.message.contains("two setups in flight"),
        "{}",
        violation.message
    );
    assert_eq!(
        violation.trace.len(),
        2,
        "start, then a reload replaces the setup: {:?}",
        violation.trace
    );
    assert!(violation.trace[0].ends_with("start"));
    let dfs = check(&CheckOptions {
        plant_bug: true,
        dfs: true,
        ..CheckOptions::default()
    });
    assert!(dfs.violation.is_some());
}

#[test]
fn the_committed_spin_table_is_a_fresh_export_of_the_code() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../model/lifecycle_table.pml"
    ))
    .expect("model/lifecycle_table.pml");
    let fresh = rekindle::check::export::promela_table(false);
    assert!(
        committed == fresh,
        "model/lifecycle_table.pml is stale: run `cargo run -p rekindle-cli -- model export > model/lifecycle_table.pml`"
    );
}

fn spin_installed() -> bool {
    Command::new("spin")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn spin_proves_the_properties_and_catches_the_planted_bug() {
    assert!(
        spin_installed(),
        "spin is not installed: install the Debian package `spin` (./scripts/test does it)"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../model/check.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("check.sh runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for property in ["live_ready", "reload_ends", "drain_ends"] {
        assert!(text.contains(&format!("spin: {property} holds")), "{text}");
    }
    let bug = std::env::temp_dir().join(format!("rekindle-bug-table-{}.pml", std::process::id()));
    std::fs::write(&bug, rekindle::check::export::promela_table(true)).expect("write table");
    let out = Command::new("bash")
        .arg(script)
        .arg(&bug)
        .output()
        .expect("check.sh runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_file(&bug);
    assert!(
        !out.status.success(),
        "spin must fail on the planted bug: {text}"
    );
    assert!(
        text.contains("assertion violated (running<=1)") && text.contains("counter-example"),
        "{text}"
    );
}

/// Writes `text` to a scratch config file named after `name`.
fn conf(name: &str, text: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("rekindle-check-{name}-{}.conf", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

/// `rekindle check --config FILE` with small bounds: status, stdout, stderr.
fn check_config(file: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .arg("check")
        .arg("--config")
        .arg(file)
        .args(["--max-inflight", "0"])
        .args(extra)
        .output()
        .expect("rekindle runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `N states` figure of the section of policy `index` (1-based).
fn section_states(text: &str, index: usize) -> usize {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("policy {index} of ")))
        .unwrap_or_else(|| panic!("no section {index}: {text}"));
    let figure = line
        .split(" states,")
        .next()
        .and_then(|head| head.rsplit(": ").next())
        .unwrap_or_else(|| panic!("no state count: {line}"));
    figure.replace(',', "").parse().expect("a count")
}

#[test]
fn check_config_checks_two_different_policies_in_two_sections() {
    let file = conf(
        "two",
        "[DEFAULT]\nenabled_backends = lvm-1, nfs\n\n[lvm-1]\nvolume_driver = fault\nreinit_driver_count = 1\n\n[nfs]\nvolume_driver = fault\nreinit_driver_count = 2\n",
    );
    let (code, out, err) = check_config(&file, &[]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("2 backends, 2 distinct policies"), "{out}");
    assert!(
        out.contains("policy 1 of 2 (backends: lvm-1): reinit_driver_count 1, reload_rollback on"),
        "{out}"
    );
    assert!(
        out.contains("policy 2 of 2 (backends: nfs): reinit_driver_count 2, reload_rollback on"),
        "{out}"
    );
    assert_ne!(section_states(&out, 1), section_states(&out, 2), "{out}");
    assert!(
        out.ends_with("\n") && out.contains("all 2 policies pass: no violation in "),
        "{out}"
    );
}

#[test]
fn check_config_groups_identical_policies_and_folds_timeouts() {
    let file = conf(
        "three",
        "[DEFAULT]\nenabled_backends = a, b, c\nreinit_driver_count = 1\n\n[a]\nvolume_driver = fault\n\n[b]\nvolume_driver = fault\ngraceful_shutdown_timeout = 5m\n\n[c]\nvolume_driver = fault\nreload_rollback = false\n",
    );
    let (code, out, err) = check_config(&file, &[]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, Some(0), "{out}{err}");
    let sections: Vec<&str> = out.lines().filter(|l| l.starts_with("policy ")).collect();
    assert_eq!(sections.len(), 2, "{out}");
    assert!(
        sections[0].starts_with("policy 1 of 2 (backends: a, b): "),
        "{out}"
    );
    assert!(
        sections[1].starts_with("policy 2 of 2 (backends: c): "),
        "{out}"
    );
    assert!(
        out.contains(
            "same checked model, written differently: graceful_shutdown_timeout 1m (a), 5m (b)"
        ),
        "{out}"
    );
}

#[test]
fn check_config_explores_a_different_model_when_only_reload_rollback_differs() {
    let text = |rollback: &str| {
        format!(
            "[DEFAULT]\nenabled_backends = a\nreinit_driver_count = 1\nreload_rollback = {rollback}\n\n[a]\nvolume_driver = fault\n"
        )
    };
    let on = conf("rollback-on", &text("true"));
    let off = conf("rollback-off", &text("false"));
    let (code_on, out_on, _) = check_config(&on, &[]);
    let (code_off, out_off, _) = check_config(&off, &[]);
    let _ = std::fs::remove_file(&on);
    let _ = std::fs::remove_file(&off);
    assert_eq!((code_on, code_off), (Some(0), Some(0)), "{out_on}{out_off}");
    assert!(out_off.contains("reload_rollback off"), "{out_off}");
    // Without rollback no RollingBack state is reachable: fewer states.
    assert!(
        section_states(&out_off, 1) < section_states(&out_on, 1),
        "{out_on}{out_off}"
    );
}

#[test]
fn check_config_reports_a_violation_with_its_backends_and_exits_1() {
    let file = conf(
        "bug",
        "[DEFAULT]\nenabled_backends = a, b\nreinit_driver_count = 1\n\n[a]\nvolume_driver = fault\n\n[b]\nvolume_driver = fault\n",
    );
    let (code, out, err) = check_config(&file, &["--plant-bug"]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("counter-example (2 steps; backend 0 stands for any of: a, b):"),
        "{out}"
    );
    assert!(
        out.contains("1 of 1 policy violates an invariant (backends: a, b)"),
        "{out}"
    );
}

#[test]
fn check_config_refuses_an_invalid_file_with_exit_2_naming_the_problem() {
    let file = conf(
        "invalid",
        "[DEFAULT]\nenabled_backends = a\nreinit_driver_count = many\n\n[a]\nvolume_driver = fault\n",
    );
    let (code, out, err) = check_config(&file, &[]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("[DEFAULT] reinit_driver_count: \"many\": expected a whole number"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    let (code, _, err) = check_config(std::path::Path::new("/nonexistent/cinder.conf"), &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("/nonexistent/cinder.conf: No such file"),
        "{err}"
    );
}

#[test]
fn check_config_conflicts_with_max_attempts() {
    let (code, _, err) = check_config(
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/cinder.conf"
        )),
        &["--max-attempts", "3"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("'--config <CONFIG>' cannot be used with '--max-attempts"),
        "{err}"
    );
}

#[test]
fn composition_and_the_product_search_find_the_same_counter_example() {
    // Composition explores one backend and counts; the product search
    // interleaves every backend's events (symmetry-reduced). A violation is
    // the same invariant with a counter-example as short in both. That the
    // two count the same states, n(n+1)/2 for two backends of n states each,
    // is checked by .ci/stage-model on the release binary: the product has
    // millions of states, a long search the test build would only repeat
    // several times slower.
    for backends in [2, 3] {
        let options = CheckOptions {
            plant_bug: true,
            backends,
            ..CheckOptions::default()
        };
        let composed = check(&options)
            .violation
            .expect("composed: planted bug found");
        let product = check(&CheckOptions {
            product: true,
            ..options
        })
        .violation
        .expect("product: planted bug found");
        assert_eq!(composed.message, product.message);
        assert_eq!(composed.trace.len(), product.trace.len());
    }
}

#[test]
fn a_memory_budget_stops_the_search_and_says_where() {
    let options = CheckOptions {
        max_attempts: 3,
        max_inflight: 2,
        backends: 1,
        ..CheckOptions::default()
    };
    for dfs in [false, true] {
        let full = check(&CheckOptions { dfs, ..options });
        assert!(!full.truncated && full.limit.is_none());
        assert!(full.memory_bytes > 0);
        let budget = full.memory_bytes / 4;
        let report = check(&CheckOptions {
            max_memory: budget,
            dfs,
            ..options
        });
        assert!(report.truncated, "dfs {dfs}");
        assert_eq!(report.limit, Some(rekindle::check::Limit::Memory(budget)));
        assert!(
            report.memory_bytes <= budget,
            "dfs {dfs}: {}",
            report.memory_bytes
        );
        assert!(
            report.states > 0 && report.states < full.states,
            "dfs {dfs}"
        );
        let text = report.render();
        assert!(text.contains("limit: truncated at"), "{text}");
        assert!(text.contains("--max-memory"), "{text}");
    }
}

#[test]
fn a_violation_found_by_the_level_that_meets_the_budget_is_still_reported() {
    // The planted bug is found while expanding the level whose tables are
    // the search's largest: a budget one byte below them stops the search
    // there, after the level was expanded, and the violation it found is
    // reported, not swallowed as "truncated".
    let options = CheckOptions {
        plant_bug: true,
        ..CheckOptions::default()
    };
    let unbounded = check(&options);
    let violation = unbounded.violation.expect("the planted bug is found");
    let bounded = check(&CheckOptions {
        max_memory: unbounded.memory_bytes - 1,
        ..options
    });
    assert_eq!(bounded.violation, Some(violation), "{}", bounded.render());
    assert!(!bounded.truncated);
}
