//! `rekindle fleet reload|status|abandon`: drives the pure `Rollout` planner with what the
//! database shows (answers to reload requests, service rows), recording progress in `rollouts`.
//!
//! Every change of a host's phase is written to the rollout's row before
//! the command goes on, so a command killed at any point leaves a row that
//! `fleet status` shows and `fleet reload --resume ID` continues: hosts
//! already done are not asked again, a host asked but not yet answered is
//! waited on (its request is not sent twice).

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

/// A rollout being driven: the planner plus what the records need.
struct Driver<'a> {
    store: &'a dyn FleetStore,
    service_down_time: Duration,
    id: i64,
    plan: Rollout,
    clusters: BTreeMap<String, Option<String>>,
    requests: BTreeMap<String, i64>,
    reports: BTreeMap<String, String>,
    /// The backends each host's reload changed (`None`: all of them).
    backends: BTreeMap<String, Option<Vec<String>>>,
    /// This command's token in the rollout's row.
    token: String,
    started: Instant,
    /// Hosts not Ready outside the rollout, as last said.
    held_back: BTreeSet<String>,
    /// Halt when no host changed phase for this long.
    progress_deadline: Duration,
    /// When each host was asked, or answered (offsets from `started`).
    since: BTreeMap<String, Duration>,
    /// When the command last said what it waits for.
    said_waiting: Instant,
}

