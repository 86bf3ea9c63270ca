//! The real `rekindle` binary as a process: starts on a config file, answers
//! `status`, reloads on a real SIGHUP (sent with `kill`), rejects a broken file,
//! and exits 0 on SIGTERM. Notifications are read from the file it writes.

#[path = "common/daemon.rs"]
mod daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{BIN, Daemon, count, kill, notifications_in, scratch, spawn_cli};

fn notifications(dir: &Path) -> Vec<serde_json::Value> {
    notifications_in(&dir.join("notifications.jsonl"))
}

fn wait_for(dir: &Path, what: &str, pred: impl Fn(&[serde_json::Value]) -> bool) {
    daemon::wait_until(
        what,
        || pred(&notifications(dir)),
        || format!("notifications: {:#?}", notifications(dir)),
    );
}

const CONFIG: &str = "[DEFAULT]\nenabled_backends = a, b\nhost = test\n[a]\nvolume_driver = fault\n[b]\nvolume_driver = fault\n";

#[test]
fn sighup_reloads_a_changed_backend_and_a_broken_file_is_rejected() {
    let dir = scratch("sighup");
    let config = dir.join("cinder.conf");
    std::fs::write(&config, CONFIG).expect("write config");
    let mut daemon = Daemon::start(&dir, &[]);
    let (socket, pid) = (daemon.socket(), daemon.pid());
    wait_for(&dir, "both backends ready", |e| {
        count(e, "driver.init.end") == 2
    });

    let mode = std::fs::metadata(&socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    assert_eq!(mode.expect("socket exists") & 0o777, 0o600);
    let report = daemon::ok_at(&socket, &["status", "--json"]);
    assert_eq!(report["backends"][0]["name"], "a");
    assert_eq!(report["backends"][0]["state"], "ready");

    // Change b only, then a real SIGHUP.
    std::fs::write(&config, format!("{CONFIG}fault_op_delay = 1s\n")).expect("edit config");
    kill(pid, "-HUP");
    wait_for(&dir, "reload.end", |e| count(e, "reload.end") == 1);
    let events = notifications(&dir);
    let end = events
        .iter()
        .find(|e| e["event_type"] == "reload.end")
        .expect("reload.end");
    assert_eq!(end["payload"]["changed"], serde_json::json!(["b"]));
    assert_eq!(end["payload"]["unchanged"], serde_json::json!(["a"]));
    let inits = |backend: &str| {
        events
            .iter()
            .filter(|e| e["event_type"] == "driver.init.start" && e["backend"] == backend)
            .count()
    };
    assert_eq!(
        (inits("a"), inits("b")),
        (1, 2),
        "only b was re-initialized"
    );

    // A broken file is rejected; the old config keeps serving.
    std::fs::write(
        &config,
        "[DEFAULT]\nenabled_backends = a\n[a]\nreinit_driver_count = lots\nvolume_driver = fault\n",
    )
    .expect("break config");
    kill(pid, "-HUP");
    wait_for(&dir, "reload.rejected", |e| {
        count(e, "reload.rejected") == 1
    });
    let events = notifications(&dir);
    let rejected = events
        .iter()
        .find(|e| e["event_type"] == "reload.rejected")
        .expect("rejected");
    let error = rejected["payload"]["error"].as_str().expect("error text");
    assert!(
        error.contains("cinder.conf: [a] reinit_driver_count: \"lots\""),
        "{error}"
    );

    // SIGTERM: graceful shutdown, exit 0.
    kill(pid, "-TERM");
    let exit = daemon.child.wait().expect("daemon exits");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_broken_config_at_start_is_a_clear_error_and_exit_1() {
    let dir = scratch("broken");
    let config = dir.join("cinder.conf");
    std::fs::write(&config, "[DEFAULT]\nenabled_backends = a\n").expect("write config");
    let out = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "[DEFAULT] enabled_backends: backend `a` is listed but the file has no [a] section"
        ),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn under_systemd_it_speaks_the_notify_reload_protocol() {
    use std::os::unix::net::UnixDatagram;
    let dir = scratch("systemd");
    let config = dir.join("cinder.conf");
    std::fs::write(&config, CONFIG).expect("write config");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let child = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
    let pid = child.id();
    let mut daemon = Daemon {
        child,
        dir: dir.clone(),
    };
    let mut buffer = [0u8; 4096];
    let mut receive = || {
        let n = socket
            .recv(&mut buffer)
            .expect("a notification from the daemon");
        String::from_utf8_lossy(&buffer[..n]).to_string()
    };
    let ready = receive();
    assert!(
        ready.contains("READY=1") && ready.contains("STATUS="),
        "{ready}"
    );
    // The configured backends are counted, not only those that published.
    assert!(ready.contains("/2 backends ready"), "{ready}");
    // STATUS= follows the backends within a second, not a report_interval.
    let started = Instant::now();
    let mut status = ready.clone();
    while !status.contains("STATUS=2/2 backends ready") {
        status = receive();
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{status}");
    kill(pid, "-HUP");
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.contains("READY=1")) {
        seen.push(receive());
    }
    let reloading = seen
        .iter()
        .find(|m| m.contains("RELOADING=1"))
        .expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    // A rejected file is answered on this channel too: RELOADING=1, then
    // READY=1 with a STATUS= saying so.
    std::fs::write(
        &config,
        "[DEFAULT]\nenabled_backends = a\n[a]\nreinit_driver_count = lots\nvolume_driver = fault\n",
    )
    .expect("break config");
    kill(pid, "-HUP");
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.contains("READY=1")) {
        seen.push(receive());
    }
    assert!(seen.iter().any(|m| m.contains("RELOADING=1")), "{seen:?}");
    let ready = seen
        .iter()
        .find(|m| m.contains("READY=1"))
        .expect("READY=1");
    assert!(ready.contains("STATUS=reload rejected"), "{ready}");
    kill(pid, "-TERM");
    let mut stopping = receive();
    while !stopping.contains("STOPPING=1") {
        stopping = receive();
    }
    assert!(daemon.child.wait().expect("exits").success());
}

/// Starts the daemon on `config_text` in a fresh scratch dir.
fn daemon(name: &str, config_text: &str) -> (Daemon, PathBuf, PathBuf) {
    let dir = scratch(name);
    let config = dir.join("cinder.conf");
    std::fs::write(&config, config_text).expect("write config");
    let daemon = Daemon::start(&dir, &[]);
    let socket = daemon.socket();
    (daemon, config, socket)
}

/// Runs `rekindle reload` with `args`; returns its exit status and stdout.
fn reload(socket: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("reload")
        .args(args)
        .arg("--control")
        .arg(socket)
        .output()
        .expect("reload runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn rekindle_reload_waits_for_the_outcome_and_exits_by_it() {
    let (mut daemon, config, socket) = daemon("reload-exit", CONFIG);
    let dir = daemon.dir.clone();
    wait_for(&dir, "both backends ready", |e| {
        count(e, "driver.init.end") == 2
    });

    // A clean reload: exit 0, one line per backend.
    std::fs::write(&config, format!("{CONFIG}fault_op_delay = 1ms\n")).expect("edit");
    let (code, out) = reload(&socket, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("every backend ended as intended"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("a  unchanged")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("b  reloaded")), "{out}");

    // The new config of b fails to set up: rolled back, exit 3.
    let failing = format!("{CONFIG}fault_op_delay = 1ms\nfault_fail_setup_times = 1\n");
    std::fs::write(&config, &failing).expect("edit");
    let (code, out) = reload(&socket, &[]);
    assert_eq!(code, Some(3), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("b  rolled_back"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("injected setup failure"), "{line}");
    // status: Ready, on an older config than the file's.
    let report = daemon::ok_at(&socket, &["status", "--json"]);
    assert_eq!(report["backends"][1]["name"], "b");
    assert_eq!(report["backends"][1]["state"], "ready");
    let stale = report["backends"][1]["config"].as_str().expect("config");
    assert!(stale.starts_with("old config (rolled back:"), "{stale}");
    assert_eq!(report["backends"][0]["config"], "current");
    let events = notifications(&dir);
    assert_eq!(count(&events, "reload.rolled_back"), 1);

    // JSON output, and with reload_rollback = false the failure stands.
    std::fs::write(&config, format!("{failing}reload_rollback = false\n")).expect("edit");
    let (code, out) = reload(&socket, &["--json"]);
    assert_eq!(code, Some(3), "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["outcome"], "finished");
    assert_eq!(answer["backends"]["b"]["result"], "failed");
    assert_eq!(answer["backends"]["b"]["state"], "failed_recoverable");

    // A bad file: exit 1, the old config keeps serving.
    std::fs::write(
        &config,
        "[DEFAULT]\nenabled_backends = a\n[a]\nreinit_driver_count = lots\nvolume_driver = fault\n",
    )
    .expect("edit");
    let (code, out) = reload(&socket, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("reload rejected"), "{out}");

    // --no-wait answers at once.
    std::fs::write(&config, CONFIG).expect("edit");
    let (code, out) = reload(&socket, &["--no-wait"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("started"), "{out}");

    kill(daemon.child.id(), "-TERM");
    assert!(daemon.child.wait().expect("exits").success());
}

#[test]
fn a_removal_with_work_in_flight_past_its_deadline_is_aborted_exit_3() {
    let config_text = "[DEFAULT]\nenabled_backends = a, b\nhost = test\n[a]\nvolume_driver = fault\n[b]\nvolume_driver = fault\nfault_op_delay = 4s\ngraceful_shutdown_timeout = 1s\n";
    let (mut daemon, config, socket) = daemon("removal-aborted", config_text);
    let dir = daemon.dir.clone();
    wait_for(&dir, "both backends ready", |e| {
        count(e, "driver.init.end") == 2
    });
    let create = spawn_cli(
        &socket,
        &["volume", "create", "--size", "1M", "--backend", "b"],
    );
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(
        &config,
        CONFIG
            .replace("a, b", "a")
            .replace("[b]\nvolume_driver = fault\n", ""),
    )
    .expect("edit");
    let (code, out) = reload(&socket, &[]);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("b  removal_aborted")),
        "{out}"
    );
    let created = create.wait_with_output().expect("create finishes");
    assert!(
        created.status.success(),
        "the in-flight create was not cut: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    // Still serving; the next reload removes it.
    let (code, out) = reload(&socket, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.lines().any(|l| l.starts_with("b  removed")), "{out}");
    kill(daemon.child.id(), "-TERM");
    assert!(daemon.child.wait().expect("exits").success());
}
