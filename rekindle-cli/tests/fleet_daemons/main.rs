//! Fleet mode with real daemons on a private PostgreSQL (and MariaDB, for the tests named at
//! the end): liveness by the database's clock, kill -9, a stalled database, dead hosts' work.
//!
//! Every host is a real `rekindle run` process with its own `host`, all on
//! one `[database] connection`; `status` is asked of a survivor, as an
//! operator would.

#[path = "../../../tests/common/mod.rs"]
mod common;

#[path = "../common/daemon.rs"]
mod daemon;

mod outcomes;
mod rollouts;

use daemon::spawn_cli;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Db, Server, signal, wait_value};

const BIN: &str = env!("CARGO_BIN_EXE_rekindle");

struct Host {
    name: String,
    dir: PathBuf,
    daemon: Option<Child>,
    /// Extra environment of its daemon (libfaketime's).
    env: Vec<(String, String)>,
}

impl Host {
    /// Writes `node-NAME`'s config (cluster `c1`, `timing` in [DEFAULT],
    /// then `extra`) and starts its daemon.
    fn start(server: &Server, test: &str, name: &str, timing: &str, extra: &str) -> Host {
        Host::start_with(server, test, name, timing, extra, &[])
    }

    fn start_with(
        server: &Server,
        test: &str,
        name: &str,
        timing: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Host {
        let dir = std::env::temp_dir().join(format!(
            "rekindle-fleet-{}-{name}-{}",
            server.own(test),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("host dir");
        let conf = format!(
            "[DEFAULT]\nhost = node-{name}\ncluster = c1\nenabled_backends = f0, f1\n\
             periodic_interval = 2s\n{timing}\nstate_dir = {d}/state\n{extra}\n\
             [database]\nconnection = {url}\n[f0]\nvolume_driver = fault\n\
             [f1]\nvolume_driver = fault\nfault_op_delay = 60s\n",
            d = dir.display(),
            url = server.url
        );
        std::fs::write(dir.join("c.conf"), conf).expect("config");
        let mut host = Host {
            name: format!("node-{name}"),
            dir,
            daemon: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        host.run();
        host
    }

    /// Starts the daemon and waits until the fleet's database shows both
    /// of its rows up.
    fn run(&mut self) {
        self.launch();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.own_rows_up() {
            assert!(
                Instant::now() < deadline,
                "{} did not come up: {}",
                self.name,
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the daemon, waiting for nothing.
    fn launch(&mut self) {
        let child = daemon::run_command(
            &self.dir.join("c.conf"),
            &self.dir.join("sock"),
            &self.dir.join("n.jsonl"),
        )
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(self.dir.join("log")).expect("log"))
        .spawn()
        .expect("daemon starts");
        self.daemon = Some(child);
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .arg("--control")
            .arg(self.dir.join("sock"))
            .output()
            .expect("cli runs")
    }

    fn ok(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    /// The fleet's service rows as this host's `status --json` shows them
    /// from the fleet's database (host@backend, state). Rows shown without
    /// a cluster are this host's own fallback (the database not joined or
    /// not answering), not the fleet's: they are left out.
    fn fleet(&self) -> Vec<(String, String)> {
        let out = self.cli(&["status", "--json"]);
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return Vec::new();
        };
        v["services"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| r["cluster"].is_string())
                    .map(|r| {
                        (
                            r["host"].as_str().unwrap_or_default().to_string(),
                            r["state"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn state_of(&self, other: &Host) -> Vec<String> {
        self.fleet()
            .into_iter()
            .filter(|(h, _)| h.starts_with(&format!("{}@", other.name)))
            .map(|(_, s)| s)
            .collect()
    }

    fn own_rows_up(&self) -> bool {
        self.shows(self, "up")
    }

    /// Whether this host shows both of `other`'s rows, each `state`, from
    /// the fleet's database: an empty answer is neither up nor down.
    fn shows(&self, other: &Host, state: &str) -> bool {
        let states = self.state_of(other);
        states.len() == 2 && states.iter().all(|s| s == state)
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn notifications(&self, event_type: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("n.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event_type"] == event_type)
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill_9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

const FAST: &str = "report_interval = 1s\nservice_down_time = 3s";

#[test]
fn a_host_two_minutes_ahead_is_shown_up_and_down_only_when_killed() {
    let server = Server::start("skew");
    let a = Host::start(&server, "skew", "a", FAST, "");
    // libfaketime (Debian's faketime) changes what the whole process reads
    // from the clock, not a flag of rekindle.
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        std::path::Path::new(lib).exists(),
        "{lib} is missing: install the Debian package faketime (./scripts/test does it)"
    );
    let skew = [("LD_PRELOAD", lib), ("FAKETIME", "+2m")];
    let mut b = Host::start_with(&server, "skew", "b", FAST, "", &skew);
    let skewed = Command::new("date")
        .arg("+%s")
        .envs(skew)
        .output()
        .expect("date runs");
    let ahead: i64 = String::from_utf8_lossy(&skewed.stdout)
        .trim()
        .parse()
        .expect("epoch");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        ahead - now >= 110,
        "faketime moves the clock 2 minutes ahead"
    );
    // The daemon itself reads the skewed clock (its notifications' stamps).
    let stamped = b.notifications("service.up")[0]["timestamp"]
        .as_str()
        .map(|t| humantime::parse_rfc3339(t).expect("RFC 3339"))
        .expect("a timestamp");
    let lead = stamped
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        lead >= Duration::from_secs(100),
        "b's clock leads by {lead:?}"
    );
    // For two service_down_times, every look shows it up.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let states = a.state_of(&b);
        assert!(
            states.len() == 2 && states.iter().all(|s| s == "up"),
            "a host whose clock is ahead is up: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    b.kill_9();
    let took = wait_for(
        "the killed host to be down",
        Duration::from_secs(10),
        || a.shows(&b, "down"),
    );
    assert!(took <= Duration::from_secs(4), "down after {took:?}");
}

fn a_killed_host_is_down_within_service_down_time_plus_report_interval_every_time(db: Db) {
    let server = Server::start_on(db, "kill");
    let a = Host::start(&server, "kill", "a", FAST, "");
    let mut b = Host::start(&server, "kill", "b", FAST, "");
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        if round > 0 {
            b.run();
        }
        // Killed only once the survivor itself sees it up (from the
        // database), so each round measures a real detection.
        wait_for("a to see b up", Duration::from_secs(10), || {
            a.shows(&b, "up")
        });
        b.kill_9();
        let took = wait_for(
            "the killed host to be down",
            Duration::from_secs(10),
            || a.shows(&b, "down"),
        );
        slowest = slowest.max(took);
        assert!(
            took <= Duration::from_secs(4),
            "round {round}: down after {took:?} (service_down_time 3s + report_interval 1s)"
        );
    }
    eprintln!("slowest detection over 20 rounds: {slowest:?}");
}

#[test]
fn a_database_stalled_for_two_seconds_shows_no_host_down() {
    let server = Server::start("stall");
    let timing = "report_interval = 1s\nservice_down_time = 4s";
    let a = Host::start(&server, "stall", "a", timing, "");
    let b = Host::start(&server, "stall", "b", timing, "");
    wait_for("a to see b up", Duration::from_secs(10), || {
        a.shows(&b, "up")
    });
    for round in 0..3 {
        // SIGSTOP every server process for 2 s, as a stalled disk or VM
        // pause would; status requests wait for it, then answer.
        let stopper = std::thread::spawn({
            let pids = server.pids();
            move || {
                common::freeze(&pids);
                std::thread::sleep(Duration::from_secs(2));
                signal(&pids, "-CONT");
            }
        });
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            for host in [&a, &b] {
                let states = a.state_of(host);
                // Both rows, each up: an empty answer is not "up".
                assert!(
                    states.len() == 2 && states.iter().all(|s| s == "up"),
                    "round {round}: {} shown {states:?} while the database stalled; status now: {}; log: {}",
                    host.name,
                    String::from_utf8_lossy(&a.cli(&["status", "--json"]).stdout),
                    std::fs::read_to_string(a.dir.join("log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stopper.join().expect("stopper");
    }
}

fn a_dead_hosts_create_and_backup_are_claimed_once_and_stay_resolved(db: Db) {
    let server = Server::start_on(db, "claim");
    let timing = "report_interval = 1s\nservice_down_time = 3s";
    let backup = "backup_driver = fault\nbackup_fault_op_delay = 60s";
    let a = Host::start(&server, "claim", "a", timing, backup);
    let mut b = Host::start(&server, "claim", "b", timing, backup);
    let c = Host::start(&server, "claim", "c", timing, backup);
    for round in 0..3 {
        if round > 0 {
            b.run();
        }
        let source = b.ok(&["volume", "create", "--size", "1M", "--backend", "f0"])["id"]
            .as_str()
            .expect("id")
            .to_string();
        // Both block in their driver (fault_op_delay = 60s) when b dies.
        let sock = b.dir.join("sock");
        let mut create = spawn_cli(
            &sock,
            &["volume", "create", "--size", "1M", "--backend", "f1"],
        );
        let mut backup = spawn_cli(&sock, &["backup", "create", &source]);
        wait_for(
            "both pieces of work recorded",
            Duration::from_secs(10),
            || server.sql("SELECT COUNT(*) FROM workers WHERE owner = 'node-b'") == ["2"],
        );
        let work = server
            .sql("SELECT CONCAT(kind, ':', id) FROM workers WHERE owner = 'node-b' ORDER BY kind");
        b.kill_9();
        let _ = (create.kill(), backup.kill(), create.wait(), backup.wait());
        wait_for("a survivor to claim both", Duration::from_secs(10), || {
            server.sql("SELECT COUNT(*) FROM workers") == ["0"]
        });
        let ids: Vec<&str> = work
            .iter()
            .filter_map(|w| w.split_once(':').map(|(_, id)| id))
            .collect();
        for id in &ids {
            let claims: Vec<serde_json::Value> = [&a, &c]
                .iter()
                .flat_map(|h| h.notifications("work.claimed"))
                .filter(|e| e["payload"]["id"] == *id)
                .collect();
            assert_eq!(
                claims.len(),
                1,
                "round {round}: {id} claimed once: {claims:?}"
            );
            assert_eq!(claims[0]["payload"]["dead_host"], "node-b");
            assert_eq!(claims[0]["payload"]["to"], "error");
        }
        let resolved = || {
            (
                server.sql(&format!(
                    "SELECT status FROM volumes WHERE id = '{}'",
                    ids[1]
                )),
                server.sql(&format!(
                    "SELECT status FROM backups WHERE id = '{}'",
                    ids[0]
                )),
                server.sql(&format!("SELECT status FROM volumes WHERE id = '{source}'")),
            )
        };
        let expected = (
            vec!["error".to_string()],
            vec!["error".to_string()],
            vec!["available".to_string()],
        );
        assert_eq!(resolved(), expected, "round {round}");
        // The dead host comes back (a new epoch): it does not undo it.
        b.run();
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(resolved(), expected, "round {round}: after b restarted");
        assert!(
            b.notifications("work.claimed").is_empty()
                && b.notifications("record.recovered").is_empty(),
            "b, back, resolved nothing of its own: the survivor had"
        );
        b.kill_9();
        wait_for("b down again", Duration::from_secs(10), || {
            a.shows(&b, "down")
        });
    }
}

fn the_fleet_demo_starts_three_hosts_in_one_cluster_and_stops_them(db: Db) {
    let dir = std::env::temp_dir().join(format!(
        "rekindle-fleet-demo-{}-{}",
        db.short(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/fleet-demo");
    let out = Command::new(script)
        .arg("start")
        .args([
            "--db",
            if db == Db::MariaDb {
                "mariadb"
            } else {
                "postgresql"
            },
        ])
        .arg(&dir)
        .env("REKINDLE", BIN)
        .output()
        .expect("scripts/fleet-demo runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pids: Vec<u32> = (1..=3)
        .filter_map(|n| {
            std::fs::read_to_string(dir.join(format!("node-{n}/daemon.pid")))
                .ok()
                .and_then(|p| p.trim().parse().ok())
        })
        .collect();
    let stop = Command::new(script)
        .arg("stop")
        .arg(&dir)
        .output()
        .expect("scripts/fleet-demo stop runs");
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up_rows = text
        .lines()
        .filter(|l| l.starts_with("cinder-volume") && l.contains(" demo ") && l.contains(" up "))
        .count();
    assert_eq!(
        up_rows, 6,
        "three hosts, two backends each, all up:\n{text}"
    );
    assert!(text.contains("fleet reload --config"), "{text}");
    let named = if db == Db::MariaDb {
        "private MariaDB"
    } else {
        "private PostgreSQL"
    };
    assert!(text.contains(named), "{text}");
    assert!(stop.status.success());
    assert_eq!(pids.len(), 3);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "daemon {pid} stopped"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// The fleet's promises, kept on both databases.
on_each_database!(
    a_killed_host_is_down_within_service_down_time_plus_report_interval_every_time,
    a_dead_hosts_create_and_backup_are_claimed_once_and_stay_resolved,
    the_fleet_demo_starts_three_hosts_in_one_cluster_and_stops_them,
);
