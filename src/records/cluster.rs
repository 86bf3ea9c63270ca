//! Active/Active clusters in the shared records: hosts with fencing epochs, work in progress
//! with its owner (Cinder's `workers`), the exactly-once claim of a dead host's work.
//!
//! The contract every fleet database keeps ([`ClusterRecords`]): each
//! decision is taken by the database atomically, never by a check in the
//! client then an act. A claim takes a dead host's rows only while its
//! heartbeat is stale by the server's clock, so of two survivors racing,
//! exactly one gets each row; a host's writes to work it owns carry its
//! epoch, and once a survivor has claimed the work (or the host restarted
//! with a new epoch), they change nothing. PostgreSQL does each in one
//! statement; MariaDB in one transaction whose first statement locks the
//! rows it decides on (it has no writable CTEs nor `UPDATE ... RETURNING`).

use std::time::Duration;

use async_trait::async_trait;

use super::{End, RecordsError, ServiceRow};

/// A host's incarnation: bumped every time the host registers (starts), so
/// a host that comes back never writes with the epoch its work was claimed
/// under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Epoch(pub i64);

/// One piece of work in progress (a volume being created, a backup being
/// made, ...), owned by one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    /// `volume` or `backup`.
    pub kind: String,
    /// The record's id.
    pub id: String,
    /// The record's status while the work runs (`creating`, `backing-up`, ...).
    pub status: String,
}

/// Work a survivor took over from a dead host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The work.
    pub work: Work,
    /// The host that died with it.
    pub dead_host: String,
}

/// One service row for [`ClusterRecords::put_services`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicePut<'a> {
    /// The backend.
    pub backend: &'a str,
    /// `cinder-volume` or `cinder-backup`.
    pub binary: &'a str,
    /// `host@backend` or `host`.
    pub host: &'a str,
    /// `up` or `down`.
    pub state: &'a str,
}

/// The rows of `rows` to write, a (host, backend) given twice keeping its
/// last row, by (host, backend).
pub(crate) fn last_service_rows<'a, 'b>(rows: &'b [ServicePut<'a>]) -> Vec<&'b ServicePut<'a>> {
    let mut last: std::collections::BTreeMap<(&str, &str), &ServicePut<'_>> =
        std::collections::BTreeMap::new();
    for row in rows {
        last.insert((row.host, row.backend), row);
    }
    last.into_values().collect()
}

/// Hosts, their heartbeats and their work, in the fleet's database.
#[async_trait(?Send)]
pub trait ClusterRecords {
    /// Registers this host's start in `cluster`: its epoch is one more than
    /// any it had before. Heartbeats and work carry it.
    async fn register_host(&self, host: &str, cluster: &str) -> Result<Epoch, RecordsError>;

    /// Stamps this host alive (the server's clock); a renewal more than
    /// `allowed_gap` after the previous one starts a new run of renewals
    /// ([`crate::fleet::outcome::continues_run`]). False if a newer
    /// incarnation of the host registered since: this one must stop.
    async fn host_heartbeat(
        &self,
        host: &str,
        epoch: Epoch,
        allowed_gap: Duration,
    ) -> Result<bool, RecordsError>;

    /// Records every one of `rows`' heartbeats at once, each stamped with
    /// the server's clock: what [`super::RecordStore::put_service`] does for
    /// one row, in one statement for a host's whole beat. A (host, backend)
    /// given twice keeps its last row.
    async fn put_services(&self, rows: &[ServicePut<'_>]) -> Result<(), RecordsError>;

    /// Records that `host` (at `epoch`) started `work` in `cluster`.
    async fn begin_work(
        &self,
        host: &str,
        epoch: Epoch,
        cluster: &str,
        work: &Work,
    ) -> Result<(), RecordsError>;

    /// Ends `work` as its owner with `end`, atomically, only if `host` at
    /// `epoch` still owns it: drops the worker row, sets the record's final
    /// status and size (or removes it, with its attachments, for
    /// `deleted`) and puts a backup's source back from `backing-up`. False
    /// means a survivor claimed it (and resolved the record): nothing was
    /// written.
    async fn finish_work(
        &self,
        host: &str,
        epoch: Epoch,
        work: &Work,
        end: &End,
    ) -> Result<bool, RecordsError>;

    /// Every service row of the fleet with its host's cluster (a host that
    /// never registered one is a cluster of its own); a row is `up` only
    /// if its host said so within `service_down_time` of the server's
    /// clock, as [`super::RecordStore::services`] decides.
    async fn fleet_services(&self) -> Result<Vec<(ServiceRow, String)>, RecordsError>;

    /// Takes back the work `host` left under an earlier epoch that no
    /// survivor claimed (it restarted before anyone noticed it was down):
    /// it now carries `epoch`, and is returned for resolving.
    async fn adopt_own_work(&self, host: &str, epoch: Epoch) -> Result<Vec<Work>, RecordsError>;

    /// Claims, for `survivor` at `epoch`, the work of every host of
    /// `cluster` whose heartbeat is older than `service_down_time` by the
    /// server's clock, provided the survivor itself renewed within its
    /// `allowed_gap` in a run of renewals at least `service_down_time` long
    /// ([`crate::fleet::outcome::may_claim`]: after an outage of the
    /// database, its owner gets to write what it kept first). Atomic: two
    /// survivors racing never both get a row.
    async fn claim_dead_work(
        &self,
        survivor: &str,
        epoch: Epoch,
        cluster: &str,
        service_down_time: Duration,
        allowed_gap: Duration,
    ) -> Result<Vec<Claimed>, RecordsError>;
}
