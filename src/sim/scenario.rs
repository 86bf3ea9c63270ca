//! Scenario: turns a seed into a plan of `fault` backends and a script of
//! environment actions (flapping backends, hangs, panics, backup store
//! outages, SIGHUP storms, invalid configs, operations during drains), and
//! shrinks failing scripts.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;

use crate::driver::{DriverRegistry, DriverSpec, Kind};
use crate::lifecycle::{Jitter, Policy};
use crate::plan::{BackendPlan, Plan};

use super::{Action, Scripted, SimReport, Simulation};

/// How hostile the environment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Healthy backends, no reloads: a baseline.
    Calm,
    /// A realistic mix: most backends healthy or slow to come up, some
    /// failing, flapping, hanging, panicking or fatal; a few SIGHUP storms,
    /// some with invalid configs; operations throughout.
    Default,
    /// Everything more often.
    Chaos,
    /// The default mix, and the backup backend's store goes away for a
    /// while and comes back, again and again (`fault_outage`), while
    /// backups and restores keep coming.
    BackupOutage,
    /// The default mix, and driver calls that never return: every
    /// backend's operations hang while it is down (half of the volume
    /// backends flap; the backup store goes away as in `backup-outage`),
    /// so calls are abandoned at `driver_operation_timeout` or
    /// `backup_progress_timeout` and the backend loses its health.
    HungCalls,
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "calm" => Ok(Profile::Calm),
            "default" => Ok(Profile::Default),
            "chaos" => Ok(Profile::Chaos),
            "backup-outage" => Ok(Profile::BackupOutage),
            "hung-calls" => Ok(Profile::HungCalls),
            other => Err(format!(
                "unknown fault profile `{other}` (known: calm, default, chaos, backup-outage, hung-calls)"
            )),
        }
    }
}

impl Profile {
    /// The profile's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Calm => "calm",
            Profile::Default => "default",
            Profile::Chaos => "chaos",
            Profile::BackupOutage => "backup-outage",
            Profile::HungCalls => "hung-calls",
        }
    }
}

fn pick<'a, T>(rng: &mut Jitter, items: &'a [T]) -> &'a T {
    let index = usize::try_from(rng.below(items.len() as u64)).unwrap_or(0);
    &items[index]
}

/// The fault options of one generated backend.
fn faults(rng: &mut Jitter, profile: Profile) -> Vec<(String, String)> {
    let mut options = Vec::new();
    let mut set = |k: &str, v: String| options.push((k.to_string(), v));
    let roll = match profile {
        Profile::Calm => 0,
        Profile::Default | Profile::BackupOutage | Profile::HungCalls => rng.below(100),
        Profile::Chaos => 40 + rng.below(60),
    };
    match roll {
        0..40 => {}
        40..60 => set("fault_ready_after", format!("{}s", 1 + rng.below(900))),
        60..72 => set("fault_fail_setup_times", (1 + rng.below(6)).to_string()),
        72..82 => {
            set("fault_flap_period", format!("{}m", 10 + rng.below(50)));
            set("fault_flap_seed", rng.below(1 << 32).to_string());
        }
        82..86 => {
            let class = *pick(rng, &["config", "not_supported", "missing_library"]);
            set("fault_error", class.to_string());
            set("fault_fail_setup_times", "1".to_string());
        }
        86..88 => set("fault_setup_hang", "true".to_string()),
        88..94 => set("fault_panic_setup_times", (1 + rng.below(3)).to_string()),
        _ => set("fault_fail_stats", (1 + rng.below(3)).to_string()),
    }
    if profile != Profile::Calm && rng.below(2) == 0 {
        set("fault_op_delay", format!("{}s", 1 + rng.below(40)));
    }
    if profile == Profile::HungCalls {
        // Draws of its own after the default mix's, so the other profiles'
        // seeds are unchanged.
        let flaps = options.iter().any(|(k, _)| k == "fault_flap_period");
        if !flaps && rng.below(2) == 0 {
            options.push((
                "fault_flap_period".to_string(),
                format!("{}m", 10 + rng.below(50)),
            ));
            options.push((
                "fault_flap_seed".to_string(),
                rng.below(1 << 32).to_string(),
            ));
        }
        options.push(("fault_op_hang".to_string(), "while_down".to_string()));
    }
    options
}

