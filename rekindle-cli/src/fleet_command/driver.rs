//! The loop that drives one rolling reload: reads the fleet each poll, asks the pure
//! planner what to do next, records each host's progress, and says so as it goes.

use super::*;

/// A rollout being driven: the planner plus what the records need.
pub(super) struct Driver<'a> {
    pub(super) store: &'a dyn FleetStore,
    pub(super) service_down_time: Duration,
    pub(super) id: i64,
    pub(super) plan: Rollout,
    pub(super) clusters: BTreeMap<String, Option<String>>,
    pub(super) requests: BTreeMap<String, i64>,
    pub(super) reports: BTreeMap<String, String>,
    /// The backends each host's reload changed (`None`: all of them).
    pub(super) backends: BTreeMap<String, Option<Vec<String>>>,
    /// This command's token in the rollout's row.
    pub(super) token: String,
    pub(super) started: Instant,
    /// Hosts not Ready outside the rollout, as last said.
    pub(super) held_back: BTreeSet<String>,
    /// Halt when no host changed phase for this long.
    pub(super) progress_deadline: Duration,
    /// When each host was asked, or answered (offsets from `started`).
    pub(super) since: BTreeMap<String, Duration>,
    /// When the command last said what it waits for.
    pub(super) said_waiting: Instant,
}

