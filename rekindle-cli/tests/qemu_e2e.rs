//! End to end with the real binary and real qemu tools: create, attach, write a pattern
//! through NBD with qemu-io, detach, back up, restore into a new volume, read the pattern
//! back; a missing backup store keeps the backup service down until it appears; kill -9
//! in the middle of a backup is resolved at restart; SIGHUP drains an in-flight backup.

#[path = "common/node.rs"]
mod node;

use node::Node;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn attach_write_backup_restore_and_read_the_pattern_back() {
    let node = Node::new("flow", (21809, 21849), true, "");
    let source = node.create("16M");
    let url = node.attach(&source);
    node.qemu_io(&url, "write -P 0xab 0 1M");
    node.qemu_io(&url, "write -P 0x5c 8M 512k");
    // Repeated initialize_connection starts nothing new (same export).
    assert_eq!(node.attach(&source), url);
    node.ok(&["volume", "detach", &source]);
    let backup = node.ok(&["backup", "create", &source])["id"]
        .as_str()
        .expect("id")
        .to_string();
    let chunks = std::fs::read_dir(node.dir.join("backups").join(&backup))
        .expect("backup dir")
        .count();
    assert_eq!(chunks, 17, "16 chunks of 1M and the metadata");
    let target = node.create("16M");
    node.ok(&["backup", "restore", &backup, &target]);
    let url = node.attach(&target);
    node.qemu_io(&url, "read -P 0xab 0 1M");
    node.qemu_io(&url, "read -P 0x5c 8M 512k");
    node.qemu_io(&url, "read -P 0 1M 1M");
    node.ok(&["volume", "detach", &target]);
    // Service rows come from the records database.
    let status = node.status();
    let binaries: Vec<&str> = status["services"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["binary"].as_str())
        .collect();
    assert!(
        binaries.contains(&"cinder-backup") && binaries.contains(&"cinder-volume"),
        "{status}"
    );
    // Extending grows the image (qemu-img resize) and the record.
    let extended = node.ok(&["volume", "extend", &target, "--size", "32M"]);
    assert_eq!(extended["size_bytes"], 32 << 20);
    let image = node
        .dir
        .join("volumes")
        .join(format!("volume-{target}.qcow2"));
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&image)
        .output()
        .expect("qemu-img info");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(info["virtual-size"], 32 << 20);
    // Deleting the backup removes its chunks.
    node.ok(&["backup", "delete", &backup]);
    assert!(!node.dir.join("backups").join(&backup).exists());
}

