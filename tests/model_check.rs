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
fn symmetry_reduction_merges_permuted_backends() {
    let one = check(&CheckOptions {
        max_attempts: 1,
        max_inflight: 0,
        backends: 1,
        ..CheckOptions::default()
    });
    let two = check(&CheckOptions {
        max_attempts: 1,
        max_inflight: 0,
        backends: 2,
        ..CheckOptions::default()
    });
    // Unordered pairs with repetition: n(n+1)/2, far below n^2.
    let n = one.states;
    assert!(
        two.states <= n * (n + 1) / 2,
        "{} vs {}",
        two.states,
        n * (n + 1) / 2
    );
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
        "/model/lifecycle_table.pml"
    ))
    .expect("model/lifecycle_table.pml");
    let fresh = rekindle::check::export::promela_table(false);
    assert!(
        committed == fresh,
        "model/lifecycle_table.pml is stale: run `cargo run -- model export > model/lifecycle_table.pml`"
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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/model/check.sh");
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
