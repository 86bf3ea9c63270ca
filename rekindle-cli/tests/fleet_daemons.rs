//! Fleet mode with real daemons on a private PostgreSQL (and MariaDB, for the tests named at
//! the end): liveness by the database's clock, kill -9, a stalled database, dead hosts' work.
//!
//! Every host is a real `rekindle run` process with its own `host`, all on
//! one `[database] connection`; `status` is asked of a survivor, as an
//! operator would.

#[path = "../../tests/common/mod.rs"]
mod common;

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
        let child = Command::new(BIN)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("run")
            .arg("--config")
            .arg(self.dir.join("c.conf"))
            .arg("--control")
            .arg(self.dir.join("sock"))
            .arg("--notifications")
            .arg(self.dir.join("n.jsonl"))
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
        let mut create = Command::new(BIN)
            .args([
                "volume",
                "create",
                "--size",
                "1M",
                "--backend",
                "f1",
                "--control",
            ])
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("create");
        let mut backup = Command::new(BIN)
            .args(["backup", "create", &source, "--control"])
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("backup");
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

/// Each host's backends that are not `ready` now, as its `status --json`
/// says: (host, backend). A host is its name and directory (its socket).
fn not_ready(hosts: &[(String, PathBuf)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, dir) in hosts {
        let answer = Command::new(BIN)
            .args(["status", "--json", "--control"])
            .arg(dir.join("sock"))
            .output()
            .expect("cli runs");
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&answer.stdout) else {
            out.push((name.clone(), "(no answer)".to_string()));
            continue;
        };
        for b in v["backends"].as_array().into_iter().flatten() {
            if b["state"] != "ready" {
                out.push((
                    name.clone(),
                    b["name"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

fn edit(host: &Host, from: &str, to: &str) {
    let path = host.dir.join("c.conf");
    let text = std::fs::read_to_string(&path).expect("config");
    assert!(text.contains(from), "{from:?} in {}", path.display());
    std::fs::write(&path, text.replace(from, to)).expect("edit config");
}

fn a_rolling_reload_keeps_all_but_one_replica_ready_and_halts_at_a_bad_file(db: Db) {
    let server = Server::start_on(db, "roll");
    let timing = "report_interval = 1s\nservice_down_time = 3s";
    let hosts = [
        Host::start(&server, "roll", "a", timing, ""),
        Host::start(&server, "roll", "b", timing, ""),
        Host::start(&server, "roll", "c", timing, ""),
    ];
    let all: Vec<(String, PathBuf)> = hosts
        .iter()
        .map(|h| (h.name.clone(), h.dir.clone()))
        .collect();
    // Both clustered backends change on every host, and set up slowly: each
    // host's replicas are not Ready for 1.5 s while it reloads.
    for host in &hosts {
        edit(
            host,
            "volume_driver = fault\n",
            "volume_driver = fault\nfault_setup_delay = 1500ms\n",
        );
    }
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let sampling = sampling.clone();
        let views = all.clone();
        move || {
            let mut worst = 0;
            let mut seen_reloading = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let down = not_ready(&views);
                for backend in ["f0", "f1"] {
                    let replicas = down.iter().filter(|(_, b)| b == backend).count();
                    worst = worst.max(replicas);
                    seen_reloading += usize::from(replicas > 0);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (worst, seen_reloading)
        }
    });
    let conf = hosts[0].dir.join("c.conf");
    let out = Command::new(BIN)
        .args(["fleet", "reload", "--config"])
        .arg(&conf)
        .args(["--max-unavailable", "1", "--min-ready", "1s"])
        .output()
        .expect("fleet reload runs");
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (worst, seen) = sampler.join().expect("sampler");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(seen > 0, "the sampler saw the replicas reload");
    assert_eq!(
        worst, 1,
        "never more than one replica of a backend not Ready"
    );
    assert!(not_ready(&all).is_empty());

    // A bad file on the second host halts the rollout; the third is untouched.
    let reloads_before = hosts[2].notifications("reload.start").len();
    for host in &hosts {
        edit(host, "fault_setup_delay = 1500ms", "fault_setup_delay = 1s");
    }
    edit(
        &hosts[1],
        "[f1]\nvolume_driver = fault\n",
        "[f1]\nvolume_driver = no-such-driver\n",
    );
    let out = Command::new(BIN)
        .args(["fleet", "reload", "--config"])
        .arg(&conf)
        .args(["--max-unavailable", "1", "--min-ready", "1s"])
        .output()
        .expect("fleet reload runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("node-b"), "{text}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        hosts[2].notifications("reload.start").len(),
        reloads_before,
        "the third host was never asked: {text}"
    );
    assert!(not_ready(&all).is_empty(), "every host still serves");
}

#[test]
fn a_replica_already_down_takes_the_only_slot_of_a_rolling_reload() {
    let server = Server::start("held");
    let a = Host::start(&server, "held", "a", FAST, "");
    let mut b = Host::start(&server, "held", "b", FAST, "");
    b.kill_9();
    wait_for("b down", Duration::from_secs(10), || a.shows(&b, "down"));
    edit(
        &a,
        "volume_driver = fault\n",
        "volume_driver = fault\nfault_setup_delay = 10ms\n",
    );
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["fleet", "reload", "--config"])
        .arg(a.dir.join("c.conf"))
        .args(["--max-unavailable", "1", "--min-ready", "1s"])
        .args(["--progress-deadline", "12s"])
        .output()
        .expect("fleet reload runs");
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Said at once, with the remedy.
    assert!(
        text.contains("not Ready outside this rollout: node-b")
            && text.contains("start them again, or raise --max-unavailable"),
        "{text}"
    );
    // Said again while it waits, naming the host and what holds it.
    assert!(
        text.lines().any(|l| l.starts_with("waiting (")
            && l.contains("node-a: no free slot of its cluster: held by node-b")),
        "{text}"
    );
    // Halted at the deadline, exit 1, naming the host.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("halted at node-a: no progress within --progress-deadline 12s"),
        "{text}"
    );
    assert!(took < Duration::from_secs(40), "halted after {took:?}");
    assert!(
        a.notifications("reload.start").is_empty(),
        "node-a was not taken down while node-b's replicas are: {text}"
    );
}

#[test]
fn a_host_that_freezes_after_answering_halts_the_rolling_reload() {
    let server = Server::start("froze");
    let a = Host::start(&server, "froze", "a", FAST, "");
    let b = Host::start(&server, "froze", "b", FAST, "");
    wait_for("a to see b up", Duration::from_secs(10), || {
        a.shows(&b, "up")
    });
    let command = Command::new(BIN)
        .args(["fleet", "reload", "--config"])
        .arg(a.dir.join("c.conf"))
        .args(["--max-unavailable", "1", "--min-ready", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleet reload runs");
    // The first host asked answers, then freezes while it should stay Ready.
    let first = wait_value(
        "a host to answer its reload",
        Duration::from_secs(20),
        || {
            [&a, &b]
                .into_iter()
                .find(|h| !h.notifications("reload.end").is_empty())
        },
    );
    let frozen = Frozen::freeze(vec![first.daemon.as_ref().expect("daemon").id()]);
    let mut command = command;
    let deadline = Instant::now() + Duration::from_secs(30);
    while command.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = command.kill();
    let out = command.wait_with_output().expect("output");
    drop(frozen);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "halted at {}: went down after answering its reload request",
            first.name
        )),
        "{text}"
    );
}

#[test]
fn a_host_that_dies_before_answering_halts_the_rolling_reload() {
    let server = Server::start("dies");
    let a = Host::start(&server, "dies", "a", FAST, "");
    let mut b = Host::start(&server, "dies", "b", FAST, "");
    // b's reload sets up for 30 s: it is killed before it can answer.
    edit(
        &b,
        "volume_driver = fault\n",
        "volume_driver = fault\nfault_setup_delay = 30s\n",
    );
    let mut command = Command::new(BIN)
        .args(["fleet", "reload", "--config"])
        .arg(a.dir.join("c.conf"))
        .args(["--max-unavailable", "1", "--min-ready", "0s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleet reload runs");
    wait_for("b to start its reload", Duration::from_secs(20), || {
        !b.notifications("reload.start").is_empty()
    });
    b.kill_9();
    let deadline = Instant::now() + Duration::from_secs(20);
    while command.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = command.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = command.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "halted, not hung: {text}");
    assert!(
        text.contains("node-b: went down before answering"),
        "{text}"
    );
}

/// Thaws frozen processes when dropped (a failed assertion never leaves a
/// server stopped).
struct Frozen(Vec<u32>);

impl Frozen {
    fn freeze(pids: Vec<u32>) -> Frozen {
        common::freeze(&pids);
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(&self.0, "-CONT");
    }
}

fn a_frozen_database_is_refused_within_the_deadline_and_status_says_so(db: Db) {
    let server = Server::start_on(db, "frozen");
    let a = Host::start(
        &server,
        "frozen",
        "a",
        "report_interval = 1s\nservice_down_time = 30s",
        "",
    );
    wait_for("a to join the fleet", Duration::from_secs(20), || {
        let status = a.ok(&["status", "--json"]);
        status["services"]
            .as_array()
            .is_some_and(|rows| !rows.is_empty() && rows.iter().all(|r| r["cluster"] == "c1"))
    });
    let frozen = Frozen::freeze(server.pids());
    let started = Instant::now();
    let out = a.cli(&["volume", "create", "--size", "1M", "--backend", "f0"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "a create on a frozen database must fail"
    );
    assert!(
        stderr.contains("records database") && stderr.contains("no answer within 5s"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(8), "refused after {took:?}");
    let started = Instant::now();
    let status = a.ok(&["status", "--json"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "status took {:?}",
        started.elapsed()
    );
    let fault = status["fleet_fault"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        fault.contains("no answer within 5s") && fault.contains("only this host's service rows"),
        "status says the rows are this host's only: {status}"
    );
    let table = String::from_utf8_lossy(&a.cli(&["status"]).stdout).to_string();
    assert!(table.contains("Fleet database did not answer"), "{table}");
    drop(frozen);
    wait_for(
        "a create once the database answers",
        Duration::from_secs(30),
        || {
            a.cli(&["volume", "create", "--size", "1M", "--backend", "f0"])
                .status
                .success()
        },
    );
    // The refused create was given up by its client: the database, thawed,
    // did not carry it out later. One volume, the one created since.
    let volumes = server.sql("SELECT id, status FROM volumes");
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    assert!(volumes[0].ends_with("|available"), "{volumes:?}");
}

#[test]
fn a_paused_host_that_comes_back_tells_its_client_the_survivors_resolution() {
    let server = Server::start("paused");
    let timing = "report_interval = 1s\nservice_down_time = 4s";
    let slow = "[backend_defaults]\nfault_op_delay = 8s";
    let a = Host::start(&server, "paused", "a", timing, slow);
    let b = Host::start(&server, "paused", "b", timing, slow);
    let create = create_in_background(&a, "1G");
    wait_for("the create to be a's work", Duration::from_secs(10), || {
        server.sql("SELECT COUNT(*) FROM workers WHERE owner = 'node-a'") == ["1"]
    });
    let id = server.sql("SELECT id FROM workers WHERE owner = 'node-a'")[0].clone();
    let paused = Frozen::freeze(vec![a.daemon.as_ref().expect("running").id()]);
    wait_for("b to claim a's create", Duration::from_secs(30), || {
        b.notifications("work.claimed")
            .iter()
            .any(|e| e["payload"]["id"] == id.as_str())
    });
    drop(paused);
    let out = create.wait_with_output().expect("create answers");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "told available although the record says error: {stderr}"
    );
    assert!(
        stderr.contains(&format!("volume {id}"))
            && stderr.contains("a survivor resolved it to `error`, which stands"),
        "{stderr}"
    );
    assert_eq!(
        server.sql(&format!("SELECT status FROM volumes WHERE id = '{id}'")),
        ["error"],
        "the record is what the client was told"
    );
}

#[test]
fn a_host_that_has_not_joined_the_fleet_says_so_in_status() {
    let server = Server::start("unjoined");
    let mut a = Host::start(
        &server,
        "unjoined",
        "a",
        "report_interval = 1s\nservice_down_time = 4s",
        "",
    );
    server.pg_ctl("stop");
    a.kill_9();
    a.launch();
    // Its own rows, once heartbeated, are shown with the fault that says
    // they are not the fleet's.
    let mut status = serde_json::Value::Null;
    wait_for(
        "a's status with its own rows",
        Duration::from_secs(20),
        || {
            let out = a.cli(&["status", "--json"]);
            status = serde_json::from_slice(&out.stdout).unwrap_or_default();
            status["services"].as_array().is_some_and(|r| r.len() == 2)
        },
    );
    let fault = status["fleet_fault"].as_str().unwrap_or_default();
    assert!(
        fault.contains("has not joined the fleet yet") && fault.contains("only this host's"),
        "status must say its rows are not the fleet's: {status}"
    );
    let table = String::from_utf8_lossy(&a.cli(&["status"]).stdout).to_string();
    assert!(table.contains("Fleet database did not answer"), "{table}");
    server.pg_ctl("start");
    wait_for(
        "a to join once the database is back",
        Duration::from_secs(30),
        || a.own_rows_up(),
    );
}

/// Starts `volume create --size SIZE --backend f0` on `host` in the background.
fn create_in_background(host: &Host, size: &str) -> std::process::Child {
    Command::new(BIN)
        .args(["volume", "create", "--size", size, "--backend", "f0"])
        .arg("--control")
        .arg(host.dir.join("sock"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("volume create runs")
}

/// Fault 2 of "Fleet truth": the database restarts while the driver works.
/// The client is told the outcome with its record pending, by id, and the
/// host writes the record as soon as the database answers.
#[test]
fn a_database_restart_mid_operation_keeps_the_outcome_and_writes_it_when_back() {
    let server = Server::start("restart");
    let timing = "report_interval = 1s\nservice_down_time = 4s";
    let a = Host::start(
        &server,
        "restart",
        "a",
        timing,
        "[backend_defaults]\nfault_op_delay = 6s",
    );
    let create = create_in_background(&a, "1M");
    std::thread::sleep(Duration::from_secs(2));
    server.pg_ctl("stop");
    std::thread::sleep(Duration::from_secs(6));
    let out = create.wait_with_output().expect("create answers");
    server.pg_ctl("start");
    // Told the outcome, by id, with its record pending (exit 0: the
    // outcome is durable and will be written).
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(answer["status"], "available", "{answer}");
    assert_eq!(answer["record"], "pending", "{answer}");
    assert!(
        answer["note"]
            .as_str()
            .is_some_and(|n| n.contains("pending-outcomes.json")),
        "{answer}"
    );
    let id = answer["id"].as_str().expect("volume ID").to_string();
    wait_for(
        "the pending outcome written",
        Duration::from_secs(30),
        || {
            server.sql(&format!("SELECT status FROM volumes WHERE id = '{id}'"))
                == vec!["available".to_string()]
        },
    );
    assert!(
        server.sql("SELECT id FROM workers").is_empty(),
        "no work left owned"
    );
    assert!(
        !a.dir.join("state/pending-outcomes.json").exists(),
        "nothing left pending"
    );
}

/// The same outcome, kept across a restart of the host while the database
/// is down: recovery writes it instead of resolving the record to `error`.
#[test]
fn a_kept_outcome_is_written_by_recovery_after_the_host_restarts() {
    let server = Server::start("keep");
    let timing = "report_interval = 1s\nservice_down_time = 4s";
    let mut a = Host::start(
        &server,
        "keep",
        "a",
        timing,
        "[backend_defaults]\nfault_op_delay = 3s",
    );
    let create = create_in_background(&a, "1M");
    std::thread::sleep(Duration::from_secs(1));
    server.pg_ctl("stop");
    let out = create.wait_with_output().expect("create answers");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        answer["record"],
        "pending",
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.kill_9();
    let kept = std::fs::read_to_string(a.dir.join("state/pending-outcomes.json"))
        .expect("the outcome is kept in the state dir");
    assert!(kept.contains("\"to\": \"available\""), "{kept}");
    server.pg_ctl("start");
    a.run();
    wait_for(
        "recovery to write the kept outcome",
        Duration::from_secs(30),
        || server.sql("SELECT status FROM volumes") == vec!["available".to_string()],
    );
    assert!(server.sql("SELECT id FROM workers").is_empty());
    assert!(
        a.notifications("work.claimed").is_empty(),
        "nothing was resolved by guess: {:?}",
        a.notifications("work.claimed")
    );
}

/// A host cut off from the database (here: the database frozen) fences
/// itself once it has gone a fence interval (service_down_time less one
/// report_interval: 3 s here) without renewing its membership: it starts no
/// work, and says why at once, before survivors may claim (4 s).
#[test]
fn a_host_that_cannot_renew_its_membership_fences_itself() {
    let server = Server::start("fence");
    let a = Host::start(
        &server,
        "fence",
        "a",
        "report_interval = 1s\nservice_down_time = 4s",
        "",
    );
    assert!(
        a.cli(&["volume", "create", "--size", "1M", "--backend", "f0"])
            .status
            .success()
    );
    let frozen = Frozen::freeze(server.pids());
    std::thread::sleep(Duration::from_millis(3500));
    let started = Instant::now();
    let out = a.cli(&["volume", "create", "--size", "1M", "--backend", "f0"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("this host has not renewed its fleet membership for")
            && stderr.contains("its fence interval is 3s"),
        "{stderr}"
    );
    assert!(
        took < Duration::from_secs(2),
        "refused at once, not after {took:?}"
    );
    drop(frozen);
    // Renewed once the database answers: it works again by itself.
    wait_for("a create once renewed", Duration::from_secs(30), || {
        a.cli(&["volume", "create", "--size", "1M", "--backend", "f0"])
            .status
            .success()
    });
    assert_eq!(
        server.sql("SELECT id FROM volumes").len(),
        2,
        "the fenced create left nothing"
    );
}

/// The database restarts for longer than service_down_time while a's
/// driver works, and a is slow to come back (paused 3 s): b, back at once,
/// must not claim a's work before a writes the outcome it kept and told its
/// client. A survivor renews for service_down_time after an outage of its
/// own renewals before it claims anything (`fleet::outcome::may_claim`).
#[test]
fn a_survivor_back_from_a_database_outage_lets_the_owner_write_its_kept_outcome() {
    let server = Server::start("outage");
    let timing = "report_interval = 1s\nservice_down_time = 8s";
    let slow = "[backend_defaults]\nfault_op_delay = 3s";
    let a = Host::start(&server, "outage", "a", timing, slow);
    let b = Host::start(&server, "outage", "b", timing, slow);
    let create = create_in_background(&a, "1M");
    wait_for("the create to be a's work", Duration::from_secs(10), || {
        server.sql("SELECT COUNT(*) FROM workers WHERE owner = 'node-a'") == ["1"]
    });
    let stopped = Instant::now();
    server.pg_ctl("stop");
    let out = create.wait_with_output().expect("create answers");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        answer["record"],
        "pending",
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(answer["status"], "available", "{answer}");
    let id = answer["id"].as_str().expect("volume ID").to_string();
    // The outage outlasts service_down_time: a's last heartbeat is stale.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
    let paused = Frozen::freeze(vec![a.daemon.as_ref().expect("running").id()]);
    server.pg_ctl("start");
    wait_for(
        "b to renew after the outage",
        Duration::from_secs(30),
        || {
            server.sql("SELECT count(*) FROM hosts WHERE host = 'node-b' AND now() - heartbeat < interval '1 second'",
            ) == ["1"]
        },
    );
    // b runs its claims every second meanwhile; a's heartbeat is 10 s old.
    std::thread::sleep(Duration::from_secs(3));
    drop(paused);
    wait_for(
        "a to write its kept outcome",
        Duration::from_secs(30),
        || {
            server.sql(&format!("SELECT status FROM volumes WHERE id = '{id}'")) == ["available"]
                && server.sql("SELECT COUNT(*) FROM workers") == ["0"]
        },
    );
    assert!(
        b.notifications("work.claimed").is_empty(),
        "b claimed work whose outcome a kept: {:?}",
        b.notifications("work.claimed")
    );
}

/// Fault 2's kind for an extend: the database restarts while the driver
/// grows the volume. The new size is part of the outcome kept and written
/// (not a separate write whose failure told the client "unavailable" and
/// left the record `extending`, owned by a live host).
#[test]
fn a_database_restart_mid_extend_keeps_the_new_size_with_the_outcome() {
    let server = Server::start("extend");
    let a = Host::start(
        &server,
        "extend",
        "a",
        "report_interval = 1s\nservice_down_time = 4s",
        "[backend_defaults]\nfault_op_delay = 3s",
    );
    let created = a.ok(&["volume", "create", "--size", "1M", "--backend", "f0"]);
    let id = created["id"].as_str().expect("volume ID").to_string();
    let extend = Command::new(BIN)
        .args(["volume", "extend", &id, "--size", "2M"])
        .arg("--control")
        .arg(a.dir.join("sock"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("volume extend runs");
    let mut extend = Some(extend);
    wait_for("the extend to be a's work", Duration::from_secs(10), || {
        if let Some(Ok(Some(_))) = extend.as_mut().map(Child::try_wait) {
            let out = extend
                .take()
                .expect("child")
                .wait_with_output()
                .expect("output");
            panic!(
                "the extend ended before the database stopped: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        server.sql("SELECT status FROM workers") == ["extending"]
    });
    let extend = extend.expect("still running");
    server.pg_ctl("stop");
    let out = extend.wait_with_output().expect("extend answers");
    server.pg_ctl("start");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        (answer["status"].as_str(), answer["record"].as_str()),
        (Some("available"), Some("pending")),
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the kept outcome written", Duration::from_secs(30), || {
        server.sql(&format!(
            "SELECT status, size_bytes FROM volumes WHERE id = '{id}'"
        )) == [format!("available|{}", 2 << 20)]
    });
    assert!(server.sql("SELECT id FROM workers").is_empty());
}

/// A fleet host's /metrics say what the fleet's records say: hosts up and
/// down (by the database's clock), its own fencing and heartbeat round trip.
#[test]
fn a_fleet_hosts_metrics_follow_the_fleet() {
    let server = Server::start("metrics");
    let timing = "report_interval = 1s\nservice_down_time = 4s";
    let a = Host::start(&server, "metrics", "a", timing, "http_listen = 127.0.0.1:0");
    let mut b = Host::start(&server, "metrics", "b", timing, "");
    let address = wait_value("a's listener", Duration::from_secs(20), || {
        common::http_addresses(&a.dir.join("log")).pop()
    });
    let scrape = || {
        let out = Command::new("curl")
            .args(["-s", "-m", "5", &format!("http://{address}/metrics")])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let text = wait_value(
        "both hosts up in a's metrics",
        Duration::from_secs(30),
        || {
            let text = scrape();
            (text.contains("rekindle_fleet_hosts{state=\"up\"} 2")
                && text.contains("# TYPE rekindle_fleet_heartbeat_round_trip_seconds gauge"))
            .then_some(text)
        },
    );
    for name in rekindle::watch::metrics::Metrics::FLEET_NAMES {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} not served:\n{text}"
        );
    }
    assert!(text.contains("rekindle_fleet_fenced 0"), "{text}");
    b.kill_9();
    wait_value("b down in a's metrics", Duration::from_secs(30), || {
        let text = scrape();
        (text.contains("rekindle_fleet_hosts{state=\"up\"} 1")
            && text.contains("rekindle_fleet_hosts{state=\"down\"} 1"))
        .then_some(())
    });
}

// The fleet's promises, kept on both databases.
on_each_database!(
    a_killed_host_is_down_within_service_down_time_plus_report_interval_every_time,
    a_dead_hosts_create_and_backup_are_claimed_once_and_stay_resolved,
    a_rolling_reload_keeps_all_but_one_replica_ready_and_halts_at_a_bad_file,
    a_frozen_database_is_refused_within_the_deadline_and_status_says_so,
    the_fleet_demo_starts_three_hosts_in_one_cluster_and_stops_them,
);
