//! This host as a member of the fleet: joins the shared database with a fresh epoch,
//! writes its service rows and heartbeats, and claims and resolves dead members' work.
//!
//! Every write that decides something is one statement in the database
//! (`crate::records::cluster`): heartbeats are stamped with the server's
//! `now()`, claims are exactly-once, an owner's finish is fenced by its
//! epoch. Nothing here blocks an actor: writes run on local tasks, and a
//! database that does not answer is logged and tried again next time.

use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;

use super::outcome::{KeptFate, kept_fate};
use super::pending::{PendingError, PendingOutcome, PendingOutcomes};
use crate::events::Event;
use crate::events::notify::Notifier;
use crate::events::status::ServiceBeat;
use crate::records::cluster::{Claimed, Epoch, Work};
use crate::records::{End, FleetStore, RecordsError, ServicePut};

/// One service row as the heartbeat writer keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    backend: String,
    binary: String,
    host: String,
    up: bool,
}

/// This host in the fleet.
pub struct Member {
    store: Rc<dyn FleetStore>,
    host: String,
    cluster: String,
    epoch: Epoch,
    /// Outcomes whose final write the database did not answer.
    pending: PendingOutcomes,
    /// When this host last sent a heartbeat the database accepted (this
    /// host's monotonic clock, taken before sending: the database stamped
    /// it no earlier).
    renewed: Rc<std::cell::Cell<actix::clock::Instant>>,
    /// How long without a renewal before this host fences itself.
    fence_after: Duration,
    /// The longest gap between its renewals that keeps its run going
    /// (see [`super::outcome::allowed_gap`]).
    allowed_gap: Duration,
    /// The last renewal's round trip.
    round_trip: Rc<std::cell::Cell<Option<Duration>>>,
    /// Final writes fenced off because a survivor had claimed the work.
    superseded: std::cell::Cell<u64>,
}

/// How an owner's fenced end of its work went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Written: the record is the outcome.
    Written,
    /// A survivor claimed the work meanwhile: its resolution stands.
    Superseded,
    /// The database did not answer: the outcome is kept
    /// ([`PendingOutcomes`]) and written once it answers.
    Pending {
        /// Why it did not answer, in words.
        reason: String,
        /// Where the outcome is kept (`None`: in memory only).
        kept_in: Option<std::path::PathBuf>,
    },
}

impl Member {
    /// Opens the fleet database at `url` (running its migrations) and
    /// registers this start of `host` in `cluster` (a host without one is
    /// a cluster of its own): its epoch is one more than its last.
    ///
    /// Errors: the database cannot be reached or refuses the URL.
    pub async fn join(
        url: &str,
        host: &str,
        cluster: Option<&str>,
        service_down_time: Duration,
    ) -> Result<Member, RecordsError> {
        let store = crate::records::connect(url, service_down_time).await?;
        let cluster = cluster.unwrap_or(host).to_string();
        let sent = actix::clock::Instant::now();
        let epoch = store.register_host(host, &cluster).await?;
        Ok(Member {
            store,
            host: host.to_string(),
            cluster,
            epoch,
            pending: PendingOutcomes::in_memory(),
            renewed: Rc::new(std::cell::Cell::new(sent)),
            fence_after: fence_interval(service_down_time, service_down_time),
            allowed_gap: super::outcome::allowed_gap(service_down_time / 2),
            round_trip: Rc::default(),
            superseded: std::cell::Cell::new(0),
        })
    }

    /// Sets the fence interval and the allowed gap between renewals from
    /// `report_interval` (how often this host renews): see
    /// [`fence_interval`] and [`super::outcome::allowed_gap`].
    pub fn renewing_every(
        mut self,
        report_interval: Duration,
        service_down_time: Duration,
    ) -> Self {
        self.fence_after = fence_interval(service_down_time, report_interval);
        self.allowed_gap = super::outcome::allowed_gap(report_interval);
        self
    }

    /// How long this host has gone without a renewal, once that is more
    /// than its fence interval (see [`fence_interval`]); `None` while its
    /// membership is renewed in time.
    pub fn fenced(&self) -> Option<Duration> {
        let since = self.renewed.get().elapsed();
        (since > self.fence_after).then_some(since)
    }

    /// The last heartbeat's round trip to the database (`None` before one
    /// was answered).
    pub fn renewal_round_trip(&self) -> Option<Duration> {
        self.round_trip.get()
    }

