//! The binary's exit statuses, named once: every command maps its result to one of
//! these (docs/admin.md, "Exit status", lists them for operators and scripts).

use std::process::ExitCode;

/// How a `rekindle` command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done as asked; a check or a simulation found nothing; a reload
    /// ended as intended (or was only started or queued).
    Ok = 0,
    /// 1: failed or refused; a check or a simulation found a violation; a
    /// config file has problems; a reload applied nothing.
    Failed = 1,
    /// 2: bad usage: an argument, or a file a command cannot use at all.
    Usage = 2,
    /// 3: a reload ran, but a backend rolled back, failed, or its reload or
    /// removal was aborted.
    NotAsIntended = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}
