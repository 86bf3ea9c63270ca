//! Real `rekindle run` daemons with `[database] connection` answer reload requests through
//! PostgreSQL, and `rekindle fleet reload` rolls over them (service rows played by the test).

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Db, Server};
use rekindle::engine::runtime::run_real;
use rekindle::records::FleetStore;
use rekindle::records::requests::Answer;

use daemon::{BIN, Daemon};

/// A daemon's file: host `host` of cluster `c1` (the cluster the test's
/// heartbeats register it in, so both agree whichever registers last).
fn config_text(host: &str, url: &str, b_extra: &str) -> String {
    format!(
        "[DEFAULT]\nenabled_backends = a, b\nhost = {host}\ncluster = c1\n[database]\nconnection = {url}\n[a]\nvolume_driver = fault\n[b]\nvolume_driver = fault\n{b_extra}"
    )
}

fn start_daemon(server: &Server, name: &str, host: &str) -> Daemon {
    let daemon = Daemon::on(
        &format!("fleet-{}", server.own(name)),
        &config_text(host, &server.url, ""),
        &[],
    );
    daemon.wait_notices("driver.init.end", 2);
    daemon
}

/// Asks `host` to reload through the database and waits for its answer.
async fn ask(store: &dyn FleetStore, host: &str) -> Answer {
    let id = store.request_reload(host, None).await.expect("request");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(answer) = store.reload_answer(id).await.expect("read") {
            return answer;
        }
        assert!(Instant::now() < deadline, "{host} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn summary(answer: &Answer) -> String {
    let value: serde_json::Value = serde_json::from_str(&answer.report).expect("JSON report");
    value["summary"].as_str().unwrap_or_default().to_string()
}

fn a_daemon_reloads_its_own_file_on_a_request_and_answers_with_the_report(db: Db) {
    let server = Server::start_on(db, "listener");
    let daemon = start_daemon(&server, "listener", "node-a");
    let url = server.url.clone();
    let config = daemon.dir.join("cinder.conf");
    run_real(async move {
        let store = rekindle::records::connect(&url, Duration::from_secs(60))
            .await
            .expect("connect");
        let answer = ask(&*store, "node-a").await;
        assert!(answer.as_intended, "{answer:?}");
        assert_eq!(summary(&answer), "reloaded as intended (2 backends)");
        // A changed backend is reloaded from the file on disk.
        std::fs::write(
            &config,
            config_text("node-a", &url, "fault_op_delay = 1s\n"),
        )
        .expect("edit");
        let answer = ask(&*store, "node-a").await;
        assert!(answer.as_intended, "{answer:?}");
        let report: serde_json::Value = serde_json::from_str(&answer.report).expect("JSON");
        assert_eq!(
            report["outcome"]["backends"]["b"]["result"], "reloaded",
            "{report}"
        );
        assert_eq!(
            report["outcome"]["backends"]["a"]["result"], "unchanged",
            "{report}"
        );
        // A broken file is rejected: the answer says so, the daemon keeps serving.
        std::fs::write(
            &config,
            config_text("node-a", &url, "volume_driver = nosuch\n"),
        )
        .expect("break");
        let answer = ask(&*store, "node-a").await;
        assert!(!answer.as_intended, "{answer:?}");
        assert!(
            summary(&answer).starts_with("config rejected: "),
            "{answer:?}"
        );
    })
    .expect("runtime");
    drop(daemon);
}

fn a_daemon_started_while_the_database_is_down_answers_once_it_is_back(db: Db) {
    let server = Server::start_on(db, "listener-down");
    server.stop_now();
    let daemon = start_daemon(&server, "listener-down", "node-a");
    std::thread::sleep(Duration::from_secs(1));
    server.start_again();
    let url = server.url.clone();
    run_real(async move {
        let store = rekindle::records::connect(&url, Duration::from_secs(60))
            .await
            .expect("connect");
        let answer = ask(&*store, "node-a").await;
        assert!(answer.as_intended, "{answer:?}");
    })
    .expect("runtime");
    drop(daemon);
}

/// Keeps `hosts`' host and service rows fresh and `up` (what the daemon's
/// own service rows will do) until stopped.
fn heartbeats(url: &str, hosts: &[&str]) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (url, flag) = (url.to_string(), stop.clone());
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        run_real(async move {
            let store = rekindle::records::connect(&url, Duration::from_secs(60))
                .await
                .expect("connect");
            for host in &hosts {
                store.register_host(host, "c1").await.expect("register");
            }
            let mut first = true;
            while !flag.load(Ordering::SeqCst) {
                for host in &hosts {
                    for backend in ["a", "b"] {
                        store
                            .put_service(backend, "cinder-volume", host, "up", "")
                            .await
                            .expect("heartbeat");
                    }
                }
                if first {
                    let _ = ready_tx.send(());
                    first = false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .expect("runtime");
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("rows written");
    (stop, thread)
}

fn text(output: &Output) -> String {
    daemon::output_text(output)
}

fn fleet_reload_rolls_over_two_real_daemons_and_halts_at_a_broken_file(db: Db) {
    let server = Server::start_on(db, "fleet-real");
    let a = start_daemon(&server, "fleet-real-a", "node-a");
    let b = start_daemon(&server, "fleet-real-b", "node-b");
    let (stop, thread) = heartbeats(&server.url, &["node-a", "node-b"]);
    let cli = a.dir.join("cinder.conf");
    let cli = cli.to_str().expect("utf-8");
    let out = Command::new(BIN)
        .args(["fleet", "reload", "--config", cli, "--min-ready", "500ms"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Nothing changed: no backend to wait for beyond min_ready.
    let url = server.url.clone();
    let hosts = run_real(async move {
        let store = rekindle::records::connect(&url, Duration::from_secs(60))
            .await
            .expect("connect");
        store.rollouts().await.expect("rollouts")[0].hosts.clone()
    })
    .expect("runtime");
    assert_eq!(hosts[0].backends, Some(Vec::new()), "{hosts:?}");
    assert!(
        text(&out).contains("node-b: reloaded as intended (2 backends)"),
        "{}",
        text(&out)
    );
    // node-b's file breaks: the rollout halts there, after node-a.
    std::fs::write(
        b.dir.join("cinder.conf"),
        config_text("node-b", &server.url, "volume_driver = nosuch\n"),
    )
    .expect("break");
    let out = Command::new(BIN)
        .args(["fleet", "reload", "--config", cli, "--min-ready", "500ms"])
        .output()
        .expect("runs");
    let said = text(&out);
    stop.store(true, Ordering::SeqCst);
    thread.join().expect("heartbeats");
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("node-a: Ready for 500ms: done"), "{said}");
    assert!(
        said.contains("halted at node-b: config rejected: "),
        "{said}"
    );
    drop((a, b));
}

on_each_database!(
    a_daemon_reloads_its_own_file_on_a_request_and_answers_with_the_report,
    a_daemon_started_while_the_database_is_down_answers_once_it_is_back,
    fleet_reload_rolls_over_two_real_daemons_and_halts_at_a_broken_file,
);
