//! The rolling reload as a pure planner (no clock, no I/O): which hosts to ask to reload
//! next, so that no more than `max_unavailable` hosts of a cluster are reloading at once.
//!
//! A host is asked, reports its reload (as intended, or not), then must stay
//! Ready for `min_ready` before it counts as done and frees its slot. The
//! first host whose reload is rejected, rolled back or failed halts the
//! rollout: nobody else is asked, and the hosts not reached keep their old
//! config. So does a host that goes down before or after answering, and a
//! rollout that makes no progress for its progress deadline (as Kubernetes'
//! `progressDeadlineSeconds`). Time is an offset the caller passes in.

use std::time::Duration;

/// Where one host is in the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPhase {
    /// Not asked yet (keeps its old config).
    Waiting,
    /// Asked to reload; no report yet.
    Asked,
    /// Reloaded as intended; Ready since this offset (`None`: not Ready now).
    Settling {
        /// Since when it has been Ready, continuously.
        ready_since: Option<Duration>,
    },
    /// Reloaded and Ready for `min_ready`.
    Done,
    /// Its reload did not end as intended (the rollout halted here).
    Failed {
        /// Why, in the host's words.
        reason: String,
    },
}

/// One host in the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRollout {
    /// The host's name.
    pub host: String,
    /// Its cluster (a host without one is a cluster of its own).
    pub cluster: String,
    /// Where it is.
    pub phase: HostPhase,
}

/// What the caller saw happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A host answered its reload request.
    Reported {
        /// The host.
        host: String,
        /// Every backend ended as intended.
        as_intended: bool,
        /// What happened, for the halt message.
        summary: String,
    },
    /// Whether all of a host's backends are Ready now.
    Ready {
        /// The host.
        host: String,
        /// All Ready.
        ready: bool,
    },
    /// A host asked to reload (answered or not) has no heartbeat within
    /// `service_down_time`: it halts the rollout as a failed reload does.
    Down {
        /// The host.
        host: String,
        /// Why, in words.
        summary: String,
    },
}

/// What a rollout waits for now, on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Its answer to the reload request.
    Answer(String),
    /// Its backends to be Ready (not Ready now).
    Ready(String),
    /// Its backends to stay Ready for `min_ready` (Ready since this offset).
    StayReady(String, Duration),
    /// A free slot of its cluster, held by hosts not Ready outside this
    /// rollout (and its own in-flight hosts).
    Slot(String),
}

impl Wait {
    /// The host waited on.
    pub fn host(&self) -> &str {
        match self {
            Wait::Answer(h) | Wait::Ready(h) | Wait::StayReady(h, _) | Wait::Slot(h) => h,
        }
    }
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every host reloaded and stayed Ready for `min_ready`.
    Done,
    /// A host's reload did not end as intended; the hosts after it were not asked.
    Halted {
        /// Where it stopped.
        host: String,
        /// Why.
        reason: String,
        /// Hosts left on their old config.
        not_reached: Vec<String>,
        /// Hosts that reloaded but had not yet been Ready for `min_ready`.
        unconfirmed: Vec<String>,
    },
}

/// A rolling reload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Hosts of one cluster reloading at once, at most (at least 1).
    pub max_unavailable: usize,
    /// How long a reloaded host must stay Ready before the next is asked.
    pub min_ready: Duration,
    /// Every host, in the order they are asked.
    pub hosts: Vec<HostRollout>,
    /// When a host last changed phase (an offset; the start at first):
    /// the progress deadline counts from here.
    pub last_progress: Duration,
}

impl Rollout {
    /// A rollout over `hosts` (`(host, cluster)`, asked in this order).
    pub fn new(
        hosts: impl IntoIterator<Item = (String, Option<String>)>,
        max_unavailable: usize,
        min_ready: Duration,
    ) -> Rollout {
        Rollout {
            max_unavailable: max_unavailable.max(1),
            min_ready,
            hosts: hosts
                .into_iter()
                .map(|(host, cluster)| HostRollout {
                    cluster: cluster.unwrap_or_else(|| format!("host:{host}")),
                    host,
                    phase: HostPhase::Waiting,
                })
                .collect(),
            last_progress: Duration::ZERO,
        }
    }

    fn halted(&self) -> bool {
        self.hosts
            .iter()
            .any(|h| matches!(h.phase, HostPhase::Failed { .. }))
    }

    /// Hosts of `cluster` asked and not yet done: the replicas that may be
    /// unavailable now.
    pub fn in_flight(&self, cluster: &str) -> usize {
        self.hosts
            .iter()
            .filter(|h| {
                h.cluster == cluster
                    && matches!(h.phase, HostPhase::Asked | HostPhase::Settling { .. })
            })
            .count()
    }

    /// Applies what the caller saw at `now`.
    pub fn observe(&mut self, observation: Observation, now: Duration) {
        let before: Vec<HostPhase> = self.hosts.iter().map(|h| h.phase.clone()).collect();
        self.apply(observation, now);
        let moved = self
            .hosts
            .iter()
            .zip(&before)
            .any(|(h, b)| std::mem::discriminant(&h.phase) != std::mem::discriminant(b));
        if moved {
            self.last_progress = now;
        }
    }

