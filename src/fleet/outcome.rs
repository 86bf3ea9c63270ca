//! The fleet's outcome rule as pure functions (no clock, no I/O): when a survivor may claim
//! a host's work, and what becomes of an outcome a host kept because the database did not answer.
//!
//! The PostgreSQL statements in `crate::records::cluster` implement exactly
//! these predicates (each one statement, on the server's clock); the tests
//! below explore every order of final write, database outage, claim, host
//! pause, partition and restart over a model of those records, and check
//! that what a client is told is what the record finally says.
//!
//! The rule a claim follows, beyond Cinder's "silent for
//! `service_down_time`": the claimer must itself have renewed its
//! membership without a gap longer than [`allowed_gap`] for the last
//! `service_down_time`. After an outage of the database every host renews
//! again within one `report_interval`, and a host that kept outcomes while
//! the database was away writes them before anyone may claim its work:
//! no survivor wins a race against a pending outcome it could not see.

use std::time::Duration;

/// The longest gap between two of a host's own renewals that still counts
/// as renewing continuously: two `report_interval`s (one renewal may be
/// missed). A longer gap means the database did not answer this host: its
/// run of renewals starts again.
pub fn allowed_gap(report_interval: Duration) -> Duration {
    report_interval * 2
}

/// Whether a renewal, `silent_for` after the host's previous one, continues
/// its run of renewals (true) or starts a new one (false).
pub fn continues_run(silent_for: Duration, allowed_gap: Duration) -> bool {
    silent_for <= allowed_gap
}

/// Whether a survivor may claim the work of an owner whose last renewal
/// is `owner_silent_for` old: the owner is silent for longer than
/// `service_down_time`, and the claimer renewed `claimer_silent_for` ago
/// (no longer than its allowed gap) in a run of renewals that started
/// `claimer_renewing_for` ago, at least `service_down_time`.
///
/// Everything is measured on one clock, the database's.
pub fn may_claim(
    owner_silent_for: Duration,
    claimer_silent_for: Duration,
    claimer_renewing_for: Duration,
    service_down_time: Duration,
    claimer_allowed_gap: Duration,
) -> bool {
    owner_silent_for > service_down_time
        && claimer_silent_for <= claimer_allowed_gap
        && claimer_renewing_for >= service_down_time
}

/// What became of a kept outcome once the database answered its fenced
/// write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptFate {
    /// The record says the outcome (written now, or committed by the write
    /// the database did not answer): it is done.
    Written,
    /// A survivor resolved the record otherwise while this host could not
    /// reach the database: that resolution stands.
    Superseded,
}

/// The fate of a kept outcome `to`, given whether its fenced write changed
/// the record (`written`) and the record's status now (`None`: no record).
pub fn kept_fate(written: bool, to: &str, status_now: Option<&str>) -> KeptFate {
    let gone = to == "deleted" && status_now.is_none();
    if written || gone || status_now == Some(to) {
        KeptFate::Written
    } else {
        KeptFate::Superseded
    }
}

#[cfg(test)]
mod tests {
    //! A model of the records (hosts' renewals, one worker row, the volume
    //! record) and of two hosts: `a` creates a volume, `b` survives. Time is
    //! in whole seconds; `report_interval` is 1 s, `service_down_time` 4 s.
    //! Every order of the events below is explored (breadth-first, states
    //! deduplicated) up to a horizon, then every fault heals and the fleet
    //! runs until nothing is left to do.

    use super::*;
    use std::collections::{HashMap, VecDeque};

    const SDT: u32 = 4;
    const RI: u32 = 1;
    const HORIZON: u32 = 12;

    fn secs(s: u32) -> Duration {
        Duration::from_secs(u64::from(s))
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum Status {
        Creating,
        Available,
        Error,
    }

    /// What `a`'s client was told.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum Answer {
        /// The final write committed: the status.
        Written(Status),
        /// The final write was fenced: the survivor's resolution.
        Superseded(Status),
        /// The database did not answer: the outcome, its record pending.
        Pending(Status),
    }

    /// A host's row: its last renewal, the start of its run, its epoch.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    struct HostRow {
        beat: u32,
        since: u32,
        epoch: u32,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct World {
        now: u32,
        db_up: bool,
        /// `a` alone cut off from the database.
        a_cut: bool,
        a_paused: bool,
        /// `a`'s process epoch (bumped by a restart).
        a_epoch: u32,
        /// `a` must register (and recover) before anything else.
        a_registered: bool,
        a: HostRow,
        b: HostRow,
        record: Status,
        /// The worker row: owned by `a` at this epoch (a survivor's claim
        /// resolves the record in the same step).
        worker: Option<u32>,
        driver_done: bool,
        /// The driver made the volume (its side effect).
        effect: bool,
        answer: Option<Answer>,
        /// The outcome kept in `a`'s state dir.
        kept: Option<Status>,
        restarted: bool,
        /// How long `a` could not reach a database that answered the
        /// survivors, and the longest such stretch (seconds).
        alone: u32,
        alone_max: u32,
        /// How long the database has been down (seconds).
        db_down_for: u32,
        outages: u32,
        /// Planted bug for the test that the search finds it: claims ignore
        /// the claimer's own run of renewals.
        naive_claims: bool,
    }

