//! Properties of the rolling reload's planner: never more than `max_unavailable` hosts of
//! a cluster in flight, each host asked once, nobody asked after a failure, and it finishes.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use rekindle::fleet::{HostPhase, Observation, Outcome, Rollout, Wait};

const MIN_READY: Duration = Duration::from_secs(10);

fn fleet() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    proptest::collection::vec(proptest::option::weighted(0.8, 0..3u8), 1..12).prop_map(|clusters| {
        clusters
            .into_iter()
            .enumerate()
            .map(|(n, c)| (format!("h{n}"), c.map(|c| format!("c{c}"))))
            .collect()
    })
}

/// One thing the world does: a host reports (ok or not) or is seen (Ready
/// or not), then time passes.
fn world() -> impl Strategy<Value = Vec<(usize, u8, u64)>> {
    proptest::collection::vec((0..12usize, 0..10u8, 0..15u64), 0..200)
}

fn check_slots(rollout: &Rollout) -> Result<(), TestCaseError> {
    let clusters: BTreeSet<&str> = rollout.hosts.iter().map(|h| h.cluster.as_str()).collect();
    for cluster in clusters {
        prop_assert!(
            rollout.in_flight(cluster) <= rollout.max_unavailable,
            "{cluster}: {} in flight, at most {}",
            rollout.in_flight(cluster),
            rollout.max_unavailable
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn the_planner_keeps_its_promises(hosts in fleet(), max in 1..4usize, world in world()) {
        let mut rollout = Rollout::new(hosts.clone(), max, MIN_READY);
        let mut asked = BTreeSet::new();
        let mut now = Duration::ZERO;
        for (pick, what, wait) in world {
            let halted_before = matches!(rollout.outcome(), Some(Outcome::Halted { .. }));
            for host in rollout.ask_next() {
                prop_assert!(!halted_before, "{host} asked after the rollout halted");
                prop_assert!(asked.insert(host.clone()), "{host} asked twice");
            }
            check_slots(&rollout)?;
            let host = hosts[pick % hosts.len()].0.clone();
            let observation = match what {
                0 => Observation::Reported { host, as_intended: false, summary: "rolled back".into() },
                1..=4 => Observation::Reported { host, as_intended: true, summary: String::new() },
                5 => Observation::Ready { host, ready: false },
                _ => Observation::Ready { host, ready: true },
            };
            rollout.observe(observation, now);
            check_slots(&rollout)?;
            now += Duration::from_secs(wait);
        }
        // A failure halts: the hosts never asked keep their old config.
        if let Some(Outcome::Halted { not_reached, .. }) = rollout.outcome() {
            for host in not_reached {
                prop_assert!(!asked.contains(&host));
            }
        }
    }

    #[test]
    fn a_fleet_that_reloads_well_finishes(hosts in fleet(), max in 1..4usize) {
        let mut rollout = Rollout::new(hosts.clone(), max, MIN_READY);
        let mut now = Duration::ZERO;
        let mut rounds = 0;
        while rollout.outcome().is_none() {
            rounds += 1;
            prop_assert!(rounds <= 3 * hosts.len() + 3, "stuck: {rollout:?}");
            for host in rollout.ask_next() {
                rollout.observe(Observation::Reported { host, as_intended: true, summary: String::new() }, now);
            }
            check_slots(&rollout)?;
            for (host, _) in &hosts {
                rollout.observe(Observation::Ready { host: host.clone(), ready: true }, now);
            }
            now += MIN_READY;
        }
        prop_assert_eq!(rollout.outcome(), Some(Outcome::Done));
    }
}

#[test]
fn a_host_that_stops_being_ready_starts_its_min_ready_again() {
    let mut rollout = Rollout::new(
        [
            ("a".to_string(), Some("c".to_string())),
            ("b".to_string(), Some("c".to_string())),
        ],
        1,
        MIN_READY,
    );
    assert_eq!(rollout.ask_next(), ["a"]);
    assert!(rollout.ask_next().is_empty(), "one slot in cluster c");
    let at = Duration::from_secs;
    rollout.observe(
        Observation::Reported {
            host: "a".into(),
            as_intended: true,
            summary: String::new(),
        },
        at(0),
    );
    rollout.observe(
        Observation::Ready {
            host: "a".into(),
            ready: true,
        },
        at(1),
    );
    rollout.observe(
        Observation::Ready {
            host: "a".into(),
            ready: false,
        },
        at(8),
    );
    rollout.observe(
        Observation::Ready {
            host: "a".into(),
            ready: true,
        },
        at(9),
    );
    rollout.observe(
        Observation::Ready {
            host: "a".into(),
            ready: true,
        },
        at(18),
    );
    assert!(
        matches!(rollout.hosts[0].phase, HostPhase::Settling { .. }),
        "9 s Ready is not 10"
    );
    rollout.observe(
        Observation::Ready {
            host: "a".into(),
            ready: true,
        },
        at(19),
    );
    assert_eq!(rollout.hosts[0].phase, HostPhase::Done);
    assert_eq!(rollout.ask_next(), ["b"]);
    rollout.observe(
        Observation::Reported {
            host: "b".into(),
            as_intended: false,
            summary: "b: lvm-1 rolled back".into(),
        },
        at(20),
    );
    assert_eq!(
        rollout.outcome(),
        Some(Outcome::Halted {
            host: "b".into(),
            reason: "b: lvm-1 rolled back".into(),
            not_reached: vec![],
            unconfirmed: vec![]
        })
    );
}

proptest! {
    /// Replicas down for reasons of their own take slots too: the hosts
    /// asked plus those already down never exceed max_unavailable in a
    /// cluster, and a cluster with as many down as allowed asks nobody.
    #[test]
    fn replicas_down_elsewhere_count_against_max_unavailable(
        hosts in fleet(),
        max in 1..4usize,
        down in proptest::collection::vec(0..4usize, 3),
    ) {
        let mut rollout = Rollout::new(hosts.clone(), max, MIN_READY);
        let elsewhere = |cluster: &str| -> usize {
            match cluster.strip_prefix('c').and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n < down.len() => down[n],
                _ => 0,
            }
        };
        let asked = rollout.ask_next_with(elsewhere, std::time::Duration::ZERO);
        let clusters: BTreeSet<String> = rollout.hosts.iter().map(|h| h.cluster.clone()).collect();
        for cluster in clusters {
            let in_flight = rollout.in_flight(&cluster);
            if in_flight > 0 {
                prop_assert!(
                    in_flight + elsewhere(&cluster) <= max,
                    "{cluster}: {in_flight} asked + {} down elsewhere > {max}",
                    elsewhere(&cluster)
                );
            }
            if elsewhere(&cluster) >= max {
                prop_assert_eq!(in_flight, 0, "{} asked while its cluster is at the limit", cluster);
            }
        }
        // Nobody is lost: whoever was not asked is still waiting.
        prop_assert_eq!(
            asked.len() + rollout.hosts.iter().filter(|h| h.phase == HostPhase::Waiting).count(),
            hosts.len()
        );
    }
}

fn two_hosts() -> Rollout {
    Rollout::new(
        [
            ("a".to_string(), Some("c".to_string())),
            ("b".to_string(), Some("c".to_string())),
        ],
        1,
        MIN_READY,
    )
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_rollout_without_progress_for_its_deadline_halts_at_the_host_it_waits_on() {
    let mut rollout = two_hosts();
    assert_eq!(rollout.ask_next_with(|_| 0, secs(1)), vec!["a".to_string()]);
    assert_eq!(
        rollout.waits(),
        vec![Wait::Answer("a".into()), Wait::Slot("b".into())]
    );
    let why = |w: &Wait| format!("stuck on {}", w.host());
    assert!(
        !rollout.check_progress(secs(600), secs(600), why),
        "not yet"
    );
    assert!(rollout.outcome().is_none());
    assert!(rollout.check_progress(secs(601), secs(600), why));
    assert_eq!(
        rollout.outcome(),
        Some(Outcome::Halted {
            host: "a".into(),
            reason: "stuck on a".into(),
            not_reached: vec!["b".into()],
            unconfirmed: vec![],
        })
    );
}

#[test]
fn a_phase_change_restarts_the_progress_deadline() {
    let mut rollout = two_hosts();
    rollout.ask_next_with(|_| 0, secs(0));
    rollout.observe(
        Observation::Reported {
            host: "a".into(),
            as_intended: true,
            summary: "ok".into(),
        },
        secs(500),
    );
    let why = |w: &Wait| w.host().to_string();
    assert!(!rollout.check_progress(secs(900), secs(600), why));
    // Ready and not Ready again is no progress.
    for (at, ready) in [(910, true), (915, false)] {
        rollout.observe(
            Observation::Ready {
                host: "a".into(),
                ready,
            },
            secs(at),
        );
    }
    assert!(rollout.check_progress(secs(1100), secs(600), why));
    assert!(matches!(rollout.outcome(), Some(Outcome::Halted { host, .. }) if host == "a"));
}

#[test]
fn a_host_down_after_answering_halts_the_rollout() {
    let mut rollout = two_hosts();
    rollout.ask_next();
    rollout.observe(
        Observation::Reported {
            host: "a".into(),
            as_intended: true,
            summary: "ok".into(),
        },
        secs(1),
    );
    rollout.observe(
        Observation::Down {
            host: "a".into(),
            summary: "went down after answering".into(),
        },
        secs(5),
    );
    assert_eq!(
        rollout.outcome(),
        Some(Outcome::Halted {
            host: "a".into(),
            reason: "went down after answering".into(),
            not_reached: vec!["b".into()],
            unconfirmed: vec![],
        })
    );
    assert!(
        rollout.ask_next().is_empty(),
        "nobody is asked after a halt"
    );
}

#[test]
fn a_slot_held_outside_the_rollout_is_waited_on_and_halts_at_its_deadline() {
    let mut rollout = two_hosts();
    assert!(rollout.ask_next_with(|_| 1, secs(0)).is_empty());
    assert_eq!(rollout.waits(), vec![Wait::Slot("a".into())]);
    assert!(rollout.check_progress(secs(600), secs(600), |w| w.host().to_string()));
    assert!(
        matches!(rollout.outcome(), Some(Outcome::Halted { host, not_reached, .. }) if host == "a" && not_reached == vec!["b".to_string()])
    );
}