#[test]
fn a_corrupt_backup_is_refused_on_restore_and_bad_input_is_named() {
    let node = Node::new("corrupt", (21850, 21869), true, "");
    let source = node.create("4M");
    let backup = node.ok(&["backup", "create", &source])["id"]
        .as_str()
        .expect("id")
        .to_string();
    let chunk = node.dir.join("backups").join(&backup).join("chunk-00001");
    let mut bytes = std::fs::read(&chunk).expect("chunk");
    bytes[100] ^= 1;
    std::fs::write(&chunk, bytes).expect("corrupt it");
    let target = node.create("4M");
    let out = node.cli(&["backup", "restore", &backup, &target]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("corrupt") && stderr.contains("chunk-00001"),
        "{stderr}"
    );
    // A connector without an ip is refused before anything is exported.
    std::fs::write(node.dir.join("bad.json"), r#"{"host": "compute-1"}"#).expect("write");
    let bad = node.dir.join("bad.json");
    let out = node.cli(&[
        "volume",
        "attach",
        &source,
        "--connector",
        bad.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connector field `ip`"), "{stderr}");
    let out = node.cli(&["volume", "delete", "../../etc/passwd"]);
    assert!(!out.status.success());
}

#[test]
fn a_missing_backup_store_keeps_the_backup_service_down_until_it_appears() {
    let node = Node::new("store", (21870, 21889), false, "");
    node.wait("a service row for the backup service", |n| {
        n.status()["services"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["binary"] == "cinder-backup"))
    });
    let rows = node.status()["services"].clone();
    let backup_row = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["binary"] == "cinder-backup")
        .cloned()
        .expect("row");
    assert_eq!(backup_row["state"], "down");
    let source = node.create("1M");
    let out = node.cli(&["backup", "create", &source]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the backup service is down") && stderr.contains("no backup was created"),
        "{stderr}"
    );
    assert_eq!(
        node.ok(&["backup", "list", "--json"])
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    // The store appears: up within one periodic_interval (2s) plus a heartbeat.
    std::fs::create_dir_all(node.dir.join("backups")).expect("mount");
    let appeared = Instant::now();
    node.wait("the backup service to come up", |n| {
        n.backend_state("backup") == "ready"
    });
    assert!(
        appeared.elapsed() < Duration::from_secs(5),
        "{:?}",
        appeared.elapsed()
    );
    assert!(
        node.notifications()
            .iter()
            .any(|n| n["event_type"] == "backup.init.success")
    );
    node.ok(&["backup", "create", &source]);
}

#[test]
fn kill_9_in_the_middle_of_a_backup_is_resolved_at_restart() {
    let mut node = Node::new("kill9", (21890, 21909), true, "");
    let source = node.create("400M");
    let url = node.attach(&source);
    node.qemu_io(&url, "write -P 0x42 0 300M");
    node.ok(&["volume", "detach", &source]);
    let control = node.dir.join("control.sock");
    let mut backup = Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .args(["backup", "create", &source, "--control"])
        .arg(&control)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("backup starts");
    // Wait until chunks are being written (seen, not assumed), then kill -9
    // the daemon.
    let dir = node.dir.join("backups");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let writing = std::fs::read_dir(&dir)
            .ok()
            .and_then(|mut d| d.find_map(Result::ok))
            .is_some_and(|e| std::fs::read_dir(e.path()).is_ok_and(|c| c.count() > 2));
        if writing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backup never began writing chunks in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-9", &node.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = node.daemon.take().map(|mut c| c.wait());
    let _ = backup.wait();
    node.start();
    node.wait("the interrupted backup to be resolved", |n| {
        n.ok(&["backup", "list", "--json"])
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["status"] == "error"))
    });
    let listed = node.ok(&["backup", "list", "--json"]);
    assert_eq!(
        node.ok(&["volume", "list", "--json"])
            .as_array()
            .and_then(|v| v.first())
            .map(|v| v["status"].clone()),
        Some("available".into())
    );
    assert!(
        node.notifications()
            .iter()
            .any(|n| n["event_type"] == "record.recovered" && n["payload"]["from"] == "creating")
    );
    // The volume is intact.
    let url = node.attach(&source);
    node.qemu_io(&url, "read -P 0x42 0 300M");
    node.ok(&["volume", "detach", &source]);
    // The failed backup can be deleted.
    let id = listed[0]["id"].as_str().expect("id").to_string();
    node.ok(&["backup", "delete", &id]);
}

#[test]
fn sighup_during_an_in_flight_backup_drains_it_first() {
    let node = Node::new("hup", (21910, 21929), true, "");
    let source = node.create("400M");
    let url = node.attach(&source);
    node.qemu_io(&url, "write -P 0x17 0 300M");
    node.ok(&["volume", "detach", &source]);
    // Change the backup driver's options, then SIGHUP while a backup runs.
    let conf_path = node.dir.join("cinder.conf");
    let conf = std::fs::read_to_string(&conf_path).expect("read");
    std::fs::write(
        &conf_path,
        conf.replace("backup_file_size = 1M", "backup_file_size = 2M"),
    )
    .expect("edit");
    let control = node.dir.join("control.sock");
    let backup = Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .args(["backup", "create", &source, "--control"])
        .arg(&control)
        .output();
    let hup = std::thread::spawn({
        let pid = node.pid();
        move || {
            std::thread::sleep(Duration::from_millis(150));
            Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
        }
    });
    let backup = backup.expect("backup runs");
    let _ = hup.join();
    assert!(
        backup.status.success(),
        "the in-flight backup completed: {}",
        String::from_utf8_lossy(&backup.stderr)
    );
    node.wait("reload.end", |n| {
        n.notifications()
            .iter()
            .any(|e| e["event_type"] == "reload.end")
    });
    let events = node.notifications();
    let end = events
        .iter()
        .find(|e| e["event_type"] == "reload.end")
        .expect("reload.end");
    assert_eq!(end["payload"]["changed"], serde_json::json!(["backup"]));
    assert_eq!(end["payload"]["states"]["backup"], "ready");
}

