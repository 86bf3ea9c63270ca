//! Plain-text tables as the CLI prints them (`status`, `volume list`, `backup list`):
//! left-aligned columns two spaces apart, and byte sizes in an operator's units.

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
}
