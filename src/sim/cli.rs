//! `rekindle sim`: runs one seed or a range of seeds, prints the summary, shrinks
//! and prints a replay command on failure, draws the SVG timeline, checks determinism.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[cfg(feature = "cli")]
use indicatif::{ProgressBar, ProgressStyle};
#[cfg(not(feature = "cli"))]
use no_progress::ProgressBar;

use super::scenario::{Profile, generate, shrink};
use super::{SimReport, Simulation};

/// `rekindle sim` options.
#[derive(Debug, Clone)]
pub struct SimArgs {
    /// Seeds to run (one seed: a range of one).
    pub seeds: RangeInclusive<u64>,
    /// Volume backends.
    pub backends: usize,
    /// Virtual duration.
    pub duration: Duration,
    /// Fault profile.
    pub profile: Profile,
    /// Draw the timeline here (single seed only).
    pub svg: Option<PathBuf>,
    /// Run every seed twice and compare.
    pub check_determinism: bool,
    /// Only these script entries run (replays a shrunk trace).
    pub keep_events: Option<BTreeSet<usize>>,
    /// Plant the known bug (the checker must catch it).
    pub plant_bug: bool,
    /// Seeds run at once (`--jobs`); 0: one per core. The output is the
    /// same for any number.
    pub jobs: usize,
}

/// Parses `A..B` or `A..=B` or `A` into an inclusive seed range.
pub fn parse_seeds(text: &str) -> Result<RangeInclusive<u64>, String> {
    let bad = || format!("--seeds `{text}`: expected A..B (inclusive), for example 1..1000");
    let (a, b) = match text.split_once("..") {
        Some((a, b)) => (a, b.trim_start_matches('=')),
        None => (text, text),
    };
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

impl SimArgs {
    fn command_line(&self, seed: u64, keep: Option<&BTreeSet<usize>>) -> String {
        let mut line = format!(
            "rekindle sim --seed {seed} --backends {} --duration {} --faults {}",
            self.backends,
            humantime::format_duration(self.duration),
            self.profile.as_str()
        );
        if let Some(keep) = keep {
            let list: Vec<String> = keep.iter().map(usize::to_string).collect();
            let _ = write!(line, " --keep-events '{}'", list.join(","));
        }
        if self.plant_bug {
            line.push_str(" --plant-bug");
        }
        line
    }

    fn simulation(&self, seed: u64) -> Simulation {
        let mut sim = generate(seed, self.backends, self.duration, self.profile);
        sim.keep = self.keep_events.clone();
        sim.plant_bug = self.plant_bug;
        sim
    }
}

/// Runs `rekindle sim`; returns the text to print and whether it passed.
///
/// A range of seeds runs on every core (one seed at a time per worker); the
/// text is assembled in seed order, byte for byte what one worker would print.
pub fn run(args: &SimArgs) -> Result<(String, bool), String> {
    if args.seeds.start() == args.seeds.end() {
        return run_one(args, *args.seeds.start());
    }
    let started = Instant::now();
    let seeds: Vec<u64> = args.seeds.clone().collect();
    let bar: Rc<RefCell<Option<ProgressBar>>> = Rc::new(RefCell::new(None));
    let outcomes = run_seeds(args, &seeds, |done| {
        show_progress(&bar, started, seeds.len() as u64, done as u64, "seeds");
    })?;
    if let Some(bar) = bar.borrow_mut().take() {
        bar.finish_and_clear();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rekindle sim --seeds {}..{} --backends {} --duration {} --faults {}",
        args.seeds.start(),
        args.seeds.end(),
        args.backends,
        humantime::format_duration(args.duration),
        args.profile.as_str()
    );
    let _ = writeln!(out, "seeds: {}", seeds.len());
    let events: u64 = outcomes.iter().map(|o| o.events).sum();
    let _ = writeln!(out, "events: {events}");
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.failure.as_ref()).collect();
    let _ = writeln!(out, "failed_seeds: {}", failures.len());
    for text in &failures {
        out.push_str(text);
    }
    Ok((out, failures.is_empty()))
}

