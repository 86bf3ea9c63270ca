//! Driver option declarations at work: the whole-file check (`config check`), a
//! reload that breaks a declaration is rejected while the backend keeps serving,
//! and at start-up an invalid backend fails fatally while the valid ones start.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use actix::clock::sleep;
use rekindle::actors::controller::RequestReload;
use rekindle::actors::{Handles, ReloadOutcome};
use rekindle::config::{self, Config};
use rekindle::driver::options::{OptionDecl, OptionDefault, Rule};
use rekindle::driver::{DriverRegistry, Kind};
use rekindle::engine::clock::ServiceClock;
use rekindle::engine::runtime::run_virtual;
use rekindle::lifecycle::StateName;

fn check(text: &str) -> Vec<String> {
    config::check(text, "cinder.conf", &DriverRegistry::with_builtin())
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
#[cfg(feature = "qemu")] // the qemu driver's own options
fn the_check_reports_every_problem_of_the_file_in_an_operators_words() {
    let text = "\
[DEFAULT]
enabled_backends = b1, b2, b3, b4, b5
periodic_interval = soon
backup_driver = fault
backup_fault_fail_setup_times = many
backup_fault_eror = config

[backend_defaults]
export_hots = 10.0.0.1

[b1]
volume_driver = qemu
volumes_dir = /srv/volumes
volume_format = qcow3

[b2]
volume_driver = fault
fault_fail_setup_time = 2
reinit_driver_cout = 3
export_hots = 10.0.0.2

[b3]
volume_driver = rbd

[b4]
volume_driver = qemu

[b5]
volume_driver = fault
fault_setup_hang = maybe
fault_flap_period = 0
";
    let problems = check(text);
    let expected = [
        "cinder.conf: [backend_defaults] export_hots (inherited by [b1]): \"10.0.0.1\": not an option of the qemu volume driver; did you mean `export_host`?",
        "cinder.conf: [b1] volume_format: \"qcow3\": expected one of qcow2, raw",
        "cinder.conf: [b2] export_hots: \"10.0.0.2\": not an option of the fault volume driver",
        "cinder.conf: [b2] fault_fail_setup_time: \"2\": not an option of the fault volume driver; did you mean `fault_fail_setup_times`?",
        "cinder.conf: [b2] reinit_driver_cout: \"3\": not an option of the fault volume driver; did you mean `reinit_driver_count`?",
        "cinder.conf: [b3] volume_driver: \"rbd\": no volume driver of that name (known: fault, qemu)",
        "cinder.conf: [backend_defaults] export_hots (inherited by [b4]): \"10.0.0.1\": not an option of the qemu volume driver; did you mean `export_host`?",
        "cinder.conf: [b4] volumes_dir: missing: the qemu volume driver requires it (where volume images live (`volume-<uuid>.qcow2`); missing or not writable: recoverable)",
        "cinder.conf: [backend_defaults] export_hots (inherited by [b5]): \"10.0.0.1\": not an option of the fault volume driver",
        "cinder.conf: [b5] fault_flap_period: \"0\": expected seconds (`90`) or a duration (`90s`, `2m`) of at most 10 years, greater than zero",
        "cinder.conf: [b5] fault_setup_hang: \"maybe\": expected true or false (also yes/no, on/off, 1/0)",
        "cinder.conf: [DEFAULT] backup_fault_eror: \"config\": not an option of the fault backup driver; did you mean `backup_fault_error`?",
        "cinder.conf: [DEFAULT] backup_fault_fail_setup_times: \"many\": expected a whole number from 0 to 4294967295",
    ];
    for line in &expected {
        assert!(
            problems.contains(&line.to_string()),
            "missing {line}\nin {problems:#?}"
        );
    }
    assert!(
        problems[0].starts_with(
            "cinder.conf: [DEFAULT] periodic_interval: \"soon\": expected whole seconds"
        ),
        "structural problems come first: {problems:#?}"
    );
    assert_eq!(problems.len(), expected.len() + 1, "{problems:#?}");
}

#[test]
fn the_embedded_default_config_checks_clean() {
    assert_eq!(
        check(include_str!("../examples/cinder.conf")),
        Vec::<String>::new()
    );
}

#[test]
fn a_user_registered_driver_is_checked_against_its_own_declaration_plus_the_faults() {
    let mut registry = DriverRegistry::default();
    const MINE: &[OptionDecl] = &[OptionDecl::new(
        "array_address",
        Rule::IpAddr,
        OptionDefault::Required,
        "the array's management address",
    )];
    registry.register_with_faults(Kind::Volume, "mine", MINE, |_| {
        Err(rekindle::lifecycle::DriverError::backend(
            "never built here",
        ))
    });
    let spec = rekindle::actors::driver_actor::spec(
        "m",
        Kind::Volume,
        "mine",
        &[("array_address", "10.0.0.300"), ("fault_op_delay", "1s")],
    );
    let problems: Vec<String> = registry
        .check(&spec)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        ["[m] array_address: \"10.0.0.300\": expected an IP address (`127.0.0.1`, `::1`)"]
    );
    let names: Vec<&str> = registry
        .options(Kind::Volume, "mine")
        .expect("registered")
        .iter()
        .map(|d| d.name)
        .collect();
    assert!(names.contains(&"array_address") && names.contains(&"fault_flap_seed"));
    let Err(error) = registry.build(&rekindle::driver::DriverContext {
        spec,
        started: actix::clock::Instant::now(),
        events: Default::default(),
    }) else {
        panic!("an invalid spec must not build");
    };
    assert!(error.is_fatal(), "{error}");
}

