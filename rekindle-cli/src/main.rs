//! The `rekindle` binary: a thin command-line shell over the library.
//! Parses arguments, calls library functions, maps errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

mod control;
mod daemon;
mod demo;
mod exit;
#[cfg(feature = "fleet")]
mod fleet_command;
mod wait;

use crate::control::{Request, Response};
use crate::daemon::{ConfigSource, RunOptions};
use crate::exit::Exit;
use clap::{Parser, Subcommand};

/// rekindle keeps storage drivers alive.
#[derive(Debug, Parser)]
#[command(name = "rekindle", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
enum FleetAction {
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

/// Runs a fleet command; errors print as `rekindle: ...` with their exit status.
#[cfg(feature = "fleet")]
fn fleet(action: FleetAction) -> ExitCode {
    use crate::fleet_command as command;
    let result = rekindle::runtime::run_real(async move {
        match action {
            FleetAction::Reload {
                config,
                cluster,
                max_unavailable,
                min_ready,
                resume,
                progress_deadline,
            } => {
                command::reload(command::ReloadArgs {
                    config,
                    cluster,
                    max_unavailable,
                    min_ready,
                    resume,
                    progress_deadline,
                })
                .await
            }
            FleetAction::Status { config, json } => command::status(&config, json).await,
            FleetAction::Abandon { id, config } => command::abandon(&config, id).await,
        }
    });
    match result {
        Ok(Ok(exit)) => exit.into(),
        Ok(Err(error)) => {
            eprintln!("rekindle: {error}");
            error.exit().into()
        }
        Err(error) => fail(&error),
    }
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
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
enum ExportFormat {
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
enum ModelAction {
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
enum VolumeAction {
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
enum BackupAction {
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

fn volume_request(action: VolumeAction) -> Result<Request, String> {
    Ok(match action {
        VolumeAction::Create { size, backend } => Request::VolumeCreate { size, backend },
        VolumeAction::Extend { id, size } => Request::VolumeExtend { id, size },
        VolumeAction::Delete { id } => Request::VolumeDelete { id },
        VolumeAction::ResetState { id, state, force } => {
            Request::VolumeResetState { id, state, force }
        }
        VolumeAction::Attach { id, connector } => Request::VolumeAttach {
            id,
            connector: Box::new(read_connector(&connector)?),
        },
        VolumeAction::Detach { id, connector, all } => Request::VolumeDetach {
            id,
            connector: connector
                .map(|path| read_connector(&path).map(Box::new))
                .transpose()?,
            all,
        },
        VolumeAction::List { .. } => Request::VolumeList,
    })
}

/// Reads a `--connector` JSON file; errors name the file.
fn read_connector(path: &std::path::Path) -> Result<rekindle::driver::Connector, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--connector {}: {e}", path.display()))?;
    rekindle::driver::Connector::from_json(&text)
        .map_err(|e| format!("--connector {}: {e}", path.display()))
}

fn backup_request(action: BackupAction) -> Request {
    match action {
        BackupAction::Create { volume, wait } => Request::BackupCreate {
            volume,
            background: wait,
        },
        BackupAction::Restore {
            backup,
            volume,
            wait,
        } => Request::BackupRestore {
            backup,
            volume,
            background: wait,
        },
        BackupAction::Show { id } => Request::BackupShow { id },
        BackupAction::Delete { id } => Request::BackupDelete { id },
        BackupAction::ResetState { id, state } => Request::BackupResetState { id, state },
        BackupAction::List { .. } => Request::BackupList,
    }
}

/// Prints a list as a table, or as its JSON array of rows (`json`).
fn list<T: serde::de::DeserializeOwned + serde::Serialize>(
    control: &std::path::Path,
    request: Request,
    json: bool,
    table: fn(&[T]) -> String,
) -> ExitCode {
    let value = match control::request(control, &request) {
        Ok(Response::Done { value }) => value,
        Ok(Response::Error { message }) => return fail(&message),
        Ok(other) => return fail(&format!("unexpected answer: {other:?}")),
        Err(error) => return fail(&error),
    };
    let rows: Vec<T> = match serde_json::from_value(value) {
        Ok(rows) => rows,
        Err(error) => return fail(&format!("unexpected list from the daemon: {error}")),
    };
    if json {
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => println!("{text}"),
            Err(error) => return fail(&error),
        }
    } else {
        print!("{}", table(&rows));
    }
    Exit::Ok.into()
}

/// `backup create --wait` / `backup restore --wait`: starts the operation
/// in the daemon, then follows it until it ends.
fn wait_for(control: &std::path::Path, request: Request) -> ExitCode {
    let work = match request {
        Request::BackupRestore { .. } => rekindle::progress::BackupWork::Restore,
        _ => rekindle::progress::BackupWork::Create,
    };
    let accepted = match control::request(control, &request) {
        Ok(Response::Done { value }) => value,
        Ok(Response::Error { message }) => return fail(&message),
        Ok(other) => return fail(&format!("unexpected answer: {other:?}")),
        Err(error) => return fail(&error),
    };
    let id = accepted["id"]
        .as_str()
        .or_else(|| accepted["backup_id"].as_str())
        .unwrap_or_default()
        .to_string();
    let volume = accepted["volume_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let display = crate::wait::Display::for_stdout();
    match crate::wait::follow(control, &id, &volume, work, display, &mut std::io::stdout()) {
        Ok(()) => Exit::Ok.into(),
        Err(error) => fail(&error),
    }
}

/// Prints `rekindle: <error>` and returns a failure exit code.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("rekindle: {error}");
    Exit::Failed.into()
}

/// Sends a user operation and prints its JSON result.
fn operate(control: &std::path::Path, request: Result<Request, String>) -> ExitCode {
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            eprintln!("rekindle: {error}");
            return Exit::Usage.into();
        }
    };
    match control::request(control, &request) {
        Ok(Response::Done { value }) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            Exit::Ok.into()
        }
        Ok(Response::Error { message }) => fail(&message),
        Ok(other) => fail(&format!("unexpected answer: {other:?}")),
        Err(error) => fail(&error),
    }
}

/// `--max-memory`: a size (`2G`, `512M`, bytes).
fn parse_memory(text: &str) -> Result<u64, String> {
    rekindle::driver::options::parse_size(text).ok_or_else(|| {
        format!("{text:?} is not a size: write bytes, or a number with K, M, G or T (2G)")
    })
}

/// Half of the memory this machine has (`MemTotal` of /proc/meminfo); 4 GB
/// where that cannot be read.
fn half_of_this_machine() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024 / 2)
        })
        .unwrap_or(4_000_000_000)
}

