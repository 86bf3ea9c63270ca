//! Notifications: every [`Event`] delivered to its subscribers: the JSON-lines
//! file, the bounded in-memory history, and an embedder's actors (bounded, counted).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::rc::Rc;

use actix::Recipient;
use serde::Serialize;
use serde_json::Value;

use crate::engine::clock::ServiceClock;
use crate::events::{Event, Notice};
use crate::lifecycle::{Moment, Notification};

/// How many notifications the in-memory history keeps (the file keeps all).
pub const HISTORY_LIMIT: usize = 10_000;

/// One notification as written to the notifications file and kept in the
/// history: the JSON form of a [`Notice`].
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

impl Record {
    /// The JSON form of `notice`.
    fn of(notice: &Notice) -> Record {
        Record {
            event_type: notice.event_type().to_string(),
            backend: notice.backend.clone(),
            timestamp: notice.timestamp.clone(),
            payload: notice.event.payload(),
        }
    }
}

/// Where notifications go. Cloning shares the same subscribers.
#[derive(Clone)]
pub struct Notifier {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    clock: ServiceClock,
    /// Notices, not records: the JSON form is built only when the file,
    /// the log or [`Notifier::history`] asks for it.
    history: VecDeque<Notice>,
    emitted: u64,
    counts: std::collections::BTreeMap<&'static str, u64>,
    file: Option<BufWriter<File>>,
    write_error: Option<String>,
    subscribers: Vec<Subscriber>,
    overflowed: u64,
    observers: Vec<Observer>,
}

/// Sees every notice as it is emitted (see [`Notifier::on_notice`]).
type Observer = Rc<dyn Fn(&Notice)>;

/// An embedder's actor and how many notices its full mailbox refused.
struct Subscriber {
    recipient: Recipient<Notice>,
    overflowed: u64,
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
                subscribers: Vec::new(),
                overflowed: 0,
                observers: Vec::new(),
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

    /// Delivers every later notice to `recipient` too, with `try_send`: a
    /// subscriber whose mailbox is full never blocks a driver actor; the
    /// notice is dropped for it, counted ([`Notifier::overflowed`]) and
    /// logged. A subscriber that stopped is forgotten.
    pub fn subscribe(&self, recipient: Recipient<Notice>) {
        self.inner.borrow_mut().subscribers.push(Subscriber {
            recipient,
            overflowed: 0,
        });
    }

    /// Calls `observer` with every later notice, in the emitting task,
    /// before `emit` returns (metrics count them so). It must be quick and
    /// must not emit notifications itself.
    pub fn on_notice(&self, observer: impl Fn(&Notice) + 'static) {
        self.inner.borrow_mut().observers.push(Rc::new(observer));
    }

    /// Emits a driver-level notification from the core.
    pub fn driver(&self, backend: &str, at: Moment, notification: &Notification) {
        self.emit(Some(backend), at, Event::from(notification));
    }

    /// Emits an event.
    pub fn emit(&self, backend: Option<&str>, at: Moment, event: Event) {
        let notice = self.deliver(backend, at, event);
        let observers = self.inner.borrow().observers.clone();
        for observer in observers {
            observer(&notice);
        }
    }

    /// Writes, keeps and sends one notice; returns it for the observers.
    fn deliver(&self, backend: Option<&str>, at: Moment, event: Event) -> Notice {
        let mut inner = self.inner.borrow_mut();
        let notice = Notice {
            event,
            backend: backend.map(str::to_string),
            timestamp: inner.clock.timestamp(at),
        };
        // The JSON form only for a log line or the file (a simulation has
        // neither, and builds none).
        if inner.file.is_some() || tracing::enabled!(tracing::Level::INFO) {
            let record = Record::of(&notice);
            tracing::info!(event_type = record.event_type, backend, payload = %record.payload, "notification");
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
        }
        let inner = &mut *inner;
        let mut overflowed = 0;
        inner.subscribers.retain_mut(|s| {
            match s.recipient.try_send(notice.clone()) {
                Ok(()) => true,
                Err(actix::prelude::SendError::Full(_)) => {
                    s.overflowed += 1;
                    overflowed += 1;
                    // The first drop and every power of two after it.
                    if s.overflowed.is_power_of_two() {
                        tracing::warn!(
                            dropped = s.overflowed,
                            "a subscriber's mailbox is full: notices dropped for it"
                        );
                    }
                    true
                }
                Err(actix::prelude::SendError::Closed(_)) => false,
            }
        });
        inner.overflowed += overflowed;
        if inner.history.len() == HISTORY_LIMIT {
            inner.history.pop_front();
        }
        *inner.counts.entry(notice.event_type()).or_default() += 1;
        inner.history.push_back(notice.clone());
        inner.emitted += 1;
        notice
    }

    /// How many notices subscribers' full mailboxes refused, in all.
    pub fn overflowed(&self) -> u64 {
        self.inner.borrow().overflowed
    }

    /// The most recent notifications (up to [`HISTORY_LIMIT`]), oldest first.
    pub fn history(&self) -> Vec<Record> {
        self.inner.borrow().history.iter().map(Record::of).collect()
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
