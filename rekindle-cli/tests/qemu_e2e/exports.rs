//! Exports: a killed qemu-nbd is restarted and a dead endpoint never handed out; one
//! host detaching leaves the others attached, across a restart.

use super::*;

/// Writes a connector file for `host` and returns its path.
pub(super) fn connector_file(node: &Node, name: &str, host: &str) -> PathBuf {
    let path = node.dir.join(name);
    std::fs::write(&path, format!(r#"{{"host": "{host}", "ip": "127.0.0.1"}}"#))
        .expect("connector");
    path
}

/// Attaches `id` for the connector in `file`; the NBD url and port.
fn attach_with(node: &Node, id: &str, file: &std::path::Path) -> (String, u64) {
    let info = node.ok_with_connector("attach", id, file);
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
    let detached = node.ok_with_connector("detach", &id, &src);
    assert_eq!(detached["status"], "in-use");
    assert_eq!(detached["attached_to"], serde_json::json!(["compute-dst"]));
    node.qemu_io(&dst_url, "read -P 0x7e 0 64k");
    // The source again: it is no longer attached.
    let out = node.with_connector("detach", &id, &src);
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
