//! Replays the committed fuzz corpus and every past crash (fuzz/regressions) through the
//! same functions the cargo-fuzz targets call, so a fixed bug stays fixed.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let data = std::fs::read(entry.path()).expect("corpus file");
            run(&data);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no corpus for {target}");
}

#[test]
fn step_events_corpus() {
    replay("step_events", rekindle::check::fuzz::step_events);
}

#[test]
fn config_corpus() {
    replay("config", rekindle::check::fuzz::config);
}

#[test]
fn connector_corpus() {
    replay("connector", rekindle::check::fuzz::connector);
}
