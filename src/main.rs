//! The `rekindle` binary: a thin command-line shell over the library.
//! Parses arguments, calls library functions, maps errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rekindle::control::{self, Request, Response};
use rekindle::daemon::{self, ConfigSource, RunOptions};

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
    },
    /// Show services and backends of a running daemon.
    Status {
        /// The daemon's control socket.
        #[arg(long)]
        control: PathBuf,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running daemon to reload its config file (like SIGHUP).
    Reload {
        /// The daemon's control socket.
        #[arg(long)]
        control: PathBuf,
    },
    /// Play a scripted lifecycle on virtual time (the core alone).
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Command::Run {
            config,
            notifications,
            control,
        } => {
            let options = RunOptions {
                config: config.map_or(ConfigSource::Embedded, ConfigSource::File),
                notifications,
                control,
            };
            match daemon::run(options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("rekindle: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status { control, json } => match control::request(&control, &Request::Status) {
            Ok(Response::Status(report)) => {
                if json {
                    match serde_json::to_string_pretty(&report) {
                        Ok(text) => println!("{text}"),
                        Err(error) => {
                            eprintln!("rekindle: {error}");
                            return ExitCode::FAILURE;
                        }
                    }
                } else {
                    print!("{}", control::render_status(&report));
                }
                ExitCode::SUCCESS
            }
            Ok(other) => {
                eprintln!("rekindle: unexpected answer: {other:?}");
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("rekindle: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Reload { control } => match control::request(&control, &Request::Reload) {
            Ok(Response::Reload { outcome }) => {
                println!("{outcome}");
                if outcome["outcome"] == "rejected" {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Ok(other) => {
                eprintln!("rekindle: unexpected answer: {other:?}");
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("rekindle: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Demo => {
            print!("{}", rekindle::demo::scripted_lifecycle());
            ExitCode::SUCCESS
        }
    }
}
