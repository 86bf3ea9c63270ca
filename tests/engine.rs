//! The front door as an embedder uses it: a 30-line driver, the builder, typed events
//! to a subscriber (the same lines as the notifications file), reload, shutdown.

#[path = "common/drivers.rs"]
mod drivers;

use drivers::{Script, Scripted};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use rekindle::engine::clock::ServiceClock;
use rekindle::engine::runtime::run_virtual;
use rekindle::{
    DriverError, Engine, EngineError, Event, Notice, Operation, OperationOutput, Policy, Reload,
    ReloadOutcome, StateName, Volume,
};

/// A minimal in-memory volume driver whose array answers on the third try.
#[derive(Default)]
struct Memory {
    tries: Cell<u32>,
    volumes: RefCell<BTreeMap<String, u64>>,
}

#[async_trait::async_trait(?Send)]
impl Script for Memory {
    async fn do_setup(&self) -> Result<(), DriverError> {
        self.tries.set(self.tries.get() + 1);
        match self.tries.get() {
            1 | 2 => Err(DriverError::backend("array not answering yet")),
            _ => Ok(()),
        }
    }
    async fn create_volume(&self, v: &Volume) -> Result<(), DriverError> {
        self.volumes
            .borrow_mut()
            .insert(v.id.to_string(), v.size_bytes);
        Ok(())
    }
    async fn delete_volume(&self, v: &Volume) -> Result<(), DriverError> {
        self.volumes.borrow_mut().remove(v.id.as_str());
        Ok(())
    }
}

