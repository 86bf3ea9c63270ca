//! `rekindle fleet reload|status|abandon`: drives the pure `Rollout` planner with what the
//! database shows (answers to reload requests, service rows), recording progress in `rollouts`.
//!
//! Every change of a host's phase is written to the rollout's row before
//! the command goes on, so a command killed at any point leaves a row that
//! `fleet status` shows and `fleet reload --resume ID` continues: hosts
//! already done are not asked again, a host asked but not yet answered is
//! waited on (its request is not sent twice).

use driver::{Driver, driver_token};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::exit::Exit;

use rekindle::fleet::rollout::{HostPhase, Observation, Outcome, Rollout, Wait};
use rekindle::records::requests::RequestId;
use rekindle::records::rollouts::{HostRecord, RolloutRow, RolloutState};
use rekindle::records::{FleetStore, RecordsError};

/// Prints a line on stdout; a closed pipe (`| head -3`) is not a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod driver;

/// How often the command looks at the database.
const POLL: Duration = Duration::from_millis(200);

/// `--progress-deadline`'s default (Kubernetes' `progressDeadlineSeconds`).
const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// A rollout that waits says what for at least this often.
const SAY_WAITING_EVERY: Duration = Duration::from_secs(10);

/// Why a fleet command could not do what was asked.
#[derive(Debug, Error)]
pub enum FleetError {
    /// Bad usage: the file is unreadable or invalid, has no `[database]
    /// connection`, or an argument is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The records database failed (exit 1).
    #[error(transparent)]
    Store(#[from] RecordsError),
    /// The request was refused (exit 1): a rollout is already running,
    /// there is nothing to reload or resume, ...
    #[error("{0}")]
    Refused(String),
}

impl FleetError {
    /// The exit status: bad usage, or failed.
    pub fn exit(&self) -> Exit {
        match self {
            FleetError::Usage(_) => Exit::Usage,
            FleetError::Store(_) | FleetError::Refused(_) => Exit::Failed,
        }
    }
}

/// `rekindle fleet reload` options.
#[derive(Debug, Clone)]
pub struct ReloadArgs {
    /// The cinder.conf-style file naming the database.
    pub config: PathBuf,
    /// Only the hosts of this cluster.
    pub cluster: Option<String>,
    /// Hosts of one cluster reloading at once, at most.
    pub max_unavailable: u32,
    /// How long a reloaded host must stay Ready (`10s`, `1m`).
    pub min_ready: String,
    /// Continue this rollout instead of starting one.
    pub resume: Option<i64>,
    /// Halt when no host changed phase for this long (`10m`; Kubernetes'
    /// `progressDeadlineSeconds`).
    pub progress_deadline: String,
}

/// Reads `[database] connection` (and `service_down_time`) from `config`
/// and connects.
async fn open(config: &Path) -> Result<(Rc<dyn FleetStore>, Duration), FleetError> {
    let loaded =
        rekindle::config::load_config(&rekindle::config::ConfigSource::File(config.into()))
            .map_err(FleetError::Usage)?;
    let Some(url) = loaded.database else {
        return Err(FleetError::Usage(format!(
            "{}: no [database] connection: fleet commands need the database the hosts share ([database] connection = postgresql://... or mysql+pymysql://...)",
            config.display()
        )));
    };
    let store = rekindle::records::connect(&url, loaded.service_down_time).await?;
    Ok((store, loaded.service_down_time))
}

fn phase_word(phase: &HostPhase) -> &'static str {
    match phase {
        HostPhase::Waiting => "waiting",
        HostPhase::Asked => "asked",
        HostPhase::Settling { .. } => "settling",
        HostPhase::Done => "done",
        HostPhase::Failed { .. } => "failed",
    }
}

/// `d` as an operator reads it: to the millisecond.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    ))
    .to_string()
}

