//! Signals at any instant of the real binary's life: SIGHUP and SIGTERM sent 0..30 ms
//! after its first instruction never kill it; a SIGHUP during start-up becomes one
//! reload, a SIGTERM a graceful shutdown (exit 0).
//!
//! "Its first instruction": no process can handle a signal while the kernel and the
//! dynamic loader are still starting it (there the default action applies, whatever
//! the program does), so each delay is counted from the moment the binary's own ELF
//! constructor has blocked the control signals (seen in `/proc/PID/status`). On this
//! machine that moment comes 0.1 to 2 ms after `spawn` returns; the daemon before this
//! fix installed its handlers only after reading its config and starting its actors,
//! and died to a SIGHUP up to about 5 ms after spawn (measured by hand).

#[path = "common/daemon.rs"]
mod daemon;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{BIN, scratch};

const CONFIG: &str = "[DEFAULT]\nenabled_backends = a\nhost = test\n[a]\nvolume_driver = fault\n";

fn spawn(dir: &Path) -> Child {
    Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(dir.join("cinder.conf"))
        .arg("--notifications")
        .arg(dir.join("notifications.jsonl"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts")
}

/// Waits (spinning) until the child runs its own code: its ELF constructor
/// has blocked the control signals (`SigBlk`), or their handlers are already
/// installed (`SigCgt`, if the spin missed the blocked moment).
fn wait_first_instruction(child: &Child) {
    let path = format!("/proc/{}/status", child.id());
    let mask =
        (1u64 << (libc::SIGHUP - 1)) | (1 << (libc::SIGINT - 1)) | (1 << (libc::SIGTERM - 1));
    let field = |status: &str, name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = std::fs::read_to_string(&path).unwrap_or_default();
        if field(&status, "SigBlk:") & mask == mask || field(&status, "SigCgt:") & mask == mask {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never started running"
        );
        std::hint::spin_loop();
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) with our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
}

fn count(dir: &Path, event_type: &str) -> usize {
    std::fs::read_to_string(dir.join("notifications.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("\"event_type\":\"{event_type}\"")))
        .count()
}

/// Waits for the child to exit within 20 s and returns its status.
fn exit_of(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sighup_at_any_instant_of_start_up_is_one_reload_never_a_death() {
    let dir = scratch("sighup-early");
    std::fs::write(dir.join("cinder.conf"), CONFIG).expect("config");
    for round in 0..2 {
        for delay_ms in 0..=30u64 {
            let _ = std::fs::remove_file(dir.join("notifications.jsonl"));
            let mut child = spawn(&dir);
            wait_first_instruction(&child);
            std::thread::sleep(Duration::from_millis(delay_ms));
            signal(&child, libc::SIGHUP);
            // The SIGHUP is kept and applied as one reload once the service runs.
            let deadline = Instant::now() + Duration::from_secs(20);
            while count(&dir, "reload.end") == 0 {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    panic!(
                        "round {round}: SIGHUP {delay_ms} ms after spawn ended the daemon: {status:?}"
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: SIGHUP {delay_ms} ms after spawn: no reload within 20 s"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            signal(&child, libc::SIGTERM);
            let status = exit_of(&mut child);
            assert_eq!(
                status.code(),
                Some(0),
                "round {round}, SIGHUP at {delay_ms} ms: {status:?}"
            );
            assert_eq!(count(&dir, "reload.start"), 1, "exactly one reload");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_or_sigint_during_start_up_is_a_graceful_exit_0() {
    let dir = scratch("sigterm-early");
    std::fs::write(dir.join("cinder.conf"), CONFIG).expect("config");
    for delay_ms in 0..=30u64 {
        for sig in [libc::SIGTERM, libc::SIGINT] {
            let mut child = spawn(&dir);
            wait_first_instruction(&child);
            std::thread::sleep(Duration::from_millis(delay_ms));
            signal(&child, sig);
            let status = exit_of(&mut child);
            assert_eq!(
                status.code(),
                Some(0),
                "signal {sig} {delay_ms} ms after spawn: {status:?}"
            );
        }
    }
    // A burst of every signal, many times, right after spawn.
    let mut child = spawn(&dir);
    wait_first_instruction(&child);
    for _ in 0..20 {
        signal(&child, libc::SIGHUP);
    }
    signal(&child, libc::SIGTERM);
    signal(&child, libc::SIGHUP);
    signal(&child, libc::SIGINT);
    let status = exit_of(&mut child);
    assert_eq!(status.code(), Some(0), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn signals_while_the_config_is_still_being_read_are_kept() {
    // The config is a FIFO: the daemon blocks reading it, so the signals
    // below arrive, deterministically, before the config is loaded.
    let dir = scratch("sighup-config-read");
    let fifo = dir.join("cinder.conf");
    let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let mut child = spawn(&dir);
    // Wait until it blocks opening the FIFO (its wait channel, the kernel's
    // fifo open, says so).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{}/wchan", child.id()))
        .unwrap_or_default()
        .contains("wait_for_partner")
    {
        assert!(
            Instant::now() < deadline,
            "the daemon never opened its config"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(&child, libc::SIGHUP);
    signal(&child, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "a SIGHUP while the config was read ended the daemon"
    );
    // Fed twice: once for start-up, then (once the service runs) for the
    // reload the SIGHUPs asked for.
    std::fs::write(&fifo, CONFIG).expect("feed the config");
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&dir, "driver.init.start") == 0 {
        assert!(Instant::now() < deadline, "the service never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let feeder = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(&fifo, CONFIG).expect("feed the reload"))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&dir, "reload.end") == 0 {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the daemon ended"
        );
        assert!(Instant::now() < deadline, "no reload within 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    feeder.join().expect("feeder");
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_of(&mut child).code(), Some(0));
    // Two SIGHUPs while starting: one reload once the service runs.
    assert_eq!(count(&dir, "reload.start"), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
