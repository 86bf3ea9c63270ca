//! The real binary's start-up log: it counts the configured backends and, with stderr
//! not a terminal (a file, journald), carries no colour escapes.

#[path = "common/daemon.rs"]
mod daemon;

use std::process::{Command, Stdio};

use daemon::{BIN, scratch_config};
use std::time::{Duration, Instant};

#[test]
fn the_start_up_log_counts_configured_backends_in_plain_text() {
    let (dir, config) = scratch_config(
        "startup-log",
        "[DEFAULT]\nenabled_backends = a, b\nhost = test\nreport_interval = 10s\nservice_down_time = 5s\n[a]\nvolume_driver = fault\n[b]\nvolume_driver = fault\nfault_ready_after = 1h\n",
    );
    let log = dir.join("stderr.log");
    let mut child = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("daemon starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("rekindle is running") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(text.contains("rekindle is running backends=2"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour escapes in a log file: {text:?}"
    );
    // service_down_time (5s) not larger than report_interval (10s): said once, with both.
    let raised: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("service_down_time is not larger than report_interval"))
        .collect();
    assert_eq!(raised.len(), 1, "{text}");
    assert!(
        raised[0].contains("service_down_time=5s")
            && raised[0].contains("report_interval=10s")
            && raised[0].contains("raised_to=25s"),
        "{}",
        raised[0]
    );
}

#[test]
fn a_busy_or_impossible_control_socket_refuses_start_up_in_one_line() {
    let (dir, config) = scratch_config(
        "busy-socket",
        "[DEFAULT]\nenabled_backends = a\nhost = test\n[a]\nvolume_driver = fault\n",
    );
    let socket = dir.join("control.sock");
    let mut first = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--control")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the first daemon never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    for (path, problem) in [
        (socket.clone(), "another rekindle daemon is listening here"),
        (
            dir.join("missing/control.sock"),
            "No such file or directory",
        ),
    ] {
        let out = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--control")
            .arg(&path)
            .env("RUST_LOG", "off")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "rekindle: control socket {}: {problem}",
                path.display()
            )),
            "{stderr}"
        );
    }
    let _ = first.kill();
    let _ = first.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
