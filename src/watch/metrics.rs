//! Prometheus metrics of a running service: counters fed by its notifications and by the
//! control socket's operations, gauges read off the status board when scraped.
//!
//! Built on the Prometheus project's `prometheus-client` (its encoders write
//! both the text format 0.0.4 and OpenMetrics); every name is listed, with
//! its labels and meaning, in docs/admin.md ("Metrics"), and
//! [`Metrics::NAMES`] is what a test checks that list against.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::events::status::StatusBoard;
use crate::events::{Event, Notice};
use crate::lifecycle::{Moment, StateName};

/// A backend's event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    backend: String,
}

/// A backend's failure of one class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    backend: String,
    class: String,
}

/// How a reload ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// How one backend's part of a reload ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendOutcomeLabels {
    backend: String,
    outcome: &'static str,
}

/// A backup or a restore.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkLabels {
    work: &'static str,
}

/// What a fleet host's metrics read of the fleet (set by the daemon every
/// `report_interval`, see [`Metrics::set_fleet`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetView {
    /// Hosts the fleet's records know, alive by the database's clock.
    pub hosts_up: u64,
    /// Hosts the records know that are not.
    pub hosts_down: u64,
    /// This host has fenced itself (no renewal for its fence interval).
    pub fenced: bool,
    /// The last heartbeat's round trip, seconds (`None`: none answered yet).
    pub heartbeat_round_trip: Option<f64>,
    /// Final writes of this host that a survivor's claim had superseded.
    pub superseded_writes: u64,
    /// Rolling reloads running in the fleet.
    pub rollouts_running: u64,
}

/// One user operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// One user operation and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationOutcomeLabels {
    operation: &'static str,
    outcome: &'static str,
}

