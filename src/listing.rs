//! The rows of `volume list` and `backup list` (as `cinder list` and `cinder backup-list`):
//! their stable JSON fields for scripts and the tables an operator reads.

use serde::{Deserialize, Serialize};

use crate::table::{human_size, render};

/// One row of `volume list`; `--json` prints an array of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeListRow {
    /// The volume's id (UUID).
    pub id: String,
    /// `creating`, `available`, `in-use`, `error`, ...
    pub status: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// The backend that holds it.
    pub backend: String,
    /// The connector hosts it is attached to (empty when none).
    pub attached_to: Vec<String>,
    /// Last change of the record (RFC 3339, UTC).
    pub updated_at: String,
}

/// One row of `backup list`; `--json` prints an array of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupListRow {
    /// The backup's id (UUID).
    pub id: String,
    /// `creating`, `available`, `restoring`, `deleting`, `error`.
    pub status: String,
    /// Bytes backed up (0 until the backup is available).
    pub size_bytes: u64,
    /// The volume it was taken from.
    pub volume_id: String,
    /// Last change of the record (RFC 3339, UTC).
    pub updated_at: String,
}

/// The `volume list` table, or `no volumes` when there is none.
pub fn render_volumes(rows: &[VolumeListRow]) -> String {
    if rows.is_empty() {
        return "no volumes\n".to_string();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|v| {
            vec![
                v.id.clone(),
                v.status.clone(),
                human_size(v.size_bytes),
                v.backend.clone(),
                if v.attached_to.is_empty() {
                    "-".to_string()
                } else {
                    v.attached_to.join(", ")
                },
                v.updated_at.clone(),
            ]
        })
        .collect();
    render(
        &["ID", "Status", "Size", "Backend", "Attached to", "Updated"],
        &cells,
    )
}

/// The `backup list` table, or `no backups` when there is none.
pub fn render_backups(rows: &[BackupListRow]) -> String {
    if rows.is_empty() {
        return "no backups\n".to_string();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|b| {
            vec![
                b.id.clone(),
                b.status.clone(),
                human_size(b.size_bytes),
                b.volume_id.clone(),
                b.updated_at.clone(),
            ]
        })
        .collect();
    render(&["ID", "Status", "Size", "Volume", "Updated"], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_table_names_its_columns_and_reads_sizes_and_hosts() {
        let rows = vec![
            VolumeListRow {
                id: "v1".into(),
                status: "in-use".into(),
                size_bytes: 1 << 30,
                backend: "qemu-1".into(),
                attached_to: vec!["compute-src".into(), "compute-dst".into()],
                updated_at: "2026-12-01T00:00:00.000Z".into(),
            },
            VolumeListRow {
                id: "v2".into(),
                status: "available".into(),
                size_bytes: 512 << 20,
                backend: "qemu-1".into(),
                attached_to: Vec::new(),
                updated_at: "2026-12-01T00:00:01.000Z".into(),
            },
        ];
        let text = render_volumes(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ID  Status     Size     Backend  Attached to               Updated"
        );
        assert_eq!(
            lines[1],
            "v1  in-use     1 GiB    qemu-1   compute-src, compute-dst  2026-12-01T00:00:00.000Z"
        );
        assert_eq!(
            lines[2],
            "v2  available  512 MiB  qemu-1   -                         2026-12-01T00:00:01.000Z"
        );
        assert_eq!(render_volumes(&[]), "no volumes\n");
        assert_eq!(render_backups(&[]), "no backups\n");
    }
}