/// The volume's record in `volume list`.
fn volume_row(node: &Node, id: &str) -> Option<serde_json::Value> {
    node.ok(&["volume", "list", "--json"])
        .as_array()
        .and_then(|v| v.iter().find(|v| v["id"] == id).cloned())
}

/// The backup's record in `backup list`.
fn backup_row(node: &Node, id: &str) -> Option<serde_json::Value> {
    node.ok(&["backup", "list", "--json"])
        .as_array()
        .and_then(|b| b.iter().find(|b| b["id"] == id).cloned())
}

#[test]
fn a_store_lost_after_start_is_never_recreated_and_records_tell_the_truth() {
    // No publisher tick during the test (periodic_interval, last value wins):
    // the operations meet the lost store in the driver itself.
    let node = Node::new("lost", (21930, 21949), true, "periodic_interval = 1h");
    node.wait("the backup service to be ready", |n| {
        n.backend_state("backup") == "ready"
    });
    let source = node.create("1M");
    let kept = node.ok(&["backup", "create", &source])["id"]
        .as_str()
        .expect("id")
        .to_string();
    let target = node.create("1M");
    let store = node.dir.join("backups");
    std::fs::rename(&store, node.dir.join("backups.gone")).expect("mv S S.gone");

    // A backup meets the lost store: error, nothing reached it, S not re-created.
    let out = node.cli(&["backup", "create", &source]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("backup_posix_path")
            && String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!store.exists(), "the write path re-created the store root");
    let failed = node
        .ok(&["backup", "list", "--json"])
        .as_array()
        .and_then(|b| b.iter().find(|b| b["status"] == "error").cloned())
        .expect("an error backup");
    let id = failed["id"].as_str().expect("id").to_string();
    let shown = node.ok(&["backup", "show", &id]);
    assert_eq!(shown["reached_backend"], false, "{shown}");
    // ... so it is deletable while the store is still gone.
    node.ok(&["backup", "delete", &id]);
    assert!(backup_row(&node, &id).is_none());

    // A restore that fails before its first write leaves the volume available.
    let out = node.cli(&["backup", "restore", &kept, &target]);
    assert!(!out.status.success());
    let volume = node
        .ok(&["volume", "list", "--json"])
        .as_array()
        .and_then(|v| v.iter().find(|v| v["id"] == target.as_str()).cloned())
        .expect("target volume");
    assert_eq!(volume["status"], "available", "{volume}");
    assert!(node.notifications().iter().any(|n| {
        n["event_type"] == "backup.restore.error" && n["payload"]["volume_status"] == "available"
    }));
    assert!(!store.exists());

    // Admins reset record states by hand, as Cinder's reset-state: recorded, notified.
    let reset = node.ok(&["volume", "reset-state", &target, "--state", "error"]);
    assert_eq!(
        (reset["from"].as_str(), reset["status"].as_str()),
        (Some("available"), Some("error"))
    );
    node.ok(&["volume", "reset-state", &target, "--state", "available"]);
    node.ok(&["backup", "reset-state", &kept, "--state", "error"]);
    assert_eq!(backup_row(&node, &kept).expect("kept")["status"], "error");
    let out = node.cli(&["volume", "reset-state", &target, "--state", "gone"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr
                .contains("volume reset-state refused: \"gone\" is not a status to set by hand"),
        "{stderr}"
    );
    let events = node.notifications();
    assert_eq!(
        events
            .iter()
            .filter(|n| n["event_type"] == "volume.reset_state")
            .count(),
        2
    );
    assert_eq!(
        events
            .iter()
            .filter(|n| n["event_type"] == "backup.reset_state")
            .count(),
        1
    );
}

#[test]
fn a_store_lost_after_start_takes_the_backup_service_down_and_it_recovers_alone() {
    let node = Node::new("probe", (21950, 21969), true, "");
    node.wait("the backup service to be ready", |n| {
        n.backend_state("backup") == "ready"
    });
    let source = node.create("1M");
    let store = node.dir.join("backups");
    std::fs::rename(&store, node.dir.join("backups.gone")).expect("mv S S.gone");
    // The probe runs on every publisher tick (periodic_interval = 2s).
    node.wait("the backup service row to go down", |n| {
        n.status()["services"].as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["binary"] == "cinder-backup" && r["state"] == "down")
        })
    });
    let out = node.cli(&["backup", "create", &source]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("backup create refused: the backup service is down"),
        "{stderr}"
    );
    assert!(!store.exists(), "nothing re-created the store root");
    // The store returns: the service comes back by itself.
    std::fs::rename(node.dir.join("backups.gone"), &store).expect("mv back");
    node.wait("the backup service to come back", |n| {
        n.backend_state("backup") == "ready"
    });
    node.ok(&["backup", "create", &source]);
}