/// One of the embedder's actors, told every event.
struct Collector {
    seen: Rc<RefCell<Vec<Notice>>>,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Notice> for Collector {
    type Result = ();
    fn handle(&mut self, notice: Notice, _: &mut Context<Self>) {
        self.seen.borrow_mut().push(notice);
    }
}

fn state(engine: &rekindle::EngineHandle, name: &str) -> Option<StateName> {
    engine
        .status()
        .into_iter()
        .find(|b| b.name == name)
        .map(|b| b.state)
}

#[test]
fn an_embedded_driver_is_retried_until_ready_and_every_event_reaches_a_subscriber() {
    let dir = std::env::temp_dir().join(format!("rekindle-engine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("notifications.jsonl");
    let seen = Rc::new(RefCell::new(Vec::new()));
    let collected = seen.clone();
    let file_path = file.clone();
    run_virtual(async move {
        let collector = Collector { seen: collected }.start();
        let engine = Engine::builder()
            .host("node-1")
            .volume_backend("memory-1", Scripted(Memory::default()))
            .policy(Policy::default())
            .clock(ServiceClock::start_at(std::time::UNIX_EPOCH))
            .subscribe(collector.recipient())
            .notifications_file(&file_path)
            .start()
            .expect("starts");
        // Backoff 1s then 2s (jittered): Ready on the third setup.
        actix::clock::sleep(Duration::from_secs(10)).await;
        assert_eq!(state(&engine, "memory-1"), Some(StateName::Ready));
        let created = engine
            .volume(
                "memory-1",
                Operation::CreateVolume(Volume::new("vol-1", 1 << 30)),
            )
            .await;
        assert!(matches!(created, Ok(OperationOutput::Done)), "{created:?}");
        // A reload with a new in-code plan reports each backend's result.
        let mut plan = engine.plan().await.expect("plan");
        if let Some(b) = plan.backends.get_mut("memory-1") {
            b.policy.reinit_driver_count = 5;
        }
        let reloaded = engine
            .reload(Reload::Plan(Box::new(plan)))
            .await
            .expect("answered");
        let ReloadOutcome::Finished(report) = reloaded else {
            panic!("not finished: {reloaded:?}");
        };
        assert!(report.as_intended(), "{report:?}");
        engine.shutdown().await;
        assert_eq!(state(&engine, "memory-1"), Some(StateName::Stopped));
        System::current().stop();
    })
    .expect("runtime");
    let seen = seen.borrow();
    let setups: Vec<&Event> = seen
        .iter()
        .map(|n| &n.event)
        .filter(|e| {
            matches!(
                e,
                Event::DriverInitStart { .. }
                    | Event::DriverInitError { .. }
                    | Event::DriverInitEnd { .. }
            )
        })
        .take(6)
        .collect();
    assert!(
        matches!(
            setups.as_slice(),
            [
                Event::DriverInitStart { attempt: 0 },
                Event::DriverInitError { attempt: 0, .. },
                Event::DriverInitStart { attempt: 1 },
                Event::DriverInitError { attempt: 1, .. },
                Event::DriverInitStart { attempt: 2 },
                Event::DriverInitEnd { attempt: 2 },
            ]
        ),
        "{setups:?}"
    );
    assert!(
        seen.iter()
            .any(|n| matches!(&n.event, Event::ReloadEnd(end) if end.ok)),
        "typed reload.end"
    );
    assert!(
        seen.iter()
            .any(|n| matches!(&n.event, Event::ServiceUp(row) if row.host == "node-1@memory-1"))
    );
    // The subscriber saw exactly the notifications file, line for line.
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .expect("file")
        .lines()
        .map(str::to_string)
        .collect();
    let serialized: Vec<String> = seen
        .iter()
        .map(|n| serde_json::to_string(n).expect("json"))
        .collect();
    assert_eq!(lines, serialized);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A subscriber on its own thread whose handler is slow.
struct Slow;
impl Actor for Slow {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1);
    }
}
impl Handler<Notice> for Slow {
    type Result = ();
    fn handle(&mut self, _: Notice, _: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_slow_subscriber_never_holds_up_a_driver_and_its_drops_are_counted() {
    rekindle::engine::runtime::run_real(async {
        let arbiter = Arbiter::new();
        let slow = Slow::start_in_arbiter(&arbiter.handle(), |_| Slow);
        let mut builder = Engine::builder().subscribe(slow.recipient());
        for n in 0..8 {
            builder = builder.volume_backend(&format!("m-{n}"), Scripted(Memory::default()));
        }
        let engine = builder.start().expect("starts");
        let started = std::time::Instant::now();
        // Two failed setups each (backoff about 1s + 2s): all Ready in ~3s
        // of real time while the subscriber takes 200ms per notice.
        let all_ready = |engine: &rekindle::EngineHandle| {
            let status = engine.status();
            status.len() == 8 && status.iter().all(|b| b.state == StateName::Ready)
        };
        while !all_ready(&engine) {
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "{:?}",
                engine.status()
            );
            actix::clock::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            engine.overflowed() > 0,
            "nothing was dropped of {} notices",
            engine.handles().shell.notifier.emitted()
        );
        engine.shutdown().await;
        arbiter.stop();
        System::current().stop();
    })
    .expect("runtime");
}

#[test]
fn a_builder_that_does_not_add_up_says_what_is_wrong() {
    let outside = Engine::builder()
        .volume_backend("a", Scripted(Memory::default()))
        .start();
    assert!(matches!(outside, Err(EngineError::NoSystem)));
    run_virtual(async {
        let errors = [
            Engine::builder().start().err(),
            Engine::builder()
                .volume_backend("a", Scripted(Memory::default()))
                .volume_backend("a", Scripted(Memory::default()))
                .start()
                .err(),
            Engine::builder()
                .volume_backend("a", Scripted(Memory::default()))
                .backend_policy("b", Policy::default())
                .start()
                .err(),
            Engine::builder()
                .volume_backend("a", Scripted(Memory::default()))
                .config_file("/nonexistent/cinder.conf")
                .start()
                .err(),
            Engine::builder()
                .config_file("/nonexistent/cinder.conf")
                .start()
                .err(),
        ];
        let said: Vec<String> = errors
            .iter()
            .map(|e| e.as_ref().map(ToString::to_string).unwrap_or_default())
            .collect();
        assert!(said[0].contains("no backends"), "{}", said[0]);
        assert!(said[1].contains("\"a\" is defined twice"), "{}", said[1]);
        assert!(
            said[2].contains("backend \"b\", which is not defined"),
            "{}",
            said[2]
        );
        assert!(said[3].contains("give backends one way"), "{}", said[3]);
        assert!(said[4].contains("/nonexistent/cinder.conf"), "{}", said[4]);
        System::current().stop();
    })
    .expect("runtime");
}
