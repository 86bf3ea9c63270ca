//! Crash recovery at start-up: records a crash left in a transitional status are
//! resolved as Cinder resolves them, and interrupted deletions resume.

use super::*;

impl Manager {
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
            .filter(|b| b.status == BackupStatus::Deleting)
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
            .filter(|v| v.status == VolumeStatus::Deleting)
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