/// `rekindle fleet reload`: exit 0 finished, 1 halted or refused, 2 bad usage.
pub async fn reload(args: ReloadArgs) -> Result<Exit, FleetError> {
    let min_ready = humantime::parse_duration(&args.min_ready)
        .map_err(|e| FleetError::Usage(format!("--min-ready {:?}: {e}", args.min_ready)))?;
    if args.max_unavailable == 0 {
        return Err(FleetError::Usage(
            "--max-unavailable must be at least 1".into(),
        ));
    }
    let progress_deadline = humantime::parse_duration(&args.progress_deadline).map_err(|e| {
        FleetError::Usage(format!(
            "--progress-deadline {:?}: {e}",
            args.progress_deadline
        ))
    })?;
    if progress_deadline.is_zero() {
        return Err(FleetError::Usage(
            "--progress-deadline must be more than 0s".into(),
        ));
    }
    let (store, service_down_time) = open(&args.config).await?;
    let mut driver = match args.resume {
        Some(id) => resume(&*store, service_down_time, id).await?,
        None => start(&*store, service_down_time, &args, min_ready).await?,
    };
    driver.progress_deadline = progress_deadline;
    driver.run().await
}

async fn start<'a>(
    store: &'a dyn FleetStore,
    service_down_time: Duration,
    args: &ReloadArgs,
    min_ready: Duration,
) -> Result<Driver<'a>, FleetError> {
    if let Some(running) = store
        .rollouts()
        .await?
        .into_iter()
        .find(|r| r.state == RolloutState::Running)
    {
        return Err(FleetError::Refused(format!(
            "rollout {} is running (started {}): resume it with --resume {0} or give it up with `rekindle fleet abandon {0}`",
            running.id, running.started_at
        )));
    }
    let mut hosts = Vec::new();
    for host in store.fleet_hosts(service_down_time).await? {
        if args.cluster.is_some() && host.cluster != args.cluster {
            continue;
        }
        if !host.alive {
            say!(
                "{}: skipped: down (no heartbeat within {}); it reads its file when it starts",
                host.host,
                human(service_down_time)
            );
            continue;
        }
        hosts.push((host.host, host.cluster));
    }
    if hosts.is_empty() {
        return Err(FleetError::Refused(match &args.cluster {
            Some(c) => format!("no live host in cluster {c:?}: nothing to reload"),
            None => "no live host in the records: nothing to reload".to_string(),
        }));
    }
    let plan = Rollout::new(hosts.clone(), args.max_unavailable as usize, min_ready);
    let clusters: BTreeMap<String, Option<String>> = hosts.into_iter().collect();
    let mut driver = Driver {
        store,
        service_down_time,
        id: 0,
        plan,
        clusters,
        requests: BTreeMap::new(),
        reports: BTreeMap::new(),
        backends: BTreeMap::new(),
        token: driver_token(),
        started: Instant::now(),
        held_back: BTreeSet::new(),
        progress_deadline: DEFAULT_PROGRESS_DEADLINE,
        since: BTreeMap::new(),
        said_waiting: Instant::now(),
    };
    driver.id = store
        .insert_rollout(
            args.cluster.as_deref(),
            args.max_unavailable,
            min_ready,
            &driver.records(),
            &driver.token,
        )
        .await?
        .ok_or_else(|| {
            FleetError::Refused(
                "another rollout started meanwhile: see `rekindle fleet status`".to_string(),
            )
        })?;
    say!(
        "rollout {}: {} host{}{}, max-unavailable {}, min-ready {}",
        driver.id,
        driver.plan.hosts.len(),
        if driver.plan.hosts.len() == 1 {
            ""
        } else {
            "s"
        },
        args.cluster
            .as_ref()
            .map(|c| format!(" in cluster {c}"))
            .unwrap_or_default(),
        args.max_unavailable,
        human(min_ready)
    );
    Ok(driver)
}

