//! Refused or failed operations leave records as they were: deletes and extends,
//! restores into larger volumes, a replace that fails, refusals naming the operation.

use super::*;

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
    image_info(&image)["virtual-size"]
        .as_u64()
        .expect("virtual-size")
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
    let no_ip = exports::connector_file(&node, "no-ip.json", "compute-2");
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
    let restore = spawn_cli(
        &node.dir.join("control.sock"),
        &["backup", "restore", &backup, &id],
    );
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