#[test]
fn a_rollback_whose_old_directory_is_gone_fails_and_retries_the_new_config() {
    let node = Node::new("rollback", (21970, 21989), true, "");
    let conf = node.dir.join("cinder.conf");
    let old_dir = node.dir.join("volumes");
    let new_dir = node.dir.join("volumes-new");
    // The old directory goes away and the new one does not exist yet.
    std::fs::remove_dir_all(&old_dir).expect("rm old volumes_dir");
    let text = std::fs::read_to_string(&conf).expect("config");
    std::fs::write(
        &conf,
        text.replace(
            &format!("volumes_dir = {}", old_dir.display()),
            &format!("volumes_dir = {}", new_dir.display()),
        ),
    )
    .expect("edit config");
    let out = node.cli(&["reload", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let qemu = report["backends"]["qemu-1"].clone();
    // The old instance fails its check: not rolled back, the new config's
    // failure stands.
    assert_eq!(qemu["result"], "failed", "{report}");
    // The new config is what is retried: it comes up once its directory exists.
    std::fs::create_dir_all(&new_dir).expect("mkdir new volumes_dir");
    node.wait("the backend to come up on the new directory", |n| {
        n.backend_state("qemu-1") == "ready"
    });
    let id = node.create("1M");
    assert!(
        std::fs::read_dir(&new_dir)
            .expect("new dir")
            .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().contains(&id))),
        "the volume landed in the new volumes_dir"
    );
}