    fn apply(&mut self, observation: Observation, now: Duration) {
        match observation {
            Observation::Down { host, summary } => {
                if let Some(h) = self.host_mut(&host)
                    && matches!(h.phase, HostPhase::Asked | HostPhase::Settling { .. })
                {
                    h.phase = HostPhase::Failed { reason: summary };
                }
            }
            Observation::Reported {
                host,
                as_intended,
                summary,
            } => {
                if let Some(h) = self.host_mut(&host)
                    && h.phase == HostPhase::Asked
                {
                    h.phase = if as_intended {
                        HostPhase::Settling { ready_since: None }
                    } else {
                        HostPhase::Failed { reason: summary }
                    };
                }
            }
            Observation::Ready { host, ready } => {
                let min_ready = self.min_ready;
                if let Some(h) = self.host_mut(&host)
                    && let HostPhase::Settling { ready_since } = &mut h.phase
                {
                    match (ready, *ready_since) {
                        (false, _) => *ready_since = None,
                        (true, None) => *ready_since = Some(now),
                        (true, Some(since)) if now.saturating_sub(since) >= min_ready => {
                            h.phase = HostPhase::Done;
                        }
                        (true, Some(_)) => {}
                    }
                }
            }
        }
    }

    fn host_mut(&mut self, host: &str) -> Option<&mut HostRollout> {
        self.hosts.iter_mut().find(|h| h.host == host)
    }

    /// The hosts to ask now (marked asked): in order, while their cluster
    /// has a free slot; none once the rollout halted.
    pub fn ask_next(&mut self) -> Vec<String> {
        self.ask_next_with(|_| 0, Duration::ZERO)
    }

    /// What the rollout waits for now: every host asked and not done, and
    /// the first host of each cluster still waiting for a slot.
    pub fn waits(&self) -> Vec<Wait> {
        if self.outcome().is_some() {
            return Vec::new();
        }
        let mut waits = Vec::new();
        let mut clusters = std::collections::BTreeSet::new();
        for h in &self.hosts {
            match &h.phase {
                HostPhase::Asked => waits.push(Wait::Answer(h.host.clone())),
                HostPhase::Settling { ready_since: None } => {
                    waits.push(Wait::Ready(h.host.clone()))
                }
                HostPhase::Settling {
                    ready_since: Some(since),
                } => waits.push(Wait::StayReady(h.host.clone(), *since)),
                HostPhase::Waiting if clusters.insert(h.cluster.as_str()) => {
                    waits.push(Wait::Slot(h.host.clone()))
                }
                _ => {}
            }
        }
        waits
    }

    /// Halts the rollout if no host changed phase for `deadline` by `now`:
    /// the first host it waits on fails with `why` (what it waited for, in
    /// the caller's words). True if it halted.
    pub fn check_progress(
        &mut self,
        now: Duration,
        deadline: Duration,
        why: impl Fn(&Wait) -> String,
    ) -> bool {
        if self.outcome().is_some() || now.saturating_sub(self.last_progress) < deadline {
            return false;
        }
        let Some(wait) = self.waits().into_iter().next() else {
            return false;
        };
        let reason = why(&wait);
        if let Some(h) = self.host_mut(wait.host()) {
            h.phase = HostPhase::Failed { reason };
        }
        self.last_progress = now;
        true
    }

    /// [`Rollout::ask_next`], counting in each cluster's slots the hosts
    /// that are not Ready for reasons of their own (`unavailable(cluster)`:
    /// hosts of that cluster, outside this rollout's in-flight ones, with a
    /// backend not Ready): never more than `max_unavailable` replicas of a
    /// cluster are down at once, whatever took them down.
    pub fn ask_next_with(
        &mut self,
        unavailable: impl Fn(&str) -> usize,
        now: Duration,
    ) -> Vec<String> {
        if self.halted() {
            return Vec::new();
        }
        let mut asked = Vec::new();
        for index in 0..self.hosts.len() {
            if self.hosts[index].phase != HostPhase::Waiting {
                continue;
            }
            let cluster = self.hosts[index].cluster.clone();
            if self.in_flight(&cluster) + unavailable(&cluster) < self.max_unavailable {
                self.hosts[index].phase = HostPhase::Asked;
                asked.push(self.hosts[index].host.clone());
            }
        }
        if !asked.is_empty() {
            self.last_progress = now;
        }
        asked
    }

    /// How it ended, once it has: all done, or halted at the first failure.
    pub fn outcome(&self) -> Option<Outcome> {
        if let Some(failed) = self.hosts.iter().find_map(|h| match &h.phase {
            HostPhase::Failed { reason } => Some((h.host.clone(), reason.clone())),
            _ => None,
        }) {
            return Some(Outcome::Halted {
                host: failed.0,
                reason: failed.1,
                not_reached: self
                    .hosts
                    .iter()
                    .filter(|h| h.phase == HostPhase::Waiting)
                    .map(|h| h.host.clone())
                    .collect(),
                unconfirmed: self
                    .hosts
                    .iter()
                    .filter(|h| matches!(h.phase, HostPhase::Asked | HostPhase::Settling { .. }))
                    .map(|h| h.host.clone())
                    .collect(),
            });
        }
        self.hosts
            .iter()
            .all(|h| h.phase == HostPhase::Done)
            .then_some(Outcome::Done)
    }
}
