//! Rolling reloads on real daemons: never more than --max-unavailable replicas not
//! Ready, halted at a bad file, a frozen host, a host that dies before answering.

use super::*;

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
    let text = crate::daemon::output_text(&out);
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
    let text = crate::daemon::output_text(&out);
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
    let frozen = outcomes::Frozen::freeze(vec![first.daemon.as_ref().expect("daemon").id()]);
    let mut command = command;
    let deadline = Instant::now() + Duration::from_secs(30);
    while command.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = command.kill();
    let out = command.wait_with_output().expect("output");
    drop(frozen);
    let text = crate::daemon::output_text(&out);
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
    let text = crate::daemon::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "halted, not hung: {text}");
    assert!(
        text.contains("node-b: went down before answering"),
        "{text}"
    );
}

// The fleet's promises, kept on both databases.
crate::on_each_database!(a_rolling_reload_keeps_all_but_one_replica_ready_and_halts_at_a_bad_file,);
