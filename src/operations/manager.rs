//! Manager: user operations on volumes and backups (create, delete, attach, detach,
//! back up, restore, list), each recorded durably before it is acknowledged, routed
//! to the backends through the service, with crash recovery at start-up.

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
    Host(Connector),
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
    state
        .parse()
        .ok()
        .filter(|s| VolumeStatus::SETTABLE.contains(s))
        .ok_or_else(|| not_settable("volume reset-state", state, &VolumeStatus::SETTABLE))
}

/// `state` as a backup status an operator may set by hand (`available` or
/// `error`, as Cinder's `backup-reset-state`), or `backup reset-state`
/// refused.
///
/// # Errors
/// [`ManagerError::Invalid`] for any other word.
pub fn settable_backup_status(state: &str) -> Result<BackupStatus, ManagerError> {
    const SETTABLE: [BackupStatus; 2] = [BackupStatus::Available, BackupStatus::Error];
    state
        .parse()
        .ok()
        .filter(|s| SETTABLE.contains(s))
        .ok_or_else(|| not_settable("backup reset-state", state, &SETTABLE))
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
            crate::config::redact(url)
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
            ("volume", "deleted") => records.delete_volume(id).await?,
            ("volume", _) => {
                if let Some(size) = end.size_bytes {
                    records.set_volume_size(id, size).await?;
                }
                records.set_volume_status(id, to).await?
            }
            (_, "deleted") => records.delete_backup(id).await?,
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
        .unwrap_or_else(|| "deleted".to_string());
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
        status: &str,
    ) -> Result<Marked, ManagerError> {
        self.records()?.set_volume_status(&row.id, status).await?;
        self.begin("volume", &row.id, status).await?;
        Ok(Marked::Volume(row.clone()))
    }

    /// As [`Manager::mark_volume`], for a backup (`restore_target` is set
    /// with the status).
    async fn mark_backup(
        &self,
        row: &crate::records::BackupRow,
        status: &str,
        restore_target: Option<&str>,
    ) -> Result<Marked, ManagerError> {
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
                        .put_back_ends("volume", id, "creating", "deleted")
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

    /// Creates a volume of `size_bytes` (more than 0) on the volume
    /// backend `backend`; answers it `available`.
    ///
    /// # Errors
    /// Refused (nothing recorded) for a size of 0 or an unknown backend;
    /// the backend's refusal or failure (a failure leaves the record `error`).
    pub async fn create_volume(
        &self,
        size_bytes: u64,
        backend: &str,
    ) -> Result<VolumeAnswer, ManagerError> {
        if size_bytes == 0 {
            return Err(refused(
                "volume create",
                "a volume of 0 bytes: give its size",
            ));
        }
        let kind = self.handles.shell.board.backend(backend).map(|b| b.kind);
        if kind != Some(Kind::Volume) {
            return Err(refused(
                "volume create",
                format_args!("backend {backend:?}: no volume backend of that name"),
            ));
        }
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        self.records()?
            .insert_volume(&id, backend, size_bytes, VolumeStatus::Creating.as_str())
            .await?;
        self.begin("volume", &id, VolumeStatus::Creating.as_str())
            .await?;
        let marked = Marked::NewVolume(id.clone());
        let result = self
            .route(
                backend,
                Operation::CreateVolume(Volume::new(&id, size_bytes)),
            )
            .await;
        let result = match result {
            // Turned away before the driver: no record of a volume that
            // never existed.
            Err(error) if error.before_driver() => {
                self.put_back(&[marked]).await?;
                return Err(error);
            }
            result => result,
        };
        match result {
            Ok(_) => {
                self.end(
                    "volume create",
                    "volume",
                    &id,
                    "creating",
                    End::to("available"),
                    "the driver's volume is kept under that record (`volume delete` removes both)",
                )
                .await?;
                Ok(VolumeAnswer {
                    backend: Some(backend.to_string()),
                    size_bytes: Some(size_bytes),
                    ..VolumeAnswer::new(&id, VolumeStatus::Available)
                })
            }
            Err(error) => {
                // Failed in the driver: kept as error.
                self.finish("volume", &id, "creating", &End::to("error"))
                    .await?;
                Err(error)
            }
        }
    }

    /// Deletes a volume (not while attached or busy); answers it `deleted`.
    ///
    /// # Errors
    /// Refused (nothing changed) for an unknown, busy or attached volume;
    /// the backend's refusal or failure.
    pub async fn delete_volume(&self, id: &str) -> Result<VolumeAnswer, ManagerError> {
        let row = self.volume(id, "volume delete").await?;
        // A deletion left `deleting` (a driver failure, a crash) may run again.
        if row.status != "deleting" {
            refuse_busy("volume delete", &row)?;
        }
        if row.status == "in-use" {
            return Err(refused(
                "volume delete",
                format_args!("volume {id} is in-use: detach it first"),
            ));
        }
        let marked = self.mark_volume(&row, "deleting").await?;
        let result = self
            .route(
                &row.backend,
                Operation::DeleteVolume(Volume::new(id, row.size_bytes)),
            )
            .await;
        self.settle(&[marked], &result).await?;
        // A driver failure keeps `deleting`: resumed at the next start.
        result?;
        self.end(
            "volume delete",
            "volume",
            id,
            "deleting",
            End::to("deleted"),
            "the driver deleted the volume: delete it again to remove the record",
        )
        .await?;
        Ok(VolumeAnswer::new(id, VolumeStatus::Deleted))
    }

    /// Grows an available volume to `size_bytes`; answers its new size.
    ///
    /// # Errors
    /// Refused (nothing changed) for an unknown or busy volume, one not
    /// `available`, or a size not larger than its own; the backend's
    /// refusal or failure (a failure leaves it `error_extending`).
    pub async fn extend_volume(
        &self,
        id: &str,
        size_bytes: u64,
    ) -> Result<VolumeAnswer, ManagerError> {
        let row = self.volume(id, "volume extend").await?;
        refuse_busy("volume extend", &row)?;
        if size_bytes <= row.size_bytes {
            return Err(refused(
                "volume extend",
                format_args!(
                    "a new size of {size_bytes} bytes: expected a size larger than the volume's {} bytes",
                    row.size_bytes
                ),
            ));
        }
        if row.status != "available" {
            return Err(refused(
                "volume extend",
                format_args!(
                    "volume {id} is {}: only available volumes extend",
                    row.status
                ),
            ));
        }
        let marked = self.mark_volume(&row, "extending").await?;
        let result = self
            .route(
                &row.backend,
                Operation::ExtendVolume(Volume::new(id, row.size_bytes), size_bytes),
            )
            .await;
        let result = match result {
            // Turned away before the driver: the volume is as it was.
            Err(error) if error.before_driver() => {
                self.put_back(&[marked]).await?;
                return Err(error);
            }
            result => result,
        };
        match result {
            Ok(_) => {
                self.end(
                    "volume extend",
                    "volume",
                    id,
                    "extending",
                    End {
                        size_bytes: Some(size_bytes),
                        ..End::to("available")
                    },
                    "the driver extended the volume and the record has its new size",
                )
                .await?;
                Ok(VolumeAnswer {
                    size_bytes: Some(size_bytes),
                    ..VolumeAnswer::new(id, VolumeStatus::Available)
                })
            }
            Err(error) => {
                self.finish("volume", id, "extending", &End::to("error_extending"))
                    .await?;
                Err(error)
            }
        }
    }

    /// `create_export` then `initialize_connection` with `connector`, and
    /// records the attachment of `connector`'s host (Cinder's attachments
    /// API: one per host; attaching the same host again is idempotent and
    /// returns the same, live, endpoint).
    ///
    /// # Errors
    /// Refused (nothing changed) for an unknown or busy volume, one neither
    /// `available` nor `in-use`, or a connector without a host; the
    /// backend's refusal or failure.
    pub async fn attach(&self, id: &str, connector: Connector) -> Result<Answer, ManagerError> {
        let row = self.volume(id, "volume attach").await?;
        refuse_busy("volume attach", &row)?;
        if row.status != "available" && row.status != "in-use" {
            return Err(refused(
                "volume attach",
                format_args!(
                    "volume {id} is {}: only available or in-use volumes attach",
                    row.status
                ),
            ));
        }
        let host = attaching_host(&connector, "volume attach")?;
        let connector_json = serde_json::to_string(&connector).unwrap_or_default();
        let output = self
            .route(
                &row.backend,
                Operation::Attach {
                    volume: Volume::new(id, row.size_bytes),
                    connector: Box::new(connector),
                },
            )
            .await?;
        self.records()?
            .put_attachment(id, &host, &connector_json)
            .await?;
        self.records()?.set_volume_status(id, "in-use").await?;
        match output {
            OperationOutput::Connection(info) => Ok(Answer::Connection(*info)),
            other => Err(invalid(format!(
                "unexpected answer from the driver: {other:?}"
            ))),
        }
    }

    /// Detaches hosts from a volume: `connector`'s host only, every host
    /// (`all`), or the only one (neither; refused when several hosts are
    /// attached, so a live migration's destination is not cut off by
    /// mistake). Each host gets `terminate_connection`; the last one also
    /// `remove_export`. The volume stays `in-use` while any host remains.
    ///
    /// # Errors
    /// Refused (nothing changed) for an unknown or busy volume, a host not
    /// attached, or [`Detach::Only`] with several hosts attached; the
    /// backend's refusal or failure.
    pub async fn detach(&self, id: &str, which: Detach) -> Result<VolumeAnswer, ManagerError> {
        let row = self.volume(id, "volume detach").await?;
        refuse_busy("volume detach", &row)?;
        self.detach_row(row, which).await
    }

    async fn detach_row(
        &self,
        row: crate::records::VolumeRow,
        which: Detach,
    ) -> Result<VolumeAnswer, ManagerError> {
        let id = row.id.as_str();
        let attachments = self.records()?.attachments(id).await?;
        let hosts = || {
            attachments
                .iter()
                .map(|a| a.connector_host.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let targets: Vec<&crate::records::AttachmentRow> = match &which {
            Detach::Host(c) => {
                let host = attaching_host(c, "volume detach")?;
                let found: Vec<_> = attachments
                    .iter()
                    .filter(|a| a.connector_host == host)
                    .collect();
                if found.is_empty() {
                    return Err(refused(
                        "volume detach",
                        if attachments.is_empty() {
                            format!("volume {id} is not attached to any host")
                        } else {
                            format!(
                                "volume {id} is not attached to host {host} (attached to: {})",
                                hosts()
                            )
                        },
                    ));
                }
                found
            }
            Detach::All => attachments.iter().collect(),
            Detach::Only if attachments.len() > 1 => {
                return Err(refused(
                    "volume detach",
                    format_args!(
                        "volume {id} is attached to {} hosts ({}); name the host to detach (its connector), or detach every host",
                        attachments.len(),
                        hosts()
                    ),
                ));
            }
            Detach::Only => attachments.iter().collect(),
        };
        let connector = match which {
            Detach::Host(connector) => Some(connector),
            Detach::All | Detach::Only => None,
        };
        let volume = Volume::new(id, row.size_bytes);
        let mut remaining = attachments.len();
        if targets.is_empty() {
            // No attachment recorded (nothing attached, or an export left
            // by an interrupted attach): remove whatever export there is.
            self.route(
                &row.backend,
                Operation::Detach {
                    volume: volume.clone(),
                    connector: Box::new(connector.unwrap_or_default()),
                },
            )
            .await?;
        }
        for attachment in targets {
            let connector = Box::new(Connector::from_json(&attachment.connector).unwrap_or_else(
                |_| Connector {
                    host: Some(attachment.connector_host.clone()),
                    ..Connector::default()
                },
            ));
            let volume = volume.clone();
            let operation = if remaining == 1 {
                Operation::Detach { volume, connector }
            } else {
                Operation::TerminateConnection { volume, connector }
            };
            self.route(&row.backend, operation).await?;
            self.records()?
                .delete_attachment(id, &attachment.connector_host)
                .await?;
            remaining -= 1;
        }
        let status = if remaining > 0 {
            VolumeStatus::InUse
        } else {
            VolumeStatus::Available
        };
        self.records()?
            .set_volume_status(id, status.as_str())
            .await?;
        let attached: Vec<String> = self
            .records()?
            .attachments(id)
            .await?
            .into_iter()
            .map(|a| a.connector_host)
            .collect();
        Ok(VolumeAnswer {
            attached_to: Some(attached),
            ..VolumeAnswer::new(id, status)
        })
    }

    /// Whether the backup service can take `operation` ("backup create",
    /// ...); the refusal says what was refused, the state in words, what
    /// happens next and what was left untouched (`untouched`).
    fn backup_ready(&self, operation: &str, untouched: &str) -> Result<(), ManagerError> {
        match self.handles.shell.board.backend(BACKUP_BACKEND) {
            None => Err(refused(
                operation,
                format_args!("no backup service is configured (set backup_driver)"),
            )),
            Some(b) if b.state == StateName::Ready => Ok(()),
            Some(b) => {
                let situation = crate::events::refusal::Situation {
                    state: b.state,
                    attempt: b.attempt,
                    gave_up: b.gave_up,
                    last_error: b.last_error.as_deref(),
                    next_retry: b
                        .next_retry
                        .as_deref()
                        .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
                    draining_for: None,
                    until: None,
                };
                let now = self
                    .handles
                    .shell
                    .clock
                    .wall(self.handles.shell.clock.now());
                Err(refused(
                    operation,
                    format_args!(
                        "the backup service is down: {}; {untouched}",
                        crate::events::refusal::describe(&situation, now)
                    ),
                ))
            }
        }
    }

    async fn located(&self, row: &crate::records::VolumeRow) -> Result<Volume, ManagerError> {
        let mut volume = Volume::new(&row.id, row.size_bytes);
        if let OperationOutput::Location(location) = self
            .route(&row.backend, Operation::Locate(volume.clone()))
            .await?
        {
            volume.location = location;
        }
        Ok(volume)
    }

    /// Backs a volume up and answers once it is done (see
    /// [`Manager::start_backup`]).
    ///
    /// Errors: as [`Manager::start_backup`], or the driver call failed (the
    /// backup is then `error`).
    pub async fn create_backup(&self, volume_id: &str) -> Result<Answer, ManagerError> {
        self.start_backup(volume_id).await?.run.await
    }

    /// Checks and records a backup of `volume_id` (`creating`); running
    /// the returned [`Started::run`] backs it up, reporting progress
    /// (`backup.createprogress`, `backup show`).
    ///
    /// Errors: the backup service is not Ready, no such volume, or the
    /// volume is neither `available` nor `in-use`; nothing was recorded.
    pub async fn start_backup(&self, volume_id: &str) -> Result<Started, ManagerError> {
        self.backup_ready("backup create", "no backup was created")?;
        let row = self.volume(volume_id, "backup create").await?;
        refuse_busy("backup create", &row)?;
        if row.status != "available" && row.status != "in-use" {
            return Err(refused(
                "backup create",
                format_args!(
                    "volume {volume_id} is {}: only available or in-use volumes back up",
                    row.status
                ),
            ));
        }
        let volume = self.located(&row).await?;
        // The source is `backing-up` for the backup's duration (as
        // Cinder's): delete, extend, attach, detach and a second backup
        // of it are refused meanwhile; it goes back to its status after.
        // A plain status, not work of its own: the backup is the work (a
        // crash, or a survivor claiming it, puts the source back).
        self.records()?
            .set_volume_status(volume_id, "backing-up")
            .await?;
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        if let Err(error) = self.records()?.insert_backup(&id, volume_id).await {
            self.records()?
                .set_volume_status(volume_id, &row.status)
                .await?;
            return Err(error.into());
        }
        self.begin("backup", &id, "creating").await?;
        let record = BackupRecord {
            id: id.clone(),
            volume_id: volume_id.to_string(),
            size_bytes: row.size_bytes,
            progress: Default::default(),
        };
        // Conservative (a crash from here on may leave data in the store);
        // corrected from what the driver reports once the call ends.
        self.records()?.set_backup_reached(&id, true).await?;
        let report = Report {
            work: BackupWork::Create,
            backup_id: id.clone(),
            volume_id: volume_id.to_string(),
            progress: record.progress.clone(),
            bytes_total: row.size_bytes,
        };
        self.operations.start(
            &id,
            BackupWork::Create,
            volume_id,
            report.progress.clone(),
            row.size_bytes,
        );
        let accepted = Answer::Backup(BackupAnswer {
            volume_id: Some(volume_id.to_string()),
            ..BackupAnswer::new(&id, BackupStatus::Creating)
        });
        let manager = self.clone();
        let volume_id = volume_id.to_string();
        let run = async move {
            let progress = record.progress.clone();
            let routed = manager.route(
                BACKUP_BACKEND,
                Operation::Backup {
                    backup: Box::new(record),
                    volume,
                },
            );
            let result = manager.reporter().reported(&report, routed).await;
            // The source goes back to its status with the backup's end,
            // in the same write (kept with it if the database does not
            // answer).
            let source = Source {
                volume_id: volume_id.clone(),
                status: row.status.clone(),
            };
            manager
                .backup_created(&id, source, row.size_bytes, &progress, result)
                .await
        };
        Ok(Started {
            accepted,
            run: Box::pin(run),
        })
    }

    /// Records how a backup call ended; `source` is the backed-up volume
    /// and the status it goes back to.
    async fn backup_created(
        &self,
        id: &str,
        source: Source,
        size_bytes: u64,
        progress: &crate::driver::backup::Progress,
        result: Result<OperationOutput, ManagerError>,
    ) -> Result<Answer, ManagerError> {
        let volume_id = source.volume_id.clone();
        match result {
            Ok(_) => {
                // The size and the source's status go with the fenced end.
                let end = End {
                    size_bytes: Some(size_bytes),
                    source: Some(source),
                    ..End::to("available")
                };
                let ended = self
                    .end(
                    "backup create",
                    "backup",
                    id,
                    "creating",
                    end,
                    "what the driver stored is kept under that record (`backup delete` removes both)",
                )
                .await;
                self.operations
                    .end(id, ended.as_ref().err().map(ToString::to_string));
                ended?;
                Ok(Answer::Backup(BackupAnswer {
                    volume_id: Some(volume_id),
                    ..BackupAnswer::new(id, BackupStatus::Available)
                }))
            }
            Err(error) => {
                let reached = !error.before_driver() && progress.wrote();
                if !reached {
                    // Refused before the driver ran, or the driver wrote
                    // nothing: nothing reached the store, so the error
                    // backup is deletable without it.
                    self.records()?.set_backup_reached(id, false).await?;
                }
                let end = End {
                    source: Some(source),
                    ..End::to("error")
                };
                self.finish("backup", id, "creating", &end).await?;
                self.operations.end(id, Some(error.to_string()));
                self.handles.shell.notifier.emit(
                    Some(BACKUP_BACKEND),
                    self.handles.shell.clock.now(),
                    crate::events::Event::BackupCreateError {
                        backup_id: id.to_string(),
                        volume_id: volume_id.to_string(),
                        reached_backend: reached,
                        error: error.to_string(),
                    },
                );
                Err(error)
            }
        }
    }

    /// Restores a backup into an existing volume and answers once it is
    /// done (see [`Manager::start_restore`]).
    ///
    /// Errors: as [`Manager::start_restore`], or the driver call failed.
    pub async fn restore(&self, backup_id: &str, volume_id: &str) -> Result<Answer, ManagerError> {
        self.start_restore(backup_id, volume_id).await?.run.await
    }

    /// Checks and records a restore of `backup_id` into `volume_id` (the
    /// backup `restoring`, the volume `restoring-backup`); running the
    /// returned [`Started::run`] restores it, reporting progress
    /// (`backup.restoreprogress`, `backup show`).
    ///
    /// Errors: the backup service is not Ready, no such backup or volume,
    /// the backup is not `available` or the volume not `available`;
    /// nothing was recorded.
    pub async fn start_restore(
        &self,
        backup_id: &str,
        volume_id: &str,
    ) -> Result<Started, ManagerError> {
        self.backup_ready("backup restore", "the volume was not touched")?;
        let backup = self.backup(backup_id, "backup restore").await?;
        if backup.status != "available" {
            return Err(refused(
                "backup restore",
                format_args!(
                    "backup {backup_id} is {}: only available backups restore",
                    backup.status
                ),
            ));
        }
        let row = self.volume(volume_id, "backup restore").await?;
        refuse_busy("backup restore", &row)?;
        if row.status != "available" {
            return Err(refused(
                "backup restore",
                format_args!(
                    "volume {volume_id} is {}: restore needs an available volume",
                    row.status
                ),
            ));
        }
        // Whatever its status says (a reset-state, an interrupted attach):
        // a restore never writes under a live export or attachment.
        let attached = self.attached_hosts(volume_id).await?;
        if !attached.is_empty() {
            return Err(refused(
                "backup restore",
                format_args!(
                    "volume {volume_id} is attached to {}: detach it first",
                    attached.join(", ")
                ),
            ));
        }
        if self.records()?.export(volume_id).await?.is_some() {
            return Err(refused(
                "backup restore",
                format_args!(
                    "volume {volume_id} is still exported: detach it first (volume detach {volume_id} --all)"
                ),
            ));
        }
        if backup.size_bytes > row.size_bytes {
            // As Cinder: the data would not fit; the volume keeps its size.
            return Err(refused(
                "backup restore",
                format_args!(
                    "volume {volume_id} has {} bytes, fewer than backup {backup_id}'s {}: extend it first",
                    row.size_bytes, backup.size_bytes
                ),
            ));
        }
        let volume = self.located(&row).await?;
        let marked = [
            self.mark_backup(&backup, "restoring", Some(volume_id))
                .await?,
            self.mark_volume(&row, "restoring-backup").await?,
        ];
        let record = BackupRecord {
            id: backup_id.to_string(),
            volume_id: backup.volume_id.clone(),
            size_bytes: backup.size_bytes,
            progress: Default::default(),
        };
        let report = Report {
            work: BackupWork::Restore,
            backup_id: backup_id.to_string(),
            volume_id: volume_id.to_string(),
            progress: record.progress.clone(),
            bytes_total: backup.size_bytes,
        };
        self.operations.start(
            backup_id,
            BackupWork::Restore,
            volume_id,
            report.progress.clone(),
            backup.size_bytes,
        );
        let accepted = Answer::Restore(RestoreAnswer {
            backup_id: backup_id.to_string(),
            volume_id: volume_id.to_string(),
            status: RestoreStatus::Restoring,
        });
        let manager = self.clone();
        let (backup_id, volume_id) = (backup_id.to_string(), volume_id.to_string());
        let run = async move {
            let progress = record.progress.clone();
            let routed = manager.route(
                BACKUP_BACKEND,
                Operation::Restore {
                    backup: Box::new(record),
                    volume,
                },
            );
            let result = manager.reporter().reported(&report, routed).await;
            manager
                .restored(&backup_id, &volume_id, &marked, &progress, result)
                .await
        };
        Ok(Started {
            accepted,
            run: Box::pin(run),
        })
    }

    /// Records how a restore call ended.
    async fn restored(
        &self,
        backup_id: &str,
        volume_id: &str,
        marked: &[Marked],
        progress: &crate::driver::backup::Progress,
        result: Result<OperationOutput, ManagerError>,
    ) -> Result<Answer, ManagerError> {
        let put_back = self.settle(marked, &result).await?;
        // The backup's end and the volume's are each written or kept: one
        // the database did not answer does not leave the other unwritten.
        let mut backup_pending = None;
        if !put_back {
            match self
                .finish("backup", backup_id, "restoring", &End::to("available"))
                .await
            {
                Err(pending @ ManagerError::Pending { .. }) => backup_pending = Some(pending),
                other => {
                    other?;
                }
            }
        }
        match result {
            Ok(_) => {
                let ended = self
                    .end(
                        "backup restore",
                        "volume",
                        volume_id,
                        "restoring-backup",
                        End::to("available"),
                        "the driver restored the data into the volume",
                    )
                    .await;
                self.operations
                    .end(backup_id, ended.as_ref().err().map(ToString::to_string));
                ended?;
                if let Some(pending) = backup_pending {
                    return Err(pending);
                }
                Ok(Answer::Restore(RestoreAnswer {
                    backup_id: backup_id.to_string(),
                    volume_id: volume_id.to_string(),
                    status: RestoreStatus::Restored,
                }))
            }
            Err(error) => {
                // Cinder's word for a volume a failed restore changed; one
                // it never wrote to is as it was.
                let written = !put_back && progress.wrote();
                let status = if written {
                    "error_restoring"
                } else {
                    "available"
                };
                if !put_back {
                    self.finish("volume", volume_id, "restoring-backup", &End::to(status))
                        .await?;
                }
                self.operations.end(backup_id, Some(error.to_string()));
                self.handles.shell.notifier.emit(
                    Some(BACKUP_BACKEND),
                    self.handles.shell.clock.now(),
                    Event::BackupRestoreError {
                        backup_id: backup_id.to_string(),
                        volume_id: volume_id.to_string(),
                        volume_status: status.to_string(),
                        volume_written: written,
                        error: error.to_string(),
                    },
                );
                Err(error)
            }
        }
    }

    /// Sets a volume record's status by hand, as Cinder's `reset-state`:
    /// `available`, `in-use`, `error` or `error_restoring`. Recorded and
    /// notified (`volume.reset_state`).
    ///
    /// A volume with live attachments or an export is refused unless
    /// `force`, which first detaches every host and removes the export
    /// (Cinder's `os-reset_status` after `os-force_detach`), so a status
    /// set by hand never leaves a server running under a volume the
    /// records call free. Resetting to `in-use` keeps them (nothing to
    /// detach). Otherwise nothing is called on a driver.
    ///
    /// Errors: no such volume, a status outside that list, attachments or
    /// an export without `force`, or the forced detach failed.
    pub async fn reset_volume_state(
        &self,
        id: &str,
        state: VolumeStatus,
        force: bool,
    ) -> Result<VolumeAnswer, ManagerError> {
        let state = settable_volume_status(state.as_str())?;
        let row = self.volume(id, "volume reset-state").await?;
        let attached = self.attached_hosts(id).await?;
        let exported = self.records()?.export(id).await?.is_some();
        if state != VolumeStatus::InUse && (exported || !attached.is_empty()) {
            if !force {
                return Err(refused(
                    "volume reset-state",
                    format_args!(
                        "volume {id} is {}: its export still runs; detach it first, or add --force to detach every host and then set \"{state}\"",
                        if attached.is_empty() {
                            "exported".to_string()
                        } else {
                            format!("attached to {}", attached.join(", "))
                        }
                    ),
                ));
            }
            self.detach_row(row.clone(), Detach::All).await?;
        }
        // An admin's word ends any work on it (in a fleet, its worker row).
        self.finish("volume", id, "", &End::to(state.as_str()))
            .await?;
        self.records()?
            .set_volume_status(id, state.as_str())
            .await?;
        self.handles.shell.notifier.emit(
            Some(&row.backend),
            self.handles.shell.clock.now(),
            Event::VolumeResetState {
                volume_id: id.to_string(),
                from: row.status.clone(),
                to: state.to_string(),
            },
        );
        Ok(VolumeAnswer {
            from: Some(row.status),
            ..VolumeAnswer::new(id, state)
        })
    }

    /// Sets a backup record's status by hand, as Cinder's
    /// `backup-reset-state`: `available` or `error`. Recorded and notified
    /// (`backup.reset_state`); nothing is called on a driver.
    ///
    /// Errors: no such backup, or a status outside that list.
    pub async fn reset_backup_state(
        &self,
        id: &str,
        state: BackupStatus,
    ) -> Result<BackupAnswer, ManagerError> {
        let state = settable_backup_status(state.as_str())?;
        let backup = self.backup(id, "backup reset-state").await?;
        self.finish("backup", id, "", &End::to(state.as_str()))
            .await?;
        self.records()?
            .set_backup(id, state.as_str(), None, None)
            .await?;
        self.handles.shell.notifier.emit(
            Some(BACKUP_BACKEND),
            self.handles.shell.clock.now(),
            Event::BackupResetState {
                backup_id: id.to_string(),
                from: backup.status.clone(),
                to: state.to_string(),
            },
        );
        Ok(BackupAnswer {
            from: Some(backup.status),
            ..BackupAnswer::new(id, state)
        })
    }

    /// Deletes a backup. One in `error` that never reached the backup store
    /// is deleted without the driver (even while the backup service is down).
    pub async fn delete_backup(&self, id: &str) -> Result<BackupAnswer, ManagerError> {
        let backup = self.backup(id, "backup delete").await?;
        if backup.status == "error" && !backup.reached_backend {
            self.records()?.delete_backup(id).await?;
            self.operations.forget(id);
            return Ok(BackupAnswer {
                reached_backend: Some(false),
                ..BackupAnswer::new(id, BackupStatus::Deleted)
            });
        }
        if backup.status == "creating" || backup.status == "restoring" {
            return Err(refused(
                "backup delete",
                format_args!("backup {id} is {}: wait for it to finish", backup.status),
            ));
        }
        self.backup_ready("backup delete", "the backup was kept")?;
        let marked = self.mark_backup(&backup, "deleting", None).await?;
        let record = BackupRecord {
            id: id.to_string(),
            volume_id: backup.volume_id.clone(),
            size_bytes: backup.size_bytes,
            progress: Default::default(),
        };
        let result = self
            .route(BACKUP_BACKEND, Operation::DeleteBackup(Box::new(record)))
            .await;
        self.settle(&[marked], &result).await?;
        result?;
        self.end(
            "backup delete",
            "backup",
            id,
            "deleting",
            End::to("deleted"),
            "the driver deleted the backup's data: delete it again to remove the record",
        )
        .await?;
        self.operations.forget(id);
        Ok(BackupAnswer::new(id, BackupStatus::Deleted))
    }

    /// One backup's record, with `progress` (`percent`, `bytes_done`,
    /// `bytes_total`) while a backup or restore of it runs and `operation`
    /// (the running or last-ended one since the daemon started: `work`,
    /// `volume_id`, `state`, `error`).
    ///
    /// Errors: no such backup; the records database failed.
    pub async fn show_backup(&self, id: &str) -> Result<BackupShown, ManagerError> {
        let record = self
            .records()?
            .backup(id)
            .await?
            .ok_or_else(|| invalid(format!("no backup {id}")))?;
        let (progress, operation) = self.operations.show(id);
        Ok(BackupShown {
            record,
            progress,
            operation,
        })
    }

    /// The connector hosts `volume_id` is attached to (its attachments,
    /// oldest first). The `volume list` column reads only this.
    async fn attached_hosts(&self, volume_id: &str) -> Result<Vec<String>, ManagerError> {
        Ok(self
            .records()?
            .attachments(volume_id)
            .await?
            .into_iter()
            .map(|a| a.connector_host)
            .collect())
    }

    /// Every volume, by id, as `volume list` prints it.
    ///
    /// Errors: the records database failed.
    pub async fn list_volumes(&self) -> Result<Vec<VolumeListRow>, ManagerError> {
        let mut rows = Vec::new();
        for v in self.records()?.volumes().await? {
            rows.push(VolumeListRow {
                attached_to: self.attached_hosts(&v.id).await?,
                id: v.id,
                status: v.status,
                size_bytes: v.size_bytes,
                backend: v.backend,
                updated_at: v.updated_at,
            });
        }
        Ok(rows)
    }

    /// Every backup, by id, as `backup list` prints it.
    ///
    /// Errors: the records database failed.
    pub async fn list_backups(&self) -> Result<Vec<BackupListRow>, ManagerError> {
        Ok(self
            .records()?
            .backups()
            .await?
            .into_iter()
            .map(|b| BackupListRow {
                id: b.id,
                status: b.status,
                size_bytes: b.size_bytes,
                volume_id: b.volume_id,
                updated_at: b.updated_at,
            })
            .collect())
    }

    /// Resolves records a crash left in transitional states (with a
    /// notification each), then resumes interrupted deletions once their
    /// backends are Ready (waiting up to `patience`).
    pub async fn recover(&self, patience: Duration) -> Result<(), ManagerError> {
        let now = self.handles.shell.clock.now();
        // In a fleet the records are shared: only the work this host left
        // under an earlier epoch is its to resolve (others' is claimed by
        // the cluster's survivors), and nothing else is touched.
        #[cfg(feature = "fleet")]
        if let Some(member) = self.member() {
            member
                .recover_own_work(&self.handles.shell.notifier, now)
                .await?;
            return Ok(());
        }
        for r in self.records()?.recover().await? {
            self.handles.shell.notifier.emit(
                None,
                now,
                Event::RecordRecovered {
                    kind: r.kind.to_string(),
                    id: r.id,
                    from: r.from,
                    to: r.to,
                },
            );
        }
        let deadline = actix::clock::Instant::now() + patience;
        for backup in self
            .records()?
            .backups()
            .await?
            .into_iter()
            .filter(|b| b.status == "deleting")
        {
            while self.backup_ready("backup delete", "").is_err()
                && actix::clock::Instant::now() < deadline
            {
                actix::clock::sleep(Duration::from_millis(500)).await;
            }
            if let Err(error) = self.delete_backup(&backup.id).await {
                tracing::error!(backup = %backup.id, %error, "resumed deletion failed");
            }
        }
        for volume in self
            .records()?
            .volumes()
            .await?
            .into_iter()
            .filter(|v| v.status == "deleting")
        {
            while self
                .handles
                .shell
                .board
                .backend(&volume.backend)
                .map(|b| b.state)
                != Some(StateName::Ready)
                && actix::clock::Instant::now() < deadline
            {
                actix::clock::sleep(Duration::from_millis(500)).await;
            }
            if let Err(error) = self.delete_volume(&volume.id).await {
                tracing::error!(volume = %volume.id, %error, "resumed deletion failed");
            }
        }
        Ok(())
    }
}