/// What a rollout waits for on one host, in words.
pub(super) fn describe(
    wait: &Wait,
    since: &BTreeMap<String, Duration>,
    held_back: &BTreeSet<String>,
    min_ready: Duration,
    now: Duration,
) -> String {
    let ago = |host: &str| {
        since
            .get(host)
            .map(|at| human(now.saturating_sub(*at)))
            .unwrap_or_else(|| "?".into())
    };
    match wait {
        Wait::Answer(h) => format!(
            "{h}: no answer to its reload request (asked {} ago)",
            ago(h)
        ),
        Wait::Ready(h) => format!("{h}: not Ready (it answered {} ago)", ago(h)),
        Wait::StayReady(h, at) => format!(
            "{h}: Ready for {} of --min-ready {}",
            human(now.saturating_sub(*at)),
            human(min_ready)
        ),
        Wait::Slot(h) if held_back.is_empty() => {
            format!("{h}: waiting for a free slot of its cluster")
        }
        Wait::Slot(h) => format!(
            "{h}: no free slot of its cluster: held by {} (not Ready outside this rollout)",
            held_back.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A token naming this command (`host:pid:nanos`), for the rollout's row.
pub(super) fn driver_token() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}:{}:{nanos}", std::process::id())
}

/// The backends a reload report (`{"outcome": {"backends": {...}}}`) says
/// were reloaded or added, which must be Ready; `None` when it does not say.
pub(super) fn changed_backends(report: &serde_json::Value) -> Option<Vec<String>> {
    let backends = report["outcome"]["backends"].as_object()?;
    Some(
        backends
            .iter()
            .filter(|(_, result)| {
                !matches!(result["result"].as_str(), Some("unchanged" | "removed"))
            })
            .map(|(name, _)| name.clone())
            .collect(),
    )
}

impl Driver<'_> {
    pub(super) fn records(&self) -> Vec<HostRecord> {
        self.plan
            .hosts
            .iter()
            .map(|h| HostRecord {
                host: h.host.clone(),
                cluster: self.clusters.get(&h.host).cloned().flatten(),
                phase: phase_word(&h.phase).to_string(),
                request: self.requests.get(&h.host).copied(),
                report: self.reports.get(&h.host).cloned(),
                backends: self.backends.get(&h.host).cloned().flatten(),
            })
            .collect()
    }

    pub(super) async fn save(&self, state: RolloutState, message: &str) -> Result<(), FleetError> {
        if self
            .store
            .update_rollout(self.id, &self.token, state, &self.records(), message)
            .await?
        {
            Ok(())
        } else {
            Err(self.not_ours())
        }
    }

    /// Sends `host` its request (once per rollout; only while this
    /// command drives the rollout).
    pub(super) async fn ask(&mut self, host: &str) -> Result<(), FleetError> {
        let request = self
            .store
            .request_reload_in_rollout(self.id, &self.token, host)
            .await?
            .ok_or_else(|| self.not_ours())?;
        self.requests.insert(host.to_string(), request.0);
        self.since.insert(host.to_string(), self.started.elapsed());
        say!("{host}: asked to reload (request {})", request.0);
        Ok(())
    }

    pub(super) fn not_ours(&self) -> FleetError {
        FleetError::Refused(format!(
            "rollout {} is no longer driven by this command (abandoned, or resumed by another); stopping here",
            self.id
        ))
    }

    /// One look at the database; true if anything changed.
    pub(super) async fn tick(&mut self) -> Result<bool, FleetError> {
        let mut changed = false;
        // Answers to requests sent.
        let asked: Vec<String> = self
            .plan
            .hosts
            .iter()
            .filter(|h| h.phase == HostPhase::Asked)
            .map(|h| h.host.clone())
            .collect();
        for host in asked {
            let Some(request) = self.requests.get(&host).copied() else {
                self.ask(&host).await?;
                changed = true;
                continue;
            };
            let Some(answer) = self.store.reload_answer(RequestId(request)).await? else {
                // Asked, no answer, and no heartbeat within
                // service_down_time: it died (or lost the database) before
                // answering. That halts the rollout as a failed reload does.
                if !self.alive(&host).await? {
                    self.went_down(host, "before");
                    changed = true;
                }
                continue;
            };
            self.reported(host, &answer);
            changed = true;
        }
        // Readiness of hosts that reloaded.
        let settling: Vec<String> = self
            .plan
            .hosts
            .iter()
            .filter(|h| matches!(h.phase, HostPhase::Settling { .. }))
            .map(|h| h.host.clone())
            .collect();
        for host in settling {
            // A host that answered and then went silent (paused, dead, cut
            // off) halts the rollout as one that never answered does.
            if !self.alive(&host).await? {
                self.went_down(host, "after");
                changed = true;
                continue;
            }
            let backends = self.backends.get(&host).cloned().flatten();
            let ready = self
                .store
                .host_ready(&host, backends.as_deref(), self.service_down_time)
                .await?;
            self.plan.observe(
                Observation::Ready {
                    host: host.clone(),
                    ready,
                },
                self.started.elapsed(),
            );
            if self
                .plan
                .hosts
                .iter()
                .any(|h| h.host == host && h.phase == HostPhase::Done)
            {
                say!("{host}: Ready for {}: done", human(self.plan.min_ready));
                changed = true;
            }
        }
        if self.plan.outcome().is_none() {
            // Replicas already down for reasons of their own take slots.
            let elsewhere = self.down_elsewhere().await?;
            let held = elsewhere
                .values()
                .flatten()
                .cloned()
                .collect::<BTreeSet<_>>();
            if held != self.held_back {
                if !held.is_empty() {
                    let names: Vec<&str> = held.iter().map(String::as_str).collect();
                    say!(
                        "not Ready outside this rollout: {} (they take slots of --max-unavailable {}: start them again, or raise --max-unavailable; without a free slot the rollout halts after --progress-deadline {})",
                        names.join(", "),
                        self.plan.max_unavailable,
                        human(self.progress_deadline)
                    );
                }
                self.held_back = held;
            }
            let asked = self.plan.ask_next_with(
                |cluster| elsewhere.get(cluster).map_or(0, BTreeSet::len),
                self.started.elapsed(),
            );
            for host in asked {
                self.ask(&host).await?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// `host` answered its reload request with `answer`: said, and what it
    /// reported goes to the plan.
    fn reported(&mut self, host: String, answer: &rekindle::records::requests::Answer) {
        let report = serde_json::from_str::<serde_json::Value>(&answer.report)
            .unwrap_or(serde_json::Value::Null);
        let summary = report["summary"]
            .as_str()
            .map_or_else(|| answer.report.clone(), str::to_string);
        self.backends
            .insert(host.clone(), changed_backends(&report));
        self.since.insert(host.clone(), self.started.elapsed());
        if answer.as_intended {
            say!(
                "{host}: {summary}; waiting until Ready for {}",
                human(self.plan.min_ready)
            );
        } else {
            say!("{host}: reload did not end as intended: {summary}");
        }
        self.reports.insert(host.clone(), summary.clone());
        self.plan.observe(
            Observation::Reported {
                host,
                as_intended: answer.as_intended,
                summary,
            },
            self.started.elapsed(),
        );
    }

    /// `host`, asked to reload, has no heartbeat within `service_down_time`
    /// (`when`: `before` or `after` answering): said, and it halts the
    /// rollout as a failed reload does.
    pub(super) fn went_down(&mut self, host: String, when: &str) {
        let summary = format!(
            "went down {when} answering its reload request (no heartbeat within {})",
            human(self.service_down_time)
        );
        say!("{host}: {summary}");
        self.reports.insert(host.clone(), summary.clone());
        self.plan
            .observe(Observation::Down { host, summary }, self.started.elapsed());
    }

    /// Whether `host` has a heartbeat within `service_down_time` by the
    /// database's clock.
    pub(super) async fn alive(&self, host: &str) -> Result<bool, FleetError> {
        Ok(self
            .store
            .fleet_hosts(self.service_down_time)
            .await?
            .iter()
            .any(|h| h.host == host && h.alive))
    }

    /// Per cluster, the hosts outside this rollout's in-flight ones that
    /// have a backend not up (by the database's clock).
    pub(super) async fn down_elsewhere(
        &self,
    ) -> Result<BTreeMap<String, BTreeSet<String>>, FleetError> {
        let in_flight: BTreeSet<&str> = self
            .plan
            .hosts
            .iter()
            .filter(|h| matches!(h.phase, HostPhase::Asked | HostPhase::Settling { .. }))
            .map(|h| h.host.as_str())
            .collect();
        let mut down: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (row, cluster) in self.store.fleet_services().await? {
            let host = row.host.split('@').next().unwrap_or(&row.host);
            if row.state != "up" && !in_flight.contains(host) {
                down.entry(cluster).or_default().insert(host.to_string());
            }
        }
        Ok(down)
    }

    /// Drives the rollout to its end: 0 finished, 1 halted.
    pub(super) async fn run(mut self) -> Result<Exit, FleetError> {
        loop {
            match self.tick().await {
                Ok(true) => {
                    if self.plan.outcome().is_none() {
                        self.save(RolloutState::Running, &self.progress()).await?;
                    }
                }
                Ok(false) => {}
                Err(FleetError::Store(RecordsError::Unavailable { url, reason })) => {
                    eprintln!(
                        "rekindle: records database {url} is unavailable ({reason}); retrying"
                    );
                }
                Err(other) => return Err(other),
            }
            let now = self.started.elapsed();
            let (since, held, min_ready) = (&self.since, &self.held_back, self.plan.min_ready);
            let deadline = self.progress_deadline;
            if self.plan.check_progress(now, deadline, |w| {
                format!(
                    "no progress within --progress-deadline {}: {}",
                    human(deadline),
                    describe(w, since, held, min_ready, now)
                )
            }) {
                say!(
                    "no progress within --progress-deadline {}: halting",
                    human(deadline)
                );
            }
            if let Some(outcome) = self.plan.outcome() {
                return self.finish(outcome).await;
            }
            if self.said_waiting.elapsed() >= SAY_WAITING_EVERY {
                self.say_waiting(now);
            }
            actix::clock::sleep(POLL).await;
        }
    }

    /// One line: what the rollout waits for, on which hosts, since when.
    pub(super) fn say_waiting(&mut self, now: Duration) {
        self.said_waiting = Instant::now();
        let waits: Vec<String> = self
            .plan
            .waits()
            .iter()
            .map(|w| describe(w, &self.since, &self.held_back, self.plan.min_ready, now))
            .collect();
        if waits.is_empty() {
            return;
        }
        say!(
            "waiting ({} without progress of --progress-deadline {}): {}",
            human(now.saturating_sub(self.plan.last_progress)),
            human(self.progress_deadline),
            waits.join("; ")
        );
    }

    pub(super) fn progress(&self) -> String {
        let done = self
            .plan
            .hosts
            .iter()
            .filter(|h| h.phase == HostPhase::Done)
            .count();
        let busy: Vec<&str> = self
            .plan
            .hosts
            .iter()
            .filter(|h| matches!(h.phase, HostPhase::Asked | HostPhase::Settling { .. }))
            .map(|h| h.host.as_str())
            .collect();
        format!(
            "{done} of {} hosts done; reloading: {}",
            self.plan.hosts.len(),
            if busy.is_empty() {
                "-".to_string()
            } else {
                busy.join(", ")
            }
        )
    }

    pub(super) async fn finish(&self, outcome: Outcome) -> Result<Exit, FleetError> {
        let (state, message, code) = match outcome {
            Outcome::Done => (
                RolloutState::Finished,
                format!(
                    "finished: {} host{} reloaded and Ready for {}",
                    self.plan.hosts.len(),
                    if self.plan.hosts.len() == 1 { "" } else { "s" },
                    human(self.plan.min_ready)
                ),
                Exit::Ok,
            ),
            Outcome::Halted {
                host,
                reason,
                not_reached,
                unconfirmed,
            } => {
                let mut message = format!("halted at {host}: {reason}");
                if !not_reached.is_empty() {
                    message.push_str(&format!(
                        "; not asked (old config): {}",
                        not_reached.join(", ")
                    ));
                }
                if !unconfirmed.is_empty() {
                    message.push_str(&format!("; not confirmed: {}", unconfirmed.join(", ")));
                }
                (RolloutState::Halted, message, Exit::Failed)
            }
        };
        loop {
            match self.save(state, &message).await {
                Ok(()) => break,
                Err(FleetError::Store(RecordsError::Unavailable { url, reason })) => {
                    eprintln!(
                        "rekindle: records database {url} is unavailable ({reason}); retrying"
                    );
                    actix::clock::sleep(Duration::from_secs(1)).await;
                }
                Err(other) => return Err(other),
            }
        }
        say!("rollout {} {message}", self.id);
        Ok(code)
    }
}
