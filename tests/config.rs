//! cinder.conf parsing: inheritance, both duration forms, per-backend policy,
//! the backup driver, and errors that name file, section, option and problem.

use std::time::Duration;

use rekindle::config::{BACKUP_BACKEND, Config};
use rekindle::driver::Kind;

const REAL: &str = r"
[DEFAULT]
enabled_backends = lvm-1, ceph
host = node-7
reinit_driver_count = 5
reinit_backoff_max = 2m
periodic_interval = 30
report_interval = 10s
service_down_time = 5
auth_strategy = keystone
debug = true
backup_driver = fault
backup_periodic_initialization = yes
backup_fault_fail_setup_times = 2
backup_posix_path = /srv/backups

[backend_defaults]
fault_op_delay = 1s

[lvm-1]
volume_driver = fault
volume_backend_name = LVM
reinit_driver_count = 0
driver_init_timeout = 90

[ceph]
volume_driver = rbd
fault_op_delay = 3s
";

#[test]
fn a_real_cinder_conf_parses_with_inheritance_and_overrides() {
    let c = Config::parse(REAL, "cinder.conf").expect("valid");
    assert_eq!(c.host, "node-7");
    assert_eq!(c.periodic_interval, Duration::from_secs(30));
    assert_eq!(c.report_interval, Duration::from_secs(10));
    assert_eq!(
        c.service_down_time,
        Duration::from_secs(25),
        "raised to 2.5 x report_interval"
    );
    let names: Vec<&str> = c.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["lvm-1", "ceph"]);
    let lvm = &c.backends[0];
    assert_eq!(lvm.volume_backend_name, "LVM");
    assert_eq!(lvm.policy.reinit_driver_count, 0, "backend override");
    assert_eq!(lvm.policy.driver_init_timeout, Duration::from_secs(90));
    assert_eq!(
        lvm.policy.reinit_backoff_max,
        Duration::from_secs(120),
        "inherited from [DEFAULT]"
    );
    assert_eq!(
        lvm.options.get("fault_op_delay").map(String::as_str),
        Some("1s"),
        "[backend_defaults]"
    );
    let ceph = &c.backends[1];
    assert_eq!(
        ceph.volume_driver, "rbd",
        "unknown drivers are not a config error"
    );
    assert_eq!(ceph.policy.reinit_driver_count, 5);
    assert_eq!(
        ceph.options.get("fault_op_delay").map(String::as_str),
        Some("3s")
    );
    let backup = c.backup.as_ref().expect("backup driver");
    assert!(backup.periodic_initialization);
    assert_eq!(
        backup.policy.reinit_driver_count, 0,
        "periodic initialization retries for ever"
    );
    assert_eq!(
        backup.policy.reinit_backoff_max,
        Duration::from_secs(30),
        "at least every periodic_interval"
    );
    assert_eq!(
        backup
            .options
            .get("fault_fail_setup_times")
            .map(String::as_str),
        Some("2")
    );
    assert_eq!(
        backup.options.get("backup_posix_path").map(String::as_str),
        Some("/srv/backups")
    );
    let plan = c.plan();
    assert_eq!(plan.backends.len(), 3);
    assert_eq!(plan.backends[BACKUP_BACKEND].spec.kind, Kind::Backup);
}

fn error(text: &str) -> String {
    Config::parse(text, "cinder.conf")
        .expect_err("invalid")
        .to_string()
}

