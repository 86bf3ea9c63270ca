//! Progress of running backups and restores: the table of operations `backup show` reads,
//! and the `backup.createprogress` / `backup.restoreprogress` notifications (at most one a second).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use super::answer::{OperationState, ShownOperation};
use serde::{Deserialize, Serialize};

use crate::driver::backup::Progress;
use crate::engine::clock::ServiceClock;
use crate::events::notify::Notifier;

/// How often a running operation reports its progress, at most.
pub const PERIOD: Duration = Duration::from_secs(1);

/// A long operation on a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupWork {
    /// `backup create`.
    Create,
    /// `backup restore`.
    Restore,
}

impl BackupWork {
    /// `create` or `restore`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupWork::Create => "create",
            BackupWork::Restore => "restore",
        }
    }

    /// The event type of its progress notifications.
    pub fn event_type(self) -> &'static str {
        match self {
            BackupWork::Create => "backup.createprogress",
            BackupWork::Restore => "backup.restoreprogress",
        }
    }
}

/// How far an operation got: `percent` (0 to 100, rounded down; 100 only
/// once it finished), `bytes_done` of `bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Whole percent done, rounded down; at most 99 while the call runs
    /// (its last writes and syncs are not counted in bytes), 100 once done.
    pub percent: u8,
    /// Bytes of the work done (read and copied, or read and verified).
    pub bytes_done: u64,
    /// Bytes the work covers (the volume's size, or the backup's).
    pub bytes_total: u64,
}

impl Snapshot {
    /// What `progress` says of a call still running over `bytes_total` bytes.
    pub fn running(progress: &Progress, bytes_total: u64) -> Snapshot {
        let bytes_done = progress.done().min(bytes_total);
        let percent = if bytes_total == 0 {
            0
        } else {
            (u128::from(bytes_done) * 100 / u128::from(bytes_total)).min(99) as u8
        };
        Snapshot {
            percent,
            bytes_done,
            bytes_total,
        }
    }

    /// A finished call over `bytes_total` bytes.
    pub fn finished(bytes_total: u64) -> Snapshot {
        Snapshot {
            percent: 100,
            bytes_done: bytes_total,
            bytes_total,
        }
    }
}

/// One backup's operation: running, or the last one that ended (kept for
/// `backup show` until the backup is deleted or the daemon restarts).
#[derive(Debug, Clone)]
enum Entry {
    Running {
        work: BackupWork,
        volume_id: String,
        progress: Progress,
        bytes_total: u64,
    },
    Ended {
        work: BackupWork,
        volume_id: String,
        error: Option<String>,
    },
}

/// The running and last-ended operation of each backup (one at a time per
/// backup: a backup that is `creating` or `restoring` takes no other).
/// Cloning shares the table.
#[derive(Debug, Clone, Default)]
pub struct Operations(Rc<RefCell<HashMap<String, Entry>>>);

impl Operations {
    /// Records that `work` started on `backup_id` (for `volume_id`, the
    /// source of a backup or the target of a restore), reading `progress`.
    pub fn start(
        &self,
        backup_id: &str,
        work: BackupWork,
        volume_id: &str,
        progress: Progress,
        bytes_total: u64,
    ) {
        self.0.borrow_mut().insert(
            backup_id.to_string(),
            Entry::Running {
                work,
                volume_id: volume_id.to_string(),
                progress,
                bytes_total,
            },
        );
    }

    /// Records that the operation on `backup_id` ended, with its error if it
    /// failed.
    pub fn end(&self, backup_id: &str, error: Option<String>) {
        let mut table = self.0.borrow_mut();
        if let Some(entry) = table.get_mut(backup_id) {
            let (work, volume_id) = match entry {
                Entry::Running {
                    work, volume_id, ..
                }
                | Entry::Ended {
                    work, volume_id, ..
                } => (*work, std::mem::take(volume_id)),
            };
            *entry = Entry::Ended {
                work,
                volume_id,
                error,
            };
        }
    }

