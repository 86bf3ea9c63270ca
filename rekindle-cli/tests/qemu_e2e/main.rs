//! End to end with the real binary and real qemu tools: create, attach, write a pattern
//! through NBD with qemu-io, detach, back up, restore into a new volume, read the pattern
//! back; a missing backup store keeps the backup service down until it appears; kill -9
//! in the middle of a backup is resolved at restart; SIGHUP drains an in-flight backup.

#[path = "../common/daemon.rs"]
mod daemon;
#[path = "../common/node.rs"]
mod node;

mod exports;
mod lists;
mod refusals;

use daemon::spawn_cli;
use node::Node;
use std::path::PathBuf;
use std::process::Command;
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
    assert_eq!(image_info(&image)["virtual-size"], 32 << 20);
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
    let out = node.with_connector("attach", &source, &bad);
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
    let mut backup = spawn_cli(&control, &["backup", "create", &source]);
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

/// `qemu-img info` of the image at `path`, as JSON.
fn image_info(path: &std::path::Path) -> serde_json::Value {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .expect("qemu-img runs");
    serde_json::from_slice(&out.stdout).expect("JSON")
}
