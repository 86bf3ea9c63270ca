//! StatusBoard: the latest status of every backend and service, written by their
//! actors and read by anyone without a message round trip (so no reader can deadlock).

use std::cell::RefCell;
use std::collections::{BTreeMap, btree_map};
use std::rc::Rc;

use serde::Serialize;

use crate::driver::Kind;
use crate::lifecycle::{Moment, StateName};

/// Why a backend runs an older config than the file's: its last reload
/// left it on the config it served on before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StaleConfig {
    /// The new config failed to set up; the old instance serves again.
    RolledBack {
        /// The new config's error.
        error: String,
    },
    /// The drain deadline passed with operations in flight.
    ReloadAborted {
        /// Operations in flight when the deadline passed.
        in_flight: u32,
    },
    /// The backend was removed from the file, but its drain deadline passed
    /// with operations in flight: it keeps serving.
    RemovalAborted {
        /// Operations in flight when the deadline passed.
        in_flight: u32,
    },
}

/// "1 operation", "2 operations".
pub fn operations(count: u32) -> String {
    if count == 1 {
        "1 operation".to_string()
    } else {
        format!("{count} operations")
    }
}

impl std::fmt::Display for StaleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StaleConfig::RolledBack { error } => {
                write!(f, "old config (rolled back: {error})")
            }
            StaleConfig::ReloadAborted { in_flight } => write!(
                f,
                "old config (reload aborted: {} in flight)",
                operations(*in_flight)
            ),
            StaleConfig::RemovalAborted { in_flight } => write!(
                f,
                "old config (removal aborted: {} in flight)",
                operations(*in_flight)
            ),
        }
    }
}

/// One backend's status, as `rekindle status` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendStatus {
    /// Backend name.
    pub name: String,
    /// Volume or backup.
    pub kind: Kind,
    /// Driver name.
    pub driver: String,
    /// Lifecycle state.
    pub state: StateName,
    /// Current attempt (0 = first setup).
    pub attempt: u32,
    /// Setup attempts the budget allows (1 + `reinit_driver_count`); `None`
    /// when unlimited (`reinit_driver_count = 0`).
    pub max_attempts: Option<u32>,
    /// The backend spent its retry budget and waits for a reload.
    pub gave_up: bool,
    /// The last driver error, if failed.
    pub last_error: Option<String>,
    /// When the next re-initialization is due (RFC 3339), if scheduled.
    pub next_retry: Option<String>,
    /// Operations in flight.
    pub in_flight: u32,
    /// The config the backend runs on.
    pub config: u64,
    /// Set when the backend runs an older config than the file's, and why.
    pub stale_config: Option<StaleConfig>,
    /// When the backend was last seen Ready (service time), if ever.
    #[serde(skip)]
    pub last_ready: Option<Moment>,
    /// When the backend entered its current state (service time; kept by
    /// [`StatusBoard::set_backend`]).
    #[serde(skip)]
    pub changed_at: Option<Moment>,
}

/// One service row, like `cinder service-list`: the records' row type, as
/// the board holds it.
pub use crate::records::ServiceRow as ServiceStatus;

/// What a heartbeat reads of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Its lifecycle state.
    pub state: StateName,
    /// When it was last seen Ready.
    pub last_ready: Option<Moment>,
}

/// A heartbeat's service row for one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceBeat<'a> {
    /// The backend.
    pub backend: &'a str,
    /// `cinder-volume` or `cinder-backup`.
    pub binary: &'a str,
    /// `host@backend` or `host`.
    pub host: &'a str,
    /// Whether it is up.
    pub up: bool,
}

/// Shared, single-threaded status of everything running.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Rc<RefCell<Board>>,
}

#[derive(Debug, Default)]
struct Board {
    /// Each backend's status; its `in_flight` is read from the cell.
    backends: BTreeMap<String, (BackendStatus, InFlight)>,
    services: BTreeMap<String, ServiceStatus>,
    records_fault: Option<RecordsFault>,
    /// Heartbeats whose records could not be written, since the start.
    records_write_failures: u64,
}

/// The records cannot be written (their heartbeat failed): why, and since
/// when. Every service row is down while it lasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RecordsFault {
    /// The error, in words ("records database ...: state_dir ... cannot be
    /// written: no space left on device").
    pub error: String,
    /// The first heartbeat that failed (RFC 3339).
    pub since: String,
}