    impl World {
        fn new(naive_claims: bool) -> World {
            let row = HostRow {
                beat: 0,
                since: 0,
                epoch: 1,
            };
            World {
                now: SDT, // both hosts have renewed for service_down_time
                db_up: true,
                a_cut: false,
                a_paused: false,
                a_epoch: 1,
                a_registered: true,
                a: HostRow { beat: SDT, ..row },
                b: HostRow { beat: SDT, ..row },
                record: Status::Creating,
                worker: Some(1),
                driver_done: false,
                effect: false,
                answer: None,
                kept: None,
                restarted: false,
                alone: 0,
                alone_max: 0,
                db_down_for: 0,
                outages: 0,
                naive_claims,
            }
        }

        fn a_reaches(&self) -> bool {
            self.db_up && !self.a_cut && !self.a_paused
        }

        fn renew(row: &mut HostRow, now: u32) {
            if !continues_run(secs(now - row.beat), allowed_gap(secs(RI))) {
                row.since = now;
            }
            row.beat = now;
        }

        /// `a`'s fenced end of its work with `to`: whether it wrote it.
        fn a_finish(&mut self, to: Status) -> bool {
            if self.worker == Some(self.a_epoch) {
                self.record = to;
                self.worker = None;
                true
            } else {
                false
            }
        }

        /// `a`'s periodic work while it reaches the database: register and
        /// recover after a restart, renew, write what it kept.
        fn a_acts(&mut self) {
            if !self.a_reaches() {
                return;
            }
            if !self.a_registered {
                self.a_registered = true;
                self.a = HostRow {
                    beat: self.now,
                    since: self.now,
                    epoch: self.a_epoch,
                };
                // Recovery adopts work left under an earlier epoch that
                // nobody claimed, and writes the kept outcome or resolves.
                if self.worker.is_some() {
                    self.worker = Some(self.a_epoch);
                    let to = self.kept.take().unwrap_or(Status::Error);
                    self.a_finish(to);
                }
            }
            World::renew(&mut self.a, self.now);
            if let Some(to) = self.kept {
                let written = self.a_finish(to);
                let fate = kept_fate(written, name(to), Some(name(self.record)));
                assert!(
                    fate == KeptFate::Written || self.record != to,
                    "a superseded outcome is one the record does not say"
                );
                self.kept = None;
            }
        }

        fn b_claims(&mut self) {
            if !self.db_up {
                return;
            }
            let Some(epoch) = self.worker else {
                return;
            };
            if epoch != self.a.epoch {
                return; // claims join the owner's current epoch
            }
            let owner_silent = secs(self.now - self.a.beat);
            let claimable = if self.naive_claims {
                owner_silent > secs(SDT)
            } else {
                may_claim(
                    owner_silent,
                    secs(self.now - self.b.beat),
                    secs(self.now - self.b.since),
                    secs(SDT),
                    allowed_gap(secs(RI)),
                )
            };
            if claimable {
                // Claimed and resolved as crash recovery resolves it.
                self.worker = None;
                self.record = Status::Error;
            }
        }

        fn tick(&mut self) {
            self.now += 1;
            // `a` is alone while it cannot reach a database that answers
            // the survivors; an outage shorter than their allowed gap does
            // not break their run of renewals, so it does not end this.
            self.db_down_for = if self.db_up { 0 } else { self.db_down_for + 1 };
            let breaks_runs = secs(self.db_down_for + RI) > allowed_gap(secs(RI));
            if self.a_reaches() || breaks_runs {
                self.alone = 0;
            } else {
                self.alone += 1;
                self.alone_max = self.alone_max.max(self.alone);
            }
            if self.db_up {
                World::renew(&mut self.b, self.now);
            }
            self.a_acts();
        }

        fn driver_done(&mut self) {
            self.driver_done = true;
            self.effect = true;
            let to = Status::Available;
            if self.a_reaches() {
                self.answer = Some(if self.a_finish(to) {
                    Answer::Written(to)
                } else {
                    Answer::Superseded(self.record)
                });
            } else {
                self.kept = Some(to);
                self.answer = Some(Answer::Pending(to));
            }
        }

        /// Every state one event away.
        fn next(&self) -> Vec<(&'static str, World)> {
            let mut out = Vec::new();
            let mut push = |event: &'static str, f: &dyn Fn(&mut World)| {
                let mut w = self.clone();
                f(&mut w);
                if &w != self {
                    out.push((event, w));
                }
            };
            if self.now < HORIZON {
                push("tick", &|w| w.tick());
            }
            if !self.driver_done && !self.a_paused && !self.restarted && self.a_registered {
                push("driver done", &|w| w.driver_done());
            }
            if self.db_up && self.outages < 2 {
                push("database down", &|w| {
                    w.db_up = false;
                    w.outages += 1;
                });
            }
            if !self.db_up {
                push("database up", &|w| w.db_up = true);
            }
            push("a cut off / reconnected", &|w| w.a_cut = !w.a_cut);
            push("a paused / resumed", &|w| w.a_paused = !w.a_paused);
            push("b claims", &|w| w.b_claims());
            if self.driver_done && !self.restarted {
                push("a restarts", &|w| {
                    // Killed and started again: only the state dir stays.
                    w.restarted = true;
                    w.a_epoch += 1;
                    w.a_registered = false;
                    w.a_paused = false;
                });
            }
            out
        }