/// Writes a connector file for `host` and returns its path.
fn connector_file(node: &Node, name: &str, host: &str) -> PathBuf {
    let path = node.dir.join(name);
    std::fs::write(&path, format!(r#"{{"host": "{host}", "ip": "127.0.0.1"}}"#))
        .expect("connector");
    path
}

/// Attaches `id` for the connector in `file`; the NBD url and port.
fn attach_with(node: &Node, id: &str, file: &std::path::Path) -> (String, u64) {
    let info = node.ok(&[
        "volume",
        "attach",
        id,
        "--connector",
        file.to_str().expect("utf-8"),
    ]);
    let port = info["data"]["port"].as_u64().expect("port");
    (format!("nbd://127.0.0.1:{port}/{id}"), port)
}

/// The pid of the qemu-nbd serving `id`.
fn export_pid(id: &str) -> Option<u32> {
    let out = Command::new("pgrep")
        .args(["-f", &format!("qemu-nbd.*--export-name={id}")])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
}

fn kill_9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn restarts(node: &Node, id: &str) -> Vec<serde_json::Value> {
    node.notifications()
        .into_iter()
        .filter(|n| n["event_type"] == "export.restarted" && n["payload"]["volume_id"] == id)
        .collect()
}

#[test]
fn a_killed_export_is_restarted_and_a_dead_endpoint_is_never_handed_out() {
    let node = Node::new("deadexport", (22000, 22019), true, "");
    let id = node.create("4M");
    let (url, port) = attach_with(&node, &id, &node.dir.join("connector.json"));
    node.qemu_io(&url, "write -P 0x11 0 64k");
    // Killed, then asked for again at once (before a publisher tick can
    // notice): the answer is an endpoint that works.
    kill_9(export_pid(&id).expect("qemu-nbd runs"));
    let (again, again_port) = attach_with(&node, &id, &node.dir.join("connector.json"));
    assert_eq!(again_port, port, "restarted on its own port");
    node.qemu_io(&again, "read -P 0x11 0 64k");
    assert_eq!(restarts(&node, &id).len(), 1, "{:?}", node.notifications());
    // Killed with nobody asking: the publisher's tick restarts it; its port
    // is taken meanwhile, so it moves, and the next attach says where.
    let pid = export_pid(&id).expect("qemu-nbd runs");
    kill_9(pid);
    let squatter = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => panic!("port {port} stays busy: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    };
    node.wait("the tick to restart the export", |n| {
        restarts(n, &id).len() == 2
    });
    let restarted = &restarts(&node, &id)[1];
    assert_eq!(restarted["payload"]["old_port"], port);
    assert_ne!(restarted["payload"]["port"], port);
    assert!(
        restarted["payload"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&pid.to_string())),
        "{restarted}"
    );
    assert_eq!(node.backend_state("qemu-1"), "ready");
    let (moved, moved_port) = attach_with(&node, &id, &node.dir.join("connector.json"));
    assert_eq!(
        Some(&moved_port),
        restarted["payload"]["port"].as_u64().as_ref()
    );
    node.qemu_io(&moved, "read -P 0x11 0 64k");
    drop(squatter);
    assert_eq!(restarts(&node, &id).len(), 2, "a live export is left alone");
    node.ok(&["volume", "detach", &id]);
}

#[test]
fn one_host_detaching_leaves_the_other_attached_across_a_restart() {
    let mut node = Node::new("multiattach", (22020, 22039), true, "");
    let id = node.create("4M");
    let src = connector_file(&node, "src.json", "compute-src");
    let dst = connector_file(&node, "dst.json", "compute-dst");
    let (url, _) = attach_with(&node, &id, &src);
    node.qemu_io(&url, "write -P 0x7e 0 64k");
    // A live migration: the destination attaches the same volume.
    let (dst_url, _) = attach_with(&node, &id, &dst);
    assert_eq!(dst_url, url, "one export serves both hosts");
    // Detaching without naming a host is refused while two are attached.
    let out = node.cli(&["volume", "detach", &id]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for word in ["compute-src", "compute-dst", "--connector", "--all"] {
        assert!(said.contains(word), "{word} missing from: {said}");
    }
    let detached = node.ok(&[
        "volume",
        "detach",
        &id,
        "--connector",
        src.to_str().expect("utf-8"),
    ]);
    assert_eq!(detached["status"], "in-use");
    assert_eq!(detached["attached_to"], serde_json::json!(["compute-dst"]));
    node.qemu_io(&dst_url, "read -P 0x7e 0 64k");
    // The source again: it is no longer attached.
    let out = node.cli(&[
        "volume",
        "detach",
        &id,
        "--connector",
        src.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not attached to host compute-src"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Across a restart the destination stays attached and reads.
    let _ = Command::new("kill")
        .args(["-TERM", &node.pid().to_string()])
        .status();
    let _ = node.daemon.take().map(|mut c| c.wait());
    node.start();
    node.qemu_io(&dst_url, "read -P 0x7e 0 64k");
    assert_eq!(volume_row(&node, &id).expect("listed")["status"], "in-use");
    // The last host: the export goes with it.
    let detached = node.ok(&["volume", "detach", &id]);
    assert_eq!(detached["status"], "available");
    assert_eq!(export_pid(&id), None, "export removed with the last host");
}

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
    let text = |args: &[&str]| {
        let out = node.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    assert_eq!(text(&["volume", "list"]), "no volumes\n");
    assert_eq!(text(&["backup", "list"]), "no backups\n");
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
    let table = text(&["volume", "list"]);
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
    let row = text(&["volume", "list"]);
    assert!(
        row.lines().nth(1).is_some_and(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells[1] == "available" && cells[5] == "-"
        }),
        "{row}"
    );

    // backup create --wait: plain lines off a terminal, ending at 100%.
    let started = Instant::now();
    let out = node.cli(&["backup", "create", &source, "--wait"]);
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
        &progress_lines(&node, "backup.createprogress", &backup),
        32 << 20,
    );
    let record = node.ok(&["backup", "show", &backup]);
    assert_eq!(record["status"], "available");
    assert_eq!(record["operation"]["state"], "succeeded", "{record}");
    assert!(record.get("progress").is_none(), "{record}");

    let table = text(&["backup", "list"]);
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
        [backup.as_str(), "available", "32", "MiB", &source],
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

    // backup restore --wait: the same, and the data comes back.
    let target = node.create("32M");
    let out = node.cli(&["backup", "restore", &backup, &target, "--wait"]);
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
        &progress_lines(&node, "backup.restoreprogress", &backup),
        32 << 20,
    );
    let url = node.attach(&target);
    node.qemu_io(&url, "read -P 0x5a 0 24M");
    node.qemu_io(&url, "read -P 0 24M 8M");
    node.ok(&["volume", "detach", &target]);

    // A restore that fails: --wait exits 1 with the reason.
    let chunk = node.dir.join("backups").join(&backup).join("chunk-00003");
    let mut bytes = std::fs::read(&chunk).expect("chunk");
    bytes[7] ^= 1;
    std::fs::write(&chunk, bytes).expect("corrupt it");
    let out = node.cli(&["backup", "restore", &backup, &target, "--wait"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("backup {backup}: restore failed"))
            && stderr.contains("chunk-00003")
            && stderr.contains("corrupt"),
        "{stderr}"
    );
}

/// A table line's columns (columns are separated by two spaces or more).
fn columns(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// `rekindle status --json` as text, for messages anywhere in it.
fn status_text(node: &Node) -> String {
    String::from_utf8_lossy(&node.cli(&["status", "--json"]).stdout).into_owned()
}

/// Whether `volumes_dir` holds a file whose name contains `id`.
fn has_image(dir: &std::path::Path, id: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(id))
    })
}

