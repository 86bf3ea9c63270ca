//! The control socket: one JSON request per connection, one JSON response, over a
//! Unix socket created mode 0600. `rekindle status` and `rekindle reload` are its clients.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::UnixListener;

use rekindle::actors::Handles;

use crate::exit::Exit;
use rekindle::actors::controller::{RequestReload, RequestReloadAndWait};
use rekindle::events::status::{BackendStatus, ServiceStatus};
use rekindle::operations::listing::{BackupListRow, VolumeListRow};
use rekindle::operations::{Answer, Detach, Manager, ManagerError, Started};
use rekindle::records::{BackupStatus, VolumeStatus};
use rekindle::{BackendResult, ReloadOutcome};

/// The longest request line the server reads.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Services and backends.
    Status,
    /// Reload the config file.
    Reload {
        /// Answer once the reload settled, with the per-backend report (the
        /// default); false answers at once (started, queued, rejected).
        #[serde(default = "yes")]
        wait: bool,
    },
    /// Create a volume.
    VolumeCreate {
        /// Its size in bytes (the client reads `1G`, `512M`).
        size_bytes: u64,
        /// The backend.
        backend: String,
    },
    /// Grow a volume.
    VolumeExtend {
        /// The volume.
        id: String,
        /// The new size in bytes.
        size_bytes: u64,
    },
    /// Delete a volume.
    VolumeDelete {
        /// The volume.
        id: String,
    },
    /// Attach a volume for a host.
    VolumeAttach {
        /// The volume.
        id: String,
        /// The attaching host.
        connector: Box<rekindle::driver::Connector>,
    },
    /// Detach hosts from a volume: one (`connector`), every one (`all`), or
    /// the only one (neither).
    VolumeDetach {
        /// The volume.
        id: String,
        /// Which hosts.
        which: Box<Detach>,
    },
    /// Back a volume up.
    BackupCreate {
        /// The volume.
        volume: String,
        /// Answer once the backup is recorded (`creating`, with its id)
        /// and carry on in the daemon, instead of answering when it ends;
        /// follow it with [`Request::BackupShow`].
        #[serde(default)]
        background: bool,
    },
    /// Restore a backup into a volume.
    BackupRestore {
        /// The backup.
        backup: String,
        /// The target volume.
        volume: String,
        /// Answer once the restore is recorded (`restoring`) and carry on
        /// in the daemon; follow it with [`Request::BackupShow`].
        #[serde(default)]
        background: bool,
    },
    /// One backup's record, with its progress while a backup or restore of
    /// it runs, and how the last one ended.
    BackupShow {
        /// The backup.
        id: String,
    },
    /// Delete a backup.
    BackupDelete {
        /// The backup.
        id: String,
    },
    /// Set a volume record's status by hand (Cinder's `reset-state`).
    VolumeResetState {
        /// The volume.
        id: String,
        /// The new status.
        state: VolumeStatus,
        /// Detach every host and remove the export first (refused
        /// without it while any is live).
        #[serde(default)]
        force: bool,
    },
    /// Set a backup record's status by hand (Cinder's `backup-reset-state`).
    BackupResetState {
        /// The backup.
        id: String,
        /// The new status.
        state: BackupStatus,
    },
    /// Every volume.
    VolumeList,
    /// Every backup.
    BackupList,
}

/// `rekindle status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// One row per service.
    pub services: Vec<ServiceRow>,
    /// One row per backend.
    pub backends: Vec<BackendRow>,
    /// Set while the records cannot be written: every service row is down
    /// and its Updated At is the last heartbeat written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_fault: Option<rekindle::events::status::RecordsFault>,
    /// Set when the fleet's database did not answer this `status`: why,
    /// and that the service rows shown are this host's own, as it last
    /// heartbeated them (their Updated At says how old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_fault: Option<String>,
}

/// A service row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRow {
    /// `cinder-volume` or `cinder-backup`.
    pub binary: String,
    /// `host@backend` or `host`.
    pub host: String,
    /// The backend.
    pub backend: String,
    /// `up` or `down`.
    pub state: String,
    /// Last heartbeat.
    pub updated_at: String,
    /// The host's cluster, in a fleet (`[database] connection`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// A backend row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRow {
    /// Backend name.
    pub name: String,
    /// `volume` or `backup`.
    pub kind: String,
    /// Driver name.
    pub driver: String,
    /// Lifecycle state (`ready`, `failed_recoverable`, ...).
    pub state: String,
    /// Current attempt (0 = the first setup).
    pub attempt: u32,
    /// Setup attempts the budget allows; absent when unlimited.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The retry budget is spent; a reload starts it again.
    #[serde(default)]
    pub gave_up: bool,
    /// Last error.
    pub last_error: Option<String>,
    /// Next retry (RFC 3339).
    pub next_retry: Option<String>,
    /// `current`, or why the backend runs an older config than the file's
    /// (`old config (rolled back: ...)`).
    #[serde(default = "current")]
    pub config: String,
}

