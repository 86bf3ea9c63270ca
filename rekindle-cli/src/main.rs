//! The `rekindle` binary: a thin command-line shell over the library.
//! Parses arguments, calls library functions, maps errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

mod args;
mod control;
mod daemon;
mod demo;
mod exit;
#[cfg(feature = "fleet")]
mod fleet_command;
mod table;
mod wait;

use crate::control::{Request, Response};
use crate::daemon::{ConfigSource, RunOptions};
use crate::exit::Exit;
use clap::Parser;

#[cfg(feature = "fleet")]
use crate::args::FleetAction;
use crate::args::{BackupAction, Cli, Command, ConfigAction, ModelAction, VolumeAction};

/// Runs a fleet command; errors print as `rekindle: ...` with their exit status.
#[cfg(feature = "fleet")]
fn fleet(action: FleetAction) -> ExitCode {
    use crate::fleet_command as command;
    let result = rekindle::engine::runtime::run_real(async move {
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

/// A request the command line cannot make, with the exit status it gives:
/// a file that cannot be read is a usage error (2); a value the daemon
/// would refuse is refused here the same way (1), before it is sent.
type Unsent = (Exit, String);

/// `size` (`1G`, `512M`, bytes) in bytes, or `operation` refused naming
/// `--size` and what was expected.
fn size_bytes(operation: &str, size: &str, expected: &str) -> Result<u64, Unsent> {
    rekindle::driver::options::parse_size(size)
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            (
                Exit::Failed,
                format!("{operation} refused: --size {size:?}: expected {expected}"),
            )
        })
}

fn volume_request(action: VolumeAction) -> Result<Request, Unsent> {
    let usage = |message: String| (Exit::Usage, message);
    let refused = |error: rekindle::operations::ManagerError| (Exit::Failed, error.to_string());
    Ok(match action {
        VolumeAction::Create { size, backend } => Request::VolumeCreate {
            size_bytes: size_bytes("volume create", &size, "a size such as 1G or 512M")?,
            backend,
        },
        VolumeAction::Extend { id, size } => Request::VolumeExtend {
            size_bytes: size_bytes("volume extend", &size, "a size such as 2G or 1536M")?,
            id,
        },
        VolumeAction::Delete { id } => Request::VolumeDelete { id },
        VolumeAction::ResetState { id, state, force } => Request::VolumeResetState {
            id,
            state: rekindle::operations::settable_volume_status(&state).map_err(refused)?,
            force,
        },
        VolumeAction::Attach { id, connector } => Request::VolumeAttach {
            id,
            connector: Box::new(read_connector(&connector).map_err(usage)?),
        },
        VolumeAction::Detach { id, connector, all } => Request::VolumeDetach {
            id,
            which: match (connector, all) {
                (Some(path), _) => rekindle::operations::Detach::Host(Box::new(
                    read_connector(&path).map_err(usage)?,
                )),
                (None, true) => rekindle::operations::Detach::All,
                (None, false) => rekindle::operations::Detach::Only,
            },
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

fn backup_request(action: BackupAction) -> Result<Request, Unsent> {
    Ok(match action {
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
        BackupAction::ResetState { id, state } => Request::BackupResetState {
            id,
            state: rekindle::operations::settable_backup_status(&state)
                .map_err(|error| (Exit::Failed, error.to_string()))?,
        },
        BackupAction::List { .. } => Request::BackupList,
    })
}

/// Prints a list as a table, or as its JSON array of rows (`json`).
fn list<T: serde::Serialize>(
    control: &std::path::Path,
    request: Request,
    json: bool,
    rows: fn(Response) -> Option<Vec<T>>,
    table: fn(&[T]) -> String,
) -> ExitCode {
    let rows = match control::request(control, &request) {
        Ok(Response::Error { message }) => return fail(&message),
        Ok(response) => match rows(response) {
            Some(rows) => rows,
            None => return fail(&"unexpected answer from the daemon: not the list asked for"),
        },
        Err(error) => return fail(&error),
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
        Request::BackupRestore { .. } => rekindle::operations::progress::BackupWork::Restore,
        _ => rekindle::operations::progress::BackupWork::Create,
    };
    let accepted = match control::request(control, &request) {
        Ok(Response::Done { answer }) => answer,
        Ok(Response::Error { message }) => return fail(&message),
        Ok(other) => return fail(&format!("unexpected answer: {other:?}")),
        Err(error) => return fail(&error),
    };
    let id = accepted.id().unwrap_or_default().to_string();
    let volume = accepted.volume_id().unwrap_or_default().to_string();
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
fn operate(control: &std::path::Path, request: Result<Request, Unsent>) -> ExitCode {
    let request = match request {
        Ok(request) => request,
        Err((exit, error)) => {
            eprintln!("rekindle: {error}");
            return exit.into();
        }
    };
    match control::request(control, &request) {
        Ok(Response::Done { answer }) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer.to_json()).unwrap_or_default()
            );
            Exit::Ok.into()
        }
        Ok(Response::Error { message }) => fail(&message),
        Ok(other) => fail(&format!("unexpected answer: {other:?}")),
        Err(error) => fail(&error),
    }
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
        Command::Volume { control, action } => volume(&control, action),
        Command::Backup { control, action } => backup(&control, action),
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

/// `rekindle volume ...`: a list, or an operation and its answer.
fn volume(control: &std::path::Path, action: VolumeAction) -> ExitCode {
    match action {
        VolumeAction::List { json } => list(
            control,
            Request::VolumeList,
            json,
            |response| match response {
                Response::Volumes { rows } => Some(rows),
                _ => None,
            },
            crate::table::render_volumes,
        ),
        action => operate(control, volume_request(action)),
    }
}

/// `rekindle backup ...`: a list, an operation followed to its end
/// (`--wait`), or an operation and its answer.
fn backup(control: &std::path::Path, action: BackupAction) -> ExitCode {
    match action {
        BackupAction::List { json } => list(
            control,
            Request::BackupList,
            json,
            |response| match response {
                Response::Backups { rows } => Some(rows),
                _ => None,
            },
            crate::table::render_backups,
        ),
        action @ (BackupAction::Create { wait: true, .. }
        | BackupAction::Restore { wait: true, .. }) => match backup_request(action) {
            Ok(request) => wait_for(control, request),
            Err((exit, error)) => {
                eprintln!("rekindle: {error}");
                exit.into()
            }
        },
        action => operate(control, backup_request(action)),
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
                println!("{}", serde_json::to_value(&outcome).unwrap_or_default());
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
