//! Backup operations: back up, restore, delete, show, reset-state and the backup list,
//! with their progress; a backup or restore may carry on after it is accepted.

use super::*;

impl Manager {
    /// Whether the backup service can take `operation` ("backup create",
    /// ...); the refusal says what was refused, the state in words, what
    /// happens next and what was left untouched (`untouched`).
    pub(super) fn backup_ready(
        &self,
        operation: &str,
        untouched: &str,
    ) -> Result<(), ManagerError> {
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

    pub(super) async fn located(
        &self,
        row: &crate::records::VolumeRow,
    ) -> Result<Volume, ManagerError> {
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
        if row.status != VolumeStatus::Available && row.status != VolumeStatus::InUse {
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
            .set_volume_status(volume_id, VolumeStatus::BackingUp.as_str())
            .await?;
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        if let Err(error) = self.records()?.insert_backup(&id, volume_id).await {
            self.records()?
                .set_volume_status(volume_id, &row.status)
                .await?;
            return Err(error.into());
        }
        self.begin("backup", &id, BackupStatus::Creating.as_str())
            .await?;
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
    pub(super) async fn backup_created(
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
                    ..End::backup(BackupStatus::Available)
                };
                let ended = self
                    .end(
                    "backup create",
                    "backup",
                    id,
                    BackupStatus::Creating.as_str(),
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
                    ..End::backup(BackupStatus::Error)
                };
                self.finish("backup", id, BackupStatus::Creating.as_str(), &end)
                    .await?;
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
        if backup.status != BackupStatus::Available {
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
        if row.status != VolumeStatus::Available {
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
            self.mark_backup(&backup, BackupStatus::Restoring, Some(volume_id))
                .await?,
            self.mark_volume(&row, VolumeStatus::RestoringBackup)
                .await?,
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
    pub(super) async fn restored(
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
                .finish(
                    "backup",
                    backup_id,
                    BackupStatus::Restoring.as_str(),
                    &End::backup(BackupStatus::Available),
                )
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
                        VolumeStatus::RestoringBackup.as_str(),
                        End::volume(VolumeStatus::Available),
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
                    VolumeStatus::ErrorRestoring.as_str()
                } else {
                    VolumeStatus::Available.as_str()
                };
                if !put_back {
                    self.finish(
                        "volume",
                        volume_id,
                        VolumeStatus::RestoringBackup.as_str(),
                        &End::to(status),
                    )
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
        let state = settable("backup reset-state", state, &BackupStatus::SETTABLE)?;
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
        if backup.status == BackupStatus::Error && !backup.reached_backend {
            self.records()?.delete_backup(id).await?;
            self.operations.forget(id);
            return Ok(BackupAnswer {
                reached_backend: Some(false),
                ..BackupAnswer::new(id, BackupStatus::Deleted)
            });
        }
        if backup.status == BackupStatus::Creating || backup.status == BackupStatus::Restoring {
            return Err(refused(
                "backup delete",
                format_args!("backup {id} is {}: wait for it to finish", backup.status),
            ));
        }
        self.backup_ready("backup delete", "the backup was kept")?;
        let marked = self
            .mark_backup(&backup, BackupStatus::Deleting, None)
            .await?;
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
            BackupStatus::Deleting.as_str(),
            End::backup(BackupStatus::Deleted),
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
}
