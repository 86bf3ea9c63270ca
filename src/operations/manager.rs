//! Manager: user operations on volumes and backups, each recorded durably before it
//! is acknowledged and routed to the backends through the service. Here: how every
//! operation marks, ends and settles its records; the operations are in `volumes`,
//! `backups` and `recovery`.

mod backups;
mod recovery;
mod volumes;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use thiserror::Error;

use super::answer::{
    Answer, BackupAnswer, BackupShown, PendingAnswer, RestoreAnswer, RestoreStatus, VolumeAnswer,
};
use super::listing::{BackupListRow, VolumeListRow};
use crate::actors::service::Route;
use crate::actors::{Handles, Operation, OperationError, OperationOutput};
use crate::config::BACKUP_BACKEND;
use crate::driver::{BackupRecord, Connector, Kind, Volume};
use crate::events::Event;
use crate::lifecycle::StateName;
use crate::operations::progress::{BackupWork, Operations, Report, Reporter};
use crate::records::{BackupStatus, RecordStore, RecordsError, VolumeStatus};
use crate::records::{End, Source};

/// Why a user operation failed.
#[derive(Debug, Error)]
pub enum ManagerError {
    /// The request is invalid (unknown id, bad size, wrong status).
    #[error("{0}")]
    Invalid(String),
    /// The backend refused or failed.
    #[error(transparent)]
    Operation(#[from] OperationError),
    /// `volume detach` of the only attached host, when several are
    /// attached: which one is not guessed (a live migration's destination
    /// would be cut off by mistake).
    #[error(
        "volume detach refused: volume {id} is attached to {} hosts ({}); name the host to detach (its connector), or detach every host",
        hosts.len(),
        hosts.join(", ")
    )]
    SeveralAttached {
        /// The volume.
        id: String,
        /// The hosts attached, oldest first.
        hosts: Vec<String>,
    },
    /// There are no records yet: the fleet's database has not answered
    /// since start-up (recoverable: retried until it does).
    #[error("{0}")]
    RecordsUnavailable(String),
    /// The records database failed (or cannot be reached: a recoverable
    /// failure of the records, named with the database).
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// In a fleet, this host lost the work while its driver ran (it was
    /// paused, or cut off from the database, for longer than
    /// `service_down_time`) and a survivor resolved the record: that
    /// resolution stands and is the answer; nothing was written over it.
    #[error(
        "{operation}: this host lost its claim on {kind} {id} while the driver ran (it was paused or cut off from the database for longer than service_down_time); a survivor resolved it to `{status}`, which stands; {kept}"
    )]
    Superseded {
        /// The operation (`volume create`, ...).
        operation: &'static str,
        /// `volume` or `backup`.
        kind: &'static str,
        /// The record.
        id: String,
        /// Its status as committed.
        status: String,
        /// What became of the driver's side effect, in words.
        kept: &'static str,
    },
    /// This fleet host has not renewed its membership for longer than its
    /// fence interval: it starts no work until its heartbeat is written
    /// again (survivors may claim its work after `service_down_time`).
    #[error(
        "refused: this host has not renewed its fleet membership for {since} (its fence interval is {fence}: service_down_time less one report_interval): it starts no work until its heartbeat reaches the records database {url} again, so that no survivor resolves work it is doing; retry"
    )]
    Fenced {
        /// How long since the last renewal.
        since: String,
        /// The fence interval.
        fence: String,
        /// The database, password removed.
        url: String,
    },
    /// The driver's work is done, but the fleet's database did not answer
    /// its final write: the outcome is kept and written by this host as
    /// soon as the database answers (or during its recovery, if it
    /// restarts first). The record says the transitional status meanwhile.
    #[error(
        "{kind} {id}: the driver's work is done and its outcome is `{to}`, but its record is pending: {reason}; this host writes it as soon as the database answers ({kept_in}), before any survivor may claim the work, unless this host itself stays paused or cut off from a database that answers the others for service_down_time (then a survivor's resolution stands, as `rekindle {kind} list` shows)"
    )]
    Pending {
        /// `volume` or `backup`.
        kind: String,
        /// The record.
        id: String,
        /// The outcome.
        to: String,
        /// Why the database did not answer, in words.
        reason: String,
        /// Where the outcome is kept, in words.
        kept_in: String,
    },
}

