//! A real Prometheus (Debian's `prometheus`, private port on loopback) scrapes a real
//! `rekindle run` whose backend gives up, with docs/monitoring/alerts.yml loaded.
//!
//! It sees the backend's state series through Prometheus' HTTP API and the
//! alerts on it pending (not Ready, `for: 5m`) and firing (retries
//! exhausted).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::wait_value;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The JSON body `curl` gets from `url` (Null if nothing answered).
fn get(url: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", url])
        .output()
        .expect("curl runs (Debian package curl)");
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn prometheus_scrapes_the_backend_state_and_fires_the_alerts() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("rekindle-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("c.conf"),
        "[DEFAULT]\nenabled_backends = gives_up, fine\nperiodic_interval = 1s\n\
         reinit_backoff_base = 200ms\nhttp_listen = 127.0.0.1:0\n\
         [gives_up]\nvolume_driver = fault\nfault_fail_setup_times = 100\nreinit_driver_count = 1\n\
         [fine]\nvolume_driver = fault\n",
    )
    .expect("config");
    let log = dir.join("log");
    let _daemon = Process(
        Command::new(env!("CARGO_BIN_EXE_rekindle"))
            .arg("run")
            .arg("--config")
            .arg(dir.join("c.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("daemon starts"),
    );
    let target = wait_value("the daemon's listener", Duration::from_secs(20), || {
        common::http_addresses(&log).pop()
    });
    let alerts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring/alerts.yml");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: rekindle\n    static_configs:\n      - targets: ['{target}']\n",
            alerts.display()
        ),
    )
    .expect("prometheus.yml");
    let port = free_port();
    let _prometheus = Process(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
            .spawn()
            .expect("prometheus starts (Debian package prometheus)"),
    );
    let api = format!("http://127.0.0.1:{port}/api/v1");
    // The backend's state, as Prometheus stored it from the scrapes.
    let state = wait_value(
        "gives_up's state series in Prometheus",
        Duration::from_secs(60),
        || {
            let answer = get(&format!("{api}/query?query=rekindle_backend_state"));
            answer["data"]["result"]
                .as_array()?
                .iter()
                .find(|r| {
                    r["metric"]["backend"] == "gives_up"
                        && r["metric"]["state"] == "failed_recoverable"
                })
                .map(|r| r["metric"].clone())
        },
    );
    assert_eq!(state["job"], "rekindle", "{state}");
    assert_eq!(state["kind"], "volume", "{state}");
    // The alert rules from docs/monitoring/alerts.yml, on it.
    let alerts = wait_value("the alerts on gives_up", Duration::from_secs(60), || {
        let answer = get(&format!("{api}/alerts"));
        let list = answer["data"]["alerts"].as_array()?.clone();
        let on = |name: &str, state: &str| {
            list.iter().any(|a| {
                a["labels"]["alertname"] == name
                    && a["labels"]["backend"] == "gives_up"
                    && a["state"] == state
            })
        };
        (on("RekindleBackendRetriesExhausted", "firing")
            && on("RekindleBackendNotReady", "pending"))
        .then_some(list)
    });
    assert!(
        !alerts.iter().any(|a| a["labels"]["backend"] == "fine"),
        "the Ready backend raised an alert: {alerts:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
