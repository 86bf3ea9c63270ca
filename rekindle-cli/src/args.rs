//! The command line as clap parses it: `rekindle` and its subcommands, their options
//! and help texts; `main.rs` runs what they ask for.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// rekindle keeps storage drivers alive.
#[derive(Debug, Parser)]
#[command(name = "rekindle", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the volume/backup service daemon.
    Run {
        /// cinder.conf-style file (default: the embedded examples/cinder.conf).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Append notifications as JSON lines to this file.
        #[arg(long)]
        notifications: Option<PathBuf>,
        /// Serve the control socket (for `status` and `reload`) here.
        #[arg(long)]
        control: Option<PathBuf>,
        /// Serve /metrics, /healthz and /readyz on this address
        /// (`127.0.0.1:9437`); overrides `[DEFAULT] http_listen`.
        #[arg(long, value_name = "ADDRESS:PORT")]
        http_listen: Option<std::net::SocketAddr>,
    },
    /// Show services and backends of a running daemon.
    Status {
        /// The daemon's control socket.
        #[arg(long)]
        control: PathBuf,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Only this host's services (in a fleet, any host's).
        #[arg(long)]
        host: Option<String>,
        /// Only the services of this cluster's hosts (a fleet).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Ask a running daemon to reload its config file (like SIGHUP).
    ///
    /// Waits for the outcome and prints each backend's result. Exit status:
    /// 0 every backend ended as intended, 1 the file was rejected (or the
    /// daemon is shutting down), 3 a backend rolled back, failed, or its
    /// reload or removal was aborted.
    Reload {
        /// The daemon's control socket.
        #[arg(long)]
        control: PathBuf,
        /// Return once the reload started (or was queued or rejected)
        /// instead of waiting for its outcome.
        #[arg(long)]
        no_wait: bool,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Simulate the real actor system with seeded faults on virtual time.
    Sim {
        /// The seed (one run).
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// A range of seeds, `A..B` inclusive.
        #[arg(long)]
        seeds: Option<String>,
        /// Volume backends (plus one backup backend).
        #[arg(long, default_value_t = 20)]
        backends: usize,
        /// Virtual duration (`24h`, `90m`, seconds).
        #[arg(long, default_value = "24h")]
        duration: String,
        /// Fault profile: calm, default, chaos, backup-outage or hung-calls.
        #[arg(long, default_value = "default")]
        faults: String,
        /// Draw the state timeline as SVG (one seed).
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Run each seed twice and fail if the traces differ.
        #[arg(long)]
        check_determinism: bool,
        /// Only run these script entries (`3,7,12`), as printed by a failure's replay line.
        #[arg(long)]
        keep_events: Option<String>,
        /// Plant a known bug (hung setups are never abandoned): the simulator must catch it.
        #[arg(long)]
        plant_bug: bool,
        /// Seeds run at once (default: one per core); the output is the same
        /// for any number.
        #[arg(long, short = 'j', default_value_t = 0, hide_default_value = true)]
        jobs: usize,
    },
    /// Explore every reachable state of the real transition function.
    ///
    /// With --config, once per distinct lifecycle policy of a config file
    /// (time abstracted: backends whose policies differ only in positive
    /// timeouts share one search); exit 0 no violation, 1 a violation,
    /// 2 the file is unreadable or invalid.
    Check {
        /// `reinit_driver_count` of every backend.
        #[arg(long, default_value_t = 2)]
        max_attempts: u32,
        /// Check the policies this cinder.conf-style file gives its
        /// backends, as `run` reads it (the file sets the budget).
        #[arg(long, conflicts_with = "max_attempts")]
        config: Option<PathBuf>,
        /// Operations in flight per backend at most.
        #[arg(long, default_value_t = 1)]
        max_inflight: u32,
        /// Identical backends (symmetry-reduced; composed from one backend's
        /// search unless --product).
        #[arg(long, default_value_t = 1)]
        backends: usize,
        /// With several backends, search every interleaving of their events
        /// instead of composing one backend's search (the same verdict,
        /// states and depth; for checking the composition itself).
        #[arg(long)]
        product: bool,
        /// Memory budget of the search (`2G`, `512M`, bytes; 0 = none): a
        /// search that would grow past it stops and says so. Default: half
        /// of this machine's memory.
        #[arg(long, value_parser = parse_memory)]
        max_memory: Option<u64>,
        /// Depth-first with state fingerprints (bounded memory, not shortest).
        #[arg(long)]
        dfs: bool,
        /// Plant a known bug (timed-out setups are not abandoned): the checker must find it.
        #[arg(long)]
        plant_bug: bool,
        /// Stop after this many states.
        #[arg(long, default_value_t = 20_000_000)]
        max_states: usize,
    },
    /// The spin model generated from the code.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Volume operations on a running daemon.
    Volume {
        /// The daemon's control socket.
        #[arg(long, global = true, default_value = "/run/rekindle/control.sock")]
        control: PathBuf,
        #[command(subcommand)]
        action: VolumeAction,
    },
    /// Backup operations on a running daemon.
    Backup {
        /// The daemon's control socket.
        #[arg(long, global = true, default_value = "/run/rekindle/control.sock")]
        control: PathBuf,
        #[command(subcommand)]
        action: BackupAction,
    },
    /// Play a scripted lifecycle on virtual time (the core alone).
    Demo,
    /// Work with config files offline.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Many hosts on one database (`[database] connection`, PostgreSQL or MariaDB): rolling reloads.
    #[cfg(feature = "fleet")]
    Fleet {
        #[command(subcommand)]
        action: FleetAction,
    },
}