fn yes() -> bool {
    true
}

fn current() -> String {
    "current".to_string()
}

impl From<ServiceStatus> for ServiceRow {
    fn from(s: ServiceStatus) -> Self {
        ServiceRow {
            binary: s.binary,
            host: s.host,
            backend: s.backend,
            state: s.state,
            updated_at: s.updated_at,
            cluster: None,
        }
    }
}

impl From<BackendStatus> for BackendRow {
    fn from(b: BackendStatus) -> Self {
        BackendRow {
            name: b.name,
            kind: b.kind.as_str().to_string(),
            driver: b.driver,
            state: b.state.as_str().to_string(),
            attempt: b.attempt,
            max_attempts: b.max_attempts,
            gave_up: b.gave_up,
            last_error: b.last_error,
            next_retry: b.next_retry,
            config: b
                .stale_config
                .map_or_else(current, |stale| stale.to_string()),
        }
    }
}

/// A response on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// The status.
    Status(StatusReport),
    /// What the reload request led to.
    Reload {
        /// The outcome.
        outcome: ReloadOutcome,
    },
    /// A user operation succeeded.
    Done {
        /// What it answered.
        answer: Answer,
    },
    /// `volume list`.
    Volumes {
        /// Every volume, by id.
        rows: Vec<VolumeListRow>,
    },
    /// `backup list`.
    Backups {
        /// Every backup, by id.
        rows: Vec<BackupListRow>,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Control socket errors.
#[derive(Debug, Error)]
pub enum ControlError {
    /// Cannot create or connect to the socket.
    #[error("control socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The peer sent something that is not a valid message.
    #[error("control socket {path}: invalid message: {problem}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        problem: String,
    },
}

/// The current status, read from the board.
pub fn status_report(handles: &Handles) -> StatusReport {
    StatusReport {
        services: handles
            .shell
            .board
            .services()
            .into_iter()
            .map(Into::into)
            .collect(),
        backends: handles
            .shell
            .board
            .backends()
            .into_iter()
            .map(Into::into)
            .collect(),
        records_fault: handles.shell.board.records_fault(),
        fleet_fault: None,
    }
}

/// Keeps the service rows of `host` (the part before `@`) and of
/// `cluster`, when given: `rekindle status --host/--cluster`.
pub fn filter_services(report: &mut StatusReport, host: Option<&str>, cluster: Option<&str>) {
    report.services.retain(|s| {
        let own_host = s.host.split('@').next().unwrap_or(&s.host);
        host.is_none_or(|h| own_host == h)
            && cluster.is_none_or(|c| s.cluster.as_deref() == Some(c))
    });
}

/// A bound control socket, not yet answering: bound before the service
/// starts, so a busy or impossible path refuses start-up with one line.
pub struct ControlSocket {
    listener: UnixListener,
    metrics: Option<std::rc::Rc<rekindle::watch::metrics::Metrics>>,
}

impl Request {
    /// The user operation this request is (`volume create`, ...), for its
    /// metrics; `None` for reads, status and reloads.
    pub fn operation(&self) -> Option<&'static str> {
        Some(match self {
            Request::VolumeCreate { .. } => "volume create",
            Request::VolumeExtend { .. } => "volume extend",
            Request::VolumeDelete { .. } => "volume delete",
            Request::VolumeAttach { .. } => "volume attach",
            Request::VolumeDetach { .. } => "volume detach",
            Request::VolumeResetState { .. } => "volume reset-state",
            Request::BackupCreate { .. } => "backup create",
            Request::BackupRestore { .. } => "backup restore",
            Request::BackupDelete { .. } => "backup delete",
            Request::BackupResetState { .. } => "backup reset-state",
            _ => return None,
        })
    }
}

impl Response {
    /// How an operation's answer ended, for its metrics: `ok`, `pending`
    /// (its record waits for the fleet database) or `error`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Response::Done {
                answer: Answer::Pending(_),
            } => "pending",
            Response::Error { .. } => "error",
            _ => "ok",
        }
    }
}