/// One seed, with the virtual-time progress bar and the SVG timeline.
fn run_one(args: &SimArgs, seed: u64) -> Result<(String, bool), String> {
    let started = Instant::now();
    let bar: Rc<RefCell<Option<ProgressBar>>> = Rc::new(RefCell::new(None));
    let mut sim = args.simulation(seed);
    {
        let bar = bar.clone();
        let total = args.duration;
        sim.progress = Some(Rc::new(move |at| {
            show_progress(&bar, started, total.as_secs(), at.as_secs(), "virtual s");
        }));
    }
    let (report, recorder) = sim.run_with_recorder().map_err(|e| e.to_string())?;
    if let Some(bar) = bar.borrow_mut().take() {
        bar.finish_and_clear();
    }
    if args.check_determinism {
        let second = args.simulation(seed).run().map_err(|e| e.to_string())?;
        if second.render() != report.render() {
            let text = format!(
                "seed {seed}: two runs differ (trace {:016x} vs {:016x})",
                report.trace_hash, second.trace_hash
            );
            return Ok((text, false));
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        args.command_line(seed, args.keep_events.as_ref())
    );
    out.push_str(&report.render());
    if let Some(path) = &args.svg {
        let title = args.command_line(seed, args.keep_events.as_ref());
        let picture = super::svg::render(&recorder, args.duration, &title);
        std::fs::write(path, picture).map_err(|e| format!("--svg {}: {e}", path.display()))?;
    }
    drop(recorder);
    let passed = report.passed();
    if !passed {
        out.push_str(&failure_text(args, &sim, &report));
    }
    Ok((out, passed))
}

/// What one seed of a range gave.
struct SeedOutcome {
    /// Events simulated (0 when two runs differed).
    events: u64,
    /// The failure's text (violations, shrunk trace, replay line), if any.
    failure: Option<String>,
}

/// Runs one seed of a range: twice with `check_determinism`.
fn run_seed(args: &SimArgs, seed: u64) -> Result<SeedOutcome, String> {
    let sim = args.simulation(seed);
    let report = sim.run().map_err(|e| e.to_string())?;
    if args.check_determinism {
        let second = args.simulation(seed).run().map_err(|e| e.to_string())?;
        if second.render() != report.render() {
            return Ok(SeedOutcome {
                events: 0,
                failure: Some(format!(
                    "seed {seed}: two runs differ (trace {:016x} vs {:016x})",
                    report.trace_hash, second.trace_hash
                )),
            });
        }
    }
    Ok(SeedOutcome {
        events: report.events,
        failure: (!report.passed()).then(|| failure_text(args, &sim, &report)),
    })
}

/// Stack of a worker: what the main thread has, as a simulation on the
/// main thread would.
const WORKER_STACK: usize = 8 << 20;

/// Runs `seeds` on every core, each worker taking the next seed when done
/// (every simulation is its own actor system on its own virtual clock, so
/// nothing is shared); `done(n)` after each. Outcomes come back in seed
/// order; the first error in seed order is returned.
fn run_seeds(
    args: &SimArgs,
    seeds: &[u64],
    mut done: impl FnMut(usize),
) -> Result<Vec<SeedOutcome>, String> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let workers = match args.jobs {
        0 => cores,
        jobs => jobs,
    }
    .min(seeds.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (sender, receiver) = std::sync::mpsc::channel();
    let mut slots: Vec<Option<Result<SeedOutcome, String>>> =
        std::iter::repeat_with(|| None).take(seeds.len()).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (sender, next) = (sender.clone(), &next);
            let work = move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(seed) = seeds.get(i) else {
                        break;
                    };
                    if sender.send((i, run_seed(args, *seed))).is_err() {
                        break;
                    }
                }
            };
            if let Err(error) = std::thread::Builder::new()
                .name("sim-worker".to_string())
                .stack_size(WORKER_STACK)
                .spawn_scoped(scope, work)
            {
                return Err(format!("cannot start a simulation worker: {error}"));
            }
        }
        drop(sender);
        for (n, (i, outcome)) in receiver.iter().enumerate() {
            slots[i] = Some(outcome);
            done(n + 1);
        }
        Ok(())
    })?;
    slots
        .into_iter()
        .zip(seeds)
        .map(|(slot, seed)| {
            slot.unwrap_or_else(|| {
                Err(format!("seed {seed}: its worker stopped before running it"))
            })
        })
        .collect()
}

fn failure_text(args: &SimArgs, sim: &Simulation, report: &SimReport) -> String {
    let mut out = String::new();
    let seed = sim.seed;
    let _ = writeln!(
        out,
        "\nFAILED seed {seed}: {} violation(s)",
        report.violations.len()
    );
    let (kept, shrunk) = shrink(sim, 64);
    let shown = shrunk.as_ref().unwrap_or(report);
    if let Some(v) = shown.violations.first() {
        let backend = if v.backend.is_empty() {
            "service"
        } else {
            &v.backend
        };
        let _ = writeln!(out, "first violation: {} {backend}: {}", v.at, v.message);
    }
    let _ = writeln!(
        out,
        "shrunk environment trace ({} of {} actions):",
        kept.len(),
        sim.script.len()
    );
    for index in &kept {
        if let Some(step) = sim.script.get(*index) {
            let _ = writeln!(
                out,
                "  #{index} +{} {}",
                humantime::format_duration(step.at),
                describe(&step.action)
            );
        }
    }
    let _ = writeln!(out, "last steps of the failing backend:");
    for line in &shown.failing_steps {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "replay: {}", args.command_line(seed, Some(&kept)));
    out
}

fn describe(action: &super::Action) -> String {
    match action {
        super::Action::WriteConfig(Ok(_)) => "write a valid config".to_string(),
        super::Action::WriteConfig(Err(e)) => format!("write an invalid config: {e}"),
        super::Action::Sighup => "SIGHUP".to_string(),
        super::Action::CreateVolume { backend, volume } => {
            format!("create volume {volume} on {backend}")
        }
        super::Action::CreateBackup { backend, backup } => {
            format!("create backup {backup} on {backend}")
        }
        super::Action::RestoreBackup { backend, backup } => {
            format!("restore backup {backup} on {backend}")
        }
    }
}

#[cfg(feature = "cli")]
fn show_progress(
    bar: &Rc<RefCell<Option<ProgressBar>>>,
    started: Instant,
    total: u64,
    done: u64,
    unit: &str,
) {
    let mut bar = bar.borrow_mut();
    if bar.is_none() && started.elapsed() > Duration::from_secs(1) {
        let progress = ProgressBar::new(total);
        let template = format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            progress.set_style(style);
        }
        *bar = Some(progress);
    }
    if let Some(progress) = bar.as_ref() {
        progress.set_position(done);
    }
}

/// Without the `cli` feature (indicatif) no progress bar is ever shown.
#[cfg(not(feature = "cli"))]
fn show_progress(_: &Rc<RefCell<Option<ProgressBar>>>, _: Instant, _: u64, _: u64, _: &str) {}

#[cfg(not(feature = "cli"))]
mod no_progress {
    /// A progress bar that cannot exist.
    pub(super) enum ProgressBar {}

    impl ProgressBar {
        pub(super) fn finish_and_clear(&self) {
            match *self {}
        }
    }
}
