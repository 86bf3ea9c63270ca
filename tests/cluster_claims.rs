//! A dead host's work is claimed exactly once by the survivors of its cluster (many rounds
//! of two survivors racing, on a real PostgreSQL), and a host with a stale epoch writes nothing.

mod common;

use std::time::Duration;

use common::{Db, Server};
use rekindle::engine::runtime::run_real;
use rekindle::records::cluster::{Epoch, Work};
use rekindle::records::{End, FleetStore, Source, connect};

const DOWN: Duration = Duration::from_millis(300);
/// The gap between a survivor's renewals these tests allow: they renew
/// only when they claim.
const GAP: Duration = Duration::from_secs(10);

fn volume_work(id: &str) -> Work {
    Work {
        kind: "volume".into(),
        id: id.into(),
        status: "creating".into(),
    }
}

async fn store(url: &str) -> std::rc::Rc<dyn FleetStore> {
    connect(url, DOWN).await.expect("connects")
}

fn two_survivors_racing_claim_each_piece_of_a_dead_hosts_work_exactly_once(db: Db) {
    let server = Server::start_on(db, "claims");
    let url = server.url.clone();
    run_real(async move {
        let (dead, s1, s2) = (store(&url).await, store(&url).await, store(&url).await);
        let e1 = s1.register_host("s1", "c").await.expect("s1");
        let e2 = s2.register_host("s2", "c").await.expect("s2");
        for round in 0..20 {
            let epoch = dead.register_host("d", "c").await.expect("d");
            let ids: Vec<String> = (0..25).map(|n| format!("r{round}-v{n}")).collect();
            for id in &ids {
                dead.insert_volume(id, "lvm-1", 1, "creating")
                    .await
                    .expect("volume");
                dead.begin_work("d", epoch, "c", &volume_work(id))
                    .await
                    .expect("work");
            }
            // While the owner is alive, nothing is claimed.
            assert!(
                s1.claim_dead_work("s1", e1, "c", DOWN, GAP)
                    .await
                    .expect("claim")
                    .is_empty()
            );
            // `d` stops heartbeating (kill -9); the survivors keep theirs.
            tokio::time::sleep(DOWN + Duration::from_millis(100)).await;
            assert!(s1.host_heartbeat("s1", e1, GAP).await.expect("beat"));
            assert!(s2.host_heartbeat("s2", e2, GAP).await.expect("beat"));
            let (a, b) = tokio::join!(
                s1.claim_dead_work("s1", e1, "c", DOWN, GAP),
                s2.claim_dead_work("s2", e2, "c", DOWN, GAP)
            );
            let (a, b) = (a.expect("claim"), b.expect("claim"));
            let mut claimed: Vec<String> = a.iter().chain(&b).map(|c| c.work.id.clone()).collect();
            claimed.sort();
            let mut expected = ids.clone();
            expected.sort();
            assert_eq!(claimed, expected, "round {round}: every piece, once");
            assert!(a.iter().chain(&b).all(|c| c.dead_host == "d"));
            // A second attempt finds nothing left.
            assert!(
                s2.claim_dead_work("s2", e2, "c", DOWN, GAP)
                    .await
                    .expect("claim")
                    .is_empty()
            );
            // The survivors resolve what they claimed, as crash recovery
            // does (creating -> error).
            for c in &a {
                assert!(
                    s1.finish_work("s1", e1, &c.work, &End::to("error"))
                        .await
                        .expect("finish")
                );
            }
            for c in &b {
                assert!(
                    s2.finish_work("s2", e2, &c.work, &End::to("error"))
                        .await
                        .expect("finish")
                );
            }
            // The dead host, back with its old epoch, cannot undo it.
            for id in &ids {
                assert!(
                    !dead
                        .finish_work("d", epoch, &volume_work(id), &End::to("available"))
                        .await
                        .expect("fenced"),
                );
                assert_eq!(
                    dead.volume(id).await.expect("read").map(|v| v.status),
                    Some("error".to_string())
                );
            }
        }
    })
    .expect("runtime");
}

