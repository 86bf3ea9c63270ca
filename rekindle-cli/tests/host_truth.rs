//! Host truth with the real binary and real qemu tools: an export that cannot start fails
//! fast and wedges nothing, no server runs without a record, the state dir is owned by one
//! daemon, busy volumes are guarded, the state dir's write faults are named and shown, and
//! a dead restore's staged copy does not outlive its restart.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/node.rs"]
mod node;

use daemon::spawn_cli;
use node::Node;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the CLI against `node`, giving up (and killing it) after `limit`:
/// `None` means it did not answer in time.
fn cli_within(node: &Node, limit: Duration, args: &[&str]) -> Option<Output> {
    let mut child = spawn_cli(&node.dir.join("control.sock"), args);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The CLI's answer within 20 s (a hang fails the test, naming the command).
fn answered(node: &Node, args: &[&str]) -> Output {
    cli_within(node, Duration::from_secs(20), args)
        .unwrap_or_else(|| panic!("{args:?} got no answer within 20 s"))
}

fn text(out: &Output) -> String {
    daemon::output_text(out)
}

/// The pids of the qemu-nbd servers whose command line names `dir`.
fn servers_under(dir: &Path) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-f", &format!("qemu-nbd.*{}", dir.display())])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Zombie children of `pid` (a process it started and never reaped).
fn zombie_children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let mut fields = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace())
                .into_iter()
                .flatten();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
            state == Some("Z") && ppid == Some(pid)
        })
        .collect()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

/// A `qemu-nbd` serving `image` on loopback `port`, as an admin (or, with
/// `env`, a daemon) would start it.
fn nbd_server(image: &Path, port: u16, env: Option<(&str, String)>) -> Child {
    let mut command = Command::new("qemu-nbd");
    command
        .args(["--persistent", "--format=qcow2", "--bind=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((key, value)) = env {
        command.env(key, value);
    }
    command.spawn().expect("qemu-nbd")
}

struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The state of qemu-1's service row in a `status --json` answer.
fn volume_row_state(status: &serde_json::Value) -> String {
    status["services"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["backend"] == "qemu-1"))
        .and_then(|r| r["state"].as_str())
        .unwrap_or("<no row>")
        .to_string()
}

fn connector(node: &Node) -> String {
    node.dir
        .join("connector.json")
        .to_str()
        .expect("utf-8")
        .to_string()
}

fn volume_status(node: &Node, id: &str) -> String {
    node.ok(&["volume", "list", "--json"])
        .as_array()
        .expect("rows")
        .iter()
        .find(|v| v["id"] == id)
        .and_then(|v| v["status"].as_str())
        .unwrap_or("<no record>")
        .to_string()
}

