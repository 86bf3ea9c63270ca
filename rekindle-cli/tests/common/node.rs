//! A daemon of the real binary with a `qemu` backend and a `posix` backup store in a
//! private directory, driven through its control socket (shared by the end-to-end tests).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn require_qemu() {
    for tool in ["qemu-img", "qemu-nbd", "qemu-io"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            found.is_ok_and(|s| s.success()),
            "`{tool}` is missing: install the Debian package qemu-utils (./scripts/test does it)"
        );
    }
}

pub struct Node {
    pub dir: PathBuf,
    pub daemon: Option<Child>,
    pub ports: (u16, u16),
}

impl Node {
    pub fn new(name: &str, ports: (u16, u16), backup_store: bool, extra: &str) -> Node {
        let mut node = Node::prepare(name, ports, backup_store, extra);
        node.start();
        node
    }

    /// As [`Node::new`], without starting the daemon (a test changes its
    /// directory first, then calls [`Node::start`]).
    pub fn prepare(name: &str, ports: (u16, u16), backup_store: bool, extra: &str) -> Node {
        require_qemu();
        let dir = std::env::temp_dir().join(format!("rekindle-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("volumes")).expect("volumes dir");
        if backup_store {
            std::fs::create_dir_all(dir.join("backups")).expect("backups dir");
        }
        let conf = format!(
            "[DEFAULT]\nenabled_backends = qemu-1\nhost = e2e\nstate_dir = {d}/state\nbackup_driver = posix\n\
             backup_posix_path = {d}/backups\nbackup_file_size = 1M\nbackup_periodic_initialization = true\n\
             periodic_interval = 2s\nreport_interval = 1s\n{extra}\n[qemu-1]\nvolume_driver = qemu\n\
             volumes_dir = {d}/volumes\nexport_port_range = {}-{}\n",
            ports.0,
            ports.1,
            d = dir.display()
        );
        std::fs::write(dir.join("cinder.conf"), conf).expect("config");
        std::fs::write(
            dir.join("connector.json"),
            r#"{"host": "compute-1", "ip": "127.0.0.1"}"#,
        )
        .expect("connector");
        Node {
            dir,
            daemon: None,
            ports,
        }
    }

    pub fn start(&mut self) {
        let child = crate::daemon::run_command(
            &self.dir.join("cinder.conf"),
            &self.dir.join("control.sock"),
            &self.dir.join("notifications.jsonl"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
        self.daemon = Some(child);
        self.wait("the qemu backend to be ready", |n| {
            n.backend_state("qemu-1") == "ready"
        });
    }

    /// `rekindle ARGS` against this node's daemon, run to its end.
    pub fn cli(&self, args: &[&str]) -> Output {
        crate::daemon::cli_at(&self.dir.join("control.sock"), args)
    }

    /// [`Node::cli`] that must succeed, its stdout parsed as JSON.
    pub fn ok(&self, args: &[&str]) -> serde_json::Value {
        crate::daemon::ok_at(&self.dir.join("control.sock"), args)
    }

    /// `rekindle volume ACTION ID --connector FILE`: attach or detach the
    /// host that the connector in `file` names.
    pub fn with_connector(&self, action: &str, id: &str, file: &std::path::Path) -> Output {
        self.cli(&[
            "volume",
            action,
            id,
            "--connector",
            file.to_str().expect("utf-8"),
        ])
    }

    /// [`Node::with_connector`] that must succeed, its answer parsed.
    pub fn ok_with_connector(
        &self,
        action: &str,
        id: &str,
        file: &std::path::Path,
    ) -> serde_json::Value {
        self.ok(&[
            "volume",
            action,
            id,
            "--connector",
            file.to_str().expect("utf-8"),
        ])
    }

    pub fn status(&self) -> serde_json::Value {
        self.ok(&["status", "--json"])
    }

    pub fn backend_state(&self, name: &str) -> String {
        let out = self.cli(&["status", "--json"]);
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return String::new();
        };
        v["backends"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == name))
            .and_then(|b| b["state"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    pub fn wait(&self, what: &str, done: impl Fn(&Node) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if done(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}");
    }

    pub fn create(&self, size: &str) -> String {
        self.ok(&["volume", "create", "--size", size, "--backend", "qemu-1"])["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    pub fn attach(&self, id: &str) -> String {
        let connector = self.dir.join("connector.json");
        let info = self.ok_with_connector("attach", id, &connector);
        assert_eq!(info["driver_volume_type"], "nbd");
        let port = info["data"]["port"].as_u64().expect("port");
        assert!((self.ports.0..=self.ports.1).contains(&(port as u16)));
        format!(
            "nbd://{}:{port}/{}",
            info["data"]["host"].as_str().expect("host"),
            info["data"]["export_name"].as_str().expect("name")
        )
    }

    pub fn qemu_io(&self, url: &str, command: &str) -> String {
        let out = Command::new("qemu-io")
            .args(["-f", "raw", url, "-c", command])
            .output()
            .expect("qemu-io runs");
        let text = crate::daemon::output_text(&out);
        assert!(
            out.status.success() && !text.contains("fail"),
            "qemu-io {command}: {text}"
        );
        text
    }

    pub fn notifications(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("notifications.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().expect("running").id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Exports outlive the daemon by design; a test cleans its own up.
        let _ = Command::new("pkill")
            .args(["-f", &format!("qemu-nbd.*{}", self.dir.display())])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
