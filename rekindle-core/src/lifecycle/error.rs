//! Errors of the core: how a driver failed (`DriverError`, classified fatal or
//! recoverable) and why the lifecycle refused an event (`Refused`).

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::{EventName, Moment, StateName};

/// Whether a driver failure may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Never retried; only a reload brings the driver back.
    Fatal,
    /// Retried with backoff within `reinit_driver_count`.
    Recoverable,
}

impl ErrorClass {
    /// `"fatal"` or `"recoverable"`, as in notifications.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Fatal => "fatal",
            ErrorClass::Recoverable => "recoverable",
        }
    }
}

/// The message of a [`DriverError`]: a static string (copied freely, as
/// the model checker's injected errors are) or a shared one (`Arc<str>`,
/// one allocation, then cheap to clone). Compared, hashed and shown by its
/// text alone, so the same message is the same error either way.
#[derive(Clone)]
pub enum ErrorText {
    /// A message known at compile time: cloning copies a pointer (no
    /// reference count, so threads sharing states never contend on it).
    Static(&'static str),
    /// A message built at run time.
    Shared(Arc<str>),
}

impl ErrorText {
    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorText::Static(text) => text,
            ErrorText::Shared(text) => text,
        }
    }
}

impl std::ops::Deref for ErrorText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ErrorText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ErrorText {}

impl std::hash::Hash for ErrorText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::fmt::Debug for ErrorText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for ErrorText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorText {
    fn from(text: &str) -> Self {
        ErrorText::Shared(Arc::from(text))
    }
}

impl From<String> for ErrorText {
    fn from(text: String) -> Self {
        ErrorText::Shared(Arc::from(text))
    }
}

impl From<Arc<str>> for ErrorText {
    fn from(text: Arc<str>) -> Self {
        ErrorText::Shared(text)
    }
}

/// How a driver call failed. Messages are [`ErrorText`] so states that
/// carry the last error stay cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Error)]
pub enum DriverError {
    /// The driver's configuration is invalid. Fatal.
    #[error("configuration error: {0}")]
    Config(ErrorText),
    /// The configured driver does not exist or cannot run here. Fatal.
    #[error("driver not supported: {0}")]
    NotSupported(ErrorText),
    /// A library or tool the driver needs is missing. Fatal.
    #[error("missing library: {0}")]
    MissingLibrary(ErrorText),
    /// The storage backend is unreachable or answered with an error. Recoverable.
    #[error("backend error: {0}")]
    Backend(ErrorText),
    /// A driver call did not return within its deadline. Recoverable.
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The driver panicked; the panic was caught at the actor boundary. Recoverable.
    #[error("driver panicked: {0}")]
    Panicked(ErrorText),
    /// Any other failure. Recoverable.
    #[error("{0}")]
    Other(ErrorText),
}

impl DriverError {
    /// Config error, driver not supported and missing library are fatal;
    /// everything else is recoverable.
    pub fn class(&self) -> ErrorClass {
        match self {
            DriverError::Config(_)
            | DriverError::NotSupported(_)
            | DriverError::MissingLibrary(_) => ErrorClass::Fatal,
            DriverError::Backend(_)
            | DriverError::Timeout(_)
            | DriverError::Panicked(_)
            | DriverError::Other(_) => ErrorClass::Recoverable,
        }
    }

    /// True if this error is never retried.
    pub fn is_fatal(&self) -> bool {
        self.class() == ErrorClass::Fatal
    }

    /// Shorthand for a `Backend` error.
    pub fn backend(message: impl Into<ErrorText>) -> Self {
        DriverError::Backend(message.into())
    }
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Why {
    /// Operations run only on a Ready driver.
    #[error("the driver is not ready{}", .next_retry.map(|t| format!(" (next retry at {t})")).unwrap_or_default())]
    NotReady {
        /// When the next re-initialization is due.
        next_retry: Option<Moment>,
    },
    /// The driver is draining for a reload or shutdown; retry shortly.
    #[error("the driver is draining; retry shortly")]
    Draining,
    /// An operation finished although none was in flight.
    #[error("no operation is in flight")]
    NoneInFlight,
    /// The in-flight counter would overflow.
    #[error("too many operations in flight")]
    InFlightLimit,
    /// `Start` arrived twice.
    #[error("the driver was already started")]
    AlreadyStarted,
    /// The driver has stopped; it takes no more events but shutdown.
    #[error("the driver has stopped")]
    Stopped,
}

/// An event the lifecycle does not accept in its current state. Nothing
/// changed; the caller keeps the old state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{event} refused in state {state}: {why}")]
pub struct Refused {
    /// The state the driver was in.
    pub state: StateName,
    /// The event that was refused.
    pub event: EventName,
    /// Why.
    pub why: Why,
}

impl Refused {
    /// True if the same request may succeed later without operator action
    /// (the driver is draining or re-initializing).
    pub fn is_retryable(&self) -> bool {
        matches!(self.why, Why::Draining | Why::NotReady { .. })
    }
}
