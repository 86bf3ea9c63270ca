//! Test support shared by integration tests: a private PostgreSQL or MariaDB server, waits
//! that end on a positive observation, and the address a daemon's log says it serves HTTP on.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The repository's top directory: this file serves the engine's suites
/// (`tests/`) and the binary's (`rekindle-cli/tests/`).
pub fn repository() -> PathBuf {
    let package = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if package.join("scripts").is_dir() {
        package.to_path_buf()
    } else {
        package.join("..")
    }
}

/// A database a fleet keeps its records in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Postgres,
    MariaDb,
}

impl Db {
    /// The script that starts and stops a private server of this kind.
    fn script(self) -> PathBuf {
        repository().join(match self {
            Db::Postgres => "scripts/pg-server",
            Db::MariaDb => "scripts/mariadb-server",
        })
    }

    /// A short name, for scratch paths.
    pub fn short(self) -> &'static str {
        match self {
            Db::Postgres => "pg",
            Db::MariaDb => "maria",
        }
    }

    /// The Debian package `./scripts/test` installs for it.
    fn package(self) -> &'static str {
        match self {
            Db::Postgres => "postgresql",
            Db::MariaDb => "mariadb-server",
        }
    }
}

/// Runs each named test function (taking a [`Db`]) once per database: a
/// module per test with `postgresql` and `mariadb` cases.
#[macro_export]
macro_rules! on_each_database {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn postgresql() {
                super::$name($crate::common::Db::Postgres)
            }
            #[test]
            fn mariadb() {
                super::$name($crate::common::Db::MariaDb)
            }
        }
    )*};
}

/// A private database server on loopback for this test process, stopped
/// when dropped.
pub struct Server {
    dir: PathBuf,
    /// Which database.
    pub db: Db,
    /// Its URL.
    pub url: String,
}

impl Server {
    /// A private PostgreSQL.
    pub fn start(name: &str) -> Server {
        Server::start_on(Db::Postgres, name)
    }

    /// `name` made this server's own: tests of the same name on two
    /// databases run side by side, their scratch files apart.
    pub fn own(&self, name: &str) -> String {
        format!("{name}-{}", self.db.short())
    }

    /// A private server of `db`.
    pub fn start_on(db: Db, name: &str) -> Server {
        let kind = db.short();
        let dir =
            std::env::temp_dir().join(format!("rekindle-{kind}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(db.script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("the server script runs");
        assert!(
            out.status.success(),
            "a private {db:?} must start (./scripts/test installs the Debian package {}): {}",
            db.package(),
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Server { dir, db, url }
    }

    /// Stops the server at once, as a crash would (PostgreSQL's immediate
    /// shutdown, MariaDB's SIGKILL): an outage begins.
    pub fn stop_now(&self) {
        match self.db {
            Db::Postgres => self.pg_ctl("stop"),
            Db::MariaDb => {
                for pid in self.pids() {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
                wait_value(
                    "MariaDB to exit",
                    std::time::Duration::from_secs(10),
                    || {
                        let gone = self
                            .pids()
                            .iter()
                            .all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
                        gone.then_some(())
                    },
                );
            }
        }
    }

    /// Starts it again on the same port and data: the outage ends.
    pub fn start_again(&self) {
        match self.db {
            Db::Postgres => self.pg_ctl("start"),
            Db::MariaDb => {
                let status = Command::new(self.db.script())
                    .arg("restart")
                    .arg(&self.dir)
                    .status()
                    .expect("mariadb-server restart");
                assert!(status.success(), "MariaDB restarts");
            }
        }
    }

    /// `pg_ctl stop` (immediate) or `start`: an outage and its end.
    pub fn pg_ctl(&self, action: &str) {
        assert_eq!(self.db, Db::Postgres, "pg_ctl is PostgreSQL's");
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
    /// One SQL query's rows, each row's columns joined by `|`, through the
    /// database's own client (`psql`, `mariadb`).
    pub fn sql(&self, sql: &str) -> Vec<String> {
        let out = match self.db {
            Db::Postgres => Command::new("psql")
                .args(["-X", "-A", "-t", "-F", "|", "-c", sql])
                .arg(&self.url)
                .output()
                .expect("psql runs (Debian package postgresql-client)"),
            Db::MariaDb => Command::new("mariadb")
                .arg("--no-defaults")
                .arg("-S")
                .arg(self.dir.join("sock"))
                .args(["-uroot", "-N", "-B", "-D", "cinder", "-e", sql])
                .output()
                .expect("mariadb runs (Debian package mariadb-client)"),
        };
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.replace('\t', "|"))
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The server's processes (PostgreSQL's postmaster and its children,
    /// MariaDB's one process), for stalling it with SIGSTOP.
    pub fn pids(&self) -> Vec<u32> {
        server_pids(self.db, &self.dir)
    }

    /// [`Server::pids`], as a function to call later (from another thread
    /// or runtime): the children then running.
    pub fn pids_later(&self) -> impl Fn() -> Vec<u32> + Send + 'static {
        let (db, dir) = (self.db, self.dir.clone());
        move || server_pids(db, &dir)
    }
}

fn server_pids(db: Db, dir: &std::path::Path) -> Vec<u32> {
    let pid_file = match db {
        Db::Postgres => dir.join("data/postmaster.pid"),
        Db::MariaDb => dir.join("pid"),
    };
    let pid_file = std::fs::read_to_string(pid_file).expect("the server's pid file");
    let postmaster: u32 = pid_file
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("the server's pid");
    let mut pids = vec![postmaster];
    if db == Db::MariaDb {
        return pids;
    }
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
        let _ = Command::new(self.db.script())
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

/// Sends `signal` (`-STOP`, `-CONT`, ...) to each of `pids` with kill(1).
pub fn signal(pids: &[u32], signal: &str) {
    for pid in pids {
        let _ = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status();
    }
}

/// Stops `pids` (SIGSTOP) and returns once the kernel shows every thread
/// of each stopped (`T` in `/proc/PID/task/TID/stat`): kill(2) only queues
/// the signal, and a server thread already running could still answer a
/// request sent at once.
pub fn freeze(pids: &[u32]) {
    signal(pids, "-STOP");
    let stopped = |pid: &u32| {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        let tasks: Vec<_> = tasks.into_iter().flatten().flatten().collect();
        !tasks.is_empty()
            && tasks.iter().all(|task| {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    == Some("T")
            })
    };
    wait_value(
        "the server's processes to be stopped",
        std::time::Duration::from_secs(10),
        || pids.iter().all(stopped).then_some(()),
    );
}
