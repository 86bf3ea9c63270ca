//! Driver options with the real binary, as an operator meets them: `config check`,
//! a reload with a bad option rejected while the backend (and its attached volume)
//! keeps serving, and a start-up where one bad backend does not stop the other.

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{Daemon, rekindle, scratch};

fn start(dir: &std::path::Path) -> Daemon {
    Daemon::start(dir, &[])
}

/// The error text of the first `reload.rejected`, once it is written.
fn rejected(daemon: &Daemon) -> String {
    daemon.wait("reload.rejected", |d| {
        !d.notices("reload.rejected").is_empty()
    });
    daemon.notices("reload.rejected")[0]["payload"]["error"]
        .as_str()
        .expect("error text")
        .to_string()
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

    let embedded = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cinder.conf");
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
    daemon.signal("-HUP");
    let error = rejected(&daemon);
    assert_eq!(
        error,
        format!(
            "{}: [b1] volume_format: \"qcow3\": expected one of qcow2, raw",
            dir.join("cinder.conf").display()
        )
    );
    assert!(daemon.notices("reload.start").is_empty());
    // Still serving, and never re-initialized.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(daemon.backend("b1")["state"], "ready");
    assert_eq!(daemon.notices("driver.init.start").len(), 1);
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
    let error = rejected(&daemon);
    assert_eq!(
        error,
        format!(
            "{}: [f1] fault_fail_setup_times: \"many\": expected a whole number from 0 to 4294967295",
            dir.join("cinder.conf").display()
        )
    );
    let printed = daemon::output_text(&out);
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