        /// Every fault heals; the fleet runs until nothing is left to do.
        fn settle(mut self) -> World {
            self.db_up = true;
            self.a_cut = false;
            self.a_paused = false;
            if !self.driver_done && !self.restarted {
                self.driver_done();
            }
            for _ in 0..(3 * SDT) {
                self.tick();
                self.b_claims();
            }
            self
        }
    }

    fn name(s: Status) -> &'static str {
        match s {
            Status::Creating => "creating",
            Status::Available => "available",
            Status::Error => "error",
        }
    }

    /// A world that breaks the rule once settled, with the shortest order
    /// of events that reaches it.
    #[derive(Debug)]
    struct Broken {
        events: Vec<&'static str>,
        settled: World,
    }

    /// Explores every order; returns the first (shortest) that breaks the
    /// rule, with how many states were seen.
    fn explore(naive_claims: bool) -> (Option<Broken>, usize) {
        let start = World::new(naive_claims);
        let mut parent: HashMap<World, Option<(&'static str, World)>> =
            HashMap::from([(start.clone(), None)]);
        let mut queue = VecDeque::from([start]);
        while let Some(world) = queue.pop_front() {
            if let Some(settled) = broken(world.clone().settle()) {
                let mut events = Vec::new();
                let mut at = &world;
                while let Some(Some((event, before))) = parent.get(at) {
                    events.push(*event);
                    at = before;
                }
                events.reverse();
                return (Some(Broken { events, settled }), parent.len());
            }
            for (event, next) in world.next() {
                if !parent.contains_key(&next) {
                    parent.insert(next.clone(), Some((event, world.clone())));
                    queue.push_back(next);
                }
            }
        }
        (None, parent.len())
    }

    /// The settled world, if it breaks the outcome rule.
    fn broken(w: World) -> Option<World> {
        let resolved = w.worker.is_none() && w.record != Status::Creating && w.kept.is_none();
        let told = match w.answer {
            None => true,
            Some(Answer::Written(s) | Answer::Superseded(s)) => s == w.record,
            // A pending outcome stands unless `a` itself could not reach a
            // database that answered the survivors for service_down_time
            // (the one case its answer names).
            Some(Answer::Pending(s)) => s == w.record || w.alone_max >= SDT,
        };
        (!resolved || !told).then_some(w)
    }

    #[test]
    fn every_order_of_write_outage_claim_pause_and_restart_tells_the_client_the_record() {
        let (broken, states) = explore(false);
        assert!(broken.is_none(), "{broken:#?}");
        assert!(states > 1000, "the search explored only {states} states");
    }

    #[test]
    fn claims_that_ignore_the_claimers_own_renewals_break_a_pending_outcome() {
        let (broken, _) = explore(true);
        let broken = broken.expect("the planted bug is found");
        assert!(
            broken.events.contains(&"database down") && broken.events.contains(&"b claims"),
            "{broken:#?}"
        );
        let w = broken.settled;
        assert_eq!(w.answer, Some(Answer::Pending(Status::Available)));
        assert_eq!(w.record, Status::Error);
        assert!(w.alone_max < SDT, "{w:#?}");
    }

    #[test]
    fn a_claim_needs_a_silent_owner_and_a_claimer_renewing_for_service_down_time() {
        let s = Duration::from_secs;
        let gap = allowed_gap(s(10));
        assert_eq!(gap, s(20));
        assert!(may_claim(s(61), s(5), s(600), s(60), gap));
        assert!(
            !may_claim(s(60), s(5), s(600), s(60), gap),
            "not silent long enough"
        );
        assert!(
            !may_claim(s(61), s(21), s(600), s(60), gap),
            "the claimer is silent itself"
        );
        assert!(
            !may_claim(s(61), s(5), s(59), s(60), gap),
            "the claimer's run is too short"
        );
        assert!(continues_run(s(20), gap) && !continues_run(s(21), gap));
    }

    #[test]
    fn a_kept_outcome_is_done_when_the_record_says_it() {
        assert_eq!(
            kept_fate(true, "available", Some("available")),
            KeptFate::Written
        );
        assert_eq!(
            kept_fate(false, "available", Some("available")),
            KeptFate::Written
        );
        assert_eq!(kept_fate(false, "deleted", None), KeptFate::Written);
        assert_eq!(
            kept_fate(false, "available", Some("error")),
            KeptFate::Superseded
        );
        assert_eq!(
            kept_fate(false, "deleted", Some("error_deleting")),
            KeptFate::Superseded
        );
    }
}
