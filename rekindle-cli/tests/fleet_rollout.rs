//! `rekindle fleet reload|status` (the binary) against a real PostgreSQL and fake hosts that a
//! test thread plays in the database: host and service rows, heartbeats, answers to requests.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Db, Server};
use rekindle::engine::runtime::run_real;
use rekindle::records::requests::Answer;

const BIN: &str = env!("CARGO_BIN_EXE_rekindle");

/// What one fake host did with one request.
#[derive(Debug, Clone)]
struct Handled {
    host: String,
    request: i64,
    claimed: Instant,
    answered: Instant,
}

/// Fake hosts of cluster `c1`: each claims its requests, goes down for a
/// moment (its service row `down`), answers (as intended unless it is
/// `bad`), comes back up; heartbeats stay fresh meanwhile. The most hosts
/// seen asked-but-not-done at once in the rollout's row is kept too.
struct Fakes {
    stop: Arc<AtomicBool>,
    handled: Arc<Mutex<Vec<Handled>>>,
    max_in_flight: Arc<Mutex<usize>>,
    thread: Option<JoinHandle<()>>,
}

impl Fakes {
    fn start(url: &str, hosts: &[&str], bad: Option<&str>) -> Fakes {
        let stop = Arc::new(AtomicBool::new(false));
        let handled = Arc::new(Mutex::new(Vec::new()));
        let max_in_flight = Arc::new(Mutex::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (url, stop, handled, max_in_flight) = (
                url.to_string(),
                stop.clone(),
                handled.clone(),
                max_in_flight.clone(),
            );
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            let bad = bad.map(str::to_string);
            std::thread::spawn(move || {
                run_real(async move {
                    let store = rekindle::records::connect(&url, Duration::from_secs(60))
                        .await
                        .expect("fake hosts connect");
                    let mut down_until: Vec<Option<Instant>> = vec![None; hosts.len()];
                    for host in &hosts {
                        store.register_host(host, "c1").await.expect("register");
                        for backend in ["lvm", "ceph"] {
                            store
                                .put_service(backend, "cinder-volume", host, "up", "")
                                .await
                                .expect("service row");
                        }
                    }
                    ready_tx.send(()).expect("test waits");
                    while !stop.load(Ordering::SeqCst) {
                        for (index, host) in hosts.iter().enumerate() {
                            for id in store.take_reload_requests(host).await.expect("take") {
                                let claimed = Instant::now();
                                for backend in ["lvm", "ceph"] {
                                    store
                                        .put_service(backend, "cinder-volume", host, "down", "")
                                        .await
                                        .expect("down");
                                }
                                tokio::time::sleep(Duration::from_millis(150)).await;
                                let as_intended = bad.as_deref() != Some(host.as_str());
                                let summary = if as_intended {
                                    "reloaded as intended (2 backends)".to_string()
                                } else {
                                    "not as intended: lvm rolled back: volume_group vg9 not found"
                                        .to_string()
                                };
                                let report = serde_json::json!({ "summary": summary }).to_string();
                                store
                                    .answer_reload(
                                        id,
                                        &Answer {
                                            as_intended,
                                            report,
                                        },
                                    )
                                    .await
                                    .expect("answer");
                                handled.lock().expect("lock").push(Handled {
                                    host: host.clone(),
                                    request: id.0,
                                    claimed,
                                    answered: Instant::now(),
                                });
                                down_until[index] =
                                    Some(Instant::now() + Duration::from_millis(300));
                            }
                            let state = match down_until[index] {
                                Some(until) if Instant::now() < until => "down",
                                _ => "up",
                            };
                            for backend in ["lvm", "ceph"] {
                                store
                                    .put_service(backend, "cinder-volume", host, state, "")
                                    .await
                                    .expect("heartbeat");
                            }
                        }
                        if let Some(latest) = store.rollouts().await.expect("rollouts").first() {
                            let busy = latest
                                .hosts
                                .iter()
                                .filter(|h| h.phase == "asked" || h.phase == "settling")
                                .count();
                            let mut max = max_in_flight.lock().expect("lock");
                            *max = (*max).max(busy);
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
                .expect("runtime");
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("fake hosts registered");
        Fakes {
            stop,
            handled,
            max_in_flight,
            thread: Some(thread),
        }
    }

    fn handled(&self) -> Vec<Handled> {
        self.handled.lock().expect("lock").clone()
    }

    fn stop(mut self) -> (Vec<Handled>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("fake hosts thread");
        }
        let max = *self.max_in_flight.lock().expect("lock");
        (self.handled(), max)
    }
}

fn config_file(server: &Server, name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "rekindle-fleet-{}-{}.conf",
        server.own(name),
        std::process::id()
    ));
    std::fs::write(
        &path,
        format!(
            "[DEFAULT]\nenabled_backends = a\n[a]\nvolume_driver = fault\n[database]\nconnection = {}\n",
            server.url
        ),
    )
    .expect("config written");
    path
}

fn rekindle(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("rekindle runs")
}

fn text(output: &Output) -> String {
    daemon::output_text(output)
}

const HOSTS: [&str; 3] = ["node-1", "node-2", "node-3"];

fn a_healthy_cluster_reloads_one_host_at_a_time_and_status_shows_it(db: Db) {
    let server = Server::start_on(db, "fleet-healthy");
    let config = config_file(&server, "healthy");
    let fakes = Fakes::start(&server.url, &HOSTS, None);
    let config_arg = config.to_str().expect("utf-8 path");
    let out = rekindle(&[
        "fleet",
        "reload",
        "--config",
        config_arg,
        "--min-ready",
        "1s",
    ]);
    let (handled, max_in_flight) = fakes.stop();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    for host in HOSTS {
        assert!(said.contains(&format!("{host}: asked to reload")), "{said}");
        assert!(
            said.contains(&format!("{host}: Ready for 1s: done")),
            "{said}"
        );
    }
    assert!(said.contains("finished: 3 hosts reloaded"), "{said}");
    // Each host asked once, in order; the next only after the previous one
    // was Ready for min_ready.
    let asked: Vec<&str> = handled.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(asked, HOSTS, "{handled:?}");
    for pair in handled.windows(2) {
        let gap = pair[1].claimed.duration_since(pair[0].answered);
        assert!(
            gap >= Duration::from_secs(1),
            "{} asked {gap:?} after {} answered",
            pair[1].host,
            pair[0].host
        );
    }
    assert_eq!(
        max_in_flight, 1,
        "never more than --max-unavailable 1 host in flight"
    );

    // fleet status, as a table and as JSON.
    let status = rekindle(&["fleet", "status", "--config", config_arg]);
    let table = text(&status);
    assert_eq!(status.status.code(), Some(0), "{table}");
    let header = table.lines().next().unwrap_or_default();
    assert!(header.starts_with("ID  State"), "{table}");
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.contains("finished") && row.contains("3/3"), "{table}");
    let json = rekindle(&["fleet", "status", "--config", config_arg, "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(rows[0]["state"], "finished", "{rows}");
    assert_eq!(rows[0]["hosts"].as_array().map(Vec::len), Some(3), "{rows}");
    assert_eq!(rows[0]["hosts"][2]["phase"], "done", "{rows}");
}

fn a_host_that_does_not_reload_as_intended_halts_the_rollout(db: Db) {
    let server = Server::start_on(db, "fleet-halt");
    let config = config_file(&server, "halt");
    let fakes = Fakes::start(&server.url, &HOSTS, Some("node-2"));
    let config_arg = config.to_str().expect("utf-8 path");
    let out = rekindle(&[
        "fleet",
        "reload",
        "--config",
        config_arg,
        "--min-ready",
        "500ms",
    ]);
    // Give a wrongly asked node-3 time to show up.
    std::thread::sleep(Duration::from_millis(500));
    let (handled, _) = fakes.stop();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("halted at node-2: not as intended: lvm rolled back"),
        "{said}"
    );
    assert!(said.contains("not asked (old config): node-3"), "{said}");
    let asked: Vec<&str> = handled.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(asked, ["node-1", "node-2"], "node-3 is never asked");
    let status = rekindle(&["fleet", "status", "--config", config_arg, "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(rows[0]["state"], "halted", "{rows}");
    assert!(
        rows[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("node-2"),
        "{rows}"
    );
    // A halted rollout is not resumed.
    let again = rekindle(&["fleet", "reload", "--config", config_arg, "--resume", "1"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "a halted rollout is not resumed: {}",
        text(&again)
    );
}

fn a_killed_rollout_resumes_without_asking_done_hosts_again(db: Db) {
    let server = Server::start_on(db, "fleet-resume");
    let config = config_file(&server, "resume");
    let fakes = Fakes::start(&server.url, &HOSTS, None);
    let config_arg = config.to_str().expect("utf-8 path");
    let mut first = Command::new(BIN)
        .args([
            "fleet",
            "reload",
            "--config",
            config_arg,
            "--min-ready",
            "1s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rekindle runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fakes.handled().iter().any(|h| h.host == "node-2") {
        assert!(Instant::now() < deadline, "node-2 was never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().expect("kill -9");
    first.wait().expect("reaped");
    let url = server.url.clone();
    let (id, state) = run_real(async move {
        let store = rekindle::records::connect(&url, Duration::from_secs(60))
            .await
            .expect("connect");
        let rows = store.rollouts().await.expect("rollouts");
        (rows[0].id, rows[0].state)
    })
    .expect("runtime");
    assert_eq!(state, rekindle::records::rollouts::RolloutState::Running);
    // A new rollout is refused while this one is running.
    let refused = rekindle(&["fleet", "reload", "--config", config_arg]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("--resume {id}")),
        "{}",
        text(&refused)
    );

    let id_arg = id.to_string();
    let out = rekindle(&[
        "fleet", "reload", "--config", config_arg, "--resume", &id_arg,
    ]);
    let (handled, max_in_flight) = fakes.stop();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("resuming, 1 of 3 hosts done"), "{said}");
    assert!(!said.contains("node-1: asked"), "{said}");
    let asked: Vec<&str> = handled.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(asked, HOSTS, "each host asked exactly once: {handled:?}");
    let requests: std::collections::BTreeSet<i64> = handled.iter().map(|h| h.request).collect();
    assert_eq!(requests.len(), 3);
    assert_eq!(max_in_flight, 1);
    let status = rekindle(&["fleet", "status", "--config", config_arg]);
    assert!(
        text(&status)
            .lines()
            .nth(1)
            .unwrap_or_default()
            .contains("finished"),
        "{}",
        text(&status)
    );
}

fn abandon_marks_a_running_rollout_and_cancels_its_unclaimed_requests(db: Db) {
    let server = Server::start_on(db, "fleet-abandon");
    let config = config_file(&server, "abandon");
    let config_arg = config.to_str().expect("utf-8 path");
    let url = server.url.clone();
    let id = run_real(async move {
        let store = rekindle::records::connect(&url, Duration::from_secs(60))
            .await
            .expect("connect");
        store.register_host("node-1", "c1").await.expect("register");
        let id = store
            .insert_rollout(Some("c1"), 1, Duration::from_secs(1), &[], "test")
            .await
            .expect("rollout")
            .expect("none running");
        store
            .request_reload("node-1", Some(id))
            .await
            .expect("request");
        id
    })
    .expect("runtime");
    let out = rekindle(&["fleet", "abandon", &id.to_string(), "--config", config_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let url = server.url.clone();
    let pending = run_real(async move {
        let store = rekindle::records::connect(&url, Duration::from_secs(60))
            .await
            .expect("connect");
        store.take_reload_requests("node-1").await.expect("take")
    })
    .expect("runtime");
    assert!(
        pending.is_empty(),
        "the abandoned rollout's request was cancelled"
    );
    let again = rekindle(&["fleet", "abandon", &id.to_string(), "--config", config_arg]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
}

fn a_resume_takes_over_from_a_command_that_still_runs(db: Db) {
    let server = Server::start_on(db, "fleet-takeover");
    let config = config_file(&server, "takeover");
    let fakes = Fakes::start(&server.url, &HOSTS, None);
    let config_arg = config.to_str().expect("utf-8 path");
    let first = Command::new(BIN)
        .args([
            "fleet",
            "reload",
            "--config",
            config_arg,
            "--min-ready",
            "2s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rekindle runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fakes.handled().is_empty() {
        assert!(Instant::now() < deadline, "node-1 was never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = server.url.clone();
    let id = run_real(async move {
        let store = rekindle::records::connect(&url, Duration::from_secs(60))
            .await
            .expect("connect");
        store.rollouts().await.expect("rollouts")[0].id
    })
    .expect("runtime");
    let id_arg = id.to_string();
    let second = rekindle(&[
        "fleet", "reload", "--config", config_arg, "--resume", &id_arg,
    ]);
    let first = first.wait_with_output().expect("first ends");
    let (handled, max_in_flight) = fakes.stop();
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert!(
        text(&first).contains("no longer driven by this command"),
        "{}",
        text(&first)
    );
    let asked: Vec<&str> = handled.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(asked, HOSTS, "each host asked exactly once: {handled:?}");
    assert_eq!(max_in_flight, 1);
}

on_each_database!(
    a_healthy_cluster_reloads_one_host_at_a_time_and_status_shows_it,
    a_host_that_does_not_reload_as_intended_halts_the_rollout,
    a_killed_rollout_resumes_without_asking_done_hosts_again,
    abandon_marks_a_running_rollout_and_cancels_its_unclaimed_requests,
    a_resume_takes_over_from_a_command_that_still_runs,
);
