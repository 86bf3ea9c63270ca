//! The daemon's side of the control socket: binds it, answers each request, carries
//! out user operations on the manager, reloads through the controller.

use super::*;

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

/// A bound control socket, not yet answering: bound before the service
/// starts, so a busy or impossible path refuses start-up with one line.
pub struct ControlSocket {
    listener: UnixListener,
    metrics: Option<std::rc::Rc<rekindle::watch::metrics::Metrics>>,
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
        Request::VolumeDetach { id, which } => done(m.detach(&id, which).await.map(Answer::Volume)),
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
                message: error_words(&error),
            },
        },
    }
}

/// `error` in the words of the command line: what to type next, where the
/// manager's words name what to choose.
fn error_words(error: &ManagerError) -> String {
    match error {
        ManagerError::SeveralAttached { id, hosts } => format!(
            "volume detach refused: volume {id} is attached to {} hosts ({}); name one with --connector FILE, or detach every host with --all",
            hosts.len(),
            hosts.join(", ")
        ),
        error => error.to_string(),
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
                    row,
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
        .filter_map(|s| humantime::parse_rfc3339_weak(&s.row.updated_at).ok())
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
