//! Benchmark of the model checkers, in the same run: `rekindle check` (breadth-first,
//! large levels expanded on every core) exploring the real step (one backend, budget 3,
//! two operations in flight), and spin's `pan` on the generated lifecycle model with 40
//! reloads allowed (a few hundred thousand states; safety search). spin_states_per_sec
//! is pan's own search rate (process start and table set-up excluded; pan times itself
//! in 10 ms ticks); spin_wall_states_per_sec includes them. The two sides take turns
//! (a batch of checks, then a pan run, five times over), so a slow spell of the shared
//! machine hits both, and each keeps its best turn (medians printed too).
//! Prints check_states_per_sec, spin_states_per_sec, check_ratio_vs_spin.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rekindle::check::{CheckOptions, check};

/// Checks per batch.
const ROUNDS: u32 = 10;
/// Turns: a batch of checks, then a pan run.
const TURNS: usize = 5;

fn run(dir: &Path, program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Generates and compiles pan for the model (not timed).
fn build_pan() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("rekindle-bench-spin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/model");
    for file in ["lifecycle.pml", "lifecycle_table.pml"] {
        std::fs::copy(format!("{model}/{file}"), dir.join(file))
            .map_err(|e| format!("{model}/{file}: {e}"))?;
    }
    run(
        &dir,
        "spin",
        &["-o3", "-DMAX_RELOADS=40", "-a", "lifecycle.pml"],
    )?;
    run(&dir, "gcc", &["-O2", "-DNOCLAIM", "-o", "pan", "pan.c"])?;
    Ok(dir)
}

/// One pan run: its own rate, states stored, and the rate over its wall time.
fn pan_rate(dir: &Path) -> Result<(f64, u64, f64), String> {
    let started = Instant::now();
    let text = run(dir, "./pan", &["-m10000000", "-w24"])?;
    let wall = started.elapsed();
    let states: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_suffix("states, stored")?.trim().parse().ok())
        .ok_or_else(|| format!("no state count in pan's output: {text}"))?;
    let rate: f64 = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("pan: rate")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(states as f64 / wall.as_secs_f64());
    Ok((rate, states, states as f64 / wall.as_secs_f64()))
}

fn main() {
    let options = CheckOptions {
        max_attempts: 3,
        max_inflight: 2,
        backends: 1,
        ..CheckOptions::default()
    };
    let dir = match build_pan() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("spin benchmark failed (install the Debian package spin): {error}");
            std::process::exit(1);
        }
    };
    let mut states = 0;
    let mut ours = Vec::new();
    let mut pans = Vec::new();
    for _ in 0..TURNS {
        let started = Instant::now();
        for _ in 0..ROUNDS {
            let report = check(&options);
            assert!(report.violation.is_none(), "{}", report.render());
            states = report.states;
        }
        ours.push(f64::from(ROUNDS) * states as f64 / started.elapsed().as_secs_f64());
        match pan_rate(&dir) {
            Ok(run) => pans.push(run),
            Err(error) => {
                eprintln!("spin benchmark failed: {error}");
                std::process::exit(1);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    ours.sort_by(f64::total_cmp);
    pans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let check_rate = ours[ours.len() - 1];
    let (rate, spin_states, wall_rate) = pans[pans.len() - 1];
    println!("check_states: {states}");
    println!("check_states_per_sec: {check_rate:.0}");
    println!("check_states_per_sec_median: {:.0}", ours[ours.len() / 2]);
    println!("spin_states: {spin_states}");
    println!("spin_states_per_sec: {rate:.0}");
    println!("spin_states_per_sec_median: {:.0}", pans[pans.len() / 2].0);
    println!("spin_wall_states_per_sec: {wall_rate:.0}");
    println!("check_ratio_vs_spin: {:.2}", check_rate / rate);
    println!(
        "check_ratio_vs_spin_median: {:.2}",
        ours[ours.len() / 2] / pans[pans.len() / 2].0
    );
}