impl ControlSocket {
    /// Binds the socket at `path` (mode 0600), replacing a stale socket
    /// file left by a crash. Must run inside a tokio runtime.
    ///
    /// Errors: another daemon answers there, or the path cannot be bound
    /// (missing directory, permissions).
    pub fn bind(path: &Path) -> Result<ControlSocket, ControlError> {
        let socket_error = |source| ControlError::Socket {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            // A live daemon answers; a stale socket file from a crash does not.
            if StdUnixStream::connect(path).is_ok() {
                return Err(socket_error(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another rekindle daemon is listening here",
                )));
            }
            std::fs::remove_file(path).map_err(socket_error)?;
        }
        let listener = UnixListener::bind(path).map_err(socket_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(socket_error)?;
        Ok(ControlSocket {
            listener,
            metrics: None,
        })
    }

    /// Counts and times every user operation answered here in `metrics`.
    pub fn with_metrics(mut self, metrics: std::rc::Rc<rekindle::watch::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Answers requests until the system stops.
    pub fn serve(self, handles: Handles, manager: Option<rekindle::operations::Manager>) {
        let (listener, metrics) = (self.listener, self.metrics);
        actix::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let handles = handles.clone();
                        let manager = manager.clone();
                        let metrics = metrics.clone();
                        actix::spawn(async move {
                            if let Err(error) =
                                answer(stream, handles, manager, metrics.as_deref()).await
                            {
                                tracing::warn!(%error, "control connection failed");
                            }
                        });
                    }
                    Err(error) => tracing::error!(%error, "control socket accept failed"),
                }
            }
        });
    }
}

async fn answer(
    stream: tokio::net::UnixStream,
    handles: Handles,
    manager: Option<rekindle::operations::Manager>,
    metrics: Option<&rekindle::watch::metrics::Metrics>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    AsyncBufReader::new(read.take(MAX_REQUEST_BYTES))
        .read_line(&mut line)
        .await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => {
            let timer = metrics
                .zip(request.operation())
                .map(|(m, op)| m.operation(op));
            let response = handle(request, &handles, manager.as_ref()).await;
            if let Some(timer) = timer {
                timer.ended(response.outcome());
            }
            response
        }
        Err(error) => Response::Error {
            message: format!("invalid request {:?}: {error}", line.trim()),
        },
    };
    let mut text = serde_json::to_string(&response).map_err(std::io::Error::from)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

async fn handle(request: Request, handles: &Handles, manager: Option<&Manager>) -> Response {
    match request {
        Request::Status => Response::Status(status(handles, manager).await),
        Request::Reload { wait } => reload(handles, wait).await,
        operation => match manager {
            // A fleet host that fenced itself starts nothing.
            Some(manager) => match manager.fence() {
                Ok(()) => operate(operation, manager).await,
                Err(error) => Response::Error {
                    message: error.to_string(),
                },
            },
            None => Response::Error {
                message: "this daemon keeps no records (no manager)".to_string(),
            },
        },
    }
}

/// Carries out a user operation on `manager`.
async fn operate(request: Request, m: &Manager) -> Response {
    match request {
        Request::VolumeCreate {
            size_bytes,
            backend,
        } => done(
            m.create_volume(size_bytes, &backend)
                .await
                .map(Answer::Volume),
        ),
        Request::VolumeExtend { id, size_bytes } => {
            done(m.extend_volume(&id, size_bytes).await.map(Answer::Volume))
        }
        Request::VolumeDelete { id } => done(m.delete_volume(&id).await.map(Answer::Volume)),
        Request::VolumeAttach { id, connector } => done(m.attach(&id, *connector).await),
        Request::VolumeDetach { id, which } => {
            done(m.detach(&id, *which).await.map(Answer::Volume))
        }
        Request::BackupCreate { volume, background } => {
            started(m.start_backup(&volume).await, background).await
        }
        Request::BackupRestore {
            backup,
            volume,
            background,
        } => started(m.start_restore(&backup, &volume).await, background).await,
        Request::BackupShow { id } => done(m.show_backup(&id).await.map(Answer::Shown)),
        Request::BackupDelete { id } => done(m.delete_backup(&id).await.map(Answer::Backup)),
        Request::VolumeResetState { id, state, force } => done(
            m.reset_volume_state(&id, state, force)
                .await
                .map(Answer::Volume),
        ),
        Request::BackupResetState { id, state } => {
            done(m.reset_backup_state(&id, state).await.map(Answer::Backup))
        }
        Request::VolumeList => match m.list_volumes().await {
            Ok(rows) => Response::Volumes { rows },
            Err(error) => Response::Error {
                message: error.to_string(),
            },
        },
        Request::BackupList => match m.list_backups().await {
            Ok(rows) => Response::Backups { rows },
            Err(error) => Response::Error {
                message: error.to_string(),
            },
        },
        Request::Status | Request::Reload { .. } => Response::Error {
            message: "not a user operation".to_string(),
        },
    }
}

