//! The `rekindle` binary as the tests drive it: a scratch directory, `rekindle run` on a
//! config in it (killed, with its qemu-nbd exports, when dropped), CLI calls and waits.
//!
//! Included by the suites that run the binary (`#[path = "common/daemon.rs"] mod daemon;`):
//! `CARGO_BIN_EXE_rekindle` exists only where the binary is built.

#![allow(dead_code)] // each suite uses a part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rekindle");

/// How long a wait in these suites may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A fresh, empty directory of this test process named after `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rekindle-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `rekindle ARGS`, run to its end.
pub fn rekindle(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("rekindle runs")
}

/// The notifications a daemon wrote to `path` so far, each line parsed.
pub fn notifications_in(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every notification line is JSON"))
        .collect()
}

/// How many of `events` are of `event_type`.
pub fn count(events: &[serde_json::Value], event_type: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event_type"] == event_type)
        .count()
}

/// Sends `signal` (`-HUP`, `-TERM`, ...) to `pid` with kill(1).
pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Polls `done` every 50 ms until it holds; fails naming `what` after
/// [`PATIENCE`], with `context()` in the message.
pub fn wait_until(what: &str, done: impl Fn() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}; {}", context());
}

/// A `rekindle run` process and its directory: `cinder.conf`,
/// `notifications.jsonl`, `control.sock` and `log` (its stderr).
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its directory.
    pub dir: PathBuf,
}

impl Daemon {
    /// `rekindle run --config DIR/cinder.conf --notifications
    /// DIR/notifications.jsonl --control DIR/control.sock ARGS`, stderr to
    /// `DIR/log`. `dir` must hold `cinder.conf`.
    pub fn start(dir: &Path, args: &[&str]) -> Daemon {
        let child = run_command(
            &dir.join("cinder.conf"),
            &dir.join("control.sock"),
            &dir.join("notifications.jsonl"),
        )
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).expect("log file"))
        .spawn()
        .expect("daemon starts");
        Daemon {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// Writes `config` to a fresh scratch directory named `name` and starts
    /// a daemon on it.
    pub fn on(name: &str, config: &str, args: &[&str]) -> Daemon {
        let dir = scratch(name);
        std::fs::write(dir.join("cinder.conf"), config).expect("write config");
        Daemon::start(&dir, args)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Its config file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("cinder.conf")
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// `rekindle ARGS --control SOCKET`, run to its end.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_at(&self.socket(), args)
    }

    /// [`Daemon::cli`] that must succeed, its stdout parsed as JSON.
    pub fn ok(&self, args: &[&str]) -> serde_json::Value {
        ok_at(&self.socket(), args)
    }

    /// Backend `name`'s row of `status --json` (null while it does not answer).
    pub fn backend(&self, name: &str) -> serde_json::Value {
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

    /// Every notification so far.
    pub fn notifications(&self) -> Vec<serde_json::Value> {
        notifications_in(&self.dir.join("notifications.jsonl"))
    }

    /// The notifications of `event_type` so far.
    pub fn notices(&self, event_type: &str) -> Vec<serde_json::Value> {
        self.notifications()
            .into_iter()
            .filter(|e| e["event_type"] == event_type)
            .collect()
    }

    /// Waits until `done` holds of the daemon (see [`wait_until`]); the
    /// failure shows the notifications and the log.
    pub fn wait(&self, what: &str, done: impl Fn(&Daemon) -> bool) {
        wait_until(
            what,
            || done(self),
            || {
                format!(
                    "notifications: {:#?}\nlog:\n{}",
                    self.notifications(),
                    self.log()
                )
            },
        );
    }

    /// Waits until `count` notifications of `event_type` were written.
    pub fn wait_notices(&self, event_type: &str, count: usize) {
        self.wait(&format!("{count} x {event_type}"), |d| {
            d.notices(event_type).len() >= count
        });
    }

    /// Sends `signal` (`-HUP`, `-TERM`, ...).
    pub fn signal(&self, signal: &str) {
        kill(self.pid(), signal);
    }
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

/// `rekindle ARGS --control SOCKET`, run to its end.
pub fn cli_at(socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--control")
        .arg(socket)
        .output()
        .expect("cli runs")
}

/// [`cli_at`] that must succeed, its stdout parsed as JSON.
pub fn ok_at(socket: &Path, args: &[&str]) -> serde_json::Value {
    let out = cli_at(socket, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// `rekindle ARGS --control SOCKET` started in the background, its output
/// piped (read it with `wait_with_output`).
pub fn spawn_cli(socket: &Path, args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .arg("--control")
        .arg(socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cli starts")
}

/// `rekindle run --config CONFIG --control SOCKET --notifications
/// NOTIFICATIONS`: give it its environment and output, then spawn it.
pub fn run_command(config: &Path, socket: &Path, notifications: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--control")
        .arg(socket)
        .arg("--notifications")
        .arg(notifications);
    command
}

/// A scratch directory `name` holding `cinder.conf` with `text`: the
/// directory and the file.
pub fn scratch_config(name: &str, text: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let config = dir.join("cinder.conf");
    std::fs::write(&config, text).expect("config");
    (dir, config)
}

/// What a command printed, stdout then stderr, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