/// `rekindle check --config FILE`: the report on stdout; exit 0 no
/// violation, 1 a violation, 2 the file's problems (one a line, as
/// `config check` prints them) on stderr.
fn check_config(file: &std::path::Path, options: &rekindle::check::CheckOptions) -> ExitCode {
    use std::io::Write;
    match rekindle::check::config_file::check_file(file, options) {
        Ok(result) => {
            // Written, not print!: a closed pipe must not become a panic.
            let _ = write!(std::io::stdout().lock(), "{}", result.render());
            if result.passed() {
                Exit::Ok
            } else {
                Exit::Failed
            }
            .into()
        }
        Err(error) => {
            eprintln!("{error}");
            eprintln!("rekindle check: {}: not checked", file.display());
            Exit::Usage.into()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn sim_args(
    seed: Option<u64>,
    seeds: Option<String>,
    backends: usize,
    duration: &str,
    faults: &str,
    svg: Option<PathBuf>,
    check_determinism: bool,
    keep_events: Option<String>,
    plant_bug: bool,
) -> Result<rekindle::sim::cli::SimArgs, String> {
    let seeds = match (seed, seeds) {
        (Some(seed), _) => seed..=seed,
        (None, Some(text)) => rekindle::sim::cli::parse_seeds(&text)?,
        (None, None) => 1..=1,
    };
    let duration =
        rekindle::lifecycle::parse_duration("--duration", duration).map_err(|e| e.to_string())?;
    let profile = faults
        .parse()
        .map_err(|e: String| format!("--faults: {e}"))?;
    let keep_events = keep_events
        .map(|list| {
            list.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("--keep-events: `{s}` is not an index"))
                })
                .collect::<Result<_, _>>()
        })
        .transpose()?;
    if svg.is_some() && seeds.start() != seeds.end() {
        return Err("--svg draws one run: use it with --seed".to_string());
    }
    Ok(rekindle::sim::cli::SimArgs {
        seeds,
        backends,
        duration,
        profile,
        svg,
        check_determinism,
        keep_events,
        plant_bug,
        jobs: 0,
    })
}