/// An operation's answer: done, or its error; a pending outcome that is not
/// an error is told as done, its record pending (exit 0: it is durable and
/// will be written).
fn done(result: Result<Answer, ManagerError>) -> Response {
    match result {
        Ok(answer) => Response::Done { answer },
        Err(error) => match error.pending_answer() {
            Some(pending) => Response::Done {
                answer: Answer::Pending(pending),
            },
            None => Response::Error {
                message: error.to_string(),
            },
        },
    }
}

/// Asks the controller for a reload, answering at once or once it settled.
async fn reload(handles: &Handles, wait: bool) -> Response {
    let outcome = if wait {
        handles.controller.send(RequestReloadAndWait).await
    } else {
        handles.controller.send(RequestReload).await
    };
    match outcome {
        Ok(outcome) => Response::Reload { outcome },
        Err(error) => Response::Error {
            message: format!("the controller is gone: {error}"),
        },
    }
}

/// The status report; in a fleet, the services are every host's, read from
/// the shared records with liveness by the database's clock.
async fn status(handles: &Handles, manager: Option<&Manager>) -> StatusReport {
    let mut report = status_report(handles);
    let fleet = match manager {
        Some(m) => m.fleet_services().await,
        None => None,
    };
    match fleet {
        None => {}
        Some(Ok(rows)) => {
            report.services = rows
                .into_iter()
                .map(|(row, cluster)| ServiceRow {
                    binary: row.binary,
                    host: row.host,
                    backend: row.backend,
                    state: row.state,
                    updated_at: row.updated_at,
                    cluster: Some(cluster),
                })
                .collect()
        }
        Some(Err(error)) => {
            tracing::warn!(%error, "fleet services unavailable; showing this host's");
            report.fleet_fault = Some(fleet_fault(&error, &report.services));
        }
    }
    report
}

/// Why `status` shows only this host's service rows (`services`), and how
/// old the oldest of them is.
fn fleet_fault(error: &ManagerError, services: &[ServiceRow]) -> String {
    if services.is_empty() {
        return format!("{error}: this host has not heartbeated yet, so no service row is shown");
    }
    let oldest = services
        .iter()
        .filter_map(|s| humantime::parse_rfc3339_weak(&s.updated_at).ok())
        .min();
    let age = oldest
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map(|d| {
            format!(
                "; the oldest was written {} ago",
                humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
            )
        })
        .unwrap_or_default();
    format!("{error}: showing only this host's service rows, as it last heartbeated them{age}")
}

/// Answers a started backup or restore: when it ends, or at once (it then
/// carries on in the daemon, its outcome in the records and `backup show`).
async fn started(started: Result<Started, ManagerError>, background: bool) -> Response {
    let started = match started {
        Ok(started) => started,
        Err(error) => {
            return Response::Error {
                message: error.to_string(),
            };
        }
    };
    let result = if background {
        let Started { accepted, run } = started;
        actix::spawn(async move {
            if let Err(error) = run.await {
                tracing::warn!(%error, "a backup operation run in the background failed");
            }
        });
        Ok(accepted)
    } else {
        started.run.await
    };
    match result {
        Ok(answer) => Response::Done { answer },
        Err(error) => Response::Error {
            message: error.to_string(),
        },
    }
}

