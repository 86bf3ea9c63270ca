//! `backup create --wait` and `backup restore --wait`: follow a backup over the control
//! socket (`backup show`) until its operation ends; a progress bar on a terminal, plain lines otherwise.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::control::{self, ControlError, Request, Response};
use crate::table::human_size;
use rekindle::operations::Answer;
use rekindle::operations::answer::{BackupShown, OperationState};
use rekindle::operations::progress::BackupWork;

/// How often the record is read.
const POLL: Duration = Duration::from_millis(200);

/// How often a plain progress line is printed, at most.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// Why following an operation ended without success.
#[derive(Debug, Error)]
pub enum WaitError {
    /// The operation ended in error (the reason the daemon gave).
    #[error("backup {backup_id}: {work} failed: {reason}")]
    Failed {
        /// The backup.
        backup_id: String,
        /// `create` or `restore`.
        work: &'static str,
        /// Why.
        reason: String,
    },
    /// The daemon could not be asked, or answered with an error (the
    /// backup was deleted, the daemon restarted, ...).
    #[error("backup {backup_id}: lost track of the {work}: {reason}")]
    Lost {
        /// The backup.
        backup_id: String,
        /// `create` or `restore`.
        work: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// An indicatif bar, redrawn in place (a terminal).
    Bar,
    /// One line per change of percent, at most one a second (a pipe, a log).
    Lines,
}

impl Display {
    /// A bar when stdout is a terminal, plain lines otherwise.
    pub fn for_stdout() -> Display {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Display::Bar
        } else {
            Display::Lines
        }
    }
}

/// What one `backup show` answer says.
struct Seen {
    running: bool,
    percent: u64,
    bytes_done: u64,
    bytes_total: u64,
    status: String,
    error: Option<String>,
    /// The daemon knows the operation (it did not restart since).
    known: bool,
}

fn read(shown: &BackupShown, work: BackupWork) -> Seen {
    let status = shown.record.status.clone();
    let operation = shown.operation.as_ref();
    let running = operation.is_some_and(|o| o.state == OperationState::Running)
        || matches!(
            (work, status.as_str()),
            (BackupWork::Create, "creating") | (BackupWork::Restore, "restoring")
        );
    let progress = shown.progress.as_ref();
    Seen {
        running,
        percent: progress.map_or(0, |p| u64::from(p.percent)),
        bytes_done: progress.map_or(0, |p| p.bytes_done),
        bytes_total: progress.map_or(shown.record.size_bytes, |p| p.bytes_total),
        status,
        error: operation.and_then(|o| o.error.clone()),
        known: operation.is_some(),
    }
}

fn show(control: &Path, backup_id: &str) -> Result<BackupShown, String> {
    let request = Request::BackupShow {
        id: backup_id.to_string(),
    };
    match control::request(control, &request) {
        Ok(Response::Done {
            answer: Answer::Shown(shown),
        }) => Ok(shown),
        Ok(Response::Error { message }) => Err(message),
        Ok(other) => Err(format!("unexpected answer: {other:?}")),
        Err(error @ (ControlError::Socket { .. } | ControlError::Protocol { .. })) => {
            Err(error.to_string())
        }
    }
}

fn amount(percent: u64, done: u64, total: u64) -> String {
    format!("{percent}% ({} of {})", human_size(done), human_size(total))
}

/// Follows `work` on `backup_id` (`volume_id`: the source of a backup, the
/// target of a restore) through the daemon at `control` until it ends,
/// showing progress on `out` as `display` says. The last line reads 100%
/// and the outcome on success.
///
/// Errors: the operation failed ([`WaitError::Failed`], with the daemon's
/// reason), or the daemon could not be followed ([`WaitError::Lost`]).
pub fn follow(
    control: &Path,
    backup_id: &str,
    volume_id: &str,
    work: BackupWork,
    display: Display,
    out: &mut dyn Write,
) -> Result<(), WaitError> {
    let lost = |reason: String| WaitError::Lost {
        backup_id: backup_id.to_string(),
        work: work.as_str(),
        reason,
    };
    let label = match work {
        BackupWork::Create => format!("backup {backup_id}: create from {volume_id}"),
        BackupWork::Restore => format!("backup {backup_id}: restore into {volume_id}"),
    };
    let bar = (display == Display::Bar).then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(100),
            indicatif::ProgressDrawTarget::stdout(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.clone());
        bar
    });
    let mut printed: Option<(u64, Instant)> = None;
    let seen = loop {
        let seen = read(&show(control, backup_id).map_err(lost)?, work);
        if !seen.running {
            break seen;
        }
        let text = amount(seen.percent, seen.bytes_done, seen.bytes_total);
        match &bar {
            Some(bar) => {
                bar.set_position(seen.percent);
                bar.set_message(text);
            }
            None => {
                let due = printed.is_none_or(|(percent, at)| {
                    percent != seen.percent && at.elapsed() >= LINE_EVERY
                });
                if due {
                    let _ = writeln!(out, "{label} {text}");
                    printed = Some((seen.percent, Instant::now()));
                }
            }
        }
        std::thread::sleep(POLL);
    };
    let failed = match (work, &seen.error) {
        (_, Some(reason)) => Some(reason.clone()),
        (BackupWork::Create, None) if seen.status != "available" => {
            Some(format!("the backup is {}", seen.status))
        }
        (BackupWork::Restore, None) if !seen.known => {
            return Err(lost(
                "the daemon no longer knows it (restarted?); read the volume's status".to_string(),
            ));
        }
        _ => None,
    };
    if let Some(reason) = failed {
        if let Some(bar) = bar {
            bar.abandon_with_message("failed");
        }
        return Err(WaitError::Failed {
            backup_id: backup_id.to_string(),
            work: work.as_str(),
            reason,
        });
    }
    let outcome = match work {
        BackupWork::Create => "available",
        BackupWork::Restore => "restored",
    };
    let text = format!(
        "{}: {outcome}",
        amount(100, seen.bytes_total, seen.bytes_total)
    );
    match bar {
        Some(bar) => {
            bar.set_position(100);
            bar.finish_with_message(text);
        }
        None => {
            let _ = writeln!(out, "{label} {text}");
        }
    }
    Ok(())
}