    /// Forgets `backup_id` (deleted).
    pub fn forget(&self, backup_id: &str) {
        self.0.borrow_mut().remove(backup_id);
    }

    /// What `backup show` adds to the record: `progress` while an
    /// operation runs, and the running or last-ended `operation` (`None`
    /// when the daemon ran none on this backup since it started).
    pub fn show(&self, backup_id: &str) -> (Option<Snapshot>, Option<ShownOperation>) {
        match self.0.borrow().get(backup_id) {
            None => (None, None),
            Some(Entry::Running {
                work,
                volume_id,
                progress,
                bytes_total,
            }) => (
                Some(Snapshot::running(progress, *bytes_total)),
                Some(ShownOperation {
                    work: *work,
                    volume_id: volume_id.clone(),
                    state: OperationState::Running,
                    error: None,
                }),
            ),
            Some(Entry::Ended {
                work,
                volume_id,
                error,
            }) => (
                None,
                Some(ShownOperation {
                    work: *work,
                    volume_id: volume_id.clone(),
                    state: if error.is_some() {
                        OperationState::Failed
                    } else {
                        OperationState::Succeeded
                    },
                    error: error.clone(),
                }),
            ),
        }
    }
}

/// What a progress report is about.
#[derive(Debug, Clone)]
pub struct Report {
    /// Create or restore.
    pub work: BackupWork,
    /// The backup.
    pub backup_id: String,
    /// The source volume (create) or the target volume (restore).
    pub volume_id: String,
    /// What the driver reports into.
    pub progress: Progress,
    /// Bytes the work covers.
    pub bytes_total: u64,
}

/// Where progress lines go.
#[derive(Clone)]
pub struct Reporter {
    /// The notifier.
    pub notifier: Notifier,
    /// The service clock (timestamps).
    pub clock: ServiceClock,
    /// The backend the lines name (the backup service).
    pub backend: &'static str,
}

impl Reporter {
    fn line(&self, report: &Report, snapshot: Snapshot) {
        let payload = crate::events::BackupProgress {
            backup_id: report.backup_id.clone(),
            volume_id: report.volume_id.clone(),
            percent: snapshot.percent,
            bytes_done: snapshot.bytes_done,
            bytes_total: snapshot.bytes_total,
        };
        let event = match report.work {
            BackupWork::Create => crate::events::Event::BackupCreateProgress(payload),
            BackupWork::Restore => crate::events::Event::BackupRestoreProgress(payload),
        };
        self.notifier
            .emit(Some(self.backend), self.clock.now(), event);
    }

