//! Lists as tables or JSON, and long backups and restores followed with `--wait`, their
//! progress reported as they run.

use super::*;

/// The progress notifications of `event_type` for `backup`, as (time, payload).
fn progress_lines(
    node: &Node,
    event_type: &str,
    backup: &str,
) -> Vec<(std::time::SystemTime, serde_json::Value)> {
    node.notifications()
        .into_iter()
        .filter(|n| n["event_type"] == event_type && n["payload"]["backup_id"] == backup)
        .map(|n| {
            let at = humantime::parse_rfc3339(n["timestamp"].as_str().expect("timestamp"))
                .expect("RFC 3339");
            (at, n["payload"].clone())
        })
        .collect()
}

/// Progress lines: at least one while running with 0 < percent < 100,
/// percents never going back, lines at least a second apart, and a last
/// one at 100% with every byte done.
fn assert_progress(lines: &[(std::time::SystemTime, serde_json::Value)], total: u64) {
    let percents: Vec<u64> = lines
        .iter()
        .map(|(_, p)| p["percent"].as_u64().expect("percent"))
        .collect();
    assert!(percents.len() >= 2, "{lines:?}");
    let (last, running) = lines.split_last().expect("lines");
    assert!(
        running
            .iter()
            .all(|(_, p)| (1..100).contains(&p["percent"].as_u64().unwrap_or(0))),
        "{percents:?}"
    );
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    for pair in running.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0).expect("in order");
        assert!(gap >= Duration::from_millis(990), "{gap:?} in {percents:?}");
    }
    assert_eq!(last.1["percent"], 100, "{percents:?}");
    assert_eq!(last.1["bytes_done"], total);
    assert_eq!(last.1["bytes_total"], total);
    for (_, p) in running {
        assert_eq!(p["bytes_total"], total);
        let done = p["bytes_done"].as_u64().expect("bytes_done");
        // Every byte may be copied while the call still syncs: 99% then.
        assert!(0 < done && done <= total, "{p}");
    }
}

#[test]
fn lists_are_tables_or_json_and_long_backups_and_restores_report_progress() {
    // 32 MiB copied at 8 MiB/s: about 4 s each way, whatever the disk.
    let node = Node::new(
        "lists",
        (22100, 22119),
        true,
        "backup_rate_limit = 8M\n[backend_defaults]\nvolume_format = raw",
    );
    let source = volumes_are_listed(&node);
    let backup = a_backup_waited_for_shows_its_progress(&node, &source);
    backups_are_listed(&node, &backup, &source);
    let target = a_restore_waited_for_shows_its_progress(&node, &backup);
    a_failed_restore_waited_for_exits_1(&node, &backup, &target);
}

