//! Driver options with the real binary, as an operator meets them: `config check`,
//! a reload with a bad option rejected while the backend (and its attached volume)
//! keeps serving, and a start-up where one bad backend does not stop the other.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Exports outlive the daemon by design: stop this test's own
        // `qemu-nbd` servers (found by their image path, killed by pid), so a
        // failed test leaves nothing running that holds its files or fds.
        let dir = self.dir.display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.starts_with("qemu-nbd") && cmdline.contains(&dir) {
                let _ = Command::new("kill").arg(entry.file_name()).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rekindle-cfg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn rekindle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .args(args)
        .output()
        .expect("rekindle runs")
}

fn start(dir: &Path) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .arg("run")
        .arg("--config")
        .arg(dir.join("cinder.conf"))
        .arg("--notifications")
        .arg(dir.join("notifications.jsonl"))
        .arg("--control")
        .arg(dir.join("control.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
    Daemon {
        child,
        dir: dir.to_path_buf(),
    }
}

impl Daemon {
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rekindle"))
            .args(args)
            .arg("--control")
            .arg(self.dir.join("control.sock"))
            .output()
            .expect("cli runs")
    }

    fn ok(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    fn backend(&self, name: &str) -> serde_json::Value {
        let out = self.cli(&["status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| {
                v["backends"]
                    .as_array()
                    .and_then(|b| b.iter().find(|b| b["name"] == name).cloned())
            })
            .unwrap_or_default()
    }

    fn wait(&self, what: &str, done: impl Fn(&Daemon) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if done(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }

    fn notifications(&self, event_type: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("notifications.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event_type"] == event_type)
            .collect()
    }

    fn rejected(&self) -> String {
        self.wait("reload.rejected", |d| {
            !d.notifications("reload.rejected").is_empty()
        });
        self.notifications("reload.rejected")[0]["payload"]["error"]
            .as_str()
            .expect("error text")
            .to_string()
    }
}

#[test]
fn config_check_prints_every_problem_and_exits_1_and_a_clean_file_exits_0() {
    let dir = scratch("check");
    let file = dir.join("cinder.conf");
    std::fs::write(
        &file,
        "[DEFAULT]\nenabled_backends = b1, b2\nbackup_driver = fault\nbackup_fault_fail_setup_times = many\n\
         oops\n[b1]\nvolume_driver = qemu\nvolumes_dir = /srv\nvolume_fromat = raw\n[b2]\nvolume_driver = rbd\n",
    )
    .expect("write");
    let path = file.display().to_string();
    let out = rekindle(&["config", "check", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{path}:5: expected `option = value` or a `[section]` header, found \"oops\""),
            format!(
                "{path}: [b1] volume_fromat: \"raw\": not an option of the qemu volume driver; did you mean `volume_format`?"
            ),
            format!(
                "{path}: [b2] volume_driver: \"rbd\": no volume driver of that name (known: fault, qemu)"
            ),
            format!(
                "{path}: [DEFAULT] backup_fault_fail_setup_times: \"many\": expected a whole number from 0 to 4294967295"
            ),
        ]
    );

    std::fs::write(
        &file,
        "[DEFAULT]\nenabled_backends = b1\n[b1]\nvolume_driver = qemu\nvolumes_dir = /srv\n",
    )
    .expect("write");
    let out = rekindle(&["config", "check", &path]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let embedded = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cinder.conf");
    let out = rekindle(&["config", "check", embedded]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let out = rekindle(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
    let out = rekindle(&[
        "config",
        "check",
        &dir.join("missing.conf").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sighup_with_a_bad_qemu_option_is_rejected_and_the_attached_volume_keeps_serving() {
    let dir = scratch("qemu");
    std::fs::create_dir_all(dir.join("volumes")).expect("volumes dir");
    let config = format!(
        "[DEFAULT]\nenabled_backends = b1\nhost = test\n[b1]\nvolume_driver = qemu\nvolumes_dir = {}\nexport_port_range = 23100-23119\n",
        dir.join("volumes").display()
    );
    std::fs::write(dir.join("cinder.conf"), &config).expect("config");
    std::fs::write(
        dir.join("connector.json"),
        r#"{"host": "compute-1", "ip": "127.0.0.1"}"#,
    )
    .expect("connector");
    let daemon = start(&dir);
    daemon.wait("b1 ready", |d| d.backend("b1")["state"] == "ready");
    let id = daemon.ok(&["volume", "create", "--size", "1M", "--backend", "b1"])["id"]
        .as_str()
        .expect("id")
        .to_string();
    let connector = dir.join("connector.json").display().to_string();
    daemon.ok(&["volume", "attach", &id, "--connector", &connector]);

    std::fs::write(
        dir.join("cinder.conf"),
        format!("{config}volume_format = qcow3\n"),
    )
    .expect("edit");
    let hup = Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(hup.success());
    let error = daemon.rejected();
    assert_eq!(
        error,
        format!(
            "{}: [b1] volume_format: \"qcow3\": expected one of qcow2, raw",
            dir.join("cinder.conf").display()
        )
    );
    assert!(daemon.notifications("reload.start").is_empty());
    // Still serving, and never re-initialized.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(daemon.backend("b1")["state"], "ready");
    assert_eq!(daemon.notifications("driver.init.start").len(), 1);
    daemon.ok(&["volume", "detach", &id]);
    let created = daemon.ok(&["volume", "create", "--size", "1M", "--backend", "b1"]);
    assert!(created["id"].is_string(), "{created}");
}

#[test]
fn a_reload_request_with_a_bad_fault_option_is_rejected_and_the_backend_stays_ready() {
    let dir = scratch("fault");
    let config = "[DEFAULT]\nenabled_backends = f1\nhost = test\n[f1]\nvolume_driver = fault\n";
    std::fs::write(dir.join("cinder.conf"), config).expect("config");
    let daemon = start(&dir);
    daemon.wait("f1 ready", |d| d.backend("f1")["state"] == "ready");
    std::fs::write(
        dir.join("cinder.conf"),
        format!("{config}fault_fail_setup_times = many\n"),
    )
    .expect("edit");
    let out = daemon.cli(&["reload"]);
    assert!(!out.status.success(), "a rejected reload is a failure");
    let error = daemon.rejected();
    assert_eq!(
        error,
        format!(
            "{}: [f1] fault_fail_setup_times: \"many\": expected a whole number from 0 to 4294967295",
            dir.join("cinder.conf").display()
        )
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("fault_fail_setup_times"), "{printed}");
    assert_eq!(daemon.backend("f1")["state"], "ready");
    daemon.ok(&["volume", "create", "--size", "1M", "--backend", "f1"]);
}

#[test]
fn at_start_up_one_invalid_backend_fails_fatally_and_the_valid_one_serves() {
    let dir = scratch("startup");
    std::fs::write(
        dir.join("cinder.conf"),
        "[DEFAULT]\nenabled_backends = good, bad\nhost = test\n[good]\nvolume_driver = fault\n\
         [bad]\nvolume_driver = fault\nfault_fail_setup_times = many\n",
    )
    .expect("config");
    let daemon = start(&dir);
    daemon.wait("good ready and bad failed", |d| {
        d.backend("good")["state"] == "ready" && d.backend("bad")["state"] == "failed_fatal"
    });
    let bad = daemon.backend("bad");
    let error = bad["last_error"].as_str().expect("last error");
    assert!(
        error.contains(&format!(
            "{}: [bad] fault_fail_setup_times: \"many\": expected a whole number from 0 to 4294967295",
            dir.join("cinder.conf").display()
        )),
        "{error}"
    );
    daemon.ok(&["volume", "create", "--size", "1M", "--backend", "good"]);
}