    /// How many of this host's final writes a survivor's claim fenced off
    /// (their resolution stood), since it joined.
    pub fn superseded_writes(&self) -> u64 {
        self.superseded.get()
    }

    /// This host's fence interval.
    pub fn fence_after(&self) -> Duration {
        self.fence_after
    }

    /// Keeps outcomes the database did not answer in `pending` (opened
    /// from the state dir, where the last run may have left some: they are
    /// written during recovery of this host's own work).
    pub fn keeping_outcomes(mut self, pending: PendingOutcomes) -> Self {
        self.pending = pending;
        self
    }

    /// The outcomes still waiting for their records, oldest first.
    pub fn pending(&self) -> Vec<PendingOutcome> {
        self.pending.list()
    }

    /// The shared records.
    pub fn store(&self) -> Rc<dyn FleetStore> {
        self.store.clone()
    }

    /// The database, password removed.
    pub fn url(&self) -> &str {
        self.store.url()
    }

    /// This host's name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Its cluster.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// This start's epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// A sink for [`crate::EngineBuilder::service_rows`]: the newest rows go
    /// to a writer task that stores them (all in one statement,
    /// [`crate::records::ClusterRecords::put_services`]), then this host's heartbeat (both
    /// stamped by the server). The sink never waits: while the database is
    /// slow, only the newest rows are kept. Call inside the actix system.
    pub fn row_sink(&self) -> impl Fn(&[ServiceBeat<'_>]) + 'static {
        let (tx, mut rx) = watch::channel(Vec::<Row>::new());
        let (store, host, epoch) = (self.store.clone(), self.host.clone(), self.epoch);
        let renewed = self.renewed.clone();
        let allowed_gap = self.allowed_gap;
        let round_trip = self.round_trip.clone();
        actix::spawn(async move {
            let mut superseded = false;
            while rx.changed().await.is_ok() {
                let rows = rx.borrow_and_update().clone();
                // Every row in one statement: the database's work per beat
                // barely grows with the number of backends.
                let puts: Vec<ServicePut<'_>> = rows
                    .iter()
                    .map(|row| ServicePut {
                        backend: &row.backend,
                        binary: &row.binary,
                        host: &row.host,
                        state: if row.up { "up" } else { "down" },
                    })
                    .collect();
                if let Err(error) = store.put_services(&puts).await {
                    tracing::warn!(%error, rows = puts.len(), "cannot write the service rows; the next heartbeat tries again");
                }
                let sent = actix::clock::Instant::now();
                match store.host_heartbeat(&host, epoch, allowed_gap).await {
                    Ok(true) => {
                        superseded = false;
                        round_trip.set(Some(sent.elapsed()));
                        renewed.set(renewed.get().max(sent));
                    }
                    Ok(false) if !superseded => {
                        superseded = true;
                        tracing::error!(%host, epoch = epoch.0, "another rekindle registered as this host since: its heartbeats count, not this one's");
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot write the host heartbeat; the next one tries again")
                    }
                }
            }
        });
        move |rows: &[ServiceBeat<'_>]| {
            let rows = rows
                .iter()
                .map(|r| Row {
                    backend: r.backend.to_string(),
                    binary: r.binary.to_string(),
                    host: r.host.to_string(),
                    up: r.up,
                })
                .collect();
            tx.send_replace(rows);
        }
    }

    /// Records that this host started `work` (its record is in
    /// `work.status`), so a survivor can resolve it if this host dies.
    pub async fn begin(&self, work: &Work) -> Result<(), RecordsError> {
        self.store
            .begin_work(&self.host, self.epoch, &self.cluster, work)
            .await
    }

    /// Ends `work` with `end`, fenced: false if a survivor claimed it
    /// meanwhile (its resolution stands, nothing was written).
    pub async fn finish(&self, work: &Work, end: &End) -> Result<bool, RecordsError> {
        self.store
            .finish_work(&self.host, self.epoch, work, end)
            .await
    }

    /// [`Member::finish`], keeping the outcome when the database does not
    /// answer (see [`Ended::Pending`]).
    ///
    /// # Errors
    /// Any other failure of the database, or the outcome cannot be kept
    /// (then the database's error is returned, and nothing is kept).
    pub async fn end(&self, work: &Work, end: &End) -> Result<Ended, RecordsError> {
        match self.finish(work, end).await {
            Ok(true) => Ok(Ended::Written),
            Ok(false) => {
                self.superseded.set(self.superseded.get() + 1);
                Ok(Ended::Superseded)
            }
            Err(error @ RecordsError::Unavailable { .. }) => {
                let outcome = PendingOutcome::new(&work.kind, &work.id, &work.status, end);
                if let Err(keep) = self.pending.keep(outcome) {
                    tracing::error!(%keep, "the outcome cannot be kept either");
                    return Err(error);
                }
                tracing::warn!(kind = %work.kind, id = %work.id, to = %end.status, %error, "the database did not answer the final write: the outcome is kept and written once it answers");
                Ok(Ended::Pending {
                    reason: error.to_string(),
                    kept_in: self.pending.path().map(std::path::Path::to_path_buf),
                })
            }
            Err(other) => Err(other),
        }
    }

    /// Writes the kept outcomes, oldest first, each fenced as its
    /// operation's end was; returns how many are still pending. An outcome
    /// whose record already says it (the database committed the final
    /// write it did not answer) is done; one a survivor resolved otherwise
    /// is dropped, its resolution standing. Stops at the first the
    /// database does not answer.
    ///
    /// # Errors
    /// The state dir's file cannot be written.
    pub async fn write_pending(&self) -> Result<usize, PendingError> {
        for outcome in self.pending.list() {
            let work = Work {
                kind: outcome.kind.clone(),
                id: outcome.id.clone(),
                status: outcome.from.clone(),
            };
            match self.write_outcome(&work, &outcome.end()).await {
                Ok(()) => self.pending.forget(&outcome.kind, &outcome.id)?,
                Err(RecordsError::Unavailable { .. }) => break,
                Err(error) => {
                    tracing::warn!(kind = %outcome.kind, id = %outcome.id, %error, "cannot write a pending outcome now; trying again");
                    break;
                }
            }
        }
        Ok(self.pending.list().len())
    }

    /// Writes one kept outcome (see [`Member::write_pending`]): its
    /// status and what goes with it, in the one fenced statement
    /// ([`crate::records::ClusterRecords::finish_work`]).
    async fn write_outcome(&self, work: &Work, end: &End) -> Result<(), RecordsError> {
        let written = self.finish(work, end).await?;
        let status = match work.kind.as_str() {
            "volume" => self.store.volume(&work.id).await?.map(|v| v.status),
            _ => self.store.backup(&work.id).await?.map(|b| b.status),
        };
        let to = &end.status;
        match kept_fate(written, to, status.as_deref()) {
            KeptFate::Written => {
                tracing::info!(kind = %work.kind, id = %work.id, %to, "a pending outcome is written")
            }
            KeptFate::Superseded => {
                self.superseded.set(self.superseded.get() + 1);
                tracing::warn!(kind = %work.kind, id = %work.id, %to, now = ?status, "a pending outcome was superseded: a survivor resolved the record while this host could not write it, and its resolution stands")
            }
        }
        Ok(())
    }

    /// Claims the work of every member of this cluster that has been down
    /// for `service_down_time` (by the database's clock) and resolves each
    /// record; one `work.claimed` notification each, naming both hosts.
    /// Returns how many were resolved.
    pub async fn claim_dead_work(
        &self,
        service_down_time: Duration,
        notifier: &Notifier,
        now: crate::lifecycle::Moment,
    ) -> Result<usize, RecordsError> {
        let claimed = self
            .store
            .claim_dead_work(
                &self.host,
                self.epoch,
                &self.cluster,
                service_down_time,
                self.allowed_gap,
            )
            .await?;
        let count = claimed.len();
        for claim in claimed {
            self.resolve(claim, notifier, now).await?;
        }
        Ok(count)
    }

    /// Takes back, at start-up, work this host left under an earlier epoch
    /// that nobody claimed, and resolves it as crash recovery does.
    pub async fn recover_own_work(
        &self,
        notifier: &Notifier,
        now: crate::lifecycle::Moment,
    ) -> Result<usize, RecordsError> {
        let mine = self.store.adopt_own_work(&self.host, self.epoch).await?;
        let count = mine.len();
        for work in mine {
            // An outcome kept by the last run is what the driver did: it
            // is written, not guessed at.
            if let Some(outcome) = self.pending.get(&work.kind, &work.id) {
                self.write_outcome(&work, &outcome.end()).await?;
                if let Err(error) = self.pending.forget(&work.kind, &work.id) {
                    tracing::error!(%error, "a written outcome stays in the state dir; it is written again (a no-op) next time");
                }
                continue;
            }
            let claim = Claimed {
                work,
                dead_host: self.host.clone(),
            };
            self.resolve(claim, notifier, now).await?;
        }
        Ok(count)
    }

    /// Resolves one claimed piece of work as single-host crash recovery
    /// does (see [`resolution`]), fenced by this host's epoch.
    async fn resolve(
        &self,
        claim: Claimed,
        notifier: &Notifier,
        now: crate::lifecycle::Moment,
    ) -> Result<(), RecordsError> {
        let Claimed { work, dead_host } = claim;
        let to = resolution(&work.kind, &work.status);
        // Side records first (a backup's source or target volume); then the
        // work's own record and the worker row, in one fenced statement.
        let backup = match work.kind.as_str() {
            "backup" => self.store.backup(&work.id).await?,
            _ => None,
        };
        if let Some(backup) = backup {
            match work.status.as_str() {
                "creating" => {
                    // The source was `backing-up`: back to what it is.
                    let attached = !self.store.attachments(&backup.volume_id).await?.is_empty();
                    let to = if attached { "in-use" } else { "available" };
                    self.store.set_volume_status(&backup.volume_id, to).await?
                }
                "restoring" => {
                    if let Some(target) = &backup.restore_target {
                        self.store
                            .set_volume_status(target, "error_restoring")
                            .await?;
                    }
                }
                _ => {}
            }
        }
        if !self.finish(&work, &End::to(to)).await? {
            return Ok(());
        }
        tracing::warn!(kind = %work.kind, id = %work.id, from = %work.status, %to, %dead_host, survivor = %self.host, "claimed the work of a dead host");
        notifier.emit(
            None,
            now,
            Event::WorkClaimed {
                kind: work.kind.clone(),
                id: work.id.clone(),
                from: work.status.clone(),
                to: to.to_string(),
                dead_host,
                survivor: self.host.clone(),
            },
        );
        Ok(())
    }
}

/// How long a host goes without renewing its membership before it fences
/// itself (starts no work, refuses operations): `service_down_time` less
/// one `report_interval` (its renewal period), and at least half of
/// `service_down_time`. Survivors may claim its work only once the
/// database has seen no heartbeat for `service_down_time`; a renewal is
/// timed from before it is sent, and the database stamps it no earlier, so
/// the host fences itself at least `service_down_time - fence` before
/// anyone may claim, as long as its clock's rate errs by less than that
/// margin over the fence (20% with Cinder's defaults, 60 s and 10 s; NTP
/// keeps real clocks within 0.05%).
pub fn fence_interval(service_down_time: Duration, report_interval: Duration) -> Duration {
    (service_down_time / 2).max(service_down_time.saturating_sub(report_interval))
}

/// What a record left in `status` by a dead host becomes, as the
/// single-host crash recovery decides (Cinder's cleanup): a volume
/// `creating` -> `error`, `extending` -> `error_extending`, `deleting` ->
/// `error_deleting` (an admin deletes it again), `backing-up` ->
/// `available`, `attaching`/`detaching` -> `available`; a backup
/// `creating` -> `error`, `restoring` -> `available`, `deleting` ->
/// `error_deleting`.
pub fn resolution(kind: &str, status: &str) -> &'static str {
    match (kind, status) {
        ("volume", "creating") | ("backup", "creating") => "error",
        ("volume", "extending") => "error_extending",
        (_, "deleting") => "error_deleting",
        _ => "available",
    }
}

#[cfg(test)]
mod tests {
    use super::resolution;

    #[test]
    fn a_host_fences_itself_a_renewal_period_before_anyone_may_claim() {
        use super::fence_interval;
        use std::time::Duration;
        let s = Duration::from_secs;
        assert_eq!(fence_interval(s(60), s(10)), s(50), "Cinder's defaults");
        assert_eq!(fence_interval(s(3), s(1)), s(2));
        // Never below half of service_down_time (a renewal period as long).
        assert_eq!(fence_interval(s(4), s(4)), s(2));
    }

    #[test]
    fn a_dead_hosts_work_resolves_as_crash_recovery_does() {
        assert_eq!(resolution("volume", "creating"), "error");
        assert_eq!(resolution("backup", "creating"), "error");
        assert_eq!(resolution("volume", "extending"), "error_extending");
        assert_eq!(resolution("volume", "deleting"), "error_deleting");
        assert_eq!(resolution("backup", "restoring"), "available");
        assert_eq!(resolution("volume", "backing-up"), "available");
    }
}