#[test]
fn an_export_that_cannot_start_fails_in_words_and_the_backend_keeps_serving() {
    let node = Node::new("nbd-held", (23000, 23003), false, "");
    let v1 = node.create("64M");
    let v2 = node.create("64M");
    let v3 = node.create("64M");
    node.attach(&v1);
    // An admin's own qemu-nbd holds V2's image (its write lock).
    let image = node.dir.join("volumes").join(format!("volume-{v2}.qcow2"));
    let _admin = Reaped(nbd_server(&image, 23099, None));
    wait_listening(23099);
    let conn = connector(&node);
    let started = Instant::now();
    let out = answered(&node, &["volume", "attach", &v2, "--connector", &conn]);
    assert!(
        !out.status.success(),
        "attach of a held image must fail: {}",
        text(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it failed after {:?}, not within the export deadline",
        started.elapsed()
    );
    assert!(
        text(&out).contains("qemu-nbd") && text(&out).to_lowercase().contains("lock"),
        "the refusal names qemu-nbd's own reason: {}",
        text(&out)
    );
    // Nothing is wedged: a healthy volume attaches, another detaches.
    let out = answered(&node, &["volume", "attach", &v3, "--connector", &conn]);
    assert!(out.status.success(), "{}", text(&out));
    let out = answered(&node, &["volume", "detach", &v1, "--all"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(volume_status(&node, &v2), "available");
    assert_eq!(
        zombie_children(node.pid()),
        Vec::<u32>::new(),
        "the failed qemu-nbd was reaped"
    );
}

#[test]
fn a_server_no_record_names_is_stopped_on_the_next_tick() {
    let node = Node::new("nbd-orphan", (23010, 23013), false, "");
    let v1 = node.create("64M");
    // As if the daemon died between starting a server and recording it.
    let image = node.dir.join("volumes").join(format!("volume-{v1}.qcow2"));
    let mut orphan = Reaped(nbd_server(
        &image,
        23012,
        Some((
            "REKINDLE_QEMU_BACKEND",
            format!("qemu-1@{}", node.dir.join("volumes").display()),
        )),
    ));
    wait_listening(23012);
    // An admin's own server (no owner in its environment) is left alone.
    let v2 = node.create("64M");
    let admin_image = node.dir.join("volumes").join(format!("volume-{v2}.qcow2"));
    let mut admin = Reaped(nbd_server(&admin_image, 23098, None));
    wait_listening(23098);
    // Another daemon's backend of the same name (its own volumes_dir) is
    // not this one's either.
    let v3 = node.create("64M");
    let other_image = node.dir.join("volumes").join(format!("volume-{v3}.qcow2"));
    let mut other = Reaped(nbd_server(
        &other_image,
        23097,
        Some((
            "REKINDLE_QEMU_BACKEND",
            "qemu-1@/elsewhere/volumes".to_string(),
        )),
    ));
    wait_listening(23097);
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(status) = orphan.0.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        exited.is_some(),
        "the unrecorded server of qemu-1 still runs after 20 s"
    );
    assert!(
        admin.0.try_wait().expect("try_wait").is_none(),
        "a server the backend did not start is not its to stop"
    );
    assert!(
        other.0.try_wait().expect("try_wait").is_none(),
        "another daemon's backend of the same name keeps its server"
    );
    // The volume then attaches normally.
    node.attach(&v1);
}

#[test]
fn a_refused_attach_on_a_full_state_dir_leaves_no_server_and_names_the_disk() {
    assert!(
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0")),
        "this test mounts a tmpfs: run it as root (CI does)"
    );
    let mut node = Node::prepare("full", (23020, 23023), false, "");
    let state = node.dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&state)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a 1 MiB tmpfs on the state dir");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    node.start();
    let v1 = node.create("64M");
    let conn = connector(&node);
    // Fill it.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", state.join("filler").display()))
        .stderr(Stdio::null())
        .status();
    let out = answered(
        &node,
        &["volume", "create", "--size", "64M", "--backend", "qemu-1"],
    );
    assert!(
        !out.status.success(),
        "a create with a full state dir must fail"
    );
    assert!(
        text(&out).contains("no space left on device")
            && text(&out).contains(&state.display().to_string()),
        "the refusal names the condition and the path: {}",
        text(&out)
    );
    let out = answered(&node, &["volume", "attach", &v1, "--connector", &conn]);
    assert!(
        !out.status.success(),
        "the attach cannot be recorded: {}",
        text(&out)
    );
    assert_eq!(
        servers_under(&node.dir),
        Vec::<u32>::new(),
        "a refused attach leaves no qemu-nbd running"
    );
    let images = std::fs::read_dir(node.dir.join("volumes"))
        .expect("volumes")
        .count();
    assert_eq!(images, 1, "no image without a record");
    // Status says the records cannot be written and no row is up.
    node.wait("the service rows to go down", |n| {
        let status = n.status();
        let rows = status["services"].as_array().cloned().unwrap_or_default();
        !rows.is_empty()
            && rows.iter().all(|r| r["state"] == "down")
            && status["records_fault"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("no space left on device"))
    });
    // Space back: everything works again without a restart.
    std::fs::remove_file(state.join("filler")).expect("free space");
    node.wait("the volume service row to come back up", |n| {
        let status = n.status();
        volume_row_state(&status) == "up" && status.get("records_fault").is_none()
    });
    let out = answered(&node, &["volume", "attach", &v1, "--connector", &conn]);
    assert!(out.status.success(), "{}", text(&out));
    let out = answered(&node, &["volume", "detach", &v1, "--all"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_read_only_state_dir_is_named_and_shown() {
    assert!(
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0")),
        "this test mounts a file system: run it as root (CI does)"
    );
    let mut node = Node::prepare("rofs", (23030, 23033), false, "");
    let state = node.dir.join("state");
    let image = node.dir.join("state.img");
    std::fs::create_dir_all(&state).expect("state dir");
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().expect(program);
        assert!(out.status.success(), "{program} {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let img = image.to_str().expect("utf-8");
    let dir = state.to_str().expect("utf-8");
    run("truncate", &["-s", "64M", img]);
    run("mkfs.ext4", &["-q", "-F", img]);
    // As production state dirs are: an ext4 error remounts it read-only.
    run("mount", &["-o", "loop,errors=remount-ro", img, dir]);
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let mut unmount = Unmount(state.clone());
    node.start();
    let v1 = node.create("64M");
    let source = run("findmnt", &["-n", "-o", "SOURCE", dir]);
    let device = source.rsplit('/').next().expect("device").to_string();
    std::fs::write(
        format!("/sys/fs/ext4/{device}/trigger_fs_error"),
        "rekindle test\n",
    )
    .expect("trigger an ext4 error");
    let out = answered(
        &node,
        &["volume", "create", "--size", "64M", "--backend", "qemu-1"],
    );
    assert!(
        !out.status.success(),
        "a create on a read-only state dir must fail"
    );
    assert!(
        text(&out).contains("read-only file system") && text(&out).contains(dir),
        "the refusal names the condition and the path: {}",
        text(&out)
    );
    let out = answered(&node, &["volume", "delete", &v1]);
    assert!(
        !out.status.success(),
        "a delete that cannot be recorded is refused"
    );
    assert_eq!(volume_status(&node, &v1), "available", "reads still answer");
    assert!(
        node.dir
            .join("volumes")
            .join(format!("volume-{v1}.qcow2"))
            .exists()
    );
    node.wait("the volume service row to go down", |n| {
        let status = n.status();
        volume_row_state(&status) == "down"
            && status["records_fault"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("read-only file system"))
    });
    let table = text(&node.cli(&["status"]));
    assert!(table.contains("Records cannot be written since"), "{table}");
    // The operator's repair: stop, fsck, mount, start; then all is as it was.
    let mut daemon = node.daemon.take().expect("daemon");
    let _ = Command::new("kill").arg(daemon.id().to_string()).status();
    daemon.wait().expect("daemon exits");
    run("umount", &[dir]);
    let _ = Command::new("e2fsck").args(["-fy", img]).output();
    run("mount", &["-o", "loop,errors=remount-ro", img, dir]);
    unmount.0 = state.clone();
    node.start();
    assert_eq!(volume_status(&node, &v1), "available");
    node.create("64M");
}

#[test]
fn a_second_daemon_on_the_same_state_dir_exits_naming_it_and_changes_nothing() {
    let mut node = Node::prepare("two-daemons", (23040, 23043), false, "");
    let conf = node.dir.join("cinder.conf");
    let text_conf = std::fs::read_to_string(&conf).expect("config").replace(
        "enabled_backends = qemu-1",
        "enabled_backends = qemu-1, slow",
    ) + "[slow]\nvolume_driver = fault\nfault_op_delay = 6s\n";
    std::fs::write(&conf, text_conf).expect("config");
    node.start();
    node.wait("the slow backend to be ready", |n| {
        n.backend_state("slow") == "ready"
    });
    let v1 = node.create("64M");
    let url = node.attach(&v1);
    let first_pid = node.pid();
    let slow = spawn_cli(
        &node.dir.join("control.sock"),
        &["volume", "create", "--size", "1G", "--backend", "slow"],
    );
    node.wait("the slow create to be recorded", |n| {
        n.ok(&["volume", "list", "--json"])
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["status"] == "creating"))
    });
    let second = daemon::run_command(
        &conf,
        &node.dir.join("second.sock"),
        &node.dir.join("second.jsonl"),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("second daemon");
    let mut second = Reaped(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the second daemon still runs after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    use std::io::Read;
    second
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    let state = node.dir.join("state");
    assert!(
        stderr.contains(&format!("state_dir {}", state.display()))
            && stderr.contains(&format!("pid {first_pid}")),
        "the refusal names the state dir and the pid holding it: {stderr}"
    );
    let recovered = std::fs::read_to_string(node.dir.join("second.jsonl")).unwrap_or_default();
    assert!(
        !recovered.contains("record.recovered"),
        "the second daemon resolved nothing: {recovered}"
    );
    let out = slow.wait_with_output().expect("slow create");
    assert!(out.status.success(), "{}", text(&out));
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(volume_status(&node, &id), "available");
    node.qemu_io(&url, "read 0 4k");
}

/// A node with raw images whose backups and restores of a 64 MiB volume
/// take seconds (restores of raw images are staged beside the target).
fn slow_backups(name: &str, ports: (u16, u16)) -> Node {
    let mut node = Node::prepare(name, ports, true, "backup_rate_limit = 8M\n");
    let conf = node.dir.join("cinder.conf");
    let text = std::fs::read_to_string(&conf).expect("config") + "volume_format = raw\n";
    std::fs::write(&conf, text).expect("config");
    node.start();
    node
}

fn wait_status(node: &Node, id: &str, status: &str) {
    node.wait(&format!("volume {id} to be {status}"), |n| {
        volume_status(n, id) == status
    });
}

/// Delete, extend, attach and a backup of busy `volume` are each refused,
/// naming the work in progress (`busy_with`).
fn refused_while_busy(node: &Node, volume: &str, conn: &str, busy_with: &str) {
    for args in [
        vec!["volume", "delete", volume],
        vec!["volume", "extend", volume, "--size", "128M"],
        vec!["volume", "attach", volume, "--connector", conn],
        vec!["backup", "create", volume],
    ] {
        let out = node.cli(&args);
        assert!(!out.status.success(), "{args:?} must be refused");
        assert!(text(&out).contains(busy_with), "{args:?}: {}", text(&out));
    }
}

#[test]
fn busy_volumes_are_guarded_naming_the_operation_in_progress() {
    let node = slow_backups("busy", (23050, 23053));
    let v1 = node.create("64M");
    let conn = connector(&node);
    // The source of a running backup is backing-up.
    let backup = spawn_cli(
        &node.dir.join("control.sock"),
        &["backup", "create", &v1, "--wait"],
    );
    wait_status(&node, &v1, "backing-up");
    refused_while_busy(&node, &v1, &conn, "a backup of it is in progress");
    let out = backup.wait_with_output().expect("backup");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(volume_status(&node, &v1), "available", "back to its status");
    let backup_id = node.ok(&["backup", "list", "--json"])[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The target of a running restore is restoring-backup.
    let v2 = node.create("64M");
    let restore = spawn_cli(
        &node.dir.join("control.sock"),
        &["backup", "restore", &backup_id, &v2, "--wait"],
    );
    wait_status(&node, &v2, "restoring-backup");
    refused_while_busy(&node, &v2, &conn, "a restore into it is in progress");
    let out = restore.wait_with_output().expect("restore");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(volume_status(&node, &v2), "available");
    assert!(
        node.dir
            .join("volumes")
            .join(format!("volume-{v2}.raw"))
            .exists()
    );
}

#[test]
fn reset_state_of_an_exported_volume_needs_force_which_detaches_first() {
    let node = Node::new("reset-force", (23060, 23063), true, "");
    let v1 = node.create("64M");
    let url = node.attach(&v1);
    let out = node.cli(&["volume", "reset-state", &v1, "--state", "available"]);
    assert!(!out.status.success(), "refused while attached");
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(
        volume_status(&node, &v1),
        "in-use",
        "a refusal changes nothing"
    );
    node.qemu_io(&url, "read 0 4k");
    let answer = node.ok(&[
        "volume",
        "reset-state",
        &v1,
        "--state",
        "available",
        "--force",
    ]);
    assert_eq!(answer["status"], "available");
    assert_eq!(
        servers_under(&node.dir),
        Vec::<u32>::new(),
        "its export is gone"
    );
    node.attach(&v1);
    let out = node.cli(&["volume", "reset-state", &v1, "--state", "in-use"]);
    assert!(
        out.status.success(),
        "in-use keeps the export: {}",
        text(&out)
    );
    assert_eq!(servers_under(&node.dir).len(), 1);
}

#[test]
fn a_killed_restore_leaves_no_staged_copy_after_restart() {
    let mut node = slow_backups("staged", (23070, 23073));
    let v1 = node.create("64M");
    let out = node.cli(&["backup", "create", &v1, "--wait"]);
    assert!(out.status.success(), "{}", text(&out));
    let backup_id = node.ok(&["backup", "list", "--json"])[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let v2 = node.create("64M");
    let staged = node
        .dir
        .join("volumes")
        .join(format!(".volume-{v2}.raw.restoring"));
    let _restore = Reaped(spawn_cli(
        &node.dir.join("control.sock"),
        &["backup", "restore", &backup_id, &v2],
    ));
    node.wait("the restore to stage its copy", |_| staged.exists());
    let mut daemon = node.daemon.take().expect("daemon");
    daemon.kill().expect("kill -9");
    daemon.wait().expect("reaped");
    assert!(staged.exists(), "the killed restore left its staged copy");
    node.start();
    assert!(
        !staged.exists(),
        "the restart removed the dead restore's staged copy"
    );
    let _ = node.cli(&["volume", "reset-state", &v2, "--state", "available"]);
    node.ok(&["volume", "delete", &v2]);
    let left: Vec<String> = std::fs::read_dir(node.dir.join("volumes"))
        .expect("volumes")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&v2))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}
