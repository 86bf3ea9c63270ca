//! Plain-text tables as the CLI prints them (`status`, `volume list`, `backup list`):
//! left-aligned columns two spaces apart, and byte sizes in an operator's units.

use rekindle::operations::listing::{BackupListRow, VolumeListRow};

/// Renders `header` and `rows` as left-aligned columns, two spaces apart,
/// one line each (trailing spaces trimmed), each line ending in `\n`.
/// A row shorter than the header leaves its missing cells empty; cells
/// beyond the header's width are ignored.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let cell = |row: &[String], c: usize| row.get(c).map_or("", String::as_str).to_string();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).chars().count())
                .chain(std::iter::once(header[c].chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line((0..columns).map(|c| cell(row, c)).collect());
    }
    out
}

/// A size in binary units as `cinder list` readers expect: `0 B`, `512 B`,
/// `1 KiB`, `1 GiB`, `1.5 GiB`, `3.25 TiB` (at most two decimals, trailing
/// zeros dropped; rounded down, so a size never reads larger than it is).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >= 1u64 << (10 * (unit + 1)) {
        unit += 1;
    }
    let scale = 1u128 << (10 * unit);
    let hundredths = u128::from(bytes) * 100 / scale;
    let (whole, fraction) = (hundredths / 100, hundredths % 100);
    let number = match fraction {
        0 => whole.to_string(),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    };
    format!("{number} {}", UNITS[unit])
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
    fn columns_align_on_the_widest_cell_and_lines_are_trimmed() {
        let text = render(
            &["ID", "Status", "Size"],
            &[
                vec!["a".into(), "available".into(), "1 GiB".into()],
                vec!["bbbb".into(), "in-use".into()],
            ],
        );
        assert_eq!(
            text,
            "ID    Status     Size\na     available  1 GiB\nbbbb  in-use\n"
        );
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1 << 10), "1 KiB");
        assert_eq!(human_size(1 << 30), "1 GiB");
        assert_eq!(human_size(3 << 30), "3 GiB");
        assert_eq!(human_size(1536 << 20), "1.5 GiB");
        assert_eq!(human_size((1 << 30) + (1 << 20)), "1 GiB");
        assert_eq!(human_size(1_288_490_189), "1.2 GiB");
        assert_eq!(human_size(1_277_752_771), "1.19 GiB");
        assert_eq!(human_size(u64::MAX), "16383.99 PiB");
    }

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