#[cfg(feature = "fleet")]
#[derive(Debug, Subcommand)]
pub(crate) enum FleetAction {
    /// Ask each live host, one batch at a time, to reload its own file;
    /// move on once a host reloaded as intended and its backends stayed
    /// Ready for --min-ready. Exit status: 0 finished, 1 halted (a host's
    /// reload did not end as intended) or refused, 2 bad usage.
    Reload {
        /// A cinder.conf-style file with `[database] connection`.
        #[arg(long)]
        config: PathBuf,
        /// Only the hosts of this cluster.
        #[arg(long, conflicts_with = "resume")]
        cluster: Option<String>,
        /// Hosts of one cluster reloading (not yet Ready) at once, at most.
        #[arg(long, default_value_t = 1, conflicts_with = "resume")]
        max_unavailable: u32,
        /// How long a reloaded host's backends must stay Ready (`10s`, `1m`).
        #[arg(long, default_value = "10s", conflicts_with = "resume")]
        min_ready: String,
        /// Continue rollout ID, whose command was killed (hosts done are not asked again).
        #[arg(long, value_name = "ID")]
        resume: Option<i64>,
        /// Halt (exit 1, naming the host) when no host moved on for this long (`10m`, `90s`).
        #[arg(long, default_value = "10m")]
        progress_deadline: String,
    },
    /// The rollouts, latest first.
    Status {
        /// A cinder.conf-style file with `[database] connection`.
        #[arg(long)]
        config: PathBuf,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Give up a running rollout: hosts keep the config they have; its
    /// requests no host claimed yet are cancelled.
    Abandon {
        /// The rollout's id.
        id: i64,
        /// A cinder.conf-style file with `[database] connection`.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
    /// Check a config file as `run` and a reload would, with the built-in
    /// drivers: prints every problem, one a line, and exits 1 if there is
    /// any, 0 if the file is clean.
    Check {
        /// The cinder.conf-style file.
        file: PathBuf,
    },
}

/// `rekindle model export --format`: the core's [`rekindle::check::diagram::Format`]
/// as the command line spells it (the core has no argument parser).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// The Promela transition table spin checks (`model/lifecycle_table.pml`).
    Promela,
    /// A Mermaid `stateDiagram-v2` (GitHub renders it in Markdown).
    Mermaid,
    /// A Graphviz digraph (`dot -Tsvg`).
    Dot,
}

impl From<ExportFormat> for rekindle::check::diagram::Format {
    fn from(format: ExportFormat) -> Self {
        match format {
            ExportFormat::Promela => Self::Promela,
            ExportFormat::Mermaid => Self::Mermaid,
            ExportFormat::Dot => Self::Dot,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelAction {
    /// Print the lifecycle from the real `step`: the Promela transition
    /// table (model/lifecycle_table.pml), or a picture of it.
    Export {
        /// What to print: `promela` (spin's table), `mermaid` (the README's
        /// state diagram) or `dot` (Graphviz).
        #[arg(long, value_enum, default_value = "promela")]
        format: ExportFormat,
        /// Plant the known bug in the exported table (Promela only).
        #[arg(long)]
        plant_bug: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum VolumeAction {
    /// Create a volume.
    Create {
        /// Size: `1G`, `512M` or bytes.
        #[arg(long)]
        size: String,
        /// The volume backend.
        #[arg(long)]
        backend: String,
    },
    /// Grow a volume (qemu-img resize).
    Extend {
        /// The volume id.
        id: String,
        /// The new size: `2G`, `1536M` or bytes.
        #[arg(long)]
        size: String,
    },
    /// Delete a volume.
    Delete {
        /// The volume id.
        id: String,
    },
    /// Set a volume record's status by hand, as Cinder's `reset-state`
    /// (available, in-use, error, error_restoring); nothing is called on a
    /// driver, but with `--force` every host is detached first.
    ResetState {
        /// The volume id.
        id: String,
        /// The new status.
        #[arg(long)]
        state: String,
        /// Detach every host and remove the volume's export first (Cinder's
        /// force-detach); without it a volume with a live export or
        /// attachment is refused (unless the new status is `in-use`).
        #[arg(long)]
        force: bool,
    },
    /// Export a volume to a host (create_export + initialize_connection) and
    /// print the connection info.
    Attach {
        /// The volume id.
        id: String,
        /// The host's connector properties (JSON file).
        #[arg(long)]
        connector: PathBuf,
    },
    /// Detach a host from a volume (terminate_connection); the export is
    /// removed with the last host. With several hosts attached, name one
    /// with --connector or give --all.
    Detach {
        /// The volume id.
        id: String,
        /// The detaching host's connector properties (JSON file; its `host` names the attachment).
        #[arg(long, conflicts_with = "all")]
        connector: Option<PathBuf>,
        /// Detach every attached host.
        #[arg(long)]
        all: bool,
    },
    /// List volumes as a table (ID, Status, Size, Backend, Attached to,
    /// Updated), like `cinder list`.
    List {
        /// Print a JSON array of rows for scripts (`id`, `status`,
        /// `size_bytes`, `backend`, `attached_to`, `updated_at`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BackupAction {
    /// Back a volume up.
    Create {
        /// The volume id.
        volume: String,
        /// Show progress until the backup ends (a bar on a terminal, plain
        /// lines otherwise); exit 0 once available, 1 on error.
        #[arg(long)]
        wait: bool,
    },
    /// Restore a backup into an existing volume.
    Restore {
        /// The backup id.
        backup: String,
        /// The target volume id.
        volume: String,
        /// Show progress until the restore ends (a bar on a terminal, plain
        /// lines otherwise); exit 0 once restored, 1 on error.
        #[arg(long)]
        wait: bool,
    },
    /// Show a backup's record, with its progress while a backup or restore
    /// of it runs.
    Show {
        /// The backup id.
        id: String,
    },
    /// Delete a backup.
    Delete {
        /// The backup id.
        id: String,
    },
    /// Set a backup record's status by hand, as Cinder's
    /// `backup-reset-state` (available, error); nothing is called on a driver.
    ResetState {
        /// The backup id.
        id: String,
        /// The new status.
        #[arg(long)]
        state: String,
    },
    /// List backups as a table (ID, Status, Size, Volume, Updated), like
    /// `cinder backup-list`.
    List {
        /// Print a JSON array of rows for scripts (`id`, `status`,
        /// `size_bytes`, `volume_id`, `updated_at`).
        #[arg(long)]
        json: bool,
    },
}

/// `--max-memory`: a size (`2G`, `512M`, bytes).
pub(crate) fn parse_memory(text: &str) -> Result<u64, String> {
    rekindle::driver::options::parse_size(text).ok_or_else(|| {
        format!("{text:?} is not a size: write bytes, or a number with K, M, G or T (2G)")
    })
}