/// Carries out user operations for one service.
#[derive(Clone)]
pub struct Manager {
    handles: Handles,
    /// The records, or why there are none yet (a fleet's database not
    /// joined): shared by every clone, so joining later reaches them all.
    records: Rc<std::cell::RefCell<Result<Rc<dyn RecordStore>, String>>>,
    operations: Operations,
    /// This host in a fleet: every transitional record is work it owns
    /// (Cinder's workers), its end fenced by this start's epoch.
    #[cfg(feature = "fleet")]
    fleet: Rc<std::cell::RefCell<Option<Rc<crate::fleet::member::Member>>>>,
}

/// A backup or restore that was checked and recorded: `accepted` is what
/// the requester may be told at once; `run` performs it and answers as the
/// blocking call does.
pub struct Started {
    /// The answer once recorded (a backup `creating`, a restore `restoring`).
    pub accepted: Answer,
    /// The driver call and the record updates after it.
    pub run: Pin<Box<dyn Future<Output = Result<Answer, ManagerError>>>>,
}

/// Which hosts `volume detach` detaches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detach {
    /// The host this connector names (its `host`).
    Host(Box<Connector>),
    /// Every attached host.
    All,
    /// The one attached host (refused when several are attached, so a live
    /// migration's destination is not cut off by mistake).
    Only,
}

/// `state` as a volume status an operator may set by hand, or
/// `volume reset-state` refused, naming the statuses that may be set.
///
/// # Errors
/// [`ManagerError::Invalid`] for any other word.
pub fn settable_volume_status(state: &str) -> Result<VolumeStatus, ManagerError> {
    match state.parse() {
        Ok(status) => settable("volume reset-state", status, &VolumeStatus::SETTABLE),
        Err(_) => Err(not_settable(
            "volume reset-state",
            state,
            &VolumeStatus::SETTABLE,
        )),
    }
}

/// `state` as a backup status an operator may set by hand (`available` or
/// `error`, as Cinder's `backup-reset-state`), or `backup reset-state`
/// refused.
///
/// # Errors
/// [`ManagerError::Invalid`] for any other word.
pub fn settable_backup_status(state: &str) -> Result<BackupStatus, ManagerError> {
    match state.parse() {
        Ok(status) => settable("backup reset-state", status, &BackupStatus::SETTABLE),
        Err(_) => Err(not_settable(
            "backup reset-state",
            state,
            &BackupStatus::SETTABLE,
        )),
    }
}

/// `status` when it is one of `settable`, else `operation` refused naming
/// them.
fn settable<S: Copy + PartialEq + std::fmt::Display>(
    operation: &str,
    status: S,
    settable: &[S],
) -> Result<S, ManagerError> {
    if settable.contains(&status) {
        Ok(status)
    } else {
        Err(not_settable(operation, &status.to_string(), settable))
    }
}

fn not_settable<S: std::fmt::Display>(
    operation: &str,
    state: &str,
    settable: &[S],
) -> ManagerError {
    let names: Vec<String> = settable.iter().map(ToString::to_string).collect();
    refused(
        operation,
        format_args!(
            "\"{state}\" is not a status to set by hand (one of {})",
            names.join(", ")
        ),
    )
}

/// The connector's host: attachments are recorded per host.
fn attaching_host(connector: &Connector, operation: &str) -> Result<String, ManagerError> {
    connector
        .host
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            refused(
                operation,
                "the connector names no host (field \"host\"); attachments are recorded per host",
            )
        })
}