#[test]
fn errors_name_file_section_option_and_problem() {
    let e = error(
        "[DEFAULT]\nenabled_backends = a\n[a]\nvolume_driver = fault\nreinit_driver_count = abc\n",
    );
    assert_eq!(
        e,
        "cinder.conf: [a] reinit_driver_count: \"abc\": expected a whole number >= 0 (0 = unlimited)"
    );
    let e = error(
        "[DEFAULT]\nenabled_backends = a\nreinit_backoff_jitter = 2\n[a]\nvolume_driver = fault\n",
    );
    assert!(
        e.starts_with("cinder.conf: [DEFAULT] reinit_backoff_jitter: \"2\""),
        "{e}"
    );
    let e = error("[DEFAULT]\nenabled_backends = a, b\n[a]\nvolume_driver = fault\n");
    assert_eq!(
        e,
        "cinder.conf: [DEFAULT] enabled_backends: backend `b` is listed but the file has no [b] section"
    );
    let e = error("[DEFAULT]\nenabled_backends = a\n[a]\nvolume_backend_name = x\n");
    assert!(e.contains("[a] volume_driver: missing"), "{e}");
    let e = error("[DEFAULT]\nenabled_backends = a, a\n[a]\nvolume_driver = fault\n");
    assert!(e.contains("listed twice"), "{e}");
    let e = error(
        "[DEFAULT]\nenabled_backends = a\nperiodic_interval = soon\n[a]\nvolume_driver = fault\n",
    );
    assert!(
        e.starts_with("cinder.conf: [DEFAULT] periodic_interval: \"soon\""),
        "{e}"
    );
    let e = error("[DEFAULT]\nbackup_driver = fault\nbackup_periodic_initialization = maybe\n");
    assert!(
        e.contains("[DEFAULT] backup_periodic_initialization: \"maybe\": expected true or false (also yes/no, on/off, 1/0)"),
        "{e}"
    );
    let e = error("[DEFAULT]\n");
    assert!(e.contains("nothing to run"), "{e}");
    let e = error("enabled_backends = a\n");
    assert!(e.contains("section header"), "{e}");
    let e = error("[DEFAULT\nenabled_backends = a\n");
    assert_eq!(
        e,
        "cinder.conf:1: expected a section header closed by `]`, found \"[DEFAULT\""
    );
}

#[test]
fn a_near_miss_of_a_service_or_lifecycle_option_in_default_is_a_typo_and_others_are_left_alone() {
    let e = error(
        "[DEFAULT]\nenabled_backends = a\nperodic_interval = 30\nauth_strategy = keystone\nstate_path = /var/lib/cinder\n[a]\nvolume_driver = fault\n",
    );
    assert_eq!(
        e,
        "cinder.conf: [DEFAULT] perodic_interval: \"30\": unknown option; did you mean `periodic_interval`?"
    );
    let e = error(
        "[DEFAULT]\nenabled_backends = a\nreinit_driver_cout = 5\n[a]\nvolume_driver = fault\n",
    );
    assert!(e.contains("did you mean `reinit_driver_count`?"), "{e}");
}

#[test]
fn a_byte_order_mark_is_not_a_syntax_error_and_a_missing_section_is_said_once() {
    Config::parse(
        "\u{feff}[DEFAULT]\nenabled_backends = a\n[a]\nvolume_driver = fault\n",
        "c",
    )
    .expect("valid");
    let all =
        Config::parse_all("[DEFAULT]\nenabled_backends = b\n", "cinder.conf").expect_err("invalid");
    assert_eq!(all.len(), 1, "{all:?}");
}

#[test]
fn syntax_errors_name_file_and_line_and_say_in_words_what_was_expected() {
    let text = "[DEFAULT]\nenabled_backends = a\nfoo\n[a]\nvolume_driver = fault\n= 3\n[]\n";
    assert_eq!(
        error(text),
        "cinder.conf:3: expected `option = value` or a `[section]` header, found \"foo\""
    );
    let all: Vec<String> = Config::parse_all(text, "cinder.conf")
        .expect_err("invalid")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        all,
        [
            "cinder.conf:3: expected `option = value` or a `[section]` header, found \"foo\"",
            "cinder.conf:6: expected an option name before `=`, found \"= 3\"",
            "cinder.conf:7: expected a section name between `[` and `]`, found \"[]\"",
        ]
    );
}

