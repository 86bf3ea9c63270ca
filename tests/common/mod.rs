//! Test support shared by integration tests: a private PostgreSQL server.
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