fn invalid(message: impl Into<String>) -> ManagerError {
    ManagerError::Invalid(message.into())
}

/// `operation` ("volume delete", ...) refused, and why: every refusal the
/// manager writes names the operation refused first.
fn refused(operation: &str, why: impl std::fmt::Display) -> ManagerError {
    invalid(format!("{operation} refused: {why}"))
}

/// `operation` refused when `row` is busy, naming what it is busy with.
fn refuse_busy(operation: &str, row: &crate::records::VolumeRow) -> Result<(), ManagerError> {
    match row
        .status
        .parse::<VolumeStatus>()
        .ok()
        .and_then(VolumeStatus::busy_with)
    {
        Some(work) => Err(refused(
            operation,
            format_args!(
                "volume {} is {}: {work}; wait for it to finish",
                row.id, row.status
            ),
        )),
        None => Ok(()),
    }
}

impl ManagerError {
    /// Whether the backend turned the operation away before its driver was
    /// called (see [`OperationError::before_driver`]): nothing was done.
    pub fn before_driver(&self) -> bool {
        matches!(self, ManagerError::Operation(e) if e.before_driver())
    }

    /// What the requester is told when the driver's work succeeded and its
    /// outcome is kept until the fleet's database answers: the outcome, by
    /// id, with its record pending (durable: it will be written). `None`
    /// for any other error, and for a pending outcome that is an error
    /// (that stays an error).
    pub fn pending_answer(&self) -> Option<PendingAnswer> {
        match self {
            ManagerError::Pending {
                kind,
                id,
                to,
                reason,
                kept_in,
            } if !to.starts_with("error") => Some(PendingAnswer {
                id: id.clone(),
                kind: kind.clone(),
                status: to.clone(),
                record: "pending".to_string(),
                note: format!(
                    "the records database did not answer ({reason}); this host writes `{to}` as soon as it answers ({kept_in}), before any survivor may claim the work, unless this host itself stays paused or cut off from a database that answers the others for service_down_time (then a survivor's resolution stands, as `rekindle {kind} list` shows)"
                ),
            }),
            _ => None,
        }
    }
}

/// A record an operation put in a transitional status (`creating`,
/// `deleting`, `extending`, `restoring`, ...), as it was before: put back
/// as it was (or removed, if made for the operation) when the operation is
/// turned away before its driver is called.
enum Marked {
    /// A volume record made for the operation (`creating`): removed.
    NewVolume(String),
    /// A volume row as it was.
    Volume(crate::records::VolumeRow),
    /// A backup row as it was.
    Backup(crate::records::BackupRow),
}

impl Manager {
    /// A manager over a running service and its records.
    pub fn new(handles: Handles, records: Rc<dyn RecordStore>) -> Self {
        Manager {
            handles,
            records: Rc::new(std::cell::RefCell::new(Ok(records))),
            operations: Operations::default(),
            #[cfg(feature = "fleet")]
            fleet: Rc::default(),
        }
    }

    /// The records, or the operation refused with why there are none yet
    /// (the fleet's database not joined: a recoverable failure of the
    /// records, named with the database).
    fn records(&self) -> Result<Rc<dyn RecordStore>, ManagerError> {
        self.records
            .borrow()
            .clone()
            .map_err(ManagerError::RecordsUnavailable)
    }

    /// A manager whose records are the fleet's (`member.store()`): each
    /// record an operation puts in a transitional status is work this host
    /// owns, so a survivor resolves it if this host dies, and its end is
    /// fenced (a survivor's resolution is never overwritten).
    #[cfg(feature = "fleet")]
    pub fn for_fleet(handles: Handles, member: Rc<crate::fleet::member::Member>) -> Self {
        let manager = Manager::waiting_for_fleet(handles, member.url());
        manager.joined(member);
        manager
    }

