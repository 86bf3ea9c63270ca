//! One records contract, three stores: every test runs against the embedded SQLite records
//! and against a real PostgreSQL and MariaDB (private servers: `scripts/pg-server`, `scripts/mariadb-server`).

mod common;

use std::time::Duration;

use common::{Db, Server};
use rekindle::engine::runtime::run_real;
use rekindle::records::{ExportRow, SqliteStore};
use rekindle::records::{RecordStore, RecordsError, ServicePut, connect};

/// The contract, run against one store.
async fn contract(store: &dyn RecordStore) {
    volumes_contract(store).await;
    exports_and_attachments_contract(store).await;
    backups_contract(store).await;
    // Deleting a volume removes what was left attached.
    store.delete_volume("v1").await.expect("delete");
    assert!(store.attachments("v1").await.expect("read").is_empty());
    assert!(store.volume("v1").await.expect("read").is_none());

    // Service rows: one per host and backend.
    store
        .put_service(
            "lvm-1",
            "cinder-volume",
            "node-1@lvm-1",
            "up",
            "2026-01-01T00:00:00Z",
        )
        .await
        .expect("heartbeat");
    let rows = store.services().await.expect("services");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].binary.as_str(),
            rows[0].host.as_str(),
            rows[0].state.as_str()
        ),
        ("cinder-volume", "node-1@lvm-1", "up")
    );
}

/// Volumes: inserted, updated, read, listed by id; ids unique.
async fn volumes_contract(store: &dyn RecordStore) {
    // Volumes.
    store
        .insert_volume("v1", "lvm-1", 1 << 30, "creating")
        .await
        .expect("insert");
    store
        .set_volume_status("v1", "available")
        .await
        .expect("status");
    store.set_volume_size("v1", 2 << 30).await.expect("size");
    let v1 = store.volume("v1").await.expect("read").expect("exists");
    assert_eq!(
        (v1.backend.as_str(), v1.size_bytes, v1.status.as_str()),
        ("lvm-1", 2 << 30, "available")
    );
    assert!(v1.updated_at.ends_with('Z'), "{}", v1.updated_at);
    assert!(store.volume("nope").await.expect("read").is_none());
    store
        .insert_volume("v0", "lvm-1", 1, "available")
        .await
        .expect("insert");
    let ids: Vec<String> = store
        .volumes()
        .await
        .expect("list")
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ids, ["v0", "v1"]);
    assert!(
        store
            .insert_volume("v1", "lvm-1", 1, "available")
            .await
            .is_err(),
        "ids are unique"
    );
}