/// A backend's in-flight count, shared between the board and the backend's
/// actor: counting an operation in or out is one store, with no lookup.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Rc<std::cell::Cell<u32>>);

impl InFlight {
    /// Sets the count.
    pub fn set(&self, in_flight: u32) {
        self.0.set(in_flight);
    }
}

fn current((status, in_flight): &(BackendStatus, InFlight)) -> BackendStatus {
    BackendStatus {
        in_flight: in_flight.0.get(),
        ..status.clone()
    }
}

impl StatusBoard {
    /// Records `status` for its backend, keeping `last_ready` current.
    /// Returns the backend's in-flight cell (the same one while the backend
    /// stays on the board), for [`InFlight::set`] on the hot path.
    pub fn set_backend(&self, mut status: BackendStatus, now: Moment) -> InFlight {
        let mut board = self.inner.borrow_mut();
        let previous = board.backends.get(&status.name);
        let last_ready = previous.and_then(|(s, _)| s.last_ready);
        status.changed_at = match previous {
            Some((s, _)) if s.state == status.state => s.changed_at,
            _ => Some(now),
        };
        let cell = previous.map(|(_, c)| c.clone()).unwrap_or_default();
        status.last_ready = if status.state == StateName::Ready {
            Some(now)
        } else {
            last_ready
        };
        cell.set(status.in_flight);
        board
            .backends
            .insert(status.name.clone(), (status, cell.clone()));
        cell
    }

    /// Forgets a backend (removed by a reload).
    pub fn remove_backend(&self, name: &str) {
        let mut board = self.inner.borrow_mut();
        board.backends.remove(name);
        board.services.remove(name);
    }

    /// One backend's status.
    pub fn backend(&self, name: &str) -> Option<BackendStatus> {
        self.inner.borrow().backends.get(name).map(current)
    }

    /// Every backend, by name.
    pub fn backends(&self) -> Vec<BackendStatus> {
        self.inner.borrow().backends.values().map(current).collect()
    }

    /// How many backends are in `state` (no copies: cheap enough to poll).
    pub fn count_in(&self, state: StateName) -> usize {
        self.inner
            .borrow()
            .backends
            .values()
            .filter(|(status, _)| status.state == state)
            .count()
    }

    /// Records whether the last heartbeat could be written (`None`) or not
    /// (the error, first seen at `now`, an RFC 3339 stamp).
    pub fn set_records_fault(&self, error: Option<String>, now: &str) {
        let mut board = self.inner.borrow_mut();
        if error.is_some() {
            board.records_write_failures += 1;
        }
        board.records_fault = match (error, board.records_fault.take()) {
            (None, _) => None,
            (Some(error), Some(fault)) => Some(RecordsFault {
                error,
                since: fault.since,
            }),
            (Some(error), None) => Some(RecordsFault {
                error,
                since: now.to_string(),
            }),
        };
    }

    /// How many heartbeats' records could not be written since the start.
    pub fn records_write_failures(&self) -> u64 {
        self.inner.borrow().records_write_failures
    }

    /// Why the records cannot be written, while they cannot.
    pub fn records_fault(&self) -> Option<RecordsFault> {
        self.inner.borrow().records_fault.clone()
    }

    /// Every service row, by backend.
    pub fn services(&self) -> Vec<ServiceStatus> {
        self.inner.borrow().services.values().cloned().collect()
    }

    /// Marks each Ready backend of `names` as seen now (heartbeat) and
    /// returns what the heartbeat needs of each, in the same order (`None`
    /// for a backend not on the board yet), copying no strings. `names` are
    /// a map's keys, so they come sorted, and the board's rows are walked in
    /// step with them instead of looked up one by one.
    pub fn heartbeat<V>(
        &self,
        names: btree_map::Keys<'_, String, V>,
        now: Moment,
    ) -> Vec<Option<Beat>> {
        let mut board = self.inner.borrow_mut();
        let mut rows = board.backends.iter_mut().peekable();
        names
            .map(|name| {
                while rows.next_if(|(key, _)| *key < name).is_some() {}
                let (_, (status, _)) = rows.next_if(|(key, _)| *key == name)?;
                if status.state == StateName::Ready {
                    status.last_ready = Some(now);
                }
                Some(Beat {
                    state: status.state,
                    last_ready: status.last_ready,
                })
            })
            .collect()
    }

