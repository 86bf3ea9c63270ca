//! Service: routes operations to backend actors (refused unless Ready, by the core) and
//! heartbeats every `report_interval`, reporting a backend down when it has not been
//! Ready within `service_down_time` (cinder-volume rows per backend, one cinder-backup row).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::events::{BackupInitFailure, Event, ServiceRowChange};
use actix::prelude::*;

use super::driver_actor::{DriverActor, Operation, OperationError, OperationOutput};
use crate::driver::Kind;
use crate::engine::clock::ServiceClock;
use crate::events::notify::Notifier;
use crate::events::status::{Beat, ServiceBeat, StatusBoard};
use crate::lifecycle::{Moment, StateName};

/// Timing of the service's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// `report_interval`.
    pub report_interval: Duration,
    /// `service_down_time`.
    pub service_down_time: Duration,
    /// `backup_initialization_timeout`: after this long without a Ready backup
    /// driver, `backup.init.failure` says so (once).
    pub backup_initialization_timeout: Duration,
}

/// Routes an operation to a backend.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<OperationOutput, OperationError>")]
pub struct Route {
    /// The backend.
    pub backend: String,
    /// The operation.
    pub operation: Operation,
}

/// Adds (or replaces) a backend.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AddBackend {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Its actor.
    pub addr: Addr<DriverActor>,
}

/// Removes a backend.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RemoveBackend(pub String);

/// A backend's lifecycle state changed: its service row is re-evaluated at
/// once (sent by its driver actor, which never waits for an answer).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct BackendChanged(pub String);

/// Runs a heartbeat now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct HeartbeatNow;

struct Backend {
    kind: Kind,
    addr: Addr<DriverActor>,
    up: Option<bool>,
    /// Its service row's binary and host (fixed while it is added).
    binary: &'static str,
    host: String,
}