#[test]
fn durations_accept_seconds_and_humantime() {
    for (text, secs) in [("90", 90), ("90s", 90), ("2m", 120), ("1h 30m", 5400)] {
        let conf = format!(
            "[DEFAULT]\nenabled_backends = a\nperiodic_interval = {text}\n[a]\nvolume_driver = fault\n"
        );
        let c = Config::parse(&conf, "c").expect("valid");
        assert_eq!(c.periodic_interval, Duration::from_secs(secs), "{text}");
    }
}

#[test]
fn a_default_policy_change_marks_inheriting_backends_changed_only() {
    let before = "[DEFAULT]\nenabled_backends = a, b\n[a]\nvolume_driver = fault\n[b]\nvolume_driver = fault\nreinit_driver_count = 1\n";
    let after = "[DEFAULT]\nenabled_backends = a, b\nreinit_driver_count = 7\n[a]\nvolume_driver = fault\n[b]\nvolume_driver = fault\nreinit_driver_count = 1\n";
    let old = Config::parse(before, "c").expect("valid").plan();
    let new = Config::parse(after, "c").expect("valid").plan();
    let diff = old.diff(&new);
    assert_eq!(diff.changed, ["a"]);
    assert_eq!(diff.unchanged, ["b"]);
}

#[test]
fn the_embedded_default_config_is_valid() {
    let c = Config::parse(
        include_str!("../examples/cinder.conf"),
        "examples/cinder.conf",
    )
    .expect("valid");
    let names: Vec<&str> = c.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["healthy", "flaky", "broken"]);
    assert!(c.backup.is_some());
}

#[test]
fn a_missing_file_names_the_path() {
    let e = Config::load(std::path::Path::new("/nonexistent/cinder.conf")).expect_err("missing");
    assert!(
        e.to_string().starts_with("/nonexistent/cinder.conf: "),
        "{e}"
    );
}

#[test]
fn indented_and_semicolon_comments_are_ignored() {
    let text = "[DEFAULT]\nenabled_backends = a\n  # indented comment\n; semicolon comment\n[a]\nvolume_driver = fault\n    # another\nfault_op_delay = 1s\n";
    let c = Config::parse(text, "c").expect("valid");
    assert_eq!(
        c.backends[0]
            .options
            .get("fault_op_delay")
            .map(String::as_str),
        Some("1s")
    );
    assert!(c.backends[0].options.keys().all(|k| !k.starts_with('#')));
}

#[test]
fn a_duration_too_long_for_any_clock_is_refused_with_its_option_named() {
    // Found by the `config` fuzz target: a report interval near u64::MAX
    // seconds made the service-down-time rule overflow and panic.
    for (option, value) in [
        ("report_interval", "18446744073709551615"),
        ("periodic_interval", "500000000000y"),
        ("reinit_backoff_max", "11y"),
    ] {
        let text = format!(
            "[DEFAULT]\nenabled_backends = a\n{option} = {value}\n[a]\nvolume_driver = fault\n"
        );
        let e = error(&text);
        assert!(
            e.contains(option) && e.contains(value) && e.contains("10 years"),
            "{e}"
        );
    }
    // Ten years is still accepted, and the down-time rule stays exact.
    let c = Config::parse(
        "[DEFAULT]\nenabled_backends = a\nreport_interval = 3650d\nservice_down_time = 1s\n[a]\nvolume_driver = fault\n",
        "c",
    )
    .expect("ten years is the longest accepted");
    assert_eq!(
        c.service_down_time,
        Duration::from_secs(3650 * 86400 * 5 / 2)
    );
}

