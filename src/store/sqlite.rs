//! The records interface over the embedded SQLite records (`state_dir/rekindle.sqlite`):
//! each call is a local, synchronous write, done before the future resolves.

use async_trait::async_trait;

use super::{AttachmentRow, BackupRow, ExportRow, RecordStore, ServiceRow, StoreError, VolumeRow};
use crate::records::Records;

#[async_trait(?Send)]
impl RecordStore for Records {
    async fn insert_volume(
        &self,
        id: &str,
        backend: &str,
        size_bytes: u64,
        status: &str,
    ) -> Result<(), StoreError> {
        Ok(Records::insert_volume(
            self, id, backend, size_bytes, status,
        )?)
    }
    async fn set_volume_status(&self, id: &str, status: &str) -> Result<(), StoreError> {
        Ok(Records::set_volume_status(self, id, status)?)
    }
    async fn put_back_volume(&self, row: &VolumeRow) -> Result<(), StoreError> {
        Ok(Records::put_back_volume(self, row)?)
    }
    async fn put_back_backup(&self, row: &BackupRow) -> Result<(), StoreError> {
        Ok(Records::put_back_backup(self, row)?)
    }
    async fn set_volume_size(&self, id: &str, size_bytes: u64) -> Result<(), StoreError> {
        Ok(Records::set_volume_size(self, id, size_bytes)?)
    }
    async fn delete_volume(&self, id: &str) -> Result<(), StoreError> {
        Ok(Records::delete_volume(self, id)?)
    }
    async fn volume(&self, id: &str) -> Result<Option<VolumeRow>, StoreError> {
        Ok(Records::volume(self, id)?)
    }
    async fn volumes(&self) -> Result<Vec<VolumeRow>, StoreError> {
        Ok(Records::volumes(self)?)
    }
    async fn put_export(&self, export: &ExportRow) -> Result<(), StoreError> {
        Ok(Records::put_export(self, export)?)
    }
    async fn export(&self, volume_id: &str) -> Result<Option<ExportRow>, StoreError> {
        Ok(Records::export(self, volume_id)?)
    }
    async fn exports(&self, backend: &str) -> Result<Vec<ExportRow>, StoreError> {
        Ok(Records::exports(self, backend)?)
    }
    async fn delete_export(&self, volume_id: &str) -> Result<(), StoreError> {
        Ok(Records::delete_export(self, volume_id)?)
    }
    async fn put_attachment(
        &self,
        volume_id: &str,
        connector_host: &str,
        connector: &str,
    ) -> Result<(), StoreError> {
        Ok(Records::put_attachment(
            self,
            volume_id,
            connector_host,
            connector,
        )?)
    }
    async fn attachments(&self, volume_id: &str) -> Result<Vec<AttachmentRow>, StoreError> {
        Ok(Records::attachments(self, volume_id)?)
    }
    async fn delete_attachment(
        &self,
        volume_id: &str,
        connector_host: &str,
    ) -> Result<(), StoreError> {
        Ok(Records::delete_attachment(self, volume_id, connector_host)?)
    }
    async fn insert_backup(&self, id: &str, volume_id: &str) -> Result<(), StoreError> {
        Ok(Records::insert_backup(self, id, volume_id)?)
    }
    async fn set_backup(
        &self,
        id: &str,
        status: &str,
        size_bytes: Option<u64>,
        restore_target: Option<&str>,
    ) -> Result<(), StoreError> {
        Ok(Records::set_backup(
            self,
            id,
            status,
            size_bytes,
            restore_target,
        )?)
    }
    async fn set_backup_reached(&self, id: &str, reached: bool) -> Result<(), StoreError> {
        Ok(Records::set_backup_reached(self, id, reached)?)
    }
    async fn backup(&self, id: &str) -> Result<Option<BackupRow>, StoreError> {
        Ok(Records::backup(self, id)?)
    }
    async fn backups(&self) -> Result<Vec<BackupRow>, StoreError> {
        Ok(Records::backups(self)?)
    }
    async fn delete_backup(&self, id: &str) -> Result<(), StoreError> {
        Ok(Records::delete_backup(self, id)?)
    }
    async fn put_service(
        &self,
        backend: &str,
        binary: &str,
        host: &str,
        state: &str,
        updated_at: &str,
    ) -> Result<(), StoreError> {
        Ok(Records::put_service(
            self, backend, binary, host, state, updated_at,
        )?)
    }
    async fn services(&self) -> Result<Vec<ServiceRow>, StoreError> {
        Ok(Records::services(self)?)
    }
}