    /// Runs `work` (the driver call) and, while it runs, sends a progress
    /// line every [`PERIOD`] in which the driver advanced (none before the
    /// first period, none while it stalls), on the actix clock (virtual
    /// time in tests). If it succeeds after at least one line, a last line
    /// at 100% closes the stream (it may follow the previous one by less
    /// than a period); a failure sends no last line (the operation's error
    /// notification closes it). Returns `work`'s output.
    pub async fn reported<T, E>(
        &self,
        report: &Report,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let mut work = std::pin::pin!(work);
        let mut ticks = actix::clock::interval_at(actix::clock::Instant::now() + PERIOD, PERIOD);
        // A late tick (a busy arbiter) pushes the next one a full period
        // on: never two lines within a period.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = 0u64;
        let mut lines = 0u32;
        let output = loop {
            tokio::select! {
                biased;
                output = &mut work => break output,
                _ = ticks.tick() => {
                    let snapshot = Snapshot::running(&report.progress, report.bytes_total);
                    if snapshot.bytes_done > reported {
                        reported = snapshot.bytes_done;
                        lines += 1;
                        self.line(report, snapshot);
                    }
                }
            }
        };
        if output.is_ok() && lines > 0 {
            self.line(report, Snapshot::finished(report.bytes_total));
        }
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_call_never_reads_100_percent_and_an_ended_one_is_shown() {
        let progress = Progress::default();
        progress.advance(512);
        assert_eq!(Snapshot::running(&progress, 1024).percent, 50);
        progress.advance(512);
        assert_eq!(Snapshot::running(&progress, 1024).percent, 99);
        assert_eq!(Snapshot::running(&progress, 0).percent, 0);
        assert_eq!(Snapshot::finished(1024).percent, 100);
        let table = Operations::default();
        table.start("b1", BackupWork::Restore, "v2", progress, 1024);
        let (progress, operation) = table.show("b1");
        assert_eq!(progress.map(|p| p.bytes_done), Some(1024));
        assert_eq!(operation.map(|o| o.state), Some(OperationState::Running));
        table.end("b1", Some("disk full".into()));
        let (progress, operation) = table.show("b1");
        assert!(progress.is_none());
        assert_eq!(
            operation,
            Some(ShownOperation {
                work: BackupWork::Restore,
                volume_id: "v2".into(),
                state: OperationState::Failed,
                error: Some("disk full".into()),
            })
        );
        table.forget("b1");
        assert_eq!(table.show("b1"), (None, None));
    }

    #[test]
    fn lines_come_once_a_period_while_bytes_move_then_a_last_one_at_100() {
        crate::engine::runtime::run_virtual(lines_on_virtual_time()).expect("runtime");
    }

    fn report(progress: &Progress) -> Report {
        Report {
            work: BackupWork::Create,
            backup_id: "b1".into(),
            volume_id: "v1".into(),
            progress: progress.clone(),
            bytes_total: 1000,
        }
    }

    async fn lines_on_virtual_time() {
        let clock = ServiceClock::start_at(std::time::SystemTime::UNIX_EPOCH);
        let notifier = Notifier::in_memory(clock);
        let reporter = Reporter {
            notifier: notifier.clone(),
            clock,
            backend: "backup",
        };
        let progress = Progress::default();
        let work = async {
            for step in 0..10u64 {
                actix::clock::sleep(Duration::from_millis(350)).await;
                // Stalls from 1.75 s to 2.8 s.
                if !(4..8).contains(&step) {
                    progress.advance(100);
                }
            }
            Ok::<_, ()>(())
        };
        reporter
            .reported(&report(&progress), work)
            .await
            .expect("ok");
        let lines = notifier.history();
        let seen: Vec<(u64, &str)> = lines
            .iter()
            .map(|l| {
                (
                    l.payload["percent"].as_u64().unwrap_or(999),
                    l.timestamp.as_str(),
                )
            })
            .collect();
        // At 1 s: 200 bytes; at 2 s: 400; at 3 s still 400 (stalled: no
        // line); it ends at 3.5 s: the last line, at 100%.
        assert_eq!(
            seen,
            vec![
                (20, "1970-01-01T00:00:01.000Z"),
                (40, "1970-01-01T00:00:02.000Z"),
                (100, "1970-01-01T00:00:03.500Z"),
            ]
        );
        assert!(
            lines
                .iter()
                .all(|l| l.event_type == "backup.createprogress")
        );
        assert_eq!(lines[2].payload["bytes_done"], 1000);
        assert_eq!(lines[0].payload["bytes_total"], 1000);
        assert_eq!(lines[0].payload["backup_id"], "b1");

        // A short success sends no line at all; a failure no last line.
        let quiet = Notifier::in_memory(clock);
        let reporter = Reporter {
            notifier: quiet.clone(),
            ..reporter
        };
        let fresh = Progress::default();
        let _ = reporter
            .reported(&report(&fresh), async { Ok::<_, ()>(()) })
            .await;
        let _ = reporter
            .reported(&report(&fresh), async {
                actix::clock::sleep(Duration::from_millis(1500)).await;
                fresh.advance(995);
                actix::clock::sleep(Duration::from_millis(1000)).await;
                Err::<(), _>("failed")
            })
            .await;
        let percents: Vec<u64> = quiet
            .history()
            .iter()
            .map(|l| l.payload["percent"].as_u64().unwrap_or(999))
            .collect();
        assert_eq!(percents, vec![99], "{:?}", quiet.history());
    }
}