/// Blocks the control signals before `main`, as soon as the loader hands
/// over (an ELF constructor): a SIGHUP or SIGTERM sent while the daemon
/// starts stays pending until its handler is installed instead of killing
/// the process. `main` releases them at once for commands other than `run`.
extern "C" fn hold_control_signals_at_load() {
    rekindle::actors::signal::hold_control_signals();
}

// ELF only; elsewhere `main` blocks them first thing.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static HOLD_CONTROL_SIGNALS: extern "C" fn() = hold_control_signals_at_load;

fn main() -> ExitCode {
    #[cfg(not(target_os = "linux"))]
    hold_control_signals_at_load();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // Other commands keep the default actions (Ctrl-C stops them).
        rekindle::actors::signal::release_control_signals();
    }
    init_logging(&cli.command);
    run(cli.command)
}

/// The daemon logs its lifecycle; other commands print results and only log
/// warnings; a simulation reports everything it finds in its own output
/// (RUST_LOG overrides all three).
fn init_logging(command: &Command) {
    let default_level = match command {
        Command::Run { .. } => "info",
        Command::Sim { .. } => "off",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour escapes only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
}

/// Runs one command; its exit status.
fn run(command: Command) -> ExitCode {
    match command {
        Command::Run {
            config,
            notifications,
            control,
            http_listen,
        } => run_daemon(RunOptions {
            config: config.map_or(ConfigSource::Embedded, ConfigSource::File),
            notifications,
            control,
            http_listen,
        }),
        Command::Status {
            control,
            json,
            host,
            cluster,
        } => status(&control, json, host.as_deref(), cluster.as_deref()),
        Command::Reload {
            control,
            no_wait,
            json,
        } => reload(&control, !no_wait, json),
        Command::Sim {
            seed,
            seeds,
            backends,
            duration,
            faults,
            svg,
            check_determinism,
            keep_events,
            plant_bug,
            jobs,
        } => sim(sim_args(
            seed,
            seeds,
            backends,
            &duration,
            &faults,
            svg,
            check_determinism,
            keep_events,
            plant_bug,
        )
        .map(|args| rekindle::sim::cli::SimArgs { jobs, ..args })),
        Command::Check {
            max_attempts,
            config,
            max_inflight,
            backends,
            dfs,
            plant_bug,
            max_states,
            product,
            max_memory,
        } => check(
            config,
            rekindle::check::CheckOptions {
                max_attempts,
                policy: None,
                max_inflight,
                backends,
                dfs,
                plant_bug,
                max_states,
                product,
                max_memory: max_memory.unwrap_or_else(half_of_this_machine),
            },
        ),
        Command::Model {
            action: ModelAction::Export { format, plant_bug },
        } => model_export(format.into(), plant_bug),
        Command::Volume {
            control,
            action: VolumeAction::List { json },
        } => list(
            &control,
            Request::VolumeList,
            json,
            rekindle::listing::render_volumes,
        ),
        Command::Volume { control, action } => operate(&control, volume_request(action)),
        Command::Backup {
            control,
            action: BackupAction::List { json },
        } => list(
            &control,
            Request::BackupList,
            json,
            rekindle::listing::render_backups,
        ),
        Command::Backup {
            control,
            action:
                action @ (BackupAction::Create { wait: true, .. }
                | BackupAction::Restore { wait: true, .. }),
        } => wait_for(&control, backup_request(action)),
        Command::Backup { control, action } => operate(&control, Ok(backup_request(action))),
        Command::Demo => {
            print!("{}", crate::demo::scripted_lifecycle());
            Exit::Ok.into()
        }
        Command::Config {
            action: ConfigAction::Check { file },
        } => config_check(&file),
        #[cfg(feature = "fleet")]
        Command::Fleet { action } => fleet(action),
    }
}

/// `rekindle run`: the daemon, until a signal stops it.
fn run_daemon(options: RunOptions) -> ExitCode {
    match daemon::run(options) {
        Ok(()) => Exit::Ok.into(),
        Err(error) => fail(&error),
    }
}

/// `rekindle status`: the report (only `host` / `cluster`'s services if
/// given), as a table or JSON.
fn status(
    control: &std::path::Path,
    json: bool,
    host: Option<&str>,
    cluster: Option<&str>,
) -> ExitCode {
    match control::request(control, &Request::Status) {
        Ok(Response::Status(mut report)) => {
            control::filter_services(&mut report, host, cluster);
            if !json {
                print!("{}", control::render_status(&report));
                return Exit::Ok.into();
            }
            match serde_json::to_string_pretty(&report) {
                Ok(text) => {
                    println!("{text}");
                    Exit::Ok.into()
                }
                Err(error) => fail(&error),
            }
        }
        Ok(other) => fail(&format!("unexpected answer: {other:?}")),
        Err(error) => fail(&error),
    }
}

/// `rekindle reload`: the outcome (waited for unless `--no-wait`); exit by
/// [`control::reload_exit`].
fn reload(control: &std::path::Path, wait: bool, json: bool) -> ExitCode {
    match control::request(control, &Request::Reload { wait }) {
        Ok(Response::Reload { outcome }) => {
            if json {
                println!("{outcome}");
            } else {
                print!("{}", control::render_reload(&outcome));
            }
            control::reload_exit(&outcome).into()
        }
        Ok(other) => fail(&format!("unexpected answer: {other:?}")),
        Err(error) => fail(&error),
    }
}

/// `rekindle sim`: the summary; exit 1 if a seed broke an invariant, 2 for
/// bad arguments.
fn sim(args: Result<rekindle::sim::cli::SimArgs, String>) -> ExitCode {
    let args = match args {
        Ok(args) => args,
        Err(error) => {
            eprintln!("rekindle sim: {error}");
            return Exit::Usage.into();
        }
    };
    rekindle::sim::quiet_injected_panics();
    match rekindle::sim::cli::run(&args) {
        Ok((text, passed)) => {
            print!("{text}");
            if passed { Exit::Ok } else { Exit::Failed }.into()
        }
        Err(error) => {
            eprintln!("rekindle sim: {error}");
            Exit::Failed.into()
        }
    }
}

/// `rekindle check`: the report; exit 1 on a violation, 2 for bad
/// arguments. With `--config`, the file's policies instead of
/// `--max-attempts` (see [`check_config`]).
fn check(config: Option<PathBuf>, options: rekindle::check::CheckOptions) -> ExitCode {
    if let Some(file) = config {
        let defaults = rekindle::check::CheckOptions::default();
        return check_config(
            &file,
            &rekindle::check::CheckOptions {
                max_attempts: defaults.max_attempts,
                policy: defaults.policy,
                ..options
            },
        );
    }
    if options.max_attempts == 0 {
        eprintln!("rekindle check: --max-attempts must be at least 1 (0 = unlimited has no bound)");
        return Exit::Usage.into();
    }
    let report = rekindle::check::check_with_progress(&options, &mut |progress| {
        eprintln!("{}", progress.render());
    });
    print!("{}", report.render());
    if report.violation.is_some() {
        Exit::Failed
    } else {
        Exit::Ok
    }
    .into()
}

/// `rekindle model export`: spin's table, or a picture of it.
fn model_export(format: rekindle::check::diagram::Format, plant_bug: bool) -> ExitCode {
    use rekindle::check::diagram::{Format, diagram};
    match format {
        Format::Promela => print!("{}", rekindle::check::export::promela_table(plant_bug)),
        _ if plant_bug => {
            eprintln!(
                "rekindle model export: --plant-bug changes spin's table only: use it with --format promela"
            );
            return Exit::Usage.into();
        }
        picture => print!("{}", diagram(picture)),
    }
    Exit::Ok.into()
}

/// `rekindle config check FILE`: every problem, one a line; exit 1 if any.
fn config_check(file: &std::path::Path) -> ExitCode {
    use std::io::Write;
    let registry = rekindle::driver::DriverRegistry::with_builtin();
    let problems = rekindle::config::check_file(file, &registry);
    // Written, not println!: a closed pipe (`| head -1`) must not
    // turn the verdict into a panic; the exit status still says it.
    let mut out = std::io::stdout().lock();
    if problems.is_empty() {
        let _ = writeln!(out, "{}: no problems", file.display());
        Exit::Ok.into()
    } else {
        for problem in &problems {
            let _ = writeln!(out, "{problem}");
        }
        Exit::Failed.into()
    }
}