fn an_owner_finishing_and_a_survivor_claiming_never_both_win(db: Db) {
    let server = Server::start_on(db, "finish-race");
    let url = server.url.clone();
    run_real(async move {
        let (owner, survivor) = (store(&url).await, store(&url).await);
        let es = survivor.register_host("s", "c").await.expect("s");
        let (mut owner_won, mut survivor_won) = (0, 0);
        for round in 0..30 {
            let eo = owner.register_host("o", "c").await.expect("o");
            let work = volume_work(&format!("v{round}"));
            owner
                .insert_volume(&work.id, "lvm-1", 1, "creating")
                .await
                .expect("volume");
            owner.begin_work("o", eo, "c", &work).await.expect("work");
            // The owner stalled past service_down_time, then finishes just
            // as the survivor claims.
            tokio::time::sleep(DOWN + Duration::from_millis(50)).await;
            survivor.host_heartbeat("s", es, GAP).await.expect("beat");
            let available = End::to("available");
            let (finished, claimed) = tokio::join!(
                owner.finish_work("o", eo, &work, &available),
                survivor.claim_dead_work("s", es, "c", DOWN, GAP)
            );
            let finished = finished.expect("finish");
            let claimed = !claimed.expect("claim").is_empty();
            assert!(finished != claimed, "round {round}: exactly one wins");
            let status = owner
                .volume(&work.id)
                .await
                .expect("read")
                .map(|v| v.status);
            if finished {
                owner_won += 1;
                assert_eq!(status.as_deref(), Some("available"));
            } else {
                survivor_won += 1;
                assert!(
                    survivor
                        .finish_work("s", es, &work, &End::to("error"))
                        .await
                        .expect("resolve")
                );
            }
        }
        assert_eq!(owner_won + survivor_won, 30);
    })
    .expect("runtime");
}

fn a_restarted_host_gets_a_new_epoch_and_the_old_one_stops_heartbeating(db: Db) {
    let server = Server::start_on(db, "epochs");
    let url = server.url.clone();
    run_real(async move {
        let old = store(&url).await;
        let first = old.register_host("h", "c").await.expect("register");
        let new = store(&url).await;
        let second = new.register_host("h", "c").await.expect("register again");
        assert!(second > first, "{second:?} after {first:?}");
        assert!(
            !old.host_heartbeat("h", first, GAP).await.expect("beat"),
            "a stale incarnation learns it must stop"
        );
        assert!(new.host_heartbeat("h", second, GAP).await.expect("beat"));
        assert_eq!(first, Epoch(1));
    })
    .expect("runtime");
}

/// After a gap in its own renewals (the database did not answer it), a
/// survivor renews for `service_down_time` before it may claim: the owner,
/// cut off by the same outage, gets to write what it kept first.
fn a_survivor_back_from_an_outage_claims_only_after_renewing_for_service_down_time(db: Db) {
    let server = Server::start_on(db, "claim-run");
    let url = server.url.clone();
    run_real(async move {
        let (owner, survivor) = (store(&url).await, store(&url).await);
        let es = survivor.register_host("s", "c").await.expect("s");
        let eo = owner.register_host("o", "c").await.expect("o");
        let work = volume_work("v");
        owner
            .insert_volume(&work.id, "lvm-1", 1, "creating")
            .await
            .expect("volume");
        owner.begin_work("o", eo, "c", &work).await.expect("work");
        // Neither renews for longer than service_down_time (an outage).
        tokio::time::sleep(DOWN + Duration::from_millis(100)).await;
        // The survivor's first renewal after it is more than its allowed
        // gap (100 ms here) after the last: its run starts again.
        let short_gap = Duration::from_millis(100);
        assert!(
            survivor
                .host_heartbeat("s", es, short_gap)
                .await
                .expect("beat")
        );
        assert!(
            survivor
                .claim_dead_work("s", es, "c", DOWN, GAP)
                .await
                .expect("claim")
                .is_empty(),
            "claimed before renewing for service_down_time since the outage"
        );
        // Renewing for service_down_time, it may.
        tokio::time::sleep(DOWN + Duration::from_millis(50)).await;
        assert!(survivor.host_heartbeat("s", es, GAP).await.expect("beat"));
        let claimed = survivor
            .claim_dead_work("s", es, "c", DOWN, GAP)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        // A survivor that has not renewed within its allowed gap claims
        // nothing, however long its run was.
        owner
            .begin_work("o", eo, "c", &volume_work("w"))
            .await
            .expect("work");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            survivor
                .claim_dead_work("s", es, "c", DOWN, short_gap)
                .await
                .expect("claim")
                .is_empty(),
            "a claimer silent for longer than its allowed gap claimed"
        );
    })
    .expect("runtime");
}

