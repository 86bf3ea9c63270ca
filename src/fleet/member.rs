//! This host as a member of the fleet: joins the shared database with a fresh epoch,
//! writes its service rows and heartbeats, and claims and resolves dead members' work.
//!
//! Every write that decides something is one statement in the database
//! (`crate::store::cluster`): heartbeats are stamped with the server's
//! `now()`, claims are exactly-once, an owner's finish is fenced by its
//! epoch. Nothing here blocks an actor: writes run on local tasks, and a
//! database that does not answer is logged and tried again next time.

use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;

use crate::event::Event;
use crate::notify::Notifier;
use crate::status::ServiceBeat;
use crate::store::cluster::{Claimed, Epoch, Work};
use crate::store::{PgStore, RecordStore, ServicePut, StoreError};

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
    store: Rc<PgStore>,
    host: String,
    cluster: String,
    epoch: Epoch,
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
    ) -> Result<Member, StoreError> {
        let store = PgStore::connect(url, service_down_time).await?;
        let cluster = cluster.unwrap_or(host).to_string();
        let epoch = store.register_host(host, &cluster).await?;
        Ok(Member {
            store: Rc::new(store),
            host: host.to_string(),
            cluster,
            epoch,
        })
    }

    /// The shared records.
    pub fn store(&self) -> Rc<PgStore> {
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
    /// [`PgStore::put_services`]), then this host's heartbeat (both
    /// stamped by the server). The sink never waits: while the database is
    /// slow, only the newest rows are kept. Call inside the actix system.
    pub fn row_sink(&self) -> impl Fn(&[ServiceBeat<'_>]) + 'static {
        let (tx, mut rx) = watch::channel(Vec::<Row>::new());
        let (store, host, epoch) = (self.store.clone(), self.host.clone(), self.epoch);
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
                match store.host_heartbeat(&host, epoch).await {
                    Ok(true) => superseded = false,
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
    pub async fn begin(&self, work: &Work) -> Result<(), StoreError> {
        self.store
            .begin_work(&self.host, self.epoch, &self.cluster, work)
            .await
    }

    /// Ends `work` with the record's final `status`, fenced: false if a
    /// survivor claimed it meanwhile (its resolution stands, nothing was
    /// written).
    pub async fn finish(&self, work: &Work, status: &str) -> Result<bool, StoreError> {
        self.store
            .finish_work(&self.host, self.epoch, work, status)
            .await
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
    ) -> Result<usize, StoreError> {
        let claimed = self
            .store
            .claim_dead_work(&self.host, self.epoch, &self.cluster, service_down_time)
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
    ) -> Result<usize, StoreError> {
        let mine = self.store.adopt_own_work(&self.host, self.epoch).await?;
        let count = mine.len();
        for work in mine {
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
    ) -> Result<(), StoreError> {
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
        if !self.finish(&work, to).await? {
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
    fn a_dead_hosts_work_resolves_as_crash_recovery_does() {
        assert_eq!(resolution("volume", "creating"), "error");
        assert_eq!(resolution("backup", "creating"), "error");
        assert_eq!(resolution("volume", "extending"), "error_extending");
        assert_eq!(resolution("volume", "deleting"), "error_deleting");
        assert_eq!(resolution("backup", "restoring"), "available");
        assert_eq!(resolution("volume", "backing-up"), "available");
    }
}
