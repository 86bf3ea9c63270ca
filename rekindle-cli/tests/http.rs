//! `rekindle run` with `http_listen`, tried with `curl` as an operator's probes would:
//! `/readyz` through a backend's failure and recovery, `/metrics`, bind failures, reloads.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::process::Command;
use std::time::Duration;

use common::wait_value;

use daemon::{BIN, Daemon};

/// `rekindle run` on `config` in a fresh directory named after `name`.
fn start(name: &str, config: &str, args: &[&str]) -> Daemon {
    Daemon::on(&format!("http-{name}"), config, args)
}

/// Where the daemon's HTTP listener serves, read off its log.
trait Listener {
    /// The addresses it said it serves on, in order.
    fn addresses(&self) -> Vec<String>;
    /// Waits until it serves (its log names the address).
    fn serving(&self) -> String;
}

impl Listener for Daemon {
    fn addresses(&self) -> Vec<String> {
        common::http_addresses(&self.dir.join("log"))
    }

    fn serving(&self) -> String {
        wait_value("the listener's address", Duration::from_secs(20), || {
            self.addresses().last().cloned()
        })
    }
}

/// `curl` of `url`: the HTTP status (0 when nothing answered) and body.
fn curl(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl runs (Debian package curl)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

const CONFIG: &str = "[DEFAULT]\nenabled_backends = late, gives_up, sick\nperiodic_interval = 1s\n\
    report_interval = 1s\nreinit_backoff_base = 200ms\nreinit_backoff_max = 500ms\nhttp_listen = 127.0.0.1:0\n\
    [late]\nvolume_driver = fault\nfault_ready_after = 3s\nreinit_driver_count = 0\n\
    [gives_up]\nvolume_driver = fault\nfault_fail_setup_times = 100\nreinit_driver_count = 1\n\
    [sick]\nvolume_driver = fault\nfault_fail_stats = 1\n";

#[test]
fn readyz_follows_a_backend_through_failure_and_recovery_and_metrics_say_it() {
    let daemon = start("readyz", CONFIG, &[]);
    let base = format!("http://{}", daemon.serving());
    // Not Ready yet: 503 naming `late` and why.
    let (code, body) = curl(&format!("{base}/readyz?backend=late"));
    assert_eq!(code, 503, "{body}");
    let answer = json(&body);
    assert_eq!(answer["not_ready"][0]["backend"], "late", "{answer}");
    assert!(
        answer["not_ready"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not up yet")),
        "{answer}"
    );
    // Ready within seconds, by itself.
    wait_value("late to be Ready", Duration::from_secs(20), || {
        (curl(&format!("{base}/readyz?backend=late")).0 == 200).then_some(())
    });
    // The service as a whole is not: `gives_up` spent its budget.
    let (code, body) = curl(&format!("{base}/readyz"));
    assert_eq!(code, 503, "{body}");
    let gave_up = wait_value("gives_up to give up", Duration::from_secs(20), || {
        let (_, body) = curl(&format!("{base}/readyz?backend=gives_up"));
        let answer = json(&body);
        answer["not_ready"][0]["reason"]
            .as_str()
            .filter(|r| r.contains("gave up"))
            .map(str::to_string)
    });
    assert!(gave_up.contains("injected setup failure"), "{gave_up}");
    let (code, body) = curl(&format!("{base}/readyz?backend=nope"));
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("known: gives_up, late, sick"), "{body}");
    let (code, body) = curl(&format!("{base}/healthz"));
    assert_eq!(
        (code, json(&body)["alive"].clone()),
        (200, true.into()),
        "{body}"
    );
    // `sick` loses its health at its first stats call and comes back.
    let (_, metrics) = wait_value(
        "sick's health loss counted",
        Duration::from_secs(20),
        || {
            let scraped = curl(&format!("{base}/metrics"));
            scraped
                .1
                .contains("rekindle_backend_health_lost_total{backend=\"sick\"")
                .then_some(scraped)
        },
    );
    assert!(
        metrics
            .contains("rekindle_backend_state{backend=\"late\",kind=\"volume\",state=\"ready\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rekindle_backend_gave_up{backend=\"gives_up\",kind=\"volume\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "rekindle_backend_setup_failures_total{backend=\"gives_up\",class=\"recoverable\"} 2"
        ),
        "1 + reinit_driver_count = 2 failed setups: {metrics}"
    );
}

#[test]
fn every_metric_is_served_once_things_happen() {
    let daemon = start("all", CONFIG, &[]);
    let sock = daemon.socket();
    let base = format!("http://{}", daemon.serving());
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--control")
            .arg(&sock)
            .output()
            .expect("cli runs")
    };
    wait_value("late to be Ready", Duration::from_secs(20), || {
        (curl(&format!("{base}/readyz?backend=late")).0 == 200).then_some(())
    });
    assert!(
        cli(&["volume", "create", "--size", "1M", "--backend", "late"])
            .status
            .success()
    );
    assert!(
        !cli(&["volume", "create", "--size", "1M", "--backend", "gives_up"])
            .status
            .success()
    );
    let reloaded = cli(&["reload"]);
    assert!(reloaded.status.code().is_some(), "reload answered");
    let text = wait_value(
        "health lost and the reload counted",
        Duration::from_secs(20),
        || {
            let (_, text) = curl(&format!("{base}/metrics"));
            (text.contains("rekindle_reload_backend_outcomes_total{")
                && text.contains("rekindle_backend_health_lost_total{"))
            .then_some(text)
        },
    );
    let missing: Vec<&str> = rekindle::watch::metrics::Metrics::NAMES
        .iter()
        .copied()
        .filter(|name| !text.contains(&format!("# TYPE {name} ")))
        .collect();
    assert!(missing.is_empty(), "not served: {missing:?}\n{text}");
    assert!(
        text.contains("rekindle_operations_total{operation=\"volume create\",outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("rekindle_operations_total{operation=\"volume create\",outcome=\"error\"} 1"),
        "{text}"
    );
    // OpenMetrics when asked, as Prometheus does.
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-i",
            "-H",
            "Accept: application/openmetrics-text; version=1.0.0",
        ])
        .arg(format!("{base}/metrics"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("content-type: application/openmetrics-text"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
}

#[test]
fn a_listener_that_cannot_bind_stops_the_start_in_words() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let mut daemon = start(
        "taken",
        "[DEFAULT]\nenabled_backends = a\n[a]\nvolume_driver = fault\n",
        &["--http-listen", &address],
    );
    let status = daemon.child.wait().expect("exits");
    assert_eq!(status.code(), Some(1));
    let log = daemon.log();
    assert!(
        log.contains(&format!(
            "rekindle: http_listen {address}: cannot listen there:"
        )) && log.contains("in use"),
        "{log}"
    );
}

#[test]
fn a_bad_http_listen_is_a_config_error_naming_it() {
    let mut daemon = start(
        "bad",
        "[DEFAULT]\nenabled_backends = a\nhttp_listen = localhost\n[a]\nvolume_driver = fault\n",
        &[],
    );
    assert_eq!(daemon.child.wait().expect("exits").code(), Some(1));
    let log = daemon.log();
    assert!(
        log.contains("http_listen")
            && log.contains("\"localhost\": expected an address and port such as 127.0.0.1:9437"),
        "{log}"
    );
}

#[test]
fn a_reload_moves_the_listener_only_when_its_option_changed() {
    let config = |listen: &str| {
        format!(
            "[DEFAULT]\nenabled_backends = a\nhttp_listen = {listen}\n[a]\nvolume_driver = fault\n"
        )
    };
    let daemon = start("moves", &config("127.0.0.1:0"), &[]);
    let first = daemon.serving();
    let pid = daemon.child.id().to_string();
    let hup = || {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .expect("kill")
                .success()
        );
    };
    let reloads = |n: usize| {
        wait_value("the reload to end", Duration::from_secs(20), || {
            (daemon.log().matches("reload.end").count() >= n).then_some(())
        })
    };
    // Unchanged (port 0 again): the same listener keeps serving.
    hup();
    reloads(1);
    assert_eq!(curl(&format!("http://{first}/healthz")).0, 200);
    assert_eq!(daemon.addresses(), vec![first.clone()]);
    // Changed: the new address serves, the old one stops.
    let port = free_port();
    std::fs::write(daemon.config(), config(&format!("127.0.0.1:{port}"))).expect("edit");
    hup();
    let second = wait_value("the new listener", Duration::from_secs(20), || {
        daemon.addresses().get(1).cloned()
    });
    assert_eq!(second, format!("127.0.0.1:{port}"));
    assert_eq!(curl(&format!("http://{second}/healthz")).0, 200);
    wait_value("the old listener to stop", Duration::from_secs(10), || {
        (curl(&format!("http://{first}/healthz")).0 == 0).then_some(())
    });
}