    /// A manager for a fleet whose database (`url`) is not joined yet:
    /// operations are refused, naming the database, until
    /// [`Manager::joined`].
    pub fn waiting_for_fleet(handles: Handles, url: &str) -> Self {
        let reason = format!(
            "records database {} is unavailable: this host has not joined the fleet yet (waiting for the database); retry",
            crate::records::redact(url)
        );
        Manager {
            handles,
            records: Rc::new(std::cell::RefCell::new(Err(reason))),
            operations: Operations::default(),
            #[cfg(feature = "fleet")]
            fleet: Rc::default(),
        }
    }

    /// The fleet's database answered: operations run on its records, as
    /// work of `member` (every clone of this manager sees it).
    #[cfg(feature = "fleet")]
    pub fn joined(&self, member: Rc<crate::fleet::member::Member>) {
        *self.records.borrow_mut() = Ok(member.store());
        *self.fleet.borrow_mut() = Some(member);
    }

    /// This host in its fleet, once joined (`None` on one host).
    #[cfg(feature = "fleet")]
    pub fn member(&self) -> Option<Rc<crate::fleet::member::Member>> {
        self.fleet.borrow().clone()
    }

    /// Refuses to start work while this fleet host has fenced itself (see
    /// [`crate::fleet::member::fence_interval`]); `Ok` on one host.
    ///
    /// # Errors
    /// [`ManagerError::Fenced`].
    pub fn fence(&self) -> Result<(), ManagerError> {
        #[cfg(feature = "fleet")]
        if let Some(member) = self.member()
            && let Some(since) = member.fenced()
        {
            let human = |d: Duration| {
                humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
            };
            return Err(ManagerError::Fenced {
                since: human(since),
                fence: human(member.fence_after()),
                url: member.url().to_string(),
            });
        }
        Ok(())
    }

    /// Whether this manager runs on a fleet's shared records.
    pub fn in_fleet(&self) -> bool {
        #[cfg(feature = "fleet")]
        return self.fleet.borrow().is_some();
        #[cfg(not(feature = "fleet"))]
        false
    }

    /// Every service row of the fleet (all hosts, liveness by the
    /// database's clock) with each host's cluster; `None` outside a fleet.
    /// A fleet whose database has not been joined yet is `RecordsUnavailable`.
    pub async fn fleet_services(
        &self,
    ) -> Option<Result<Vec<(crate::records::ServiceRow, String)>, ManagerError>> {
        #[cfg(feature = "fleet")]
        if let Some(member) = self.member() {
            return Some(member.store().fleet_services().await.map_err(Into::into));
        }
        // A fleet not joined yet: the rows shown are this host's own.
        if let Err(reason) = &*self.records.borrow() {
            return Some(Err(ManagerError::RecordsUnavailable(reason.clone())));
        }
        None
    }

    /// Records that `kind` record `id` entered the transitional `status`
    /// for an operation of this host (a fleet's worker row; nothing on one
    /// host, where start-up recovery resolves it).
    async fn begin(&self, kind: &str, id: &str, status: &str) -> Result<(), ManagerError> {
        #[cfg(feature = "fleet")]
        if let Some(member) = self.member() {
            let work = crate::records::cluster::Work {
                kind: kind.to_string(),
                id: id.to_string(),
                status: status.to_string(),
            };
            member.begin(&work).await?;
        }
        let _ = (kind, id, status);
        Ok(())
    }