fn policy(rng: &mut Jitter, profile: Profile) -> Policy {
    Policy {
        reinit_driver_count: *pick(rng, &[0, 0, 3, 5]),
        reinit_backoff_jitter_ppm: if profile == Profile::Calm {
            0
        } else {
            *pick(rng, &[0, 200_000])
        },
        driver_init_timeout: Duration::from_secs(30),
        graceful_shutdown_timeout: Duration::from_secs(30),
        ..Policy::default()
    }
}

fn backend(
    name: String,
    kind: Kind,
    options: Vec<(String, String)>,
    policy: Policy,
) -> (String, BackendPlan) {
    let spec = DriverSpec {
        backend: name.clone(),
        kind,
        driver: "fault".to_string(),
        options: options.into_iter().collect(),
        origin: None,
    };
    (name, BackendPlan { spec, policy })
}

/// The options of a backup backend whose store goes away and comes back:
/// one outage of 2 to 30 minutes in each two hours of `duration` (at least
/// one), starting in the first half of its slot; sometimes slow operations,
/// so that some are in flight when the store goes.
fn store_outages(rng: &mut Jitter, duration: Duration) -> Vec<(String, String)> {
    let secs = duration.as_secs().max(60);
    let slots = (secs / 7200).clamp(1, 48);
    let slot = secs / slots;
    let periods: Vec<String> = (0..slots)
        .map(|n| {
            let start = n * slot + rng.below(slot / 2);
            let length = (120 + rng.below(28 * 60)).min(slot / 2);
            format!("{start}s..{}s", start + length.max(1))
        })
        .collect();
    let mut options = vec![("fault_outage".to_string(), periods.join(", "))];
    if rng.below(2) == 0 {
        options.push((
            "fault_op_delay".to_string(),
            format!("{}s", 1 + rng.below(40)),
        ));
    }
    options
}

/// Generates the simulation of `seed` with `backends` volume backends (plus
/// one backup backend) over `duration`.
pub fn generate(seed: u64, backends: usize, duration: Duration, profile: Profile) -> Simulation {
    let mut rng = Jitter::from_seed(seed);
    let mut plan = Plan {
        host: "sim".to_string(),
        periodic_interval: Duration::from_secs(60),
        report_interval: Duration::from_secs(10),
        service_down_time: Duration::from_secs(60),
        backup_initialization_timeout: Duration::from_secs(120),
        graceful_shutdown_timeout: Duration::from_secs(30),
        jitter_seed: None,
        backends: Default::default(),
    };
    for i in 0..backends {
        let options = faults(&mut rng, profile);
        let policy = policy(&mut rng, profile);
        let (name, b) = backend(format!("vol-{i:04}"), Kind::Volume, options, policy);
        plan.backends.insert(name, b);
    }
    let mut options = faults(&mut rng, profile);
    let mut policy = policy(&mut rng, profile);
    // The backup service's own draws come from a stream of their own, so
    // that adding them left every earlier seed's volume side as it was.
    let mut backup_rng = Jitter::from_seed(seed ^ 0x6261_636b_7570_0000);
    if matches!(profile, Profile::BackupOutage | Profile::HungCalls) {
        options = store_outages(&mut backup_rng, duration);
        if profile == Profile::HungCalls {
            options.push(("fault_op_hang".to_string(), "while_down".to_string()));
        }
        // Unlimited re-initializations: the service comes back by itself.
        policy.reinit_driver_count = 0;
    }
    let (backup_name, b) = backend("backup".to_string(), Kind::Backup, options, policy);
    plan.backends.insert(backup_name.clone(), b);

    let mut script = Vec::new();
    let secs = duration.as_secs().max(1);
    let volume_names: Vec<String> = plan
        .backends
        .keys()
        .filter(|n| n.starts_with("vol-"))
        .cloned()
        .collect();
    if profile != Profile::Calm && !volume_names.is_empty() {
        // Operations: about one every 20 virtual seconds, at most 20,000.
        let count = (secs / 20).min(20_000);
        for n in 0..count {
            let at = Duration::from_millis(rng.below(secs * 1000));
            let backend = pick(&mut rng, &volume_names).clone();
            script.push(Scripted {
                at,
                action: Action::CreateVolume {
                    backend,
                    volume: format!("v{n:05}"),
                },
            });
        }
        // Backups and restores: about one a minute, one every 20 seconds
        // with store outages.
        let every = if matches!(profile, Profile::BackupOutage | Profile::HungCalls) {
            20
        } else {
            60
        };
        for n in 0..(secs / every).min(20_000) {
            let at = Duration::from_millis(backup_rng.below(secs * 1000));
            let backend = backup_name.clone();
            let backup = format!("b{n:05}");
            let action = if backup_rng.below(2) == 0 {
                Action::CreateBackup { backend, backup }
            } else {
                Action::RestoreBackup { backend, backup }
            };
            script.push(Scripted { at, action });
        }
        storms(&mut rng, secs, profile, &plan, &volume_names, &mut script);
    }
    script.sort_by_key(|s| s.at);
    Simulation {
        seed,
        duration,
        plan,
        script,
        registry: Rc::new(DriverRegistry::with_builtin),
        keep: None,
        plant_bug: false,
        progress: None,
    }
}

