//! Fleet mode benchmark on a private PostgreSQL and a private MariaDB (`scripts/pg-server`,
//! `scripts/mariadb-server`, stopped at the end, also when a step fails), in one run, each
//! figure for both (MariaDB's lines end in `_mariadb`) and MariaDB's over PostgreSQL's:
//!
//! - `fleet_down_detection_s`: median over 5 rounds of the time from `kill -9` of a
//!   real `rekindle run` host to another host's `status --json` showing it down
//!   (report_interval 1s, service_down_time 3s; printed too).
//! - `fleet_frozen_db_refusal_s`: median over 3 rounds of the time a `volume
//!   create` takes to be refused by a real host whose database is frozen (SIGSTOP of
//!   the postmaster and its children, just before the create): the client-side
//!   statement deadline (5 s) plus the refusal's way back. Goal: at most 6 s.
//! - `fleet_rollout_per_host_s`: median per host of `rekindle fleet reload --cluster
//!   roll --max-unavailable 1 --min-ready 0s` over 3 real daemons (fault backends,
//!   which set up at once) after every host's file changed (`reinit_driver_count`),
//!   3 rollouts: a host's share runs from the previous host done (the first: from
//!   the first request) to this host done, as the command prints them.
//! - `fleet_heartbeat_db_cpu_pct`: the share of one core the database server spends
//!   on heartbeats for 10,000 service rows (100 hosts x 100 backends, each with its
//!   own connection) at report_interval 10s, written through the fleet's store as
//!   `Member::row_sink` writes them (`put_services`, then `host_heartbeat`), each
//!   host beating every 10 s, spread over the interval, for 30 s; read from the
//!   server's own process times (`/proc/PID/stat` utime + stime of the postmaster
//!   and its children, before and after, / wall time; MariaDB is one process, its
//!   threads counted). Also measured: the server idle, and on PostgreSQL the same
//!   beats written one `put_service` statement per row (how the daemon wrote them
//!   before `put_services`).
//!
//! The binary is copied aside first (the target directory is shared).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Db, Server};
use rekindle::engine::runtime::run_real;
use rekindle::records::cluster::Epoch;
use rekindle::records::{FleetStore, ServicePut};

/// The copy of the binary this run uses.
static BIN: OnceLock<PathBuf> = OnceLock::new();

fn bin() -> &'static Path {
    BIN.get().expect("binary copied")
}

/// Removes the copied binary when dropped.
struct BinCopy;

impl Drop for BinCopy {
    fn drop(&mut self) {
        if let Some(path) = BIN.get() {
            let _ = std::fs::remove_file(path);
        }
    }
}

const REPORT_INTERVAL: &str = "1s";
const SERVICE_DOWN_TIME: &str = "3s";

/// A real `rekindle run` host with two fault backends, in a cluster named after the step.
struct Host {
    name: String,
    dir: PathBuf,
    url: String,
    /// Its cluster: the benchmark's step (`down`, `roll`).
    cluster: String,
    daemon: Option<Child>,
}