#[cfg(feature = "qemu")] // used by the qemu-option test only
fn plan_of(text: &str) -> rekindle::actors::Plan {
    Config::parse(text, "cinder.conf")
        .expect("structurally valid")
        .plan()
}

struct Running {
    handles: Handles,
    file: Rc<RefCell<String>>,
}

fn start(text: &str) -> Running {
    let file = Rc::new(RefCell::new(text.to_string()));
    let reader = file.clone();
    let engine = rekindle::Engine::builder()
        .plan_loader(move || {
            Config::parse(&reader.borrow(), "cinder.conf")
                .map(|c| c.plan())
                .map_err(|e| e.to_string())
        })
        .registry(DriverRegistry::with_builtin())
        .clock(ServiceClock::start_at(std::time::UNIX_EPOCH))
        .jitter_seed(rekindle::JitterSeed(7))
        .start()
        .expect("engine starts");
    Running {
        handles: engine.handles().clone(),
        file,
    }
}

impl Running {
    fn state(&self, backend: &str) -> (StateName, Option<String>) {
        self.handles
            .shell
            .board
            .backend(backend)
            .map_or((StateName::Stopped, None), |b| (b.state, b.last_error))
    }

    async fn reload(&self, text: &str) -> ReloadOutcome {
        *self.file.borrow_mut() = text.to_string();
        self.handles
            .controller
            .send(RequestReload)
            .await
            .expect("controller alive")
    }

    fn count(&self, event_type: &str) -> usize {
        self.handles
            .shell
            .notifier
            .history()
            .iter()
            .filter(|r| r.event_type == event_type)
            .count()
    }
}

const FAULTY: &str = "[DEFAULT]\nenabled_backends = b1, b2\n[b1]\nvolume_driver = fault\n[b2]\nvolume_driver = fault\n";

