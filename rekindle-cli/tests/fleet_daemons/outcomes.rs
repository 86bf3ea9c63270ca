//! Outcomes through database outages and pauses: a frozen database refused within the
//! deadline, kept outcomes written when it answers, fencing, and the fleet's metrics.

use super::*;

/// Thaws frozen processes when dropped (a failed assertion never leaves a
/// server stopped).
pub(super) struct Frozen(Vec<u32>);

impl Frozen {
    pub(super) fn freeze(pids: Vec<u32>) -> Frozen {
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
    let extend = spawn_cli(
        &a.dir.join("sock"),
        &["volume", "extend", &id, "--size", "2M"],
    );
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
crate::on_each_database!(a_frozen_database_is_refused_within_the_deadline_and_status_says_so,);