impl Host {
    fn start(url: &str, tag: &str, name: &str) -> Host {
        let dir = std::env::temp_dir().join(format!(
            "rekindle-bench-{tag}-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("host dir");
        let mut host = Host {
            name: format!("node-{name}"),
            dir,
            url: url.to_string(),
            cluster: tag.to_string(),
            daemon: None,
        };
        host.write_config("");
        host.run();
        host
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("c.conf")
    }

    fn write_config(&self, extra: &str) {
        let conf = format!(
            "[DEFAULT]\nhost = {name}\ncluster = {cluster}\nenabled_backends = f0, f1\n\
             periodic_interval = 2s\nreport_interval = {REPORT_INTERVAL}\n\
             service_down_time = {SERVICE_DOWN_TIME}\nstate_dir = {d}/state\n{extra}\n\
             [database]\nconnection = {url}\n[f0]\nvolume_driver = fault\n\
             [f1]\nvolume_driver = fault\n",
            name = self.name,
            cluster = self.cluster,
            d = self.dir.display(),
            url = self.url
        );
        std::fs::write(self.conf(), conf).expect("config");
    }

    fn run(&mut self) {
        let child = Command::new(bin())
            .arg("run")
            .arg("--config")
            .arg(self.conf())
            .arg("--control")
            .arg(self.dir.join("sock"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("log")).expect("log"))
            .spawn()
            .expect("daemon starts");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let own = self.state_of(&self.name);
            if own.len() == 2 && own.iter().all(|s| s == "up") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not come up: {}",
                self.name,
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The states of `host`'s service rows as this host's `status --json` shows them.
    fn state_of(&self, host: &str) -> Vec<String> {
        let out = Command::new(bin())
            .args(["status", "--json", "--control"])
            .arg(self.dir.join("sock"))
            .output()
            .expect("status runs");
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return Vec::new();
        };
        let prefix = format!("{host}@");
        v["services"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| r["host"].as_str().is_some_and(|h| h.starts_with(&prefix)))
                    .map(|r| r["state"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill_9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Median seconds from `kill -9` of a host to another host's `status` showing it down.
fn down_detection(url: &str) -> Vec<f64> {
    let a = Host::start(url, "down", "a");
    let mut b = Host::start(url, "down", "b");
    let mut took = Vec::new();
    for round in 0..5 {
        if round > 0 {
            b.run();
        }
        // b's own status shows its rows from its own board: wait until a
        // reads them up from the database before killing it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let states = a.state_of(&b.name);
            if states.len() == 2 && states.iter().all(|s| s == "up") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: {} never shown up: {states:?}",
                b.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let killed = Instant::now();
        b.kill_9();
        loop {
            let states = a.state_of(&b.name);
            if !states.is_empty() && states.iter().all(|s| s == "down") {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(20),
                "round {round}: {} never shown down: {states:?}",
                b.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        took.push(killed.elapsed().as_secs_f64());
    }
    took
}

/// Seconds each of 3 `volume create`s takes to be refused while the
/// database is frozen (thawed, and answering again, between rounds).
fn frozen_refusal(server: &Server) -> Vec<f64> {
    let a = Host::start(&server.url, "frozen", "a");
    let create = || {
        Command::new(bin())
            .args([
                "volume",
                "create",
                "--size",
                "1M",
                "--backend",
                "f0",
                "--control",
            ])
            .arg(a.dir.join("sock"))
            .output()
            .expect("volume create runs")
    };
    let signal = |pids: &[u32], sig: &str| {
        for pid in pids {
            let _ = Command::new("kill").arg(sig).arg(pid.to_string()).status();
        }
    };
    let mut took = Vec::new();
    for round in 0..3 {
        // Answering first: a create succeeds.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !create().status.success() {
            assert!(
                Instant::now() < deadline,
                "round {round}: the database never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let pids = server.pids();
        signal(&pids, "-STOP");
        let started = Instant::now();
        let out = create();
        let elapsed = started.elapsed();
        signal(&pids, "-CONT");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("no answer within"),
            "round {round}: a create on a frozen database is refused by its deadline: {stderr}"
        );
        took.push(elapsed.as_secs_f64());
    }
    took
}

/// Per-host seconds of rolling reloads over 3 daemons, and each rollout's total.
fn rollouts(url: &str) -> (Vec<f64>, Vec<f64>) {
    let hosts: Vec<Host> = (1..=3)
        .map(|n| Host::start(url, "roll", &format!("r{n}")))
        .collect();
    let mut per_host = Vec::new();
    let mut totals = Vec::new();
    for round in 0..3 {
        for host in &hosts {
            host.write_config(&format!("reinit_driver_count = {}", 4 + round));
        }
        let started = Instant::now();
        let mut child = Command::new(bin())
            .args(["fleet", "reload", "--config"])
            .arg(hosts[0].conf())
            .args([
                "--cluster",
                "roll",
                "--max-unavailable",
                "1",
                "--min-ready",
                "0s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fleet reload runs");
        let stdout = child.stdout.take().expect("stdout");
        // A rollout that stops making progress (a host asked but never
        // answering) fails the benchmark instead of hanging it.
        let pid = child.id();
        let (finished_tx, finished_rx) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                finished_rx.recv_timeout(Duration::from_secs(60))
            {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        });
        // Each host's share: from the previous host done (the first: from
        // the first request) to this host done, polling included.
        let mut since: Option<Instant> = None;
        let mut said = String::new();
        let mut done = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("output");
            let now = Instant::now();
            said.push_str(&line);
            said.push('\n');
            if line.contains(": asked to reload") {
                since.get_or_insert(now);
            } else if line.ends_with(": done")
                && line.contains(": Ready for")
                && let Some(at) = since.replace(now)
            {
                per_host.push(now.duration_since(at).as_secs_f64());
                done += 1;
            }
        }
        let status = child.wait().expect("fleet reload ends");
        drop(finished_tx);
        let _ = watchdog.join();
        assert!(
            status.success() && done == hosts.len(),
            "rollout {round}: {status}\n{said}"
        );
        assert!(
            said.matches("reloaded as intended").count() == hosts.len(),
            "rollout {round}: every host reloaded its changed backends\n{said}"
        );
        totals.push(started.elapsed().as_secs_f64());
    }
    (per_host, totals)
}

/// Clock ticks the server has spent: utime + stime of the postmaster and
/// its children, plus the postmaster's cutime + cstime (children that
/// ended meanwhile, reaped by it).
fn server_ticks(postmaster: u32) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command's ')': state (3) ppid (4) ... utime (14)
        // stime (15) cutime (16) cstime (17).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field =
            |n: usize| -> u64 { fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0) };
        let ppid = field(4) as u32;
        if pid == postmaster {
            total += field(14) + field(15) + field(16) + field(17);
        } else if ppid == postmaster {
            total += field(14) + field(15);
        }
    }
    total
}

/// Nanoseconds on a CPU of the postmaster and its live children (every
/// thread), from `/proc/PID/task/TID/schedstat` (exact, where utime and stime are sampled at clock
/// ticks and miss short bursts); children that ended meanwhile are not counted.
fn server_run_ns(postmaster: u32) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if pid != postmaster && ppid != Some(postmaster) {
            continue;
        }
        // Every thread (MariaDB is one process of many threads).
        for task in std::fs::read_dir(entry.path().join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            total += std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| {
                    s.split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                })
                .unwrap_or(0);
        }
    }
    total
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The server's CPU over `wall`, as a percentage of one core.
fn cpu_pct(ticks: u64, wall: Duration) -> f64 {
    ticks as f64 / clock_ticks_per_sec() / wall.as_secs_f64() * 100.0
}

const HOSTS: usize = 100;
const BACKENDS: usize = 100;
const BEAT: Duration = Duration::from_secs(10);

/// One simulated host: its store (its own connection, as a daemon has), name and epoch.
struct SimHost {
    store: Rc<dyn FleetStore>,
    host: String,
    epoch: Epoch,
    rows: Vec<(String, String)>,
}

impl SimHost {
    /// One heartbeat as `Member::row_sink` writes it: every service row in
    /// one statement (`put_services`), then the host's. `per_row`: one
    /// `put_service` statement per row instead (how it was written before).
    async fn beat(&self, per_row: bool) {
        if per_row {
            for (backend, host) in &self.rows {
                self.store
                    .put_service(backend, "cinder-volume", host, "up", "")
                    .await
                    .expect("service row");
            }
        } else {
            let rows: Vec<ServicePut<'_>> = self
                .rows
                .iter()
                .map(|(backend, host)| ServicePut {
                    backend,
                    binary: "cinder-volume",
                    host,
                    state: "up",
                })
                .collect();
            self.store.put_services(&rows).await.expect("service rows");
        }
        assert!(
            self.store
                .host_heartbeat(&self.host, self.epoch, Duration::from_secs(20))
                .await
                .expect("host heartbeat")
        );
    }
}

/// The server's CPU (percent of one core) while 100 hosts x 100 backends beat
/// every 10 s for `run` (from utime + stime, then from schedstat); also the
/// number of beats.
fn heartbeat_cpu(url: &str, postmaster: u32, run: Duration, per_row: bool) -> (f64, f64, usize) {
    let url = url.to_string();
    run_real(async move {
        let mut hosts = Vec::new();
        for h in 0..HOSTS {
            let store = rekindle::records::connect(&url, Duration::from_secs(25))
                .await
                .expect("connect");
            let host = format!("sim-{h:03}");
            let epoch = store
                .register_host(&host, &format!("sc{}", h % 10))
                .await
                .expect("register");
            let rows = (0..BACKENDS)
                .map(|b| {
                    let backend = format!("b{b:03}");
                    let row_host = format!("{host}@{backend}");
                    (backend, row_host)
                })
                .collect();
            hosts.push(Rc::new(SimHost {
                store,
                host,
                epoch,
                rows,
            }));
        }
        // Every row exists and every connection is warm before measuring.
        for host in &hosts {
            host.beat(per_row).await;
        }
        let before = server_ticks(postmaster);
        let before_ns = server_run_ns(postmaster);
        let started = tokio::time::Instant::now();
        let until = started + run;
        let beats = Rc::new(std::cell::Cell::new(0usize));
        let tasks: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let (host, beats) = (host.clone(), beats.clone());
                let offset = BEAT * index as u32 / HOSTS as u32;
                actix::spawn(async move {
                    let mut next = started + offset;
                    while next < until {
                        tokio::time::sleep_until(next).await;
                        host.beat(per_row).await;
                        beats.set(beats.get() + 1);
                        next += BEAT;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("host task");
        }
        tokio::time::sleep_until(until).await;
        let wall = started.elapsed();
        let used = server_ticks(postmaster) - before;
        let ran_ns = server_run_ns(postmaster).saturating_sub(before_ns);
        (
            cpu_pct(used, wall),
            ran_ns as f64 / 1e9 / wall.as_secs_f64() * 100.0,
            beats.get(),
        )
    })
    .expect("runtime")
}

fn postmaster(server: &Server) -> u32 {
    server.pids()[0]
}

/// Every figure on one database; `suffix` names it in each line
/// (PostgreSQL's lines keep their names, MariaDB's end in `_mariadb`).
/// The three figures compared across databases, in order: down detection,
/// rollout per host, heartbeat CPU.
fn figures(db: Db, suffix: &str) -> [f64; 3] {
    let server = Server::start_on(db, &format!("bench-fleet{suffix}"));
    println!(
        "fleet_liveness_timing{suffix}: report_interval {REPORT_INTERVAL}, service_down_time {SERVICE_DOWN_TIME}"
    );
    let detection = down_detection(&server.url);
    eprintln!("{db:?}: down detection rounds (s): {detection:.2?}");
    let down = median(detection.clone());
    println!("fleet_down_detection_s{suffix}: {down:.2}");
    println!(
        "fleet_down_detection_max_s{suffix}: {:.2}",
        detection.iter().copied().fold(0.0, f64::max)
    );

    let frozen = frozen_refusal(&server);
    eprintln!("{db:?}: frozen database refusals (s): {frozen:.2?}");
    println!("fleet_frozen_db_refusal_s{suffix}: {:.2}", median(frozen));

    let (per_host, totals) = rollouts(&server.url);
    eprintln!("{db:?}: rollout per host (s): {per_host:.2?}; totals (s): {totals:.2?}");
    let rollout = median(per_host);
    println!("fleet_rollout_per_host_s{suffix}: {rollout:.2}");
    println!(
        "fleet_rollout_3_hosts_total_s{suffix}: {:.2}",
        median(totals)
    );

    let postmaster = postmaster(&server);
    let idle = Duration::from_secs(5);
    let before = server_ticks(postmaster);
    std::thread::sleep(idle);
    println!(
        "fleet_heartbeat_db_idle_cpu_pct{suffix}: {:.2}",
        cpu_pct(server_ticks(postmaster) - before, idle)
    );
    let run = Duration::from_secs(30);
    let (cpu, exact, beats) = heartbeat_cpu(&server.url, postmaster, run, false);
    println!(
        "fleet_heartbeat_rows{suffix}: {} ({HOSTS} hosts x {BACKENDS} backends, report_interval {}s, {beats} host beats in {}s)",
        HOSTS * BACKENDS,
        BEAT.as_secs(),
        run.as_secs()
    );
    println!("fleet_heartbeat_db_cpu_pct{suffix}: {cpu:.2}");
    println!("fleet_heartbeat_db_cpu_pct_schedstat{suffix}: {exact:.2}");
    if db == Db::Postgres {
        // The same beats written one statement per row, as before put_services.
        let (pct, exact, _) = heartbeat_cpu(&server.url, postmaster, run, true);
        println!("fleet_heartbeat_db_cpu_pct_one_statement_per_row: {pct:.2}");
        println!("fleet_heartbeat_db_cpu_pct_one_statement_per_row_schedstat: {exact:.2}");
    }
    [down, rollout, exact]
}

fn main() {
    let copy = std::env::temp_dir().join(format!("rekindle-bench-bin-{}", std::process::id()));
    std::fs::copy(env!("CARGO_BIN_EXE_rekindle"), &copy).expect("copy the binary aside");
    BIN.set(copy).expect("once");
    let _bin = BinCopy;
    let postgres = figures(Db::Postgres, "");
    let mariadb = figures(Db::MariaDb, "_mariadb");
    // Neither database more than 2x worse than the other on any of them:
    // MariaDB's figure over PostgreSQL's (1 = the same; the CPU figure from
    // schedstat, exact).
    for (name, (pg, maria)) in [
        "fleet_down_detection_mariadb_vs_postgresql",
        "fleet_rollout_per_host_mariadb_vs_postgresql",
        "fleet_heartbeat_db_cpu_mariadb_vs_postgresql",
    ]
    .iter()
    .zip(postgres.iter().zip(mariadb.iter()))
    {
        println!("{name}: {:.2}", maria / pg.max(f64::EPSILON));
    }
}