#[test]
fn a_volumes_dir_moved_away_takes_the_backend_out_is_never_recreated_and_it_recovers_alone() {
    let node = Node::new("volmoved", (22200, 22219), true, "");
    let volumes = node.dir.join("volumes");
    let kept = node.create("1M");
    std::fs::rename(&volumes, node.dir.join("volumes.gone")).expect("mv volumes_dir away");
    // The stats call of the next publisher tick (periodic_interval = 2s) is the probe.
    node.wait("the qemu backend to leave ready", |n| {
        n.backend_state("qemu-1") != "ready"
    });
    assert!(
        status_text(&node).contains("volumes_dir"),
        "status names volumes_dir: {}",
        status_text(&node)
    );
    let out = node.cli(&["volume", "create", "--size", "1M", "--backend", "qemu-1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("volume create refused"),
        "{stderr}"
    );
    let out = node.cli(&["volume", "delete", &kept]);
    assert!(
        !out.status.success(),
        "a delete while volumes_dir is gone is refused"
    );
    assert!(
        volume_row(&node, &kept).is_some(),
        "the volume's record stays"
    );
    assert!(!volumes.exists(), "nothing re-created volumes_dir");

    // An empty stand-in at the same path is not the directory set up: the
    // retried setup does not adopt it and nothing is written into it.
    std::fs::create_dir(&volumes).expect("an empty stand-in");
    // Longer than the default budget's backoffs (1 + 2 + 4 s): a health
    // loss is retried past reinit_driver_count, so it still recovers alone.
    std::thread::sleep(Duration::from_secs(9));
    assert_ne!(
        node.backend_state("qemu-1"),
        "ready",
        "{}",
        status_text(&node)
    );
    let out = node.cli(&["volume", "create", "--size", "1M", "--backend", "qemu-1"]);
    assert!(!out.status.success(), "create refused on the stand-in");
    assert_eq!(
        std::fs::read_dir(&volumes).expect("stand-in").count(),
        0,
        "nothing was written into the stand-in"
    );

    // The real directory returns: Ready by itself, the volume still there.
    std::fs::remove_dir(&volumes).expect("rmdir stand-in");
    std::fs::rename(node.dir.join("volumes.gone"), &volumes).expect("mv back");
    node.wait("the qemu backend to come back by itself", |n| {
        n.backend_state("qemu-1") == "ready"
    });
    assert!(has_image(&volumes, &kept));
    let id = node.create("1M");
    assert!(
        has_image(&volumes, &id),
        "the new volume landed in volumes_dir"
    );
    node.ok(&["volume", "delete", &kept]);
    assert!(!has_image(&volumes, &kept));
}

#[test]
fn backup_posix_require_mount_keeps_a_plain_directory_down_until_reloaded_off() {
    let node = Node::new(
        "reqmount",
        (22220, 22239),
        true,
        "backup_posix_require_mount = true",
    );
    let store = node.dir.join("backups");
    let message = format!(
        "backup_posix_path {} is not a mount point (backup_posix_require_mount = true)",
        store.display()
    );
    node.wait("the refusal to show in status", |n| {
        status_text(n).contains(&message)
    });
    assert_ne!(node.backend_state("backup"), "ready");
    let source = node.create("1M");
    let out = node.cli(&["backup", "create", &source]);
    assert!(!out.status.success(), "backup create refused");
    assert_eq!(std::fs::read_dir(&store).expect("store").count(), 0);

    // The option is reloadable: turned off, the service comes up.
    let conf = node.dir.join("cinder.conf");
    let text = std::fs::read_to_string(&conf).expect("config");
    std::fs::write(
        &conf,
        text.replace(
            "backup_posix_require_mount = true",
            "backup_posix_require_mount = false",
        ),
    )
    .expect("edit config");
    let out = node.cli(&["reload", "--json"]);
    assert!(out.status.success(), "{out:?}");
    node.wait("the backup service to come up", |n| {
        n.backend_state("backup") == "ready"
    });
    node.ok(&["backup", "create", &source]);
}

/// The volume's size on disk as `qemu-img info` reads it.
fn virtual_size(node: &Node, id: &str) -> u64 {
    let image = std::fs::read_dir(node.dir.join("volumes"))
        .expect("volumes_dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("volume-{id}")))
        })
        .expect("the volume's image");
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&image)
        .output()
        .expect("qemu-img runs");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    info["virtual-size"].as_u64().expect("virtual-size")
}