/// What an operation writes with its final status (a new size, a backup's
/// source put back, a deletion) is part of the one fenced statement: all of
/// it or, once a survivor claimed the work, none of it.
fn an_owners_end_writes_size_source_and_deletion_with_its_status_or_nothing(db: Db) {
    let server = Server::start_on(db, "end");
    let url = server.url.clone();
    run_real(async move {
        let owner = store(&url).await;
        let epoch = owner.register_host("o", "c").await.expect("o");
        let work = |kind: &str, id: &str, status: &str| Work {
            kind: kind.into(),
            id: id.into(),
            status: status.into(),
        };
        // An extend: the size with the status.
        owner
            .insert_volume("v", "lvm-1", 1024, "extending")
            .await
            .expect("v");
        owner
            .begin_work("o", epoch, "c", &work("volume", "v", "extending"))
            .await
            .expect("work");
        let extended = End {
            size_bytes: Some(2048),
            ..End::to("available")
        };
        assert!(
            owner
                .finish_work("o", epoch, &work("volume", "v", "extending"), &extended)
                .await
                .expect("end")
        );
        let v = owner.volume("v").await.expect("read").expect("v");
        assert_eq!((v.status.as_str(), v.size_bytes), ("available", 2048));
        // A backup: its size, and its source back from `backing-up`.
        owner
            .insert_volume("src", "lvm-1", 4096, "backing-up")
            .await
            .expect("src");
        owner.insert_backup("b", "src").await.expect("b");
        owner
            .begin_work("o", epoch, "c", &work("backup", "b", "creating"))
            .await
            .expect("work");
        let stored = End {
            size_bytes: Some(4096),
            source: Some(Source {
                volume_id: "src".into(),
                status: "in-use".into(),
            }),
            ..End::to("available")
        };
        assert!(
            owner
                .finish_work("o", epoch, &work("backup", "b", "creating"), &stored)
                .await
                .expect("end")
        );
        let b = owner.backup("b").await.expect("read").expect("b");
        assert_eq!((b.status.as_str(), b.size_bytes), ("available", 4096));
        let src = owner.volume("src").await.expect("read").expect("src");
        assert_eq!(src.status, "in-use");
        // A deletion removes the record and its attachments.
        owner
            .put_attachment("v", "host-1", "{}")
            .await
            .expect("attach");
        owner
            .begin_work("o", epoch, "c", &work("volume", "v", "deleting"))
            .await
            .expect("work");
        assert!(
            owner
                .finish_work(
                    "o",
                    epoch,
                    &work("volume", "v", "deleting"),
                    &End::to("deleted")
                )
                .await
                .expect("end")
        );
        assert!(owner.volume("v").await.expect("read").is_none());
        assert!(owner.attachments("v").await.expect("read").is_empty());
        // Fenced: once the work is not this epoch's, nothing is written.
        owner
            .set_volume_status("src", "backing-up")
            .await
            .expect("status");
        owner.insert_backup("b2", "src").await.expect("b2");
        owner
            .begin_work("o", epoch, "c", &work("backup", "b2", "creating"))
            .await
            .expect("work");
        // The host restarted and its recovery adopted the work.
        let later = owner.register_host("o", "c").await.expect("o again");
        assert_eq!(
            owner.adopt_own_work("o", later).await.expect("adopt").len(),
            1
        );
        assert!(
            !owner
                .finish_work("o", epoch, &work("backup", "b2", "creating"), &stored)
                .await
                .expect("fenced")
        );
        let b2 = owner.backup("b2").await.expect("read").expect("b2");
        assert_eq!((b2.status.as_str(), b2.size_bytes), ("creating", 0));
        assert_eq!(
            owner
                .volume("src")
                .await
                .expect("read")
                .expect("src")
                .status,
            "backing-up"
        );
    })
    .expect("runtime");
}

on_each_database!(
    two_survivors_racing_claim_each_piece_of_a_dead_hosts_work_exactly_once,
    an_owner_finishing_and_a_survivor_claiming_never_both_win,
    a_restarted_host_gets_a_new_epoch_and_the_old_one_stops_heartbeating,
    a_survivor_back_from_an_outage_claims_only_after_renewing_for_service_down_time,
    an_owners_end_writes_size_source_and_deletion_with_its_status_or_nothing,
);