#[test]
fn a_reload_with_a_bad_driver_option_is_rejected_and_the_backend_keeps_serving() {
    run_virtual(async {
        let svc = start(FAULTY);
        sleep(Duration::from_secs(1)).await;
        assert_eq!(svc.state("b1").0, StateName::Ready);
        let outcome = svc
            .reload(&format!("{FAULTY}fault_fail_setup_times = many\n"))
            .await;
        let ReloadOutcome::Rejected { error } = outcome else {
            panic!("not rejected: {outcome:?}");
        };
        assert_eq!(
            error,
            "cinder.conf: [b2] fault_fail_setup_times: \"many\": expected a whole number from 0 to 4294967295"
        );
        assert_eq!(svc.count("reload.rejected"), 1);
        assert_eq!(svc.count("reload.start"), 0);
        sleep(Duration::from_secs(5)).await;
        assert_eq!(svc.state("b2").0, StateName::Ready);
        assert_eq!(svc.state("b1").0, StateName::Ready);
    })
    .expect("runtime");
}

#[test]
#[cfg(feature = "qemu")] // the qemu driver's own options
fn a_reload_that_changes_a_restart_only_option_is_rejected_with_its_name() {
    let dir = std::env::temp_dir().join(format!("rekindle-options-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let qemu = format!(
        "[DEFAULT]\nenabled_backends = q\n[q]\nvolume_driver = qemu\nvolumes_dir = {}\n",
        dir.display()
    );
    let registry = DriverRegistry::with_builtin();
    let running = plan_of(&qemu);
    let check = |text: &str| -> Vec<String> {
        let new = plan_of(text);
        registry
            .check_reload(Some(&running.backends["q"].spec), &new.backends["q"].spec)
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        check(&format!("{qemu}volume_format = raw\n")),
        [
            "cinder.conf: [q] volume_format: \"raw\": cannot change on reload (running with \"qcow2\"); restart rekindle to apply it"
        ]
    );
    assert!(
        check(&format!("{qemu}volume_format = qcow2\n")).is_empty(),
        "writing the default out is no change"
    );
    assert!(
        check(&format!("{qemu}export_port_range = 2000-2010\n")).is_empty(),
        "reloadable"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn at_start_up_an_invalid_backend_fails_fatally_and_the_valid_ones_start() {
    run_virtual(async {
        let svc = start(&format!("{FAULTY}fault_fail_setup_times = many\n"));
        sleep(Duration::from_secs(1)).await;
        assert_eq!(svc.state("b1"), (StateName::Ready, None));
        let (state, error) = svc.state("b2");
        assert_eq!(state, StateName::FailedFatal);
        let error = error.expect("an error");
        assert!(
            error.contains(
                "cinder.conf: [b2] fault_fail_setup_times: \"many\": expected a whole number from 0 to 4294967295"
            ),
            "{error}"
        );
        // The driver's own code was never asked to build it.
        assert_eq!(
            svc.handles
                .shell
                .registry
                .fault_probe("b2")
                .setup_calls
                .get(),
            0
        );
        // An operation on it is refused like any fatally failed backend's.
        let refused = svc
            .handles
            .service
            .send(rekindle::actors::service::Route {
                backend: "b2".to_string(),
                operation: rekindle::actors::Operation::CreateVolume(
                    rekindle::driver::Volume::new("v1", 1 << 20),
                ),
            })
            .await
            .expect("delivered")
            .expect_err("refused")
            .to_string();
        assert!(
            refused.starts_with("volume create refused on backend `b2`: the backend's driver cannot run: configuration error: cinder.conf: [b2] fault_fail_setup_times")
                && refused.ends_with("; fix the config, then reload"),
            "{refused}"
        );
    })
    .expect("runtime");
}

#[test]
fn a_declared_option_the_driver_reads_as_another_type_is_a_bug_not_a_panic() {
    const DECL: &[OptionDecl] = &[OptionDecl::new(
        "n",
        Rule::Whole { min: 0, max: 10 },
        OptionDefault::Value("3"),
        "a number",
    )];
    let spec = rekindle::actors::driver_actor::spec("x", Kind::Volume, "x", &[]);
    let read = rekindle::driver::options::OptionReader::new("x", DECL, &spec);
    assert_eq!(read.get::<u32>("n").expect("default"), 3);
    assert!(read.get::<bool>("n").is_err());
    assert!(read.get::<u32>("undeclared").is_err());
}
