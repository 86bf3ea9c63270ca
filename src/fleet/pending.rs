//! Outcomes whose final write the fleet database did not answer: kept in the state dir
//! (`pending-outcomes.json`) and written, in order and idempotently, once it answers.
//!
//! An operation's driver work is done when its final, fenced write is
//! sent; if the database does not answer it (restarting, frozen, cut off),
//! the outcome is not lost and not guessed at: it is kept here, the client
//! is told it by id with its record pending, and this host writes it as
//! soon as the database answers, or, after a restart, during recovery of
//! its own work (before any default resolution). Without a `state_dir` the
//! outcomes are kept in memory only (lost with the process).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::records::{End, Source};

/// The file in the state dir.
pub const FILE: &str = "pending-outcomes.json";

/// One outcome waiting for its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOutcome {
    /// `volume` or `backup`.
    pub kind: String,
    /// The record.
    pub id: String,
    /// The transitional status the work left the record in (`creating`, ...).
    pub from: String,
    /// The final status the driver's work earned (`available`, `error`,
    /// `deleted`: the record then goes).
    pub to: String,
    /// The record's size now, in bytes, when the work changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// A backup's source volume, put back from `backing-up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

impl PendingOutcome {
    /// Keeps `end` of `work` (left in `from`).
    pub fn new(kind: &str, id: &str, from: &str, end: &End) -> PendingOutcome {
        PendingOutcome {
            kind: kind.to_string(),
            id: id.to_string(),
            from: from.to_string(),
            to: end.status.clone(),
            size_bytes: end.size_bytes,
            source: end.source.clone(),
        }
    }

    /// The end to write.
    pub fn end(&self) -> End {
        End {
            status: self.to.clone(),
            size_bytes: self.size_bytes,
            source: self.source.clone(),
        }
    }
}

/// The state dir's pending outcomes could not be read or kept.
#[derive(Debug, Error)]
pub enum PendingError {
    /// The file is there but cannot be read or is not what this host wrote.
    #[error("cannot read the pending outcomes in {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// The file cannot be written.
    #[error("cannot keep the pending outcome in {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
}

/// The outcomes waiting for their records, in the order they were kept.
#[derive(Debug, Default)]
pub struct PendingOutcomes {
    path: Option<PathBuf>,
    list: RefCell<Vec<PendingOutcome>>,
}

impl PendingOutcomes {
    /// Outcomes kept in memory only (no state dir).
    pub fn in_memory() -> Self {
        PendingOutcomes::default()
    }

    /// The outcomes kept in `state_dir`, as the last run left them.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed ([`PendingError::Read`]).
    pub fn open(state_dir: &Path) -> Result<Self, PendingError> {
        let path = state_dir.join(FILE);
        let list = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PendingError::Read {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(PendingError::Read {
                    path,
                    reason: crate::records::state_dir::in_words(&e),
                });
            }
        };
        Ok(PendingOutcomes {
            path: Some(path),
            list: RefCell::new(list),
        })
    }

    /// Where they are kept (`None`: in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Every outcome, oldest first.
    pub fn list(&self) -> Vec<PendingOutcome> {
        self.list.borrow().clone()
    }

    /// The outcome kept for `kind` record `id`, if any.
    pub fn get(&self, kind: &str, id: &str) -> Option<PendingOutcome> {
        self.list
            .borrow()
            .iter()
            .find(|o| o.kind == kind && o.id == id)
            .cloned()
    }

    /// Keeps `outcome` (replacing one for the same record), durably.
    ///
    /// # Errors
    /// The file cannot be written ([`PendingError::Write`]); nothing is kept.
    pub fn keep(&self, outcome: PendingOutcome) -> Result<(), PendingError> {
        let mut next = self.list();
        next.retain(|o| !(o.kind == outcome.kind && o.id == outcome.id));
        next.push(outcome);
        self.persist(&next)?;
        *self.list.borrow_mut() = next;
        Ok(())
    }

    /// Forgets the outcome of `kind` record `id` (written, or superseded).
    ///
    /// # Errors
    /// The file cannot be written ([`PendingError::Write`]).
    pub fn forget(&self, kind: &str, id: &str) -> Result<(), PendingError> {
        let mut next = self.list();
        next.retain(|o| !(o.kind == kind && o.id == id));
        self.persist(&next)?;
        *self.list.borrow_mut() = next;
        Ok(())
    }

    /// Writes `list` to a temporary file, syncs it and renames it over the
    /// file (an empty list removes the file).
    fn persist(&self, list: &[PendingOutcome]) -> Result<(), PendingError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let failed = |e: std::io::Error| PendingError::Write {
            path: path.clone(),
            reason: crate::records::state_dir::in_words(&e),
        };
        if list.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(e)),
                _ => Ok(()),
            };
        }
        let bytes = serde_json::to_vec_pretty(list).map_err(|e| PendingError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let temporary = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test.
    fn fresh_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rekindle-pending-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn outcome(id: &str, to: &str) -> PendingOutcome {
        PendingOutcome::new("volume", id, "creating", &End::to(to))
    }

    #[test]
    fn an_outcome_keeps_what_is_written_with_its_status() {
        let dir = fresh_dir("end");
        let end = End {
            status: "available".into(),
            size_bytes: Some(2 << 30),
            source: Some(Source {
                volume_id: "v".into(),
                status: "in-use".into(),
            }),
        };
        let kept = PendingOutcomes::open(&dir).expect("open");
        kept.keep(PendingOutcome::new("backup", "b", "creating", &end))
            .expect("keep");
        let again = PendingOutcomes::open(&dir).expect("reopen").list();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].end(), end);
        // A file kept before sizes were kept reads as a bare status.
        std::fs::write(
            dir.join(FILE),
            r#"[{"kind":"volume","id":"v","from":"creating","to":"available"}]"#,
        )
        .expect("write");
        let old = PendingOutcomes::open(&dir).expect("reopen").list();
        assert_eq!(old[0].end(), End::to("available"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn outcomes_survive_a_restart_in_order_and_one_per_record() {
        let dir = fresh_dir("restart");
        let kept = PendingOutcomes::open(&dir).expect("open");
        kept.keep(outcome("v1", "available")).expect("keep");
        kept.keep(outcome("v2", "error")).expect("keep");
        kept.keep(outcome("v1", "error")).expect("keep");
        let again = PendingOutcomes::open(&dir).expect("reopen");
        assert_eq!(
            again.list(),
            vec![outcome("v2", "error"), outcome("v1", "error")]
        );
        again.forget("volume", "v2").expect("forget");
        again.forget("volume", "v1").expect("forget");
        assert!(!dir.join(FILE).exists(), "no file once none is pending");
        assert!(PendingOutcomes::open(&dir).expect("open").list().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_refused_naming_it() {
        let dir = fresh_dir("damaged");
        std::fs::write(dir.join(FILE), "{not json").expect("write");
        let error = PendingOutcomes::open(&dir).expect_err("damaged");
        assert!(error.to_string().contains(FILE), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