async fn resume(
    store: &dyn FleetStore,
    service_down_time: Duration,
    id: i64,
) -> Result<Driver<'_>, FleetError> {
    let Some(row) = store.rollout(id).await? else {
        return Err(FleetError::Refused(format!("no rollout {id}")));
    };
    if row.state != RolloutState::Running {
        return Err(FleetError::Refused(format!(
            "rollout {id} is {}: nothing to resume ({})",
            row.state.as_str(),
            row.message
        )));
    }
    // From here on, a command still driving it cannot write to it.
    let token = driver_token();
    let Some(row) = store.take_over_rollout(id, &token).await? else {
        return Err(FleetError::Refused(format!(
            "rollout {id} ended meanwhile: see `rekindle fleet status`"
        )));
    };
    let min_ready = Duration::from_millis(row.min_ready_ms);
    let mut plan = Rollout::new(
        row.hosts
            .iter()
            .map(|h| (h.host.clone(), h.cluster.clone())),
        row.max_unavailable as usize,
        min_ready,
    );
    let mut requests = BTreeMap::new();
    let mut reports = BTreeMap::new();
    let mut backends = BTreeMap::new();
    for (host, record) in plan.hosts.iter_mut().zip(&row.hosts) {
        host.phase = match record.phase.as_str() {
            "done" => HostPhase::Done,
            // Asked: its request stands (waited on, not sent again); a
            // host that reloaded must be Ready for min_ready from now.
            "asked" => HostPhase::Asked,
            "settling" => HostPhase::Settling { ready_since: None },
            "failed" => HostPhase::Failed {
                reason: record.report.clone().unwrap_or_default(),
            },
            _ => HostPhase::Waiting,
        };
        if let Some(request) = record.request {
            requests.insert(record.host.clone(), request);
        }
        if let Some(report) = &record.report {
            reports.insert(record.host.clone(), report.clone());
        }
        backends.insert(record.host.clone(), record.backends.clone());
    }
    let done = plan
        .hosts
        .iter()
        .filter(|h| h.phase == HostPhase::Done)
        .count();
    say!(
        "rollout {id}: resuming, {done} of {} hosts done, max-unavailable {}, min-ready {}",
        plan.hosts.len(),
        row.max_unavailable,
        human(min_ready)
    );
    Ok(Driver {
        store,
        service_down_time,
        id,
        clusters: row
            .hosts
            .iter()
            .map(|h| (h.host.clone(), h.cluster.clone()))
            .collect(),
        plan,
        requests,
        reports,
        backends,
        token,
        started: Instant::now(),
        held_back: BTreeSet::new(),
        progress_deadline: DEFAULT_PROGRESS_DEADLINE,
        since: BTreeMap::new(),
        said_waiting: Instant::now(),
    })
}

/// `rekindle fleet status`: the rollouts, latest first, as a table or JSON.
pub async fn status(config: &Path, json: bool) -> Result<Exit, FleetError> {
    let (store, _) = open(config).await?;
    let rows = store.rollouts().await?;
    if json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| FleetError::Refused(format!("cannot print JSON: {e}")))?;
        say!("{text}");
    } else {
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), "{}", table(&rows));
    }
    Ok(Exit::Ok)
}

/// The rollouts as `rekindle status` prints tables.
pub fn table(rows: &[RolloutRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let done = r.hosts.iter().filter(|h| h.phase == "done").count();
            vec![
                r.id.to_string(),
                r.state.as_str().to_string(),
                r.cluster.clone().unwrap_or_else(|| "-".into()),
                format!("{done}/{}", r.hosts.len()),
                r.max_unavailable.to_string(),
                human(Duration::from_millis(r.min_ready_ms)),
                r.updated_at.clone(),
                r.message.clone(),
            ]
        })
        .collect();
    crate::table::render(
        &[
            "ID",
            "State",
            "Cluster",
            "Done",
            "Max unavailable",
            "Min ready",
            "Updated",
            "Message",
        ],
        &cells,
    )
}

/// `rekindle fleet abandon ID`: marks a running rollout abandoned and
/// cancels its requests not yet claimed by a host.
pub async fn abandon(config: &Path, id: i64) -> Result<Exit, FleetError> {
    let (store, _) = open(config).await?;
    if store
        .abandon_rollout(
            id,
            "abandoned by an operator; hosts keep the config they have",
        )
        .await?
    {
        say!("rollout {id} abandoned");
        Ok(Exit::Ok)
    } else {
        Err(FleetError::Refused(format!(
            "rollout {id} is not running: nothing to abandon"
        )))
    }
}

#[cfg(test)]
mod tests;
