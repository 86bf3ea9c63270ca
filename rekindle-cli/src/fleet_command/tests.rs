//! Tests of `fleet_command`: what a reload's report says changed, the rollout table
//! `fleet status` prints, and the exit statuses of its errors.

use super::driver::changed_backends;
use super::*;

#[test]
fn the_backends_to_wait_for_are_those_the_reload_changed() {
    let report = serde_json::json!({"summary": "x", "outcome": {"outcome": "finished", "backends": {
        "a": {"result": "unchanged", "state": "ready"},
        "b": {"result": "reloaded", "state": "ready"},
        "c": {"result": "added", "ready": true, "state": "ready"},
        "d": {"result": "removed"}}}});
    assert_eq!(
        changed_backends(&report),
        Some(vec!["b".to_string(), "c".to_string()])
    );
    assert_eq!(changed_backends(&serde_json::json!({"summary": "x"})), None);
}

#[test]
fn rollouts_print_as_a_table_latest_first() {
    let row = RolloutRow {
        id: 2,
        cluster: Some("c1".into()),
        max_unavailable: 1,
        min_ready_ms: 10_000,
        state: RolloutState::Halted,
        hosts: vec![
            HostRecord {
                host: "node-1".into(),
                cluster: Some("c1".into()),
                phase: "done".into(),
                request: Some(1),
                report: None,
                backends: None,
            },
            HostRecord {
                host: "node-2".into(),
                cluster: Some("c1".into()),
                phase: "failed".into(),
                request: Some(2),
                report: Some("config rejected: x".into()),
                backends: None,
            },
        ],
        message: "halted at node-2: config rejected: x".into(),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:01:00.000Z".into(),
        driver: "h:1:2".into(),
    };
    let text = table(&[row]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "ID  State   Cluster  Done  Max unavailable  Min ready  Updated                   Message"
        )
    );
    assert_eq!(
        lines.next(),
        Some(
            "2   halted  c1       1/2   1                10s        2026-01-01T00:01:00.000Z  halted at node-2: config rejected: x"
        )
    );
}

#[test]
fn bad_usage_exits_2_and_everything_else_1() {
    assert_eq!(FleetError::Usage("x".into()).exit(), Exit::Usage);
    assert_eq!(FleetError::Refused("x".into()).exit(), Exit::Failed);
}
