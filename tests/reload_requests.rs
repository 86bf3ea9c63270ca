//! Reload requests through a real PostgreSQL: the asked host wakes at once by NOTIFY,
//! claims each request once (also those made while it was away), and answers in the row.

mod common;

use std::time::Duration;

use common::{Db, Server};
use rekindle::engine::runtime::run_real;
use rekindle::records::connect;
use rekindle::records::requests::Answer;

fn a_request_wakes_its_host_at_once_and_is_answered_once(db: Db) {
    let server = Server::start_on(db, "requests");
    let url = server.url.clone();
    run_real(async move {
        let fleet = connect(&url, Duration::from_secs(10)).await.expect("cli");
        let host = connect(&url, Duration::from_secs(10)).await.expect("host");
        // Made while nobody listens: found at the first wake-up.
        let early = fleet
            .request_reload("node-1", Some(7))
            .await
            .expect("request");
        let mut wake = host.listen_for_reloads("node-1");
        tokio::time::timeout(Duration::from_secs(5), wake.recv())
            .await
            .expect("woken at start")
            .expect("open");
        assert_eq!(
            host.take_reload_requests("node-1").await.expect("take"),
            [early]
        );
        // Another host's request does not wake this one.
        let _other = fleet.request_reload("node-2", None).await.expect("request");
        let started = std::time::Instant::now();
        let asked = fleet.request_reload("node-1", None).await.expect("request");
        tokio::time::timeout(Duration::from_secs(2), wake.recv())
            .await
            .expect("woken by NOTIFY")
            .expect("open");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "at once, not by polling"
        );
        assert_eq!(
            host.take_reload_requests("node-1").await.expect("take"),
            [asked]
        );
        assert!(
            host.take_reload_requests("node-1")
                .await
                .expect("take")
                .is_empty(),
            "once"
        );
        assert_eq!(fleet.reload_answer(asked).await.expect("read"), None);
        let answer = Answer {
            as_intended: true,
            report: r#"{"backends":{}}"#.into(),
        };
        host.answer_reload(asked, &answer).await.expect("answer");
        assert_eq!(
            fleet.reload_answer(asked).await.expect("read"),
            Some(answer)
        );
    })
    .expect("runtime");
}

fn the_listener_comes_back_after_a_database_outage(db: Db) {
    let server = Server::start_on(db, "listen-outage");
    let url = server.url.clone();
    run_real(async {
        let host = connect(&url, Duration::from_secs(10)).await.expect("host");
        let mut wake = host.listen_for_reloads("node-1");
        wake.recv().await.expect("first wake-up");
        server.stop_now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.start_again();
        // Re-listening wakes the host once (requests may have been missed) ...
        tokio::time::timeout(Duration::from_secs(10), wake.recv())
            .await
            .expect("re-listened")
            .expect("open");
        // ... and notifications reach it again.
        let fleet = connect(&url, Duration::from_secs(10)).await.expect("cli");
        fleet.request_reload("node-1", None).await.expect("request");
        tokio::time::timeout(Duration::from_secs(3), wake.recv())
            .await
            .expect("woken")
            .expect("open");
    })
    .expect("runtime");
}

on_each_database!(
    a_request_wakes_its_host_at_once_and_is_answered_once,
    the_listener_comes_back_after_a_database_outage,
);