/// Exports, one per volume replaced in place; attachments per host.
async fn exports_and_attachments_contract(store: &dyn RecordStore) {
    // Exports: one per volume, replaced in place.
    let export = ExportRow {
        volume_id: "v1".into(),
        backend: "lvm-1".into(),
        pid: 4242,
        host: "127.0.0.1".into(),
        port: 10809,
        connector_host: "compute-1".into(),
    };
    store.put_export(&export).await.expect("export");
    store
        .put_export(&ExportRow {
            pid: 4343,
            port: 10810,
            ..export.clone()
        })
        .await
        .expect("replace");
    let exported = store.exports("lvm-1").await.expect("exports");
    assert_eq!(exported.len(), 1);
    assert_eq!((exported[0].pid, exported[0].port), (4343, 10810));
    assert!(store.exports("other").await.expect("exports").is_empty());
    store.delete_export("v1").await.expect("delete");
    assert!(store.export("v1").await.expect("read").is_none());

    // Attachments: per host, idempotent, oldest first, gone with the volume.
    store
        .put_attachment("v1", "src", r#"{"host":"src"}"#)
        .await
        .expect("attach");
    store
        .put_attachment("v1", "dst", r#"{"host":"dst"}"#)
        .await
        .expect("attach");
    store
        .put_attachment("v1", "src", r#"{"host":"src","ip":"10.0.0.1"}"#)
        .await
        .expect("again");
    let hosts: Vec<String> = store
        .attachments("v1")
        .await
        .expect("read")
        .into_iter()
        .map(|a| a.connector_host)
        .collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    store.delete_attachment("v1", "dst").await.expect("detach");
    let left = store.attachments("v1").await.expect("read");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].connector, r#"{"host":"src","ip":"10.0.0.1"}"#);
}

/// Backups, and crash recovery of what a crash left transitional.
async fn backups_contract(store: &dyn RecordStore) {
    // Backups and crash recovery.
    store.insert_backup("b1", "v1").await.expect("backup");
    store.insert_backup("b2", "v1").await.expect("backup");
    store
        .set_backup("b2", "restoring", Some(4096), Some("v0"))
        .await
        .expect("restoring");
    store.set_backup_reached("b2", true).await.expect("reached");
    let b2 = store.backup("b2").await.expect("read").expect("exists");
    assert_eq!(
        (
            b2.size_bytes,
            b2.reached_backend,
            b2.restore_target.as_deref()
        ),
        (4096, true, Some("v0"))
    );
    store
        .set_backup("b2", "restoring", None, Some("v0"))
        .await
        .expect("size kept");
    assert_eq!(
        store
            .backup("b2")
            .await
            .expect("read")
            .map(|b| b.size_bytes),
        Some(4096)
    );
    let recovered = store.recover().await.expect("recover");
    assert_eq!(
        store.backup("b1").await.expect("read").map(|b| b.status),
        Some("error".to_string())
    );
    assert_eq!(
        store.backup("b2").await.expect("read").map(|b| b.status),
        Some("available".to_string())
    );
    assert_eq!(
        store.volume("v0").await.expect("read").map(|v| v.status),
        Some("error_restoring".to_string())
    );
    assert_eq!(recovered.len(), 3, "{recovered:?}");
    store.delete_backup("b1").await.expect("delete");
    assert_eq!(store.backups().await.expect("list").len(), 1);
}

#[test]
fn the_embedded_records_keep_the_contract() {
    run_real(async {
        let records = SqliteStore::in_memory().expect("sqlite");
        contract(&records).await;
    })
    .expect("runtime");
}

fn a_fleet_database_keeps_the_contract_and_judges_liveness_by_its_own_clock(db: Db) {
    let server = Server::start_on(db, "contract");
    let url = server.url.clone();
    run_real(async move {
        let store = connect(&url, Duration::from_secs(1))
            .await
            .expect("connects");
        contract(&*store).await;
        // Migrations are idempotent: a second host connecting changes nothing.
        let again = connect(&url, Duration::from_secs(1))
            .await
            .expect("connects again");
        assert_eq!(again.volumes().await.expect("list").len(), 1);
        // The heartbeat above was written with the server's now(); the
        // host's own `updated_at` ("2026-01-01") was ignored, and one second
        // later by the server's clock the row is down.
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let rows = store.services().await.expect("services");
        assert_eq!(rows[0].state, "down", "{rows:?}");
        assert!(!rows[0].updated_at.starts_with("2026-01-01"), "{rows:?}");
        store
            .put_service(
                "lvm-1",
                "cinder-volume",
                "node-1@lvm-1",
                "up",
                "1999-01-01T00:00:00Z",
            )
            .await
            .expect("heartbeat");
        assert_eq!(store.services().await.expect("services")[0].state, "up");
    })
    .expect("runtime");
}

fn a_hosts_service_rows_are_written_in_one_statement_as_put_service_does(db: Db) {
    let server = Server::start_on(db, "put-services");
    let url = server.url.clone();
    run_real(async move {
        let store = connect(&url, Duration::from_secs(1))
            .await
            .expect("connects");
        let row = |backend, host, state| ServicePut {
            backend,
            binary: "cinder-volume",
            host,
            state,
        };
        store.put_services(&[]).await.expect("nothing to write");
        assert!(store.services().await.expect("services").is_empty());
        // A row written one at a time, then the host's whole beat at once:
        // inserted, updated in place, the last of a repeated row kept.
        store
            .put_service("lvm-1", "cinder-volume", "node-1@lvm-1", "down", "")
            .await
            .expect("heartbeat");
        store
            .put_services(&[
                row("lvm-1", "node-1@lvm-1", "down"),
                row("ceph", "node-1@ceph", "down"),
                row("lvm-1", "node-1@lvm-1", "up"),
            ])
            .await
            .expect("beat");
        let states = |rows: Vec<rekindle::records::ServiceRow>| {
            rows.into_iter()
                .map(|r| (r.host, r.backend, r.binary, r.state))
                .collect::<Vec<_>>()
        };
        let expected = |ceph: &str, lvm: &str| {
            vec![
                (
                    "node-1@ceph".to_string(),
                    "ceph".to_string(),
                    "cinder-volume".to_string(),
                    ceph.to_string(),
                ),
                (
                    "node-1@lvm-1".to_string(),
                    "lvm-1".to_string(),
                    "cinder-volume".to_string(),
                    lvm.to_string(),
                ),
            ]
        };
        assert_eq!(
            states(store.services().await.expect("services")),
            expected("down", "up")
        );
        // Stamped with the server's now(): stale after service_down_time,
        // fresh again with the next beat.
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        assert_eq!(
            states(store.services().await.expect("services")),
            expected("down", "down")
        );
        store
            .put_services(&[
                row("lvm-1", "node-1@lvm-1", "up"),
                row("ceph", "node-1@ceph", "up"),
            ])
            .await
            .expect("beat");
        assert_eq!(
            states(store.services().await.expect("services")),
            expected("up", "up")
        );
        // The cached statement survives many beats on the pooled connections.
        for _ in 0..20 {
            store
                .put_services(&[row("ceph", "node-1@ceph", "down")])
                .await
                .expect("beat");
        }
        assert_eq!(
            states(store.services().await.expect("services")),
            expected("down", "up")
        );
    })
    .expect("runtime");
}

fn a_database_outage_is_an_error_naming_it_and_work_resumes_when_it_returns(db: Db) {
    let server = Server::start_on(db, "outage");
    let url = server.url.clone();
    run_real(async {
        let store = connect(&url, Duration::from_secs(10))
            .await
            .expect("connects");
        store
            .insert_volume("v1", "lvm-1", 1, "available")
            .await
            .expect("insert");
        server.stop_now();
        let started = std::time::Instant::now();
        let error = store.volumes().await.expect_err("the server is down");
        assert!(started.elapsed() < Duration::from_secs(8), "no hang");
        assert!(
            matches!(error, RecordsError::Unavailable { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("127.0.0.1"), "{error}");
        // The pooled connection is found closed; a new one is refused.
        if db == Db::Postgres {
            assert!(error.to_string().contains("closed"), "says why: {error}");
        }
        let error = store.volumes().await.expect_err("still down");
        assert!(error.to_string().contains("refused"), "says why: {error}");
        server.start_again();
        // The pool reconnects by itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match store.volumes().await {
                Ok(rows) => {
                    assert_eq!(rows.len(), 1);
                    break;
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the database came back but the store did not: {e}"),
            }
        }
    })
    .expect("runtime");
}

#[test]
fn a_bad_url_or_a_closed_port_says_what_is_wrong_without_the_password() {
    run_real(async {
        let refused = |url: &'static str| async move {
            match connect(url, Duration::from_secs(1)).await {
                Ok(_) => panic!("{url} connected"),
                Err(error) => error,
            }
        };
        let error = refused("oracle://scott:hunter2@db/orcl").await;
        let said = error.to_string();
        assert!(matches!(error, RecordsError::BadUrl { .. }), "{error:?}");
        assert!(
            said.contains("postgresql://") && said.contains("mysql+pymysql://"),
            "{said}"
        );
        assert!(!said.contains("hunter2"), "{said}");
        for url in [
            "postgresql://rekindle:hunter2@127.0.0.1:1/postgres",
            "mysql+pymysql://rekindle:hunter2@127.0.0.1:1/cinder",
        ] {
            let error = refused(url).await;
            assert!(
                matches!(error, RecordsError::Unavailable { .. }),
                "{error:?}"
            );
            let said = error.to_string();
            assert!(said.contains("127.0.0.1:1"), "{said}");
            assert!(said.contains("refused"), "says why: {said}");
            assert!(!said.contains("hunter2"), "{said}");
        }
        let error = refused("mysql+pymysql://cinder:hunter2@db/cinder?ssl_ca=/etc/ca.pem").await;
        let said = error.to_string();
        assert!(
            said.contains("ssl_ca") && !said.contains("hunter2"),
            "{said}"
        );
    })
    .expect("runtime");
}

/// A write whose answer the client-side deadline cut off (the server froze
/// with it) is never committed later: thawed, the server finds its
/// transaction abandoned, not a statement to commit on its own.
fn a_write_is_never_committed_after_its_deadline_cut_it_off(db: Db) {
    let server = Server::start_on(db, "late-write");
    let url = server.url.clone();
    let pids_later = server.pids_later();
    run_real(async move {
        let store = connect(&url, Duration::from_secs(1))
            .await
            .expect("connects");
        // A pooled connection, warm (its server process is among the pids).
        assert!(store.volumes().await.expect("list").is_empty());
        let pids = pids_later();
        common::freeze(&pids);
        let write = store.insert_volume("v-late", "b", 1, "creating").await;
        common::signal(&pids, "-CONT");
        match write {
            Err(RecordsError::Unavailable { reason, .. }) => {
                assert!(reason.contains("no answer within 5s"), "{reason}")
            }
            other => panic!("a frozen server's write is refused by its deadline: {other:?}"),
        }
        // The thawed server has read the statement by now; it answered
        // this read on another connection after it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(store.volumes().await.expect("list").is_empty());
        assert!(store.volume("v-late").await.expect("read").is_none());
    })
    .expect("runtime");
}

/// A database that already holds another application's tables named as
/// rekindle's (Cinder's own database: `volumes`, `services`, ...) is
/// refused, naming them, and left as it was.
fn another_applications_database_is_refused_and_left_untouched(db: Db) {
    let server = Server::start_on(db, "foreign");
    server.sql("CREATE TABLE volumes (id VARCHAR(36) PRIMARY KEY, display_name VARCHAR(255))");
    server.sql("CREATE TABLE services (id INTEGER PRIMARY KEY, topic VARCHAR(255))");
    let url = server.url.clone();
    let error = run_real(async move {
        match connect(&url, Duration::from_secs(1)).await {
            Ok(_) => panic!("a foreign schema was used"),
            Err(error) => error,
        }
    })
    .expect("runtime");
    let said = error.to_string();
    assert!(matches!(error, RecordsError::Query { .. }), "{error:?}");
    assert!(
        said.contains("(services, volumes)")
            && said.contains("give rekindle a database of its own"),
        "{said}"
    );
    let tables = match db {
        Db::Postgres => server.sql(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
        ),
        Db::MariaDb => server
            .sql("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()"),
    };
    assert_eq!(tables, ["2"], "nothing was created");
}

on_each_database!(
    another_applications_database_is_refused_and_left_untouched,
    a_fleet_database_keeps_the_contract_and_judges_liveness_by_its_own_clock,
    a_hosts_service_rows_are_written_in_one_statement_as_put_service_does,
    a_database_outage_is_an_error_naming_it_and_work_resumes_when_it_returns,
    a_write_is_never_committed_after_its_deadline_cut_it_off,
);