    /// Ends the work on `kind` record `id` (left in `from`) with `end`
    /// (its final status and what is written with it): in a fleet one
    /// fenced statement (false: a survivor claimed it and its resolution
    /// stands, nothing was written); on one host plain writes.
    async fn finish(
        &self,
        kind: &str,
        id: &str,
        from: &str,
        end: &End,
    ) -> Result<bool, ManagerError> {
        let to = end.status.as_str();
        #[cfg(feature = "fleet")]
        if let Some(member) = self.member() {
            let work = crate::records::cluster::Work {
                kind: kind.to_string(),
                id: id.to_string(),
                status: from.to_string(),
            };
            return match member.end(&work, end).await? {
                crate::fleet::member::Ended::Written => Ok(true),
                crate::fleet::member::Ended::Superseded => {
                    tracing::warn!(%kind, %id, %to, "a survivor claimed this work while this host was away: its resolution stands");
                    Ok(false)
                }
                crate::fleet::member::Ended::Pending { reason, kept_in } => {
                    Err(ManagerError::Pending {
                        kind: kind.to_string(),
                        id: id.to_string(),
                        to: to.to_string(),
                        reason,
                        kept_in: kept_in.map_or_else(
                            || "kept in memory: no state_dir".to_string(),
                            |p| format!("kept in {}", p.display()),
                        ),
                    })
                }
            };
        }
        let _ = from;
        let records = self.records()?;
        match (kind, to) {
            ("volume", _) if to == VolumeStatus::Deleted.as_str() => {
                records.delete_volume(id).await?
            }
            ("volume", _) => {
                if let Some(size) = end.size_bytes {
                    records.set_volume_size(id, size).await?;
                }
                records.set_volume_status(id, to).await?
            }
            (_, _) if to == BackupStatus::Deleted.as_str() => records.delete_backup(id).await?,
            _ => records.set_backup(id, to, end.size_bytes, None).await?,
        }
        if let Some(source) = &end.source {
            records
                .set_volume_status(&source.volume_id, &source.status)
                .await?;
        }
        Ok(true)
    }

    /// Ends an operation's work with its final status `to`, fenced (see
    /// [`Manager::finish`]). When a survivor resolved the record meanwhile,
    /// the answer is the record as committed ([`ManagerError::Superseded`],
    /// naming its status and `kept`: what became of the driver's side
    /// effect), never the outcome this host would have written.
    async fn end(
        &self,
        operation: &'static str,
        kind: &'static str,
        id: &str,
        from: &str,
        end: End,
        kept: &'static str,
    ) -> Result<(), ManagerError> {
        if self.finish(kind, id, from, &end).await? {
            return Ok(());
        }
        let status = match kind {
            "volume" => self.records()?.volume(id).await?.map(|v| v.status),
            _ => self.records()?.backup(id).await?.map(|b| b.status),
        }
        .unwrap_or_else(|| VolumeStatus::Deleted.to_string());
        Err(ManagerError::Superseded {
            operation,
            kind,
            id: id.to_string(),
            status,
            kept,
        })
    }

    fn reporter(&self) -> Reporter {
        Reporter {
            notifier: self.handles.shell.notifier.clone(),
            clock: self.handles.shell.clock,
            backend: BACKUP_BACKEND,
        }
    }