#[test]
fn a_refused_delete_or_extend_leaves_the_volume_as_it_was() {
    let node = Node::new("refusedkept", (22300, 22319), true, "");
    let volumes = node.dir.join("volumes");
    let id = node.create("1M");
    let before = volume_row(&node, &id).expect("the volume's row");
    std::fs::rename(&volumes, node.dir.join("volumes.gone")).expect("mv volumes_dir away");
    node.wait("the qemu backend to leave ready", |n| {
        n.backend_state("qemu-1") != "ready"
    });
    let out = node.cli(&["volume", "delete", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("volume delete refused"),
        "{stderr}"
    );
    assert_eq!(
        volume_row(&node, &id).as_ref(),
        Some(&before),
        "a refused delete changes nothing"
    );
    let out = node.cli(&["volume", "extend", &id, "--size", "2M"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("volume extend refused"),
        "{stderr}"
    );
    assert_eq!(
        volume_row(&node, &id).as_ref(),
        Some(&before),
        "a refused extend changes nothing"
    );
    let out = node.cli(&["volume", "create", "--size", "1M", "--backend", "qemu-1"]);
    assert!(!out.status.success(), "create refused");
    assert_eq!(
        node.ok(&["volume", "list", "--json"])
            .as_array()
            .map(Vec::len),
        Some(1),
        "a refused create leaves no record"
    );
    std::fs::rename(node.dir.join("volumes.gone"), &volumes).expect("mv back");
    node.wait("the qemu backend to come back by itself", |n| {
        n.backend_state("qemu-1") == "ready"
    });
    assert_eq!(volume_row(&node, &id).as_ref(), Some(&before));
    node.ok(&["volume", "extend", &id, "--size", "2M"]);
    node.ok(&["volume", "delete", &id]);
    assert!(volume_row(&node, &id).is_none());
}

#[test]
fn a_restore_into_a_larger_volume_keeps_the_volume_size() {
    // In place (raw) and staged then converted (qcow2).
    for (format, ports) in [("raw", (22320, 22339)), ("qcow2", (22340, 22359))] {
        restore_into_a_larger_volume(format, ports);
    }
}

fn restore_into_a_larger_volume(format: &str, ports: (u16, u16)) {
    let node = Node::new(
        &format!("restorelarger-{format}"),
        ports,
        true,
        &format!("[backend_defaults]\nvolume_format = {format}"),
    );
    let id = node.create("16M");
    let backup = node.ok(&["backup", "create", &id])["id"]
        .as_str()
        .expect("backup id")
        .to_string();
    node.ok(&["volume", "extend", &id, "--size", "32M"]);
    assert_eq!(virtual_size(&node, &id), 32 << 20);
    node.ok(&["backup", "restore", &backup, &id]);
    let row = volume_row(&node, &id).expect("the volume's row");
    assert_eq!(row["size_bytes"], 32u64 << 20);
    assert_eq!(row["status"], "available");
    assert_eq!(
        virtual_size(&node, &id),
        32 << 20,
        "{format}: the image keeps the volume's size"
    );
    // A smaller volume is refused, as Cinder does, and left as it was.
    let small = node.create("8M");
    let out = node.cli(&["backup", "restore", &backup, &small]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("backup restore refused"),
        "{stderr}"
    );
    assert_eq!(virtual_size(&node, &small), 8 << 20);
    assert_eq!(
        volume_row(&node, &small).expect("row")["status"],
        "available"
    );
}

#[test]
fn refusals_name_the_operation_refused() {
    let node = Node::new("refusalnames", (22360, 22379), true, "");
    let id = node.create("1M");
    node.attach(&id);
    let refusal = |args: &[&str]| {
        let out = node.cli(args);
        assert!(!out.status.success(), "{args:?} is refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = refusal(&["volume", "delete", &id]);
    assert!(
        stderr.contains(&format!(
            "volume delete refused: volume {id} is in-use: detach it first"
        )),
        "{stderr}"
    );
    let stderr = refusal(&["volume", "extend", &id, "--size", "2M"]);
    assert!(
        stderr.contains(&format!(
            "volume extend refused: volume {id} is in-use: only available volumes extend"
        )),
        "{stderr}"
    );
    let stderr = refusal(&["volume", "delete", "no-such-volume"]);
    assert!(
        stderr.contains("volume delete refused: no volume no-such-volume"),
        "{stderr}"
    );
    let stderr = refusal(&["backup", "delete", "no-such-backup"]);
    assert!(
        stderr.contains("backup delete refused: no backup no-such-backup"),
        "{stderr}"
    );
    let other = node.create("1M");
    let no_ip = connector_file(&node, "no-ip.json", "compute-2");
    std::fs::write(&no_ip, r#"{"host": "compute-2"}"#).expect("connector");
    let stderr = refusal(&[
        "volume",
        "attach",
        &other,
        "--connector",
        no_ip.to_str().expect("utf-8"),
    ]);
    assert!(
        stderr.contains("volume attach failed: backend `qemu-1`: connector field `ip`"),
        "{stderr}"
    );
}

#[test]
fn a_restore_whose_replace_fails_leaves_the_volume_available_and_no_staged_file() {
    let node = Node::new(
        "replacefails",
        (22380, 22399),
        true,
        "backup_rate_limit = 4M\n[backend_defaults]\nvolume_format = raw",
    );
    let id = node.create("8M");
    let backup = node.ok(&["backup", "create", &id])["id"]
        .as_str()
        .expect("backup id")
        .to_string();
    // 8 MiB at 4 MiB/s: the restore stages for about two seconds, and
    // volumes_dir moves away meanwhile, so the final rename fails.
    let restore = Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .args(["backup", "restore", &backup, &id, "--control"])
        .arg(node.dir.join("control.sock"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("restore starts");
    std::thread::sleep(Duration::from_millis(700));
    let gone = node.dir.join("volumes.gone");
    std::fs::rename(node.dir.join("volumes"), &gone).expect("mv volumes_dir away");
    let out = restore.wait_with_output().expect("restore ends");
    assert!(
        !out.status.success(),
        "the restore fails: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let error = node
        .notifications()
        .into_iter()
        .find(|n| n["event_type"] == "backup.restore.error")
        .expect("backup.restore.error");
    assert_eq!(error["payload"]["volume_written"], false, "{error}");
    assert_eq!(error["payload"]["volume_status"], "available", "{error}");
    assert_eq!(volume_row(&node, &id).expect("row")["status"], "available");
    let left: Vec<String> = std::fs::read_dir(&gone)
        .expect("volumes.gone")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [format!("volume-{id}.raw")],
        "only the volume is left: no staged file"
    );
}