/// What a rollout waits for on one host, in words.
fn describe(
    wait: &Wait,
    since: &BTreeMap<String, Duration>,
    held_back: &BTreeSet<String>,
    min_ready: Duration,
    now: Duration,
) -> String {
    let ago = |host: &str| {
        since
            .get(host)
            .map(|at| human(now.saturating_sub(*at)))
            .unwrap_or_else(|| "?".into())
    };
    match wait {
        Wait::Answer(h) => format!(
            "{h}: no answer to its reload request (asked {} ago)",
            ago(h)
        ),
        Wait::Ready(h) => format!("{h}: not Ready (it answered {} ago)", ago(h)),
        Wait::StayReady(h, at) => format!(
            "{h}: Ready for {} of --min-ready {}",
            human(now.saturating_sub(*at)),
            human(min_ready)
        ),
        Wait::Slot(h) if held_back.is_empty() => {
            format!("{h}: waiting for a free slot of its cluster")
        }
        Wait::Slot(h) => format!(
            "{h}: no free slot of its cluster: held by {} (not Ready outside this rollout)",
            held_back.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A token naming this command (`host:pid:nanos`), for the rollout's row.
fn driver_token() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}:{}:{nanos}", std::process::id())
}

/// The backends a reload report (`{"outcome": {"backends": {...}}}`) says
/// were reloaded or added, which must be Ready; `None` when it does not say.
fn changed_backends(report: &serde_json::Value) -> Option<Vec<String>> {
    let backends = report["outcome"]["backends"].as_object()?;
    Some(
        backends
            .iter()
            .filter(|(_, result)| {
                !matches!(result["result"].as_str(), Some("unchanged" | "removed"))
            })
            .map(|(name, _)| name.clone())
            .collect(),
    )
}

impl Driver<'_> {
    fn records(&self) -> Vec<HostRecord> {
        self.plan
            .hosts
            .iter()
            .map(|h| HostRecord {
                host: h.host.clone(),
                cluster: self.clusters.get(&h.host).cloned().flatten(),
                phase: phase_word(&h.phase).to_string(),
                request: self.requests.get(&h.host).copied(),
                report: self.reports.get(&h.host).cloned(),
                backends: self.backends.get(&h.host).cloned().flatten(),
            })
            .collect()
    }

    async fn save(&self, state: RolloutState, message: &str) -> Result<(), FleetError> {
        if self
            .store
            .update_rollout(self.id, &self.token, state, &self.records(), message)
            .await?
        {
            Ok(())
        } else {
            Err(self.not_ours())
        }
    }

    /// Sends `host` its request (once per rollout; only while this
    /// command drives the rollout).
    async fn ask(&mut self, host: &str) -> Result<(), FleetError> {
        let request = self
            .store
            .request_reload_in_rollout(self.id, &self.token, host)
            .await?
            .ok_or_else(|| self.not_ours())?;
        self.requests.insert(host.to_string(), request.0);
        self.since.insert(host.to_string(), self.started.elapsed());
        say!("{host}: asked to reload (request {})", request.0);
        Ok(())
    }

    fn not_ours(&self) -> FleetError {
        FleetError::Refused(format!(
            "rollout {} is no longer driven by this command (abandoned, or resumed by another); stopping here",
            self.id
        ))
    }

    /// One look at the database; true if anything changed.
    async fn tick(&mut self) -> Result<bool, FleetError> {
        let mut changed = false;
        // Answers to requests sent.
        let asked: Vec<String> = self
            .plan
            .hosts
            .iter()
            .filter(|h| h.phase == HostPhase::Asked)
            .map(|h| h.host.clone())
            .collect();
        for host in asked {
            let Some(request) = self.requests.get(&host).copied() else {
                self.ask(&host).await?;
                changed = true;
                continue;
            };
            let Some(answer) = self.store.reload_answer(RequestId(request)).await? else {
                // Asked, no answer, and no heartbeat within
                // service_down_time: it died (or lost the database) before
                // answering. That halts the rollout as a failed reload does.
                if !self.alive(&host).await? {
                    self.went_down(host, "before");
                    changed = true;
                }
                continue;
            };
            {
                let report = serde_json::from_str::<serde_json::Value>(&answer.report)
                    .unwrap_or(serde_json::Value::Null);
                let summary = report["summary"]
                    .as_str()
                    .map_or_else(|| answer.report.clone(), str::to_string);
                self.backends
                    .insert(host.clone(), changed_backends(&report));
                self.since.insert(host.clone(), self.started.elapsed());
                if answer.as_intended {
                    say!(
                        "{host}: {summary}; waiting until Ready for {}",
                        human(self.plan.min_ready)
                    );
                } else {
                    say!("{host}: reload did not end as intended: {summary}");
                }
                self.reports.insert(host.clone(), summary.clone());
                self.plan.observe(
                    Observation::Reported {
                        host,
                        as_intended: answer.as_intended,
                        summary,
                    },
                    self.started.elapsed(),
                );
                changed = true;
            }
        }
        // Readiness of hosts that reloaded.
        let settling: Vec<String> = self
            .plan
            .hosts
            .iter()
            .filter(|h| matches!(h.phase, HostPhase::Settling { .. }))
            .map(|h| h.host.clone())
            .collect();
        for host in settling {
            // A host that answered and then went silent (paused, dead, cut
            // off) halts the rollout as one that never answered does.
            if !self.alive(&host).await? {
                self.went_down(host, "after");
                changed = true;
                continue;
            }
            let backends = self.backends.get(&host).cloned().flatten();
            let ready = self
                .store
                .host_ready(&host, backends.as_deref(), self.service_down_time)
                .await?;
            self.plan.observe(
                Observation::Ready {
                    host: host.clone(),
                    ready,
                },
                self.started.elapsed(),
            );
            if self
                .plan
                .hosts
                .iter()
                .any(|h| h.host == host && h.phase == HostPhase::Done)
            {
                say!("{host}: Ready for {}: done", human(self.plan.min_ready));
                changed = true;
            }
        }
        if self.plan.outcome().is_none() {
            // Replicas already down for reasons of their own take slots.
            let elsewhere = self.down_elsewhere().await?;
            let held = elsewhere
                .values()
                .flatten()
                .cloned()
                .collect::<BTreeSet<_>>();
            if held != self.held_back {
                if !held.is_empty() {
                    let names: Vec<&str> = held.iter().map(String::as_str).collect();
                    say!(
                        "not Ready outside this rollout: {} (they take slots of --max-unavailable {}: start them again, or raise --max-unavailable; without a free slot the rollout halts after --progress-deadline {})",
                        names.join(", "),
                        self.plan.max_unavailable,
                        human(self.progress_deadline)
                    );
                }
                self.held_back = held;
            }
            let asked = self.plan.ask_next_with(
                |cluster| elsewhere.get(cluster).map_or(0, BTreeSet::len),
                self.started.elapsed(),
            );
            for host in asked {
                self.ask(&host).await?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// `host`, asked to reload, has no heartbeat within `service_down_time`
    /// (`when`: `before` or `after` answering): said, and it halts the
    /// rollout as a failed reload does.
    fn went_down(&mut self, host: String, when: &str) {
        let summary = format!(
            "went down {when} answering its reload request (no heartbeat within {})",
            human(self.service_down_time)
        );
        say!("{host}: {summary}");
        self.reports.insert(host.clone(), summary.clone());
        self.plan
            .observe(Observation::Down { host, summary }, self.started.elapsed());
    }

    /// Whether `host` has a heartbeat within `service_down_time` by the
    /// database's clock.
    async fn alive(&self, host: &str) -> Result<bool, FleetError> {
        Ok(self
            .store
            .fleet_hosts(self.service_down_time)
            .await?
            .iter()
            .any(|h| h.host == host && h.alive))
    }

    /// Per cluster, the hosts outside this rollout's in-flight ones that
    /// have a backend not up (by the database's clock).
    async fn down_elsewhere(&self) -> Result<BTreeMap<String, BTreeSet<String>>, FleetError> {
        let in_flight: BTreeSet<&str> = self
            .plan
            .hosts
            .iter()
            .filter(|h| matches!(h.phase, HostPhase::Asked | HostPhase::Settling { .. }))
            .map(|h| h.host.as_str())
            .collect();
        let mut down: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (row, cluster) in self.store.fleet_services().await? {
            let host = row.host.split('@').next().unwrap_or(&row.host);
            if row.state != "up" && !in_flight.contains(host) {
                down.entry(cluster).or_default().insert(host.to_string());
            }
        }
        Ok(down)
    }

    /// Drives the rollout to its end: 0 finished, 1 halted.
    async fn run(mut self) -> Result<Exit, FleetError> {
        loop {
            match self.tick().await {
                Ok(true) => {
                    if self.plan.outcome().is_none() {
                        self.save(RolloutState::Running, &self.progress()).await?;
                    }
                }
                Ok(false) => {}
                Err(FleetError::Store(RecordsError::Unavailable { url, reason })) => {
                    eprintln!(
                        "rekindle: records database {url} is unavailable ({reason}); retrying"
                    );
                }
                Err(other) => return Err(other),
            }
            let now = self.started.elapsed();
            let (since, held, min_ready) = (&self.since, &self.held_back, self.plan.min_ready);
            let deadline = self.progress_deadline;
            if self.plan.check_progress(now, deadline, |w| {
                format!(
                    "no progress within --progress-deadline {}: {}",
                    human(deadline),
                    describe(w, since, held, min_ready, now)
                )
            }) {
                say!(
                    "no progress within --progress-deadline {}: halting",
                    human(deadline)
                );
            }
            if let Some(outcome) = self.plan.outcome() {
                return self.finish(outcome).await;
            }
            if self.said_waiting.elapsed() >= SAY_WAITING_EVERY {
                self.say_waiting(now);
            }
            actix::clock::sleep(POLL).await;
        }
    }

    /// One line: what the rollout waits for, on which hosts, since when.
    fn say_waiting(&mut self, now: Duration) {
        self.said_waiting = Instant::now();
        let waits: Vec<String> = self
            .plan
            .waits()
            .iter()
            .map(|w| describe(w, &self.since, &self.held_back, self.plan.min_ready, now))
            .collect();
        if waits.is_empty() {
            return;
        }
        say!(
            "waiting ({} without progress of --progress-deadline {}): {}",
            human(now.saturating_sub(self.plan.last_progress)),
            human(self.progress_deadline),
            waits.join("; ")
        );
    }

    fn progress(&self) -> String {
        let done = self
            .plan
            .hosts
            .iter()
            .filter(|h| h.phase == HostPhase::Done)
            .count();
        let busy: Vec<&str> = self
            .plan
            .hosts
            .iter()
            .filter(|h| matches!(h.phase, HostPhase::Asked | HostPhase::Settling { .. }))
            .map(|h| h.host.as_str())
            .collect();
        format!(
            "{done} of {} hosts done; reloading: {}",
            self.plan.hosts.len(),
            if busy.is_empty() {
                "-".to_string()
            } else {
                busy.join(", ")
            }
        )
    }

    async fn finish(&self, outcome: Outcome) -> Result<Exit, FleetError> {
        let (state, message, code) = match outcome {
            Outcome::Done => (
                RolloutState::Finished,
                format!(
                    "finished: {} host{} reloaded and Ready for {}",
                    self.plan.hosts.len(),
                    if self.plan.hosts.len() == 1 { "" } else { "s" },
                    human(self.plan.min_ready)
                ),
                Exit::Ok,
            ),
            Outcome::Halted {
                host,
                reason,
                not_reached,
                unconfirmed,
            } => {
                let mut message = format!("halted at {host}: {reason}");
                if !not_reached.is_empty() {
                    message.push_str(&format!(
                        "; not asked (old config): {}",
                        not_reached.join(", ")
                    ));
                }
                if !unconfirmed.is_empty() {
                    message.push_str(&format!("; not confirmed: {}", unconfirmed.join(", ")));
                }
                (RolloutState::Halted, message, Exit::Failed)
            }
        };
        loop {
            match self.save(state, &message).await {
                Ok(()) => break,
                Err(FleetError::Store(RecordsError::Unavailable { url, reason })) => {
                    eprintln!(
                        "rekindle: records database {url} is unavailable ({reason}); retrying"
                    );
                    actix::clock::sleep(Duration::from_secs(1)).await;
                }
                Err(other) => return Err(other),
            }
        }
        say!("rollout {} {message}", self.id);
        Ok(code)
    }
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
mod tests {
    use super::*;

    #[test]
    fn the_backends_to_wait_for_are_those_the_reload_changed() {
        let report = serde_json::json!({"summary": "x", "outcome": {"outcome": "finished", "backends": {
            "a": {"result": "unchanged", "state": "ready"},
            "b": {"result": "reloaded", "state": "ready"},
            "c": {"result": "added", "ready": true, "state": "ready"},
            "d": {"result": "removed"}}}});
        assert_eq!(
            changed_backends(&report),
            Some(vec!["b".to_string(), "c".to_string()])
        );
        assert_eq!(changed_backends(&serde_json::json!({"summary": "x"})), None);
    }

    #[test]
    fn rollouts_print_as_a_table_latest_first() {
        let row = RolloutRow {
            id: 2,
            cluster: Some("c1".into()),
            max_unavailable: 1,
            min_ready_ms: 10_000,
            state: RolloutState::Halted,
            hosts: vec![
                HostRecord {
                    host: "node-1".into(),
                    cluster: Some("c1".into()),
                    phase: "done".into(),
                    request: Some(1),
                    report: None,
                    backends: None,
                },
                HostRecord {
                    host: "node-2".into(),
                    cluster: Some("c1".into()),
                    phase: "failed".into(),
                    request: Some(2),
                    report: Some("config rejected: x".into()),
                    backends: None,
                },
            ],
            message: "halted at node-2: config rejected: x".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:01:00.000Z".into(),
            driver: "h:1:2".into(),
        };
        let text = table(&[row]);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "ID  State   Cluster  Done  Max unavailable  Min ready  Updated                   Message"
            )
        );
        assert_eq!(
            lines.next(),
            Some(
                "2   halted  c1       1/2   1                10s        2026-01-01T00:01:00.000Z  halted at node-2: config rejected: x"
            )
        );
    }

    #[test]
    fn bad_usage_exits_2_and_everything_else_1() {
        assert_eq!(FleetError::Usage("x".into()).exit(), Exit::Usage);
        assert_eq!(FleetError::Refused("x".into()).exit(), Exit::Failed);
    }
}