/// SIGHUP storms, each after an edit of the file (one in seven a broken
/// file), drawn from `rng` after the operations.
fn storms(
    rng: &mut Jitter,
    secs: u64,
    profile: Profile,
    plan: &Plan,
    volume_names: &[String],
    script: &mut Vec<Scripted>,
) {
    // SIGHUP storms, each after an edit of the file.
    let storms = match profile {
        Profile::Chaos => 2 + secs / 1800,
        _ => 1 + secs / 7200,
    };
    let mut current = plan.clone();
    let mut storm_times: Vec<u64> = (0..storms).map(|_| rng.below(secs * 1000)).collect();
    storm_times.sort_unstable();
    for at_ms in storm_times {
        let edit = rng.below(100);
        let written = if edit < 15 {
            Err(format!(
                "cinder.conf: [{}] reinit_driver_count = \"many\": expected a whole number >= 0 (0 = unlimited)",
                pick(rng, volume_names)
            ))
        } else {
            let mut next = current.clone();
            if edit < 80 {
                for _ in 0..1 + rng.below(3) {
                    let name = pick(rng, volume_names).clone();
                    if let Some(b) = next.backends.get_mut(&name) {
                        let delay = format!("{}s", rng.below(40));
                        b.spec.options.insert("fault_op_delay".to_string(), delay);
                    }
                }
            } else if edit < 90 {
                let name = pick(rng, volume_names).clone();
                next.backends.remove(&name);
            }
            current = next.clone();
            Ok(next)
        };
        let at = Duration::from_millis(at_ms);
        script.push(Scripted {
            at,
            action: Action::WriteConfig(written),
        });
        for k in 0..1 + rng.below(4) {
            script.push(Scripted {
                at: at + Duration::from_millis(1 + k * rng.below(3000)),
                action: Action::Sighup,
            });
        }
    }
}

/// The script entries of a failing simulation that still fail, found by
/// removing chunks then single entries while the run keeps failing
/// (delta debugging), in at most `max_runs` runs.
pub fn shrink(simulation: &Simulation, max_runs: usize) -> (BTreeSet<usize>, Option<SimReport>) {
    let mut keep: Vec<usize> = match &simulation.keep {
        Some(keep) => keep.iter().copied().collect(),
        None => (0..simulation.script.len()).collect(),
    };
    let mut runs = 0;
    let mut last_failure = None;
    let fails = |candidate: &[usize], runs: &mut usize| -> Option<SimReport> {
        *runs += 1;
        let mut trial = simulation.clone();
        trial.keep = Some(candidate.iter().copied().collect());
        trial.run().ok().filter(|report| !report.passed())
    };
    let mut chunk = keep.len().div_ceil(2).max(1);
    while chunk >= 1 && runs < max_runs && !keep.is_empty() {
        let mut start = 0;
        let mut removed_any = false;
        while start < keep.len() && runs < max_runs {
            let end = (start + chunk).min(keep.len());
            let candidate: Vec<usize> = keep[..start].iter().chain(&keep[end..]).copied().collect();
            if let Some(report) = fails(&candidate, &mut runs) {
                keep = candidate;
                last_failure = Some(report);
                removed_any = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        if !removed_any || chunk > 1 {
            chunk /= 2;
        }
        if chunk == 0 {
            break;
        }
    }
    (keep.into_iter().collect(), last_failure)
}
