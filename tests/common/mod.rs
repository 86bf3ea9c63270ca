//! Test support shared by integration tests: a private PostgreSQL server, waits that end
//! on a positive observation, and the address a daemon's log says it serves HTTP on.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A private PostgreSQL on loopback for this test process, stopped when dropped.
pub struct Server {
    dir: PathBuf,
    /// Its URL.
    pub url: String,
}

impl Server {
    pub fn start(name: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("rekindle-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-server"))
            .arg("start")
            .arg(&dir)
            .output()
            .expect("scripts/pg-server runs");
        assert!(
            out.status.success(),
            "a private PostgreSQL must start (./scripts/test installs the Debian package postgresql): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Server { dir, url }
    }

    /// `pg_ctl stop` (immediate) or `start`: an outage and its end.
    pub fn pg_ctl(&self, action: &str) {
        let mut command = if rustix_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pg_ctl"]);
            c
        } else {
            Command::new("pg_ctl")
        };
        let status = command
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "-m", "immediate", "-l"])
            .arg(self.dir.join("server.log"))
            .arg(action)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pg_ctl");
        assert!(status.success(), "pg_ctl {action}");
    }
}

impl Server {
    /// The server's processes (the postmaster and its children), for
    /// stalling it with SIGSTOP.
    pub fn pids(&self) -> Vec<u32> {
        server_pids(&self.dir)
    }

    /// [`Server::pids`], as a function to call later (from another thread
    /// or runtime): the children then running.
    pub fn pids_later(&self) -> impl Fn() -> Vec<u32> + Send + 'static {
        let dir = self.dir.clone();
        move || server_pids(&dir)
    }
}

fn server_pids(dir: &std::path::Path) -> Vec<u32> {
    let pid_file =
        std::fs::read_to_string(dir.join("data/postmaster.pid")).expect("postmaster.pid");
    let postmaster: u32 = pid_file
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("postmaster pid");
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: the fields after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

fn rustix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-server"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Waits until `find` finds something, and returns it; fails naming
/// `what` after `limit`.
pub fn wait_value<T>(
    what: &str,
    limit: std::time::Duration,
    mut find: impl FnMut() -> Option<T>,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = find() {
            return found;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The addresses a daemon's log (at `log`) says it serves `/metrics` on,
/// in order (a reload that moved the listener adds one).
pub fn http_addresses(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("serving /metrics, /healthz and /readyz"))
        .filter_map(|l| l.split("address=").nth(1))
        .map(|a| a.trim().to_string())
        .collect()
}