    async fn route(
        &self,
        backend: &str,
        operation: Operation,
    ) -> Result<OperationOutput, ManagerError> {
        let name = operation.name();
        let request = self.handles.service.send(Route {
            backend: backend.to_string(),
            operation,
        });
        match request.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(OperationError::Cancelled {
                operation: name,
                backend: backend.to_string(),
            }
            .into()),
        }
    }

    /// Puts `row` in the transitional `status` for an operation about to be
    /// sent, remembering it as it was (see [`Manager::settle`]).
    async fn mark_volume(
        &self,
        row: &crate::records::VolumeRow,
        status: VolumeStatus,
    ) -> Result<Marked, ManagerError> {
        let status = status.as_str();
        self.records()?.set_volume_status(&row.id, status).await?;
        self.begin("volume", &row.id, status).await?;
        Ok(Marked::Volume(row.clone()))
    }

    /// As [`Manager::mark_volume`], for a backup (`restore_target` is set
    /// with the status).
    async fn mark_backup(
        &self,
        row: &crate::records::BackupRow,
        status: BackupStatus,
        restore_target: Option<&str>,
    ) -> Result<Marked, ManagerError> {
        let status = status.as_str();
        self.records()?
            .set_backup(&row.id, status, None, restore_target)
            .await?;
        self.begin("backup", &row.id, status).await?;
        Ok(Marked::Backup(row.clone()))
    }

    /// Ends the work of a record being put back (see [`Manager::settle`]):
    /// true to put it back now; false when the database did not answer and
    /// the end is kept to be written once it answers (the operation's
    /// answer stays its refusal, never that pending outcome).
    async fn put_back_ends(
        &self,
        kind: &str,
        id: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, ManagerError> {
        match self.finish(kind, id, from, &End::to(to)).await {
            Err(ManagerError::Pending { .. }) => Ok(false),
            ended => ended.map(|_| true),
        }
    }

    /// The one place an operation's marked records are settled when it was
    /// turned away before its driver was called (the backend not Ready,
    /// stopped, busy, unknown): every marked record is put back exactly as
    /// it was, so a refusal changes nothing. Answers whether it did; on any
    /// other outcome the caller records what the driver did.
    async fn settle<T>(
        &self,
        marked: &[Marked],
        result: &Result<T, ManagerError>,
    ) -> Result<bool, ManagerError> {
        if !matches!(result, Err(e) if e.before_driver()) {
            return Ok(false);
        }
        self.put_back(marked).await?;
        Ok(true)
    }

    /// Puts every marked record back exactly as it was (see
    /// [`Manager::settle`]).
    async fn put_back(&self, marked: &[Marked]) -> Result<(), ManagerError> {
        for record in marked {
            // The work ends first (in a fleet, its worker row goes), then
            // the row is put back exactly as it was.
            match record {
                Marked::NewVolume(id) => {
                    if self
                        .put_back_ends(
                            "volume",
                            id,
                            VolumeStatus::Creating.as_str(),
                            VolumeStatus::Deleted.as_str(),
                        )
                        .await?
                    {
                        self.records()?.delete_volume(id).await?
                    }
                }
                Marked::Volume(row) => {
                    if self
                        .put_back_ends("volume", &row.id, "", &row.status)
                        .await?
                    {
                        self.records()?.put_back_volume(row).await?
                    }
                }
                Marked::Backup(row) => {
                    if self
                        .put_back_ends("backup", &row.id, "", &row.status)
                        .await?
                    {
                        self.records()?.put_back_backup(row).await?
                    }
                }
            }
        }
        Ok(())
    }

    /// The volume `id`, or `operation` refused: no such volume.
    async fn volume(
        &self,
        id: &str,
        operation: &str,
    ) -> Result<crate::records::VolumeRow, ManagerError> {
        self.records()?
            .volume(id)
            .await?
            .ok_or_else(|| refused(operation, format_args!("no volume {id}")))
    }

    /// The backup `id`, or `operation` refused: no such backup.
    async fn backup(
        &self,
        id: &str,
        operation: &str,
    ) -> Result<crate::records::BackupRow, ManagerError> {
        self.records()?
            .backup(id)
            .await?
            .ok_or_else(|| refused(operation, format_args!("no backup {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_statuses_cinder_lets_an_operator_set_are_settable() {
        assert_eq!(
            settable_volume_status("in-use").ok(),
            Some(VolumeStatus::InUse)
        );
        assert_eq!(
            settable_backup_status("error").ok(),
            Some(BackupStatus::Error)
        );
        for (word, refusal) in [
            ("creating", settable_volume_status("creating").err()),
            ("gone", settable_volume_status("gone").err()),
        ] {
            assert_eq!(
                refusal.map(|e| e.to_string()).as_deref(),
                Some(
                    format!("volume reset-state refused: \"{word}\" is not a status to set by hand (one of available, in-use, error, error_restoring)")
                        .as_str()
                )
            );
        }
        assert_eq!(
            settable_backup_status("restoring")
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some(
                "backup reset-state refused: \"restoring\" is not a status to set by hand (one of available, error)"
            )
        );
    }
}