/// Sends `request` to the daemon at `path` and returns its response.
pub fn request(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let socket_error = |source| ControlError::Socket {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = StdUnixStream::connect(path).map_err(socket_error)?;
    let mut text = serde_json::to_string(request).map_err(|e| ControlError::Protocol {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(socket_error)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(socket_error)?;
    serde_json::from_str(&reply).map_err(|e| ControlError::Protocol {
        path: path.to_path_buf(),
        problem: format!("{e} in {:?}", reply.trim()),
    })
}

/// The human-readable `rekindle status`: services like `cinder service-list`,
/// then one row per backend.
pub fn render_status(report: &StatusReport) -> String {
    // A fleet's rows carry their cluster: shown as a column, like
    // `cinder service-list`'s.
    let fleet = report.services.iter().any(|s| s.cluster.is_some());
    let services: Vec<Vec<String>> = report
        .services
        .iter()
        .map(|s| {
            let mut row = vec![s.binary.clone(), s.host.clone()];
            if fleet {
                row.push(s.cluster.clone().unwrap_or_else(|| "-".to_string()));
            }
            row.extend([s.backend.clone(), s.state.clone(), s.updated_at.clone()]);
            row
        })
        .collect();
    let headers: &[&str] = if fleet {
        &[
            "Binary",
            "Host",
            "Cluster",
            "Backend",
            "State",
            "Updated At",
        ]
    } else {
        &["Binary", "Host", "Backend", "State", "Updated At"]
    };
    let mut out = crate::table::render(headers, &services);
    if let Some(fault) = &report.fleet_fault {
        out.push_str(&format!("Fleet database did not answer: {fault}\n"));
    }
    if let Some(fault) = &report.records_fault {
        out.push_str(&format!(
            "Records cannot be written since {}: {}; every service row is down until they can (Updated At is the last heartbeat written)\n",
            fault.since, fault.error
        ));
    }
    out.push('\n');
    let now = std::time::SystemTime::now();
    let backends: Vec<Vec<String>> = report
        .backends
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.kind.clone(),
                b.driver.clone(),
                if b.gave_up {
                    format!("{} (gave up)", b.state)
                } else {
                    b.state.clone()
                },
                attempts(b),
                next_retry(b, now),
                b.config.clone(),
                b.last_error.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    out.push_str(&crate::table::render(
        &[
            "Backend",
            "Kind",
            "Driver",
            "State",
            "Setup Attempts",
            "Next Retry",
            "Config",
            "Last Error",
        ],
        &backends,
    ));
    out
}

/// "2 of 4": setup attempts made in the current budget, of those allowed.
fn attempts(b: &BackendRow) -> String {
    let made = match b.state.as_str() {
        // Not yet counted: the next attempt is the one scheduled.
        "uninitialized" | "stopped" | "failed_fatal" => return "-".to_string(),
        _ => b.attempt.saturating_add(1),
    };
    match b.max_attempts {
        Some(max) => format!("{made} of {max}"),
        None => format!("{made} (no limit)"),
    }
}

/// When the next setup attempt runs, in wall-clock time and from now; or why
/// none will.
fn next_retry(b: &BackendRow, now: std::time::SystemTime) -> String {
    if let Some(at) = b
        .next_retry
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    {
        return match rekindle::events::refusal::in_and_at(at, now) {
            (Some(left), clock) => format!("in {left} ({clock})"),
            (None, clock) => format!("due now ({clock})"),
        };
    }
    match b.state.as_str() {
        "failed_fatal" => "none: fix the config, then reload".to_string(),
        _ if b.gave_up => "none: budget spent; reload to retry".to_string(),
        _ => "-".to_string(),
    }
}

/// The exit status `rekindle reload` gives for `outcome`: the daemon's rule,
/// [`ReloadOutcome::exit_code`] (as intended, or only started or queued;
/// nothing applied; a backend rolled back, failed, or its reload or removal
/// was aborted), named.
pub fn reload_exit(outcome: &ReloadOutcome) -> Exit {
    match outcome.exit_code() {
        0 => Exit::Ok,
        1 => Exit::Failed,
        _ => Exit::NotAsIntended,
    }
}

/// One backend's line of `rekindle reload`, after its name and result.
fn reload_detail(result: &BackendResult) -> String {
    let error = |e: &Option<String>| e.clone().unwrap_or_else(|| "-".to_string());
    match result {
        BackendResult::Unchanged { state } | BackendResult::Reloaded { state } => {
            format!("state {state}")
        }
        BackendResult::RolledBack { error } => {
            format!("the new config failed to set up, the old config serves again: {error}")
        }
        BackendResult::Failed { state, error: e } => format!("state {state}: {}", error(e)),
        BackendResult::Aborted { in_flight } => format!(
            "drain deadline passed with {} in flight; the old config keeps serving",
            rekindle::events::status::operations(*in_flight)
        ),
        BackendResult::Added { ready: true, .. } => "ready".to_string(),
        BackendResult::Added {
            state, error: e, ..
        } => format!("not ready: state {state}: {}", error(e)),
        BackendResult::Removed => "stopped".to_string(),
        BackendResult::RemovalAborted { in_flight } => format!(
            "drain deadline passed with {} in flight; it keeps serving and the next reload tries again",
            rekindle::events::status::operations(*in_flight)
        ),
    }
}

/// The human-readable `rekindle reload`: the outcome, then one line per
/// backend (`b1  rolled_back  the new config failed: ...`).
pub fn render_reload(outcome: &ReloadOutcome) -> String {
    match outcome {
        ReloadOutcome::Finished(report) => {
            let mut out = format!(
                "reload of config {}{}: {}\n",
                report.config,
                if report.coalesced {
                    " (coalesced with a reload already running)"
                } else {
                    ""
                },
                if report.as_intended() {
                    "every backend ended as intended"
                } else {
                    "NOT every backend ended as intended"
                }
            );
            let width = report.backends.keys().map(String::len).max().unwrap_or(0);
            for (name, result) in &report.backends {
                out.push_str(&format!(
                    "{name:<width$}  {:<15}  {}\n",
                    result.name(),
                    reload_detail(result)
                ));
            }
            if !report.restart_required.is_empty() {
                out.push_str(&format!(
                    "restart required for: {}\n",
                    report.restart_required.join(", ")
                ));
            }
            out
        }
        ReloadOutcome::Started { config, .. } => {
            format!("reload of config {config} started (not waiting for its outcome)\n")
        }
        ReloadOutcome::Coalesced => {
            "a reload is running; one follow-up reload will run after it (not waiting)\n"
                .to_string()
        }
        ReloadOutcome::Rejected { error } => {
            format!("reload rejected, the old config keeps serving: {error}\n")
        }
        ReloadOutcome::ShuttingDown => "reload refused: the daemon is shutting down\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, attempt: u32, next_retry: Option<String>, gave_up: bool) -> BackendRow {
        BackendRow {
            name: "b1".to_string(),
            kind: "volume".to_string(),
            driver: "fault".to_string(),
            state: state.to_string(),
            attempt,
            max_attempts: Some(4),
            gave_up,
            last_error: Some("backend error: array down".to_string()),
            next_retry,
            config: current(),
        }
    }

    #[test]
    fn the_backend_table_says_when_the_next_retry_runs_from_now_and_on_the_clock() {
        let now = humantime::parse_rfc3339("2026-11-30T12:04:24Z").expect("time");
        let waiting = row(
            "failed_recoverable",
            1,
            Some("2026-11-30T12:04:31.000Z".to_string()),
            false,
        );
        assert_eq!(next_retry(&waiting, now), "in 7s (12:04:31 UTC)");
        let far = row(
            "failed_recoverable",
            1,
            Some("2026-12-01T18:04:24.000Z".to_string()),
            false,
        );
        assert_eq!(
            next_retry(&far, now),
            "in 1 day 6h (2026-12-01 18:04:24 UTC)"
        );
        assert_eq!(attempts(&waiting), "2 of 4");
        let spent = row("failed_recoverable", 3, None, true);
        assert_eq!(
            next_retry(&spent, now),
            "none: budget spent; reload to retry"
        );
        assert_eq!(attempts(&spent), "4 of 4");
        let fatal = row("failed_fatal", 0, None, false);
        assert_eq!(next_retry(&fatal, now), "none: fix the config, then reload");
        assert_eq!(attempts(&fatal), "-");
        let unlimited = BackendRow {
            max_attempts: None,
            ..row("initializing", 5, None, false)
        };
        assert_eq!(attempts(&unlimited), "6 (no limit)");
        let mut report = StatusReport {
            services: Vec::new(),
            backends: vec![spent],
            records_fault: None,
            fleet_fault: None,
        };
        let table = render_status(&report);
        assert!(!table.contains("Records cannot be written"), "{table}");
        report.records_fault = Some(rekindle::events::status::RecordsFault {
            error: "state_dir /s cannot be written: read-only file system".to_string(),
            since: "2026-12-02T13:00:00Z".to_string(),
        });
        let faulted = render_status(&report);
        assert!(
            faulted.contains("Records cannot be written since 2026-12-02T13:00:00Z: state_dir /s cannot be written: read-only file system"),
            "{faulted}"
        );
        assert!(table.contains("failed_recoverable (gave up)"), "{table}");
        assert!(table.contains("Setup Attempts"), "{table}");
    }
}