type GaugeF64 = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text`, else the text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The service's metrics. Cheap to update from notifications (a counter
/// per event); gauges are read off the status board when scraped.
pub struct Metrics {
    registry: Registry,
    board: StatusBoard,
    clock: crate::engine::clock::ServiceClock,
    /// The status board (and what the daemon set) as last read, encoded
    /// by [`BoardCollector`].
    snapshot: Arc<Mutex<Snapshot>>,
    backup_bytes: Family<WorkLabels, Counter>,
    /// Bytes of each running backup or restore counted so far.
    progress: Mutex<std::collections::HashMap<(String, &'static str), u64>>,
    reload_seconds: Histogram,
    reload_started: Mutex<Option<std::time::Instant>>,
    attempts: Family<EventLabels, Counter>,
    failures: Family<ClassLabels, Counter>,
    retries: Family<EventLabels, Counter>,
    exhausted: Family<EventLabels, Counter>,
    health_lost: Family<ClassLabels, Counter>,
    reloads: Counter,
    reload_outcomes: Family<OutcomeLabels, Counter>,
    backend_outcomes: Family<BackendOutcomeLabels, Counter>,
    last_reload_ok: Gauge,
    last_reload_success: GaugeF64,
    records_reachable: Gauge,
    operations_in_flight: Family<OperationLabels, Gauge>,
    operations: Family<OperationOutcomeLabels, Counter>,
    operation_seconds: Family<OperationOutcomeLabels, Histogram>,
    exports_restarted: Counter,
    export_restart_failures: Counter,
    work_claimed: Counter,
    notifications: Counter,
}

impl Metrics {
    /// Every metric's name as scraped (counters with their `_total`).
    pub const NAMES: [&'static str; 27] = [
        "rekindle_backend_state",
        "rekindle_backend_up",
        "rekindle_backend_gave_up",
        "rekindle_backend_operations_in_flight",
        "rekindle_backend_seconds_since_transition",
        "rekindle_backend_setup_attempts_total",
        "rekindle_backend_setup_failures_total",
        "rekindle_backend_retries_scheduled_total",
        "rekindle_backend_retry_budget_exhausted_total",
        "rekindle_backend_health_lost_total",
        "rekindle_reload_requests_total",
        "rekindle_reload_outcomes_total",
        "rekindle_reload_backend_outcomes_total",
        "rekindle_config_last_reload_successful",
        "rekindle_config_last_reload_success_timestamp_seconds",
        "rekindle_records_reachable",
        "rekindle_operations_in_flight",
        "rekindle_operations_total",
        "rekindle_operation_duration_seconds",
        "rekindle_exports_restarted_total",
        "rekindle_export_restart_failures_total",
        "rekindle_work_claimed_total",
        "rekindle_notifications_total",
        "rekindle_backup_bytes_total",
        "rekindle_reload_duration_seconds",
        "rekindle_records_write_failures_total",
        "rekindle_exports_alive",
    ];

    /// The names served only by a fleet host (see [`Metrics::set_fleet`]).
    pub const FLEET_NAMES: [&'static str; 5] = [
        "rekindle_fleet_hosts",
        "rekindle_fleet_fenced",
        "rekindle_fleet_heartbeat_round_trip_seconds",
        "rekindle_fleet_superseded_writes_total",
        "rekindle_fleet_rollouts_running",
    ];

    /// Metrics of the service whose statuses are on `board`, timed by
    /// `clock`; the last successful reload is taken to be now (the config
    /// loaded at start), as Prometheus' own metric does.
    pub fn new(board: StatusBoard, clock: crate::engine::clock::ServiceClock) -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            board,
            clock,
            snapshot: Arc::default(),
            backup_bytes: Family::default(),
            progress: Mutex::default(),
            // 10 ms to about 164 s.
            reload_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 15)),
            reload_started: Mutex::default(),
            attempts: Family::default(),
            failures: Family::default(),
            retries: Family::default(),
            exhausted: Family::default(),
            health_lost: Family::default(),
            reloads: Counter::default(),
            reload_outcomes: Family::default(),
            backend_outcomes: Family::default(),
            last_reload_ok: Gauge::default(),
            last_reload_success: GaugeF64::default(),
            records_reachable: Gauge::default(),
            operations_in_flight: Family::default(),
            operations: Family::default(),
            operation_seconds: Family::new_with_constructor(|| {
                // 5 ms to about 82 s.
                Histogram::new(exponential_buckets(0.005, 2.0, 15))
            }),
            exports_restarted: Counter::default(),
            export_restart_failures: Counter::default(),
            work_claimed: Counter::default(),
            notifications: Counter::default(),
        };
        m.register(&mut registry);
        // Both series from the start (0 until a backup or restore moves
        // bytes), so that rate() has a start.
        for work in ["backup", "restore"] {
            m.backup_bytes.get_or_create(&WorkLabels { work }).inc_by(0);
        }
        m.last_reload_ok.set(1);
        m.last_reload_success.set(unix_seconds(SystemTime::now()));
        Metrics { registry, ..m }
    }

    /// Registers every metric in `r`, with its help text.
    fn register(&self, r: &mut Registry) {
        r.register_collector(Box::new(BoardCollector(self.snapshot.clone())));
        r.register(
            "rekindle_backend_setup_attempts",
            "Setups started (do_setup + check_for_setup_error), first ones and re-initializations",
            self.attempts.clone(),
        );
        r.register(
            "rekindle_backend_setup_failures",
            "Setups that failed, by error class (recoverable, fatal)",
            self.failures.clone(),
        );
        r.register(
            "rekindle_backend_retries_scheduled",
            "Re-initializations scheduled after a recoverable failure",
            self.retries.clone(),
        );
        r.register(
            "rekindle_backend_retry_budget_exhausted",
            "Times the backend spent its retry budget (driver.gave_up)",
            self.exhausted.clone(),
        );
        r.register(
            "rekindle_backend_health_lost",
            "Times a Ready backend lost its health (a failed or hung health probe, stats call or operation), by class",
            self.health_lost.clone(),
        );
        r.register(
            "rekindle_reload_requests",
            "Reloads started (SIGHUP, `rekindle reload`, a fleet request)",
            self.reloads.clone(),
        );
        r.register(
            "rekindle_reload_outcomes",
            "How reloads ended: applied (every backend as intended), rolled_back, aborted or failed (the worst of its backends), rejected (a bad file), refused (shutting down), coalesced (into one running)",
            self.reload_outcomes.clone(),
        );
        r.register(
            "rekindle_reload_backend_outcomes",
            "How each backend's part of a reload ended: unchanged, reloaded, added, removed, rolled_back, failed, aborted, removal_aborted",
            self.backend_outcomes.clone(),
        );
        r.register(
            "rekindle_config_last_reload_successful",
            "1 if the last reload ended as intended for every backend, 0 if it was rejected or did not",
            self.last_reload_ok.clone(),
        );
        r.register(
            "rekindle_config_last_reload_success_timestamp_seconds",
            "Unix time of the last reload that ended as intended (the start, until one does)",
            self.last_reload_success.clone(),
        );
        r.register(
            "rekindle_records_reachable",
            "1 while the records (SQLite state dir or fleet database) take the heartbeat's writes, else 0",
            self.records_reachable.clone(),
        );
        r.register(
            "rekindle_operations_in_flight",
            "User operations (volume create, backup restore, ...) being carried out now",
            self.operations_in_flight.clone(),
        );
        r.register(
            "rekindle_operations",
            "User operations answered, by outcome (ok, error, pending: its record waits for the fleet database)",
            self.operations.clone(),
        );
        r.register(
            "rekindle_operation_duration_seconds",
            "Time from a user operation's request to its answer, by outcome",
            self.operation_seconds.clone(),
        );
        r.register(
            "rekindle_exports_restarted",
            "Exports found dead and restarted",
            self.exports_restarted.clone(),
        );
        r.register(
            "rekindle_export_restart_failures",
            "Dead exports that could not be restarted",
            self.export_restart_failures.clone(),
        );
        r.register(
            "rekindle_work_claimed",
            "Work of dead fleet members this host claimed and resolved",
            self.work_claimed.clone(),
        );
        r.register(
            "rekindle_backup_bytes",
            "Bytes backups (work=backup) and restores (work=restore) moved, as their progress reported them",
            self.backup_bytes.clone(),
        );
        r.register(
            "rekindle_reload_duration_seconds",
            "Time from a reload's start to its end: the drain of in-flight operations, the new config's setup, a rollback",
            self.reload_seconds.clone(),
        );
        r.register(
            "rekindle_notifications",
            "Notifications emitted",
            self.notifications.clone(),
        );
    }

    /// Counts what `notice` says happened.
    pub fn observe(&self, notice: &Notice) {
        self.notifications.inc();
        let backend = || EventLabels {
            backend: notice.backend.clone().unwrap_or_default(),
        };
        let class = |class: &str| ClassLabels {
            backend: notice.backend.clone().unwrap_or_default(),
            class: class.to_string(),
        };
        match &notice.event {
            Event::DriverInitStart { .. } => {
                self.attempts.get_or_create(&backend()).inc();
            }
            Event::DriverInitError { class: c, .. } => {
                self.failures.get_or_create(&class(c)).inc();
            }
            Event::DriverRetryScheduled { .. } => {
                self.retries.get_or_create(&backend()).inc();
            }
            Event::DriverGaveUp { .. } => {
                self.exhausted.get_or_create(&backend()).inc();
            }
            Event::DriverHealthLost { class: c, .. } => {
                self.health_lost.get_or_create(&class(c)).inc();
            }
            Event::ReloadStart { .. } => {
                self.reloads.inc();
                if let Ok(mut started) = self.reload_started.lock() {
                    *started = Some(std::time::Instant::now());
                }
            }
            Event::BackupCreateProgress(p) => self.moved(p, "backup"),
            Event::BackupRestoreProgress(p) => self.moved(p, "restore"),
            Event::BackupCreateError { backup_id, .. } => self.forget(backup_id, "backup"),
            Event::BackupRestoreError { backup_id, .. } => self.forget(backup_id, "restore"),
            Event::ReloadRejected { .. } => {
                self.outcome("rejected");
                self.last_reload_ok.set(0);
            }
            Event::ReloadRefused { .. } => self.outcome("refused"),
            Event::ReloadCoalesced { .. } => self.outcome("coalesced"),
            Event::ReloadEnd(end) => {
                if let Some(started) = self.reload_started.lock().ok().and_then(|mut s| s.take()) {
                    self.reload_seconds.observe(started.elapsed().as_secs_f64());
                }
                for (name, result) in &end.backends {
                    let outcome = result.name();
                    self.backend_outcomes
                        .get_or_create(&BackendOutcomeLabels {
                            backend: name.clone(),
                            outcome,
                        })
                        .inc();
                }
                self.outcome(if end.ok {
                    "applied"
                } else if !end.rolled_back.is_empty() {
                    "rolled_back"
                } else if !end.aborted.is_empty() || !end.removal_aborted.is_empty() {
                    "aborted"
                } else {
                    "failed"
                });
                if end.ok {
                    self.last_reload_ok.set(1);
                    self.last_reload_success
                        .set(unix_seconds(SystemTime::now()));
                } else {
                    self.last_reload_ok.set(0);
                }
            }
            Event::ExportRestarted { .. } => {
                self.exports_restarted.inc();
            }
            Event::ExportRestartFailed { .. } => {
                self.export_restart_failures.inc();
            }
            Event::WorkClaimed { .. } => {
                self.work_claimed.inc();
            }
            _ => {}
        }
    }

    /// Counts the bytes a backup's or restore's progress says were moved
    /// since its last report.
    fn moved(&self, progress: &crate::events::BackupProgress, work: &'static str) {
        let Ok(mut seen) = self.progress.lock() else {
            return;
        };
        let key = (progress.backup_id.clone(), work);
        let before = seen.get(&key).copied().unwrap_or(0);
        let delta = progress.bytes_done.saturating_sub(before);
        if progress.bytes_done >= progress.bytes_total {
            seen.remove(&key);
        } else {
            seen.insert(key, progress.bytes_done.max(before));
        }
        if delta > 0 {
            self.backup_bytes
                .get_or_create(&WorkLabels { work })
                .inc_by(delta);
        }
    }

    fn forget(&self, backup_id: &str, work: &'static str) {
        if let Ok(mut seen) = self.progress.lock() {
            seen.remove(&(backup_id.to_string(), work));
        }
    }

    /// What this host reads of its fleet now (a fleet host's daemon sets
    /// it every `report_interval`; until then the fleet's metrics are not
    /// served).
    pub fn set_fleet(&self, view: FleetView) {
        if let Ok(mut snapshot) = self.snapshot.lock() {
            snapshot.fleet = Some(view);
        }
    }

    /// How many exports this host's records hold (`None`: unknown).
    pub fn set_exports_alive(&self, exports: Option<u64>) {
        if let Ok(mut snapshot) = self.snapshot.lock() {
            snapshot.exports_alive = exports;
        }
    }

    fn outcome(&self, outcome: &'static str) {
        self.reload_outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A user operation `operation` (`volume create`, ...) starts; the
    /// returned guard counts it out when dropped, or with its outcome
    /// when [`OperationTimer::ended`] is called.
    pub fn operation(&self, operation: &'static str) -> OperationTimer<'_> {
        self.operations_in_flight
            .get_or_create(&OperationLabels { operation })
            .inc();
        OperationTimer {
            metrics: self,
            operation,
            started: std::time::Instant::now(),
            ended: false,
        }
    }

    /// The metrics in `format`, the gauges read off the status board now.
    pub fn render(&self, format: Format) -> String {
        self.refresh();
        let mut text = String::new();
        let encoded = match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &self.registry)
            }
        };
        // Writing to a String cannot fail; a label that could not be
        // encoded would be a bug here, said in the answer.
        if let Err(error) = encoded {
            text.push_str(&format!("# encoding failed: {error}\n"));
        }
        text
    }

    /// Reads the status board for the gauges (a removed backend's series
    /// go with it).
    fn refresh(&self) {
        let now = self.clock.now();
        let rows = self
            .board
            .backends()
            .into_iter()
            .map(|b| BackendRow {
                since_transition: now
                    .0
                    .saturating_sub(b.changed_at.unwrap_or(Moment::ZERO).0)
                    .as_secs_f64(),
                kind: b.kind.as_str(),
                state: b.state,
                gave_up: b.gave_up,
                in_flight: b.in_flight,
                backend: b.name,
            })
            .collect();
        if let Ok(mut snapshot) = self.snapshot.lock() {
            snapshot.backends = rows;
            snapshot.records_write_failures = self.board.records_write_failures();
        }
        self.records_reachable
            .set(i64::from(self.board.records_fault().is_none()));
    }
}

/// What the collector encodes at a scrape.
#[derive(Debug, Default)]
struct Snapshot {
    backends: Vec<BackendRow>,
    records_write_failures: u64,
    exports_alive: Option<u64>,
    fleet: Option<FleetView>,
}

/// One per-backend gauge's value.
type RowValue = fn(&BackendRow) -> f64;

/// One backend as the status board showed it at the scrape.
#[derive(Debug)]
struct BackendRow {
    backend: String,
    kind: &'static str,
    state: StateName,
    gave_up: bool,
    in_flight: u32,
    since_transition: f64,
}

/// Encodes the per-backend gauges straight from the board's snapshot (no
/// series kept between scrapes: a removed backend's go with it).
#[derive(Debug)]
struct BoardCollector(Arc<Mutex<Snapshot>>);

impl Collector for BoardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(snapshot) = self.0.lock() else {
            return Ok(());
        };
        let rows = &snapshot.backends;
        {
            let mut family = encoder.encode_descriptor(
                "rekindle_backend_state",
                "The backend's lifecycle state: one series per backend, labelled with its current state, value 1",
                None,
                MetricType::Gauge,
            )?;
            for r in rows.iter() {
                let set = [
                    ("backend", r.backend.as_str()),
                    ("kind", r.kind),
                    ("state", r.state.as_str()),
                ];
                ConstGauge::new(1i64).encode(family.encode_family(&set)?)?;
            }
        }
        let gauges: [(&str, &str, RowValue); 4] = [
            (
                "rekindle_backend_up",
                "1 while the backend is Ready (its service row up), else 0",
                |r| f64::from(u8::from(r.state == StateName::Ready)),
            ),
            (
                "rekindle_backend_gave_up",
                "1 once the backend spent its reinit_driver_count budget and waits for a reload",
                |r| f64::from(u8::from(r.gave_up)),
            ),
            (
                "rekindle_backend_operations_in_flight",
                "Operations the backend's driver is carrying out now",
                |r| f64::from(r.in_flight),
            ),
            (
                "rekindle_backend_seconds_since_transition",
                "Seconds since the backend entered its current state",
                |r| r.since_transition,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for r in rows.iter() {
                let set = [("backend", r.backend.as_str()), ("kind", r.kind)];
                ConstGauge::new(value(r)).encode(family.encode_family(&set)?)?;
            }
        }
        ConstCounter::new(snapshot.records_write_failures).encode(encoder.encode_descriptor(
            "rekindle_records_write_failures",
            "Heartbeats whose records could not be written (a full or read-only state dir, a fleet database that did not answer)",
            None,
            MetricType::Counter,
        )?)?;
        if let Some(exports) = snapshot.exports_alive {
            ConstGauge::new(i64::try_from(exports).unwrap_or(i64::MAX)).encode(
                encoder.encode_descriptor(
                    "rekindle_exports_alive",
                    "Exports this host's records hold (each checked at every publisher tick and restarted if dead)",
                    None,
                    MetricType::Gauge,
                )?,
            )?;
        }
        if let Some(fleet) = &snapshot.fleet {
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            {
                let mut family = encoder.encode_descriptor(
                    "rekindle_fleet_hosts",
                    "Hosts the fleet's records know, by state (up: a heartbeat within service_down_time by the database's clock)",
                    None,
                    MetricType::Gauge,
                )?;
                for (state, n) in [("up", fleet.hosts_up), ("down", fleet.hosts_down)] {
                    ConstGauge::new(count(n)).encode(family.encode_family(&[("state", state)])?)?;
                }
            }
            ConstGauge::new(i64::from(fleet.fenced)).encode(encoder.encode_descriptor(
                "rekindle_fleet_fenced",
                "1 while this host has fenced itself (no renewal for its fence interval: it starts no work)",
                None,
                MetricType::Gauge,
            )?)?;
            if let Some(rtt) = fleet.heartbeat_round_trip {
                ConstGauge::new(rtt).encode(encoder.encode_descriptor(
                    "rekindle_fleet_heartbeat_round_trip_seconds",
                    "The last heartbeat's round trip to the fleet's database",
                    None,
                    MetricType::Gauge,
                )?)?;
            }
            ConstCounter::new(fleet.superseded_writes).encode(encoder.encode_descriptor(
                "rekindle_fleet_superseded_writes",
                "Final writes of this host's operations fenced off because a survivor had claimed the work (the survivor's resolution stands)",
                None,
                MetricType::Counter,
            )?)?;
            ConstGauge::new(count(fleet.rollouts_running)).encode(encoder.encode_descriptor(
                "rekindle_fleet_rollouts_running",
                "Rolling reloads running in the fleet",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// A user operation being timed (see [`Metrics::operation`]).
pub struct OperationTimer<'a> {
    metrics: &'a Metrics,
    operation: &'static str,
    started: std::time::Instant,
    ended: bool,
}

impl OperationTimer<'_> {
    /// The operation was answered with `outcome` (`ok`, `error`, `pending`).
    pub fn ended(mut self, outcome: &'static str) {
        self.ended = true;
        let labels = OperationOutcomeLabels {
            operation: self.operation,
            outcome,
        };
        self.metrics.operations.get_or_create(&labels).inc();
        self.metrics
            .operation_seconds
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for OperationTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .operations_in_flight
            .get_or_create(&OperationLabels {
                operation: self.operation,
            })
            .dec();
        if !self.ended {
            let labels = OperationOutcomeLabels {
                operation: self.operation,
                outcome: "cancelled",
            };
            self.metrics.operations.get_or_create(&labels).inc();
        }
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::BackupProgress;

    fn progress(id: &str, done: u64, total: u64) -> Notice {
        Notice {
            event: Event::BackupCreateProgress(BackupProgress {
                backup_id: id.to_string(),
                volume_id: "v".to_string(),
                percent: 0,
                bytes_done: done,
                bytes_total: total,
            }),
            backend: Some("backup".to_string()),
            timestamp: String::new(),
        }
    }

    #[test]
    fn backup_bytes_count_what_each_report_adds_once() {
        let clock = crate::engine::clock::ServiceClock::start();
        let metrics = Metrics::new(StatusBoard::default(), clock);
        for notice in [
            progress("b1", 100, 300),
            progress("b2", 50, 50),
            progress("b1", 100, 300), // the same report again adds nothing
            progress("b1", 300, 300),
        ] {
            metrics.observe(&notice);
        }
        let text = metrics.render(Format::Text);
        assert!(
            text.contains("rekindle_backup_bytes_total{work=\"backup\"} 350"),
            "{text}"
        );
        assert!(
            text.contains("rekindle_backup_bytes_total{work=\"restore\"} 0"),
            "{text}"
        );
        assert!(
            metrics.progress.lock().expect("lock").is_empty(),
            "finished ones are forgotten"
        );
    }
}
