//! The fleet's records as one interface ([`FleetStore`]) and the one place that picks the
//! database from `[database] connection`: PostgreSQL or MariaDB (MySQL), same contract.

use std::rc::Rc;
use std::time::Duration;

use async_trait::async_trait;

use super::cluster::ClusterRecords;
use super::database::{Dialect, redact};
use super::requests::ReloadRequests;
use super::rollouts::RolloutRecords;
use super::{RecordStore, RecordsError};

/// Everything a fleet keeps in its shared database: the records of
/// [`RecordStore`], hosts and their work ([`ClusterRecords`]), reload
/// requests ([`ReloadRequests`]) and rollouts ([`RolloutRecords`]).
/// Implemented by [`super::PgStore`] and [`super::MariaDbStore`]; the same
/// contract tests run against both.
#[async_trait(?Send)]
pub trait FleetStore: RecordStore + ClusterRecords + ReloadRequests + RolloutRecords {
    /// The database's URL, password removed.
    fn url(&self) -> &str;

    /// Drops every rekindle table and migrates again (tests start each
    /// from an empty schema).
    #[doc(hidden)]
    async fn reset(&self) -> Result<(), RecordsError>;
}

/// Connects to the fleet's database named by `url` (`[database]
/// connection`, Cinder's form) and brings its schema up to date.
/// `service_down_time` decides when a heartbeat is too old.
///
/// # Errors
/// `BadUrl` for a URL of a dialect rekindle does not speak or this build
/// was made without, or one that does not parse; `Unavailable` when the
/// server cannot be reached; `Query` when a migration fails.
pub async fn connect(
    url: &str,
    service_down_time: Duration,
) -> Result<Rc<dyn FleetStore>, RecordsError> {
    let dialect = Dialect::of(url).map_err(|reason| RecordsError::BadUrl {
        url: redact(url),
        reason,
    })?;
    match dialect {
        #[cfg(feature = "postgres")]
        Dialect::Postgres => Ok(Rc::new(
            super::PgStore::connect(url, service_down_time).await?,
        )),
        #[cfg(feature = "mariadb")]
        Dialect::MariaDb => Ok(Rc::new(
            super::MariaDbStore::connect(url, service_down_time).await?,
        )),
        #[allow(unreachable_patterns)]
        other => Err(RecordsError::BadUrl {
            url: redact(url),
            reason: other.not_built().to_string(),
        }),
    }
}

/// The tables the first migration creates, on every dialect: found
/// without `rekindle_migrations`, they belong to another application.
pub(crate) const OWN_TABLES: &[&str] = &[
    "volumes",
    "exports",
    "attachments",
    "backups",
    "services",
    "hosts",
    "workers",
    "reload_requests",
    "rollouts",
];

/// Why a database whose tables are named as rekindle's, without its
/// `rekindle_migrations`, is not used: it belongs to another application
/// (Cinder's own database has `volumes`, `services`, `backups` and
/// `workers`), and nothing is changed in it.
pub(crate) fn foreign_tables(tables: &[String]) -> String {
    format!(
        "this database already has tables named as rekindle's ({}) but no rekindle_migrations: it belongs to another application (Cinder's own database?); give rekindle a database of its own, e.g. CREATE DATABASE rekindle",
        tables.join(", ")
    )
}
