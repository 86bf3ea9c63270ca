//! StatusBoard: the latest status of every backend and service, written by their
//! actors and read by anyone without a message round trip (so no reader can deadlock).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::Serialize;

use crate::driver::Kind;
use crate::lifecycle::{Moment, StateName};

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
    /// The last driver error, if failed.
    pub last_error: Option<String>,
    /// When the next re-initialization is due (RFC 3339), if scheduled.
    pub next_retry: Option<String>,
    /// Operations in flight.
    pub in_flight: u32,
    /// The config the backend runs on.
    pub config: u64,
    /// When the backend was last seen Ready (service time), if ever.
    #[serde(skip)]
    pub last_ready: Option<Moment>,
}

/// One service row, like `cinder service-list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// `cinder-volume` or `cinder-backup`.
    pub binary: String,
    /// `host@backend` for volume backends, `host` for the backup service.
    pub host: String,
    /// The backend this row stands for.
    pub backend: String,
    /// `up` or `down`.
    pub state: String,
    /// Last heartbeat (RFC 3339).
    pub updated_at: String,
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

    /// Records a service row.
    pub fn set_service(&self, status: ServiceStatus) {
        self.inner
            .borrow_mut()
            .services
            .insert(status.backend.clone(), status);
    }

    /// Every service row, by backend.
    pub fn services(&self) -> Vec<ServiceStatus> {
        self.inner.borrow().services.values().cloned().collect()
    }

    /// Marks a Ready backend as seen now (heartbeat).
    pub fn heartbeat(&self, name: &str, now: Moment) -> Option<BackendStatus> {
        let mut board = self.inner.borrow_mut();
        let entry = board.backends.get_mut(name)?;
        if entry.0.state == StateName::Ready {
            entry.0.last_ready = Some(now);
        }
        Some(current(entry))
    }
}
