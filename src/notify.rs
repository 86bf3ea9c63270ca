//! Notifications: the stable JSON-lines contract (`event_type`, `backend`, `timestamp`,
//! `payload`), written to a file and kept in a bounded in-memory history.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::rc::Rc;

use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::ServiceClock;
use crate::lifecycle::{Moment, Notification};

/// How many notifications the in-memory history keeps (the file keeps all).
pub const HISTORY_LIMIT: usize = 10_000;

/// One notification, as written to the notifications file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Stable event type (`driver.init.start`, `reload.end`, ...).
    pub event_type: String,
    /// The backend it concerns, if any.
    pub backend: Option<String>,
    /// RFC 3339 time.
    pub timestamp: String,
    /// Event-specific data.
    pub payload: Value,
}

/// Where notifications go. Cloning shares the same sink.
#[derive(Clone)]
pub struct Notifier {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    clock: ServiceClock,
    history: VecDeque<Record>,
    emitted: u64,
    counts: std::collections::BTreeMap<String, u64>,
    file: Option<BufWriter<File>>,
    write_error: Option<String>,
}

impl Notifier {
    /// A notifier that keeps history in memory only.
    pub fn in_memory(clock: ServiceClock) -> Self {
        Notifier {
            inner: Rc::new(RefCell::new(Inner {
                clock,
                history: VecDeque::new(),
                emitted: 0,
                counts: std::collections::BTreeMap::new(),
                file: None,
                write_error: None,
            })),
        }
    }

    /// A notifier that also appends JSON lines to `path`.
    pub fn to_file(clock: ServiceClock, path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let notifier = Notifier::in_memory(clock);
        notifier.inner.borrow_mut().file = Some(BufWriter::new(file));
        Ok(notifier)
    }

    /// Emits a driver-level notification from the core.
    pub fn driver(&self, backend: &str, at: Moment, notification: &Notification) {
        self.emit(
            notification.event_type(),
            Some(backend),
            at,
            payload(notification),
        );
    }

    /// Emits any notification.
    pub fn emit(&self, event_type: &str, backend: Option<&str>, at: Moment, payload: Value) {
        let mut inner = self.inner.borrow_mut();
        let record = Record {
            event_type: event_type.to_string(),
            backend: backend.map(str::to_string),
            timestamp: inner.clock.timestamp(at),
            payload,
        };
        tracing::info!(event_type, backend, payload = %record.payload, "notification");
        if let Some(file) = inner.file.as_mut() {
            let written = serde_json::to_writer(&mut *file, &record)
                .map_err(std::io::Error::from)
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.flush());
            if let Err(e) = written {
                tracing::error!(error = %e, "cannot write the notifications file");
                inner.write_error = Some(e.to_string());
            }
        }
        if inner.history.len() == HISTORY_LIMIT {
            inner.history.pop_front();
        }
        *inner.counts.entry(record.event_type.clone()).or_default() += 1;
        inner.history.push_back(record);
        inner.emitted += 1;
    }

    /// The most recent notifications (up to [`HISTORY_LIMIT`]), oldest first.
    pub fn history(&self) -> Vec<Record> {
        self.inner.borrow().history.iter().cloned().collect()
    }

    /// How many notifications were emitted since the start.
    pub fn emitted(&self) -> u64 {
        self.inner.borrow().emitted
    }

    /// How many notifications of `event_type` were emitted since the start
    /// (all of them, not only those still in the history).
    pub fn count(&self, event_type: &str) -> u64 {
        self.inner
            .borrow()
            .counts
            .get(event_type)
            .copied()
            .unwrap_or(0)
    }

    /// The last error writing the notifications file, if any.
    pub fn write_error(&self) -> Option<String> {
        self.inner.borrow().write_error.clone()
    }
}

/// The payload of a driver-level notification.
pub fn payload(notification: &Notification) -> Value {
    match notification {
        Notification::InitStart { attempt } | Notification::InitEnd { attempt } => {
            json!({ "attempt": attempt })
        }
        Notification::InitError { attempt, error } => json!({
            "attempt": attempt,
            "class": error.class().as_str(),
            "message": error.to_string(),
        }),
        Notification::RetryScheduled { attempt, delay } => json!({
            "attempt": attempt,
            "delay_seconds": delay.as_secs_f64(),
        }),
        Notification::GaveUp { attempts } => json!({ "attempts": attempts }),
        Notification::HealthLost { error } => json!({
            "class": error.class().as_str(),
            "message": error.to_string(),
        }),
        Notification::ReloadAborted { in_flight } => json!({
            "reason": "drain deadline passed; the old config keeps serving",
            "in_flight": in_flight,
        }),
        Notification::ReloadRolledBack { error } => json!({
            "class": error.class().as_str(),
            "error": error.to_string(),
            "reason": "the new config failed to set up; the old config serves again",
        }),
        Notification::RemovalAborted { in_flight } => json!({
            "reason": "drain deadline passed; the removed backend keeps serving on its old config",
            "in_flight": in_flight,
        }),
    }
}