#[test]
fn reload_rollback_is_a_policy_option_in_default_and_per_backend() {
    let c = Config::parse(
        "[DEFAULT]\nenabled_backends = a, b\nreload_rollback = false\n[a]\nvolume_driver = fault\n[b]\nvolume_driver = fault\nreload_rollback = yes\n",
        "cinder.conf",
    )
    .expect("valid");
    assert!(!c.backends[0].policy.reload_rollback, "inherits [DEFAULT]");
    assert!(c.backends[1].policy.reload_rollback, "backend override");
    let d = Config::parse(
        "[DEFAULT]\nenabled_backends = a\n[a]\nvolume_driver = fault\n",
        "cinder.conf",
    )
    .expect("valid");
    assert!(d.backends[0].policy.reload_rollback, "on by default");
    let e = error(
        "[DEFAULT]\nenabled_backends = a\n[a]\nvolume_driver = fault\nreload_rollback = maybe\n",
    );
    assert_eq!(
        e,
        "cinder.conf: [a] reload_rollback: \"maybe\": expected true or false (also yes/no, on/off, 1/0)"
    );
}

#[test]
fn every_problem_is_said_once_and_nothing_bad_passes_silently() {
    let text = "[DEFAULT]\nenabled_backends = s, t\nhost =\nreinit_backoff_jitter = 1.5\nreinit_driver_count = lots\n[backend_defaults]\nreinit_driver_count = 1\n[s]\nvolume_driver = fault\n[t]\nvolume_driver = fault\nreinit_backoff_base = 2h\n";
    let registry = rekindle::driver::DriverRegistry::with_builtin();
    let problems: Vec<String> = rekindle::config::check(text, "c.conf", &registry)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "c.conf: [DEFAULT] host: must not be empty (leave it out to use this machine's hostname)",
            "c.conf: [DEFAULT] reinit_backoff_jitter: \"1.5\": expected a fraction between 0 and 1",
            "c.conf: [DEFAULT] reinit_driver_count: \"lots\": expected a whole number >= 0 (0 = unlimited)",
            "c.conf: [backend_defaults] reinit_driver_count: a lifecycle option is not read here: put it in [DEFAULT] (every backend) or in a backend's own section",
        ],
    );
    let base = rekindle::config::check(
        "[DEFAULT]\nenabled_backends = t\n[t]\nvolume_driver = fault\nreinit_backoff_base = 2h\n",
        "c.conf",
        &registry,
    );
    assert_eq!(
        base.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "c.conf: [t] reinit_backoff_max: \"5m\": must not be smaller than reinit_backoff_base (2h); set reinit_backoff_max at least that high (its default is 300s)"
        ]
    );
}

#[test]
fn a_database_url_of_another_dialect_or_with_parameters_rekindle_cannot_honour_is_refused() {
    let with = |url: &str| {
        format!(
            "[DEFAULT]\nenabled_backends = a\ncluster = c1\n[database]\nconnection = {url}\n[a]\nvolume_driver = fault\n"
        )
    };
    let e = error(&with("oracle://scott:tiger@db/orcl"));
    assert!(
        e.starts_with("cinder.conf: [database] connection: \"oracle://scott:***@db/orcl\": unsupported database dialect \"oracle\": rekindle speaks postgresql://, mysql+pymysql://"),
        "{e}"
    );
    let e = error(&with("sqlite:////var/lib/cinder/cinder.sqlite"));
    assert!(e.contains("remove [database] connection"), "{e}");
    for (url, feature) in [
        ("postgresql://rekindle@db:5432/cinder", "postgres"),
        (
            "mysql+pymysql://cinder:secret@db.example/cinder?charset=utf8",
            "mariadb",
        ),
    ] {
        match Config::parse(&with(url), "cinder.conf") {
            Ok(config) => assert_eq!(config.database.as_deref(), Some(url)),
            Err(e) => assert!(
                e.to_string()
                    .contains(&format!("Cargo feature `{feature}`")),
                "{url}: {e}"
            ),
        }
    }
    if cfg!(feature = "mariadb") {
        let e = error(&with(
            "mysql+pymysql://cinder:secret@db/cinder?ssl_ca=/etc/ca.pem",
        ));
        assert!(e.contains("ssl_ca: this rekindle has no TLS client"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
