//! Volume operations: create, delete, extend, attach, detach, reset-state and the
//! volume list, each recorded before it is acknowledged.

use super::*;

impl Manager {
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
                    VolumeStatus::Creating.as_str(),
                    End::volume(VolumeStatus::Available),
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
                self.finish(
                    "volume",
                    &id,
                    VolumeStatus::Creating.as_str(),
                    &End::volume(VolumeStatus::Error),
                )
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
        if row.status != VolumeStatus::Deleting {
            refuse_busy("volume delete", &row)?;
        }
        if row.status == VolumeStatus::InUse {
            return Err(refused(
                "volume delete",
                format_args!("volume {id} is in-use: detach it first"),
            ));
        }
        let marked = self.mark_volume(&row, VolumeStatus::Deleting).await?;
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
            VolumeStatus::Deleting.as_str(),
            End::volume(VolumeStatus::Deleted),
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
        if row.status != VolumeStatus::Available {
            return Err(refused(
                "volume extend",
                format_args!(
                    "volume {id} is {}: only available volumes extend",
                    row.status
                ),
            ));
        }
        let marked = self.mark_volume(&row, VolumeStatus::Extending).await?;
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
                    VolumeStatus::Extending.as_str(),
                    End {
                        size_bytes: Some(size_bytes),
                        ..End::volume(VolumeStatus::Available)
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
                self.finish(
                    "volume",
                    id,
                    VolumeStatus::Extending.as_str(),
                    &End::volume(VolumeStatus::ErrorExtending),
                )
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
        if row.status != VolumeStatus::Available && row.status != VolumeStatus::InUse {
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
        self.records()?
            .set_volume_status(id, VolumeStatus::InUse.as_str())
            .await?;
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

    pub(super) async fn detach_row(
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
                return Err(ManagerError::SeveralAttached {
                    id: id.to_string(),
                    hosts: attachments
                        .iter()
                        .map(|a| a.connector_host.clone())
                        .collect(),
                });
            }
            Detach::Only => attachments.iter().collect(),
        };
        let connector = match which {
            Detach::Host(connector) => Some(*connector),
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
        let state = settable("volume reset-state", state, &VolumeStatus::SETTABLE)?;
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

    /// The connector hosts `volume_id` is attached to (its attachments,
    /// oldest first). The `volume list` column reads only this.
    pub(super) async fn attached_hosts(
        &self,
        volume_id: &str,
    ) -> Result<Vec<String>, ManagerError> {
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
}
