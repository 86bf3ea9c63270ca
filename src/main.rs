//! The `rekindle` binary: a thin command-line shell over the library.
//! Parses arguments and calls library functions; owns no lifecycle logic.

use std::process::ExitCode;

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
    /// Play a scripted lifecycle on virtual time: a backend that is not ready
    /// at start-up, retries with backoff 1s, 2s, comes up, then a reload.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => {
            print!("{}", rekindle::demo::scripted_lifecycle());
            ExitCode::SUCCESS
        }
    }
}