    /// Writes a heartbeat's service rows, in place where a row exists: every
    /// `report_interval` this touches every backend's row, and once the rows
    /// are there it allocates nothing. Rows sorted by backend are walked in
    /// step with the board's; any out of order is inserted afresh.
    /// `updated_at` is the heartbeat written, or `None` when it could not be
    /// written: rows keep their last one (a new row reads `never`).
    pub fn beat_services(&self, rows: &[ServiceBeat<'_>], updated_at: Option<&str>) {
        let mut board = self.inner.borrow_mut();
        let mut missing = Vec::new();
        let mut existing = board.services.iter_mut().peekable();
        for row in rows {
            while existing
                .next_if(|(key, _)| key.as_str() < row.backend)
                .is_some()
            {}
            let state = if row.up { "up" } else { "down" };
            match existing.next_if(|(key, _)| key.as_str() == row.backend) {
                Some((_, status)) => {
                    // A row's `updated_at` stays as it was when none is given.
                    let stamp = updated_at.map(|stamp| (&mut status.updated_at, stamp));
                    for (field, value) in [
                        (&mut status.binary, row.binary),
                        (&mut status.host, row.host),
                        (&mut status.state, state),
                    ]
                    .into_iter()
                    .chain(stamp)
                    {
                        if field != value {
                            field.clear();
                            field.push_str(value);
                        }
                    }
                }
                None => missing.push(ServiceStatus {
                    binary: row.binary.to_string(),
                    host: row.host.to_string(),
                    backend: row.backend.to_string(),
                    state: state.to_string(),
                    updated_at: updated_at.unwrap_or("never").to_string(),
                }),
            }
        }
        for status in missing {
            board.services.insert(status.backend.clone(), status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, state: StateName) -> BackendStatus {
        BackendStatus {
            name: name.to_string(),
            kind: Kind::Volume,
            driver: "fault".to_string(),
            state,
            attempt: 0,
            max_attempts: Some(4),
            gave_up: false,
            last_error: None,
            next_retry: None,
            in_flight: 0,
            config: 1,
            stale_config: None,
            last_ready: None,
            changed_at: None,
        }
    }

    fn row<'a>(backend: &'a str, up: bool) -> ServiceBeat<'a> {
        ServiceBeat {
            backend,
            binary: "cinder-volume",
            host: "h",
            up,
        }
    }

    #[test]
    fn a_heartbeat_marks_ready_backends_seen_and_reports_missing_ones() {
        let board = StatusBoard::default();
        board.set_backend(status("a", StateName::Ready), Moment::from_secs(1));
        board.set_backend(status("c", StateName::FailedRecoverable), Moment::ZERO);
        let now = Moment::from_secs(10);
        let names: BTreeMap<String, ()> = ["d", "c", "b", "a"]
            .into_iter()
            .map(|n| (n.to_string(), ()))
            .collect();
        assert_eq!(
            board.heartbeat(names.keys(), now),
            vec![
                Some(Beat {
                    state: StateName::Ready,
                    last_ready: Some(now)
                }),
                None,
                Some(Beat {
                    state: StateName::FailedRecoverable,
                    last_ready: None
                }),
                None,
            ]
        );
        assert_eq!(board.backend("a").and_then(|s| s.last_ready), Some(now));
    }

    #[test]
    fn service_rows_are_added_then_rewritten_in_place() {
        let board = StatusBoard::default();
        board.beat_services(&[row("a", true), row("c", false)], Some("t1"));
        board.beat_services(
            &[row("a", false), row("b", true), row("c", false)],
            Some("t2"),
        );
        board.beat_services(&[row("a", false), row("b", false)], None);
        let rows = board.services();
        let seen: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.backend.as_str(), r.state.as_str(), r.updated_at.as_str()))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("a", "down", "t2"),
                ("b", "down", "t2"),
                ("c", "down", "t2")
            ],
            "a heartbeat not written keeps each row's last Updated At"
        );
        assert!(
            rows.iter()
                .all(|r| r.binary == "cinder-volume" && r.host == "h")
        );
    }
}