/// Told the service rows (all backends) at each heartbeat and whenever one
/// changes: how fleet records and an embedder's own monitoring follow them.
pub type RowSink = std::rc::Rc<dyn Fn(&[ServiceBeat<'_>])>;

/// The volume and backup service front: one row per backend.
pub struct Service {
    host: String,
    heartbeat: Heartbeat,
    clock: ServiceClock,
    board: StatusBoard,
    notifier: Notifier,
    backends: BTreeMap<String, Backend>,
    backup_timeout_reported: bool,
    #[cfg(feature = "sqlite")]
    records: Option<std::rc::Rc<dyn crate::records::ServiceRows>>,
    rows: Option<RowSink>,
}

impl Service {
    /// A service for `host`.
    pub fn new(
        host: String,
        heartbeat: Heartbeat,
        clock: ServiceClock,
        board: StatusBoard,
        notifier: Notifier,
    ) -> Self {
        Service {
            host,
            heartbeat,
            clock,
            board,
            notifier,
            backends: BTreeMap::new(),
            backup_timeout_reported: false,
            #[cfg(feature = "sqlite")]
            records: None,
            rows: None,
        }
    }

    /// Also tells `sink` every service row at each heartbeat and change.
    pub fn with_row_sink(mut self, sink: Option<RowSink>) -> Self {
        self.rows = sink;
        self
    }

    /// Tells the row sink every backend's current row.
    fn tell_rows(&self) {
        let Some(sink) = &self.rows else { return };
        let rows: Vec<ServiceBeat<'_>> = self
            .backends
            .iter()
            .map(|(name, b)| ServiceBeat {
                backend: name,
                binary: b.binary,
                host: &b.host,
                up: b.up == Some(true),
            })
            .collect();
        sink(&rows);
    }

    /// Also writes service rows to `records` on every heartbeat.
    #[cfg(feature = "sqlite")]
    pub fn with_records(
        mut self,
        records: Option<std::rc::Rc<dyn crate::records::ServiceRows>>,
    ) -> Self {
        self.records = records;
        self
    }

    fn beat(&mut self) {
        let now = self.clock.now();
        let stamp = self.clock.timestamp(now);
        let Service {
            heartbeat,
            board,
            notifier,
            backends,
            backup_timeout_reported,
            #[cfg(feature = "sqlite")]
            records,
            rows: sink,
            ..
        } = self;
        let beats = board.heartbeat(backends.keys(), now);
        let ups: Vec<bool> = backends
            .values()
            .zip(&beats)
            .map(|(backend, beat)| {
                beat.is_some_and(|b| is_up(b, backend.up, now, heartbeat.service_down_time))
            })
            .collect();
        // The heartbeat is written first: a service whose records cannot
        // be written is down (as Cinder's when its heartbeat fails), and up
        // again by itself once they can.
        #[allow(unused_mut)]
        let mut fault: Option<String> = None;
        #[cfg(feature = "sqlite")]
        if let Some(records) = records {
            for ((name, backend), up) in backends.iter().zip(&ups) {
                let state = if *up { "up" } else { "down" };
                if let Err(error) =
                    records.beat_service(name, backend.binary, &backend.host, state, &stamp)
                {
                    tracing::error!(%error, "cannot record the service heartbeat: service rows are down until it can");
                    fault = Some(error.to_string());
                    break;
                }
            }
        }
        let written = fault.is_none();
        board.set_records_fault(fault, &stamp);
        let mut rows = Vec::with_capacity(backends.len());
        for (((name, backend), beat), up) in backends.iter_mut().zip(beats).zip(ups) {
            let up = up && written;
            if let Some(beat) = beat {
                announce(notifier, name, backend, beat, up, now);
            }
            let (binary, host) = (backend.binary, backend.host.as_str());
            if let Some(beat) = beat.filter(|b| {
                backend.kind == Kind::Backup
                    && !up
                    && b.last_ready.is_none()
                    && !*backup_timeout_reported
                    && now.since_epoch() >= heartbeat.backup_initialization_timeout
            }) {
                *backup_timeout_reported = true;
                let last_error = board.backend(name).and_then(|s| s.last_error);
                notifier.emit(
                    Some(name),
                    now,
                    Event::BackupInitFailure(BackupInitFailure::Timeout {
                        reason: format!(
                            "backup driver not initialized within backup_initialization_timeout ({})",
                            humantime::format_duration(heartbeat.backup_initialization_timeout)
                        ),
                        state: beat.state.as_str(),
                        last_error,
                    }),
                );
            }
            rows.push(ServiceBeat {
                backend: name,
                binary,
                host,
                up,
            });
        }
        // Updated At is the last heartbeat written: kept while none can be.
        board.beat_services(&rows, written.then_some(stamp.as_str()));
        if let Some(sink) = sink {
            sink(&rows);
        }
    }
}

/// Whether a backend's service row is up: Ready is up and a failed or
/// stopped backend down, at once; one in a passing state (setting up,
/// draining, reloading) keeps the row it had while its last Ready is within
/// `service_down_time`, so a reload does not flap the row.
fn is_up(beat: Beat, was_up: Option<bool>, now: Moment, service_down_time: Duration) -> bool {
    match beat.state {
        StateName::Ready => true,
        StateName::Initializing
        | StateName::Reloading
        | StateName::RollingBack
        | StateName::Draining => {
            was_up == Some(true)
                && beat
                    .last_ready
                    .is_some_and(|t| now.saturating_since(t) <= service_down_time)
        }
        StateName::Uninitialized
        | StateName::FailedRecoverable
        | StateName::FailedFatal
        | StateName::Stopped => false,
    }
}

/// Emits `service.up` when a row comes up and `service.down` when a row that
/// was up goes down (a backend that was never up has nothing to lose).
fn announce(
    notifier: &Notifier,
    name: &str,
    backend: &mut Backend,
    beat: Beat,
    up: bool,
    now: Moment,
) {
    // Built only for a change: every heartbeat passes here for every backend.
    let change = || ServiceRowChange {
        binary: backend.binary.to_string(),
        host: backend.host.clone(),
        state: beat.state.as_str(),
    };
    let event = match (backend.up, up) {
        (Some(true), false) => Event::ServiceDown(change()),
        (Some(false) | None, true) => Event::ServiceUp(change()),
        _ => {
            backend.up = Some(up);
            return;
        }
    };
    notifier.emit(Some(name), now, event);
    backend.up = Some(up);
}

impl Service {
    /// Re-evaluates one backend's service row now (its state changed).
    fn beat_backend(&mut self, name: &str) {
        let now = self.clock.now();
        let Some(backend) = self.backends.get_mut(name) else {
            return;
        };
        let Some(status) = self.board.backend(name) else {
            return;
        };
        let beat = Beat {
            state: status.state,
            last_ready: status.last_ready,
        };
        let was = backend.up;
        // While the records cannot be written, every row stays down.
        let up = is_up(beat, was, now, self.heartbeat.service_down_time)
            && self.board.records_fault().is_none();
        announce(&self.notifier, name, backend, beat, up, now);
        if was == Some(up) {
            return;
        }
        let stamp = self.clock.timestamp(now);
        #[allow(unused_mut)]
        let mut written = true;
        #[cfg(feature = "sqlite")]
        if let Some(records) = &self.records {
            let state = if up { "up" } else { "down" };
            if let Err(error) =
                records.beat_service(name, backend.binary, &backend.host, state, &stamp)
            {
                tracing::error!(%error, "cannot record the service row");
                written = false;
            }
        }
        let row = ServiceBeat {
            backend: name,
            binary: backend.binary,
            host: &backend.host,
            up,
        };
        self.board
            .beat_services(&[row], written.then_some(stamp.as_str()));
        self.tell_rows();
    }
}

impl Handler<BackendChanged> for Service {
    type Result = ();
    fn handle(&mut self, msg: BackendChanged, _: &mut Context<Self>) {
        self.beat_backend(&msg.0);
    }
}

impl Actor for Service {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
        ctx.run_interval(self.heartbeat.report_interval, |act, _| act.beat());
    }
}

impl Handler<Route> for Service {
    type Result = ResponseFuture<Result<OperationOutput, OperationError>>;
    fn handle(&mut self, msg: Route, _: &mut Context<Self>) -> Self::Result {
        let operation = msg.operation.name();
        let Some(backend) = self.backends.get(&msg.backend) else {
            return Box::pin(async move {
                Err(OperationError::UnknownBackend {
                    operation,
                    backend: msg.backend,
                })
            });
        };
        // A backend a reload removed has stopped before the controller
        // unrouted it: the operation is refused, never accepted and cut.
        if !backend.addr.connected() {
            return Box::pin(async move {
                Err(OperationError::Stopped {
                    operation,
                    backend: msg.backend,
                })
            });
        }
        // Driver actors never call the service back: awaiting them here
        // cannot deadlock. `send` waits for mailbox room instead of dropping.
        let request = backend.addr.send(msg.operation);
        let backend = msg.backend;
        Box::pin(async move {
            request
                .await
                .unwrap_or(Err(OperationError::Cancelled { operation, backend }))
        })
    }
}

impl Handler<AddBackend> for Service {
    type Result = ();
    fn handle(&mut self, msg: AddBackend, _: &mut Context<Self>) {
        let (binary, host) = match msg.kind {
            Kind::Volume => ("cinder-volume", format!("{}@{}", self.host, msg.name)),
            Kind::Backup => ("cinder-backup", self.host.clone()),
        };
        self.backends.insert(
            msg.name,
            Backend {
                kind: msg.kind,
                addr: msg.addr,
                up: None,
                binary,
                host,
            },
        );
        // A new backend gets its service row at once (down until Ready).
        self.beat();
    }
}

impl Handler<RemoveBackend> for Service {
    type Result = ();
    fn handle(&mut self, msg: RemoveBackend, _: &mut Context<Self>) {
        self.backends.remove(&msg.0);
        // A removed backend leaves `status` too (its row and service row).
        self.board.remove_backend(&msg.0);
    }
}

impl Handler<HeartbeatNow> for Service {
    type Result = ();
    fn handle(&mut self, _: HeartbeatNow, _: &mut Context<Self>) {
        self.beat();
    }
}