/// `node`'s `rekindle` output for `args`, which must succeed.
fn text(node: &Node, args: &[&str]) -> String {
    let out = node.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Empty lists, then a 32 MiB volume listed attached and detached: its id.
fn volumes_are_listed(node: &Node) -> String {
    assert_eq!(text(node, &["volume", "list"]), "no volumes\n");
    assert_eq!(text(node, &["backup", "list"]), "no backups\n");
    assert_eq!(
        node.ok(&["volume", "list", "--json"]),
        serde_json::json!([])
    );
    assert_eq!(
        node.ok(&["backup", "list", "--json"]),
        serde_json::json!([])
    );

    let source = node.create("32M");
    let url = node.attach(&source);
    node.qemu_io(&url, "write -P 0x5a 0 24M");
    let table = text(node, &["volume", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    let header = columns(lines[0]);
    assert_eq!(
        header,
        ["ID", "Status", "Size", "Backend", "Attached to", "Updated"],
        "{table}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..5],
        [&source, "in-use", "32", "MiB", "qemu-1"],
        "{table}"
    );
    assert_eq!(row[5], "compute-1", "{table}");
    let rows = node.ok(&["volume", "list", "--json"]);
    let fields: Vec<&String> = rows[0].as_object().expect("row").keys().collect();
    assert_eq!(
        fields,
        [
            "attached_to",
            "backend",
            "id",
            "size_bytes",
            "status",
            "updated_at"
        ],
        "{rows}"
    );
    assert_eq!(rows[0]["attached_to"], serde_json::json!(["compute-1"]));
    assert_eq!(rows[0]["size_bytes"], 32 << 20);
    assert_eq!(rows[0]["status"], "in-use");
    node.ok(&["volume", "detach", &source]);
    let row = text(node, &["volume", "list"]);
    assert!(
        row.lines().nth(1).is_some_and(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells[1] == "available" && cells[5] == "-"
        }),
        "{row}"
    );
    source
}

/// `backup create --wait`: plain lines off a terminal, ending at 100%; the
/// backup's id.
fn a_backup_waited_for_shows_its_progress(node: &Node, source: &str) -> String {
    // backup create --wait: plain lines off a terminal, ending at 100%.
    let started = Instant::now();
    let out = node.cli(&["backup", "create", source, "--wait"]);
    let took = started.elapsed();
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took >= Duration::from_secs(3), "throttled: {took:?}");
    let shown_lines: Vec<&str> = shown.lines().collect();
    let last = shown_lines.last().expect("a line");
    assert!(
        last.ends_with("100% (32 MiB of 32 MiB): available"),
        "{shown}"
    );
    let backup = last
        .strip_prefix("backup ")
        .and_then(|l| l.split(':').next())
        .expect("backup id")
        .to_string();
    let shown_percents: Vec<u64> = shown_lines
        .iter()
        .filter_map(|l| l.split_whitespace().find(|w| w.ends_with('%')))
        .map(|w| w.trim_end_matches('%').parse().expect("percent"))
        .collect();
    assert!(
        shown_percents.iter().any(|p| (1..100).contains(p)),
        "progress shown while it ran: {shown}"
    );
    assert!(shown_percents.windows(2).all(|w| w[0] <= w[1]), "{shown}");
    assert_progress(
        &progress_lines(node, "backup.createprogress", &backup),
        32 << 20,
    );
    let record = node.ok(&["backup", "show", &backup]);
    assert_eq!(record["status"], "available");
    assert_eq!(record["operation"]["state"], "succeeded", "{record}");
    assert!(record.get("progress").is_none(), "{record}");
    backup
}

/// `backup list` as a table and as JSON.
fn backups_are_listed(node: &Node, backup: &str, source: &str) {
    let table = text(node, &["backup", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    let header = columns(lines[0]);
    assert_eq!(
        header,
        ["ID", "Status", "Size", "Volume", "Updated"],
        "{table}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..5],
        [backup, "available", "32", "MiB", source],
        "{table}"
    );
    let rows = node.ok(&["backup", "list", "--json"]);
    let fields: Vec<&String> = rows[0].as_object().expect("row").keys().collect();
    assert_eq!(
        fields,
        ["id", "size_bytes", "status", "updated_at", "volume_id"],
        "{rows}"
    );
    assert_eq!(rows[0]["size_bytes"], 32 << 20);
}

/// `backup restore --wait`: the same, and the data comes back; the target.
fn a_restore_waited_for_shows_its_progress(node: &Node, backup: &str) -> String {
    // backup restore --wait: the same, and the data comes back.
    let target = node.create("32M");
    let out = node.cli(&["backup", "restore", backup, &target, "--wait"]);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown
            .lines()
            .last()
            .is_some_and(|l| l.contains(&format!("restore into {target}"))
                && l.ends_with("100% (32 MiB of 32 MiB): restored")),
        "{shown}"
    );
    assert_progress(
        &progress_lines(node, "backup.restoreprogress", backup),
        32 << 20,
    );
    let url = node.attach(&target);
    node.qemu_io(&url, "read -P 0x5a 0 24M");
    node.qemu_io(&url, "read -P 0 24M 8M");
    node.ok(&["volume", "detach", &target]);
    target
}

/// A restore that fails: `--wait` exits 1 with the reason.
fn a_failed_restore_waited_for_exits_1(node: &Node, backup: &str, target: &str) {
    // A restore that fails: --wait exits 1 with the reason.
    let chunk = node.dir.join("backups").join(backup).join("chunk-00003");
    let mut bytes = std::fs::read(&chunk).expect("chunk");
    bytes[7] ^= 1;
    std::fs::write(&chunk, bytes).expect("corrupt it");
    let out = node.cli(&["backup", "restore", backup, target, "--wait"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("backup {backup}: restore failed"))
            && stderr.contains("chunk-00003")
            && stderr.contains("corrupt"),
        "{stderr}"
    );
}
