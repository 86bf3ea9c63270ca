//! A reload as the controller carries it out: the pure decision's steps applied, each
//! backend's result once it settles, the report and its words (`reload.end`).

use super::*;

/// What a reload request led to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The new config is valid and is being applied.
    Started {
        /// Its id.
        config: ConfigId,
        /// What changes.
        diff: PlanDiff,
    },
    /// A reload is running; one follow-up reload will run after it.
    Coalesced,
    /// The new config is invalid; the old one keeps serving.
    Rejected {
        /// Why.
        error: String,
    },
    /// The service is shutting down.
    ShuttingDown,
    /// The reload (or, for a coalesced request, the follow-up reload that
    /// covers it) settled: what became of each backend.
    Finished(ReloadReport),
}

impl ReloadOutcome {
    /// The exit status `rekindle reload` reports: 0 when every backend
    /// ended as intended (or the request was only queued or started), 1 when
    /// nothing was applied (file rejected, shutting down), 3 when a backend
    /// rolled back, failed, or its reload or removal was aborted.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReloadOutcome::Started { .. } | ReloadOutcome::Coalesced => 0,
            ReloadOutcome::Rejected { .. } | ReloadOutcome::ShuttingDown => 1,
            ReloadOutcome::Finished(report) if report.as_intended() => 0,
            ReloadOutcome::Finished(_) => 3,
        }
    }
}

/// What one reload did, per backend (`reload.end`, `rekindle reload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ReloadReport {
    /// The config the reload applied.
    pub config: ConfigId,
    /// True if the request was coalesced into this (follow-up) reload.
    pub coalesced: bool,
    /// Each backend's result.
    pub backends: BTreeMap<String, BackendResult>,
    /// Service-level options that changed and take effect on restart.
    pub restart_required: Vec<String>,
}

impl ReloadReport {
    /// True if every backend ended as intended.
    pub fn as_intended(&self) -> bool {
        self.backends.values().all(BackendResult::as_intended)
    }
}

impl BackendResult {
    /// The result of a backend that `change` touched and that settled as
    /// `settled`, for a reload applying `config`.
    fn of(change: Change, settled: &Settled, config: ConfigId) -> BackendResult {
        let state = settled.state;
        let failed = matches!(state, StateName::FailedFatal | StateName::FailedRecoverable);
        let error = settled.last_error.clone();
        let old = settled.config < config;
        match change {
            Change::Removed => match &settled.stale_config {
                _ if state == StateName::Stopped => BackendResult::Removed,
                Some(StaleConfig::RemovalAborted { in_flight }) => BackendResult::RemovalAborted {
                    in_flight: *in_flight,
                },
                _ => BackendResult::RemovalAborted { in_flight: 0 },
            },
            Change::Added => BackendResult::Added {
                ready: state == StateName::Ready,
                state,
                error,
            },
            Change::Unchanged if failed => BackendResult::Failed { state, error },
            Change::Unchanged => BackendResult::Unchanged { state },
            Change::Changed => match &settled.stale_config {
                Some(StaleConfig::RolledBack { error }) if old => BackendResult::RolledBack {
                    error: error.clone(),
                },
                Some(StaleConfig::ReloadAborted { in_flight }) if old => BackendResult::Aborted {
                    in_flight: *in_flight,
                },
                _ if state == StateName::Ready && !old => BackendResult::Reloaded { state },
                _ => BackendResult::Failed { state, error },
            },
        }
    }
}

/// How a reload's diff touched one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Unchanged,
    Changed,
    Added,
    Removed,
}

impl Controller {
    pub(super) fn reload(&mut self, ctx: &mut Context<Self>) -> ReloadOutcome {
        let now = self.shell.clock.now();
        let state = ReloadState {
            shutting_down: self.shutting_down,
            reloading: self.reloading,
            config: self.config,
        };
        let decision = decide(state, &self.plan, || {
            (self.loader)().and_then(|plan| self.check_reload(plan))
        });
        match decision {
            ReloadDecision::Refuse => {
                tracing::warn!("reload refused: the service is shutting down");
                self.shell.notifier.emit(
                    None,
                    now,
                    Event::ReloadRefused {
                        reason: "the service is shutting down".to_string(),
                    },
                );
                self.systemd.status("stopping; reload refused");
                ReloadOutcome::ShuttingDown
            }
            ReloadDecision::Coalesce => {
                self.follow_up = true;
                tracing::info!(
                    running = self.config,
                    "reload queued: one follow-up reload runs when the running one settles"
                );
                self.shell.notifier.emit(
                    None,
                    now,
                    Event::ReloadCoalesced {
                        running_config: self.config,
                    },
                );
                self.systemd.status(&format!(
                    "reloading config {}; one more reload queued",
                    self.config
                ));
                ReloadOutcome::Coalesced
            }
            ReloadDecision::Reject { error } => {
                tracing::error!(%error, "reload rejected; the old config keeps serving");
                self.shell.notifier.emit(
                    None,
                    now,
                    Event::ReloadRejected {
                        error: error.clone(),
                    },
                );
                if self.systemd.enabled() {
                    // Type=notify-reload waits for RELOADING=1 then READY=1.
                    self.systemd.reloading();
                    self.systemd.ready(&format!(
                        "reload rejected, the old config keeps serving: {error}; {}",
                        self.status_line()
                    ));
                }
                ReloadOutcome::Rejected { error }
            }
            ReloadDecision::Apply(steps) => self.apply_reload(*steps, ctx),
        }
    }

    /// Carries out [`decide`]'s steps: drains and reloads the kept
    /// backends, removes and starts the others, and reports when every one
    /// has settled ([`ReloadSettled`]).
    pub(super) fn apply_reload(
        &mut self,
        steps: ReloadSteps,
        ctx: &mut Context<Self>,
    ) -> ReloadOutcome {
        let now = self.shell.clock.now();
        let ReloadSteps {
            config,
            diff,
            reload,
            remove,
            add,
            old,
            plan,
        } = steps;
        self.systemd.reloading();
        self.reloading = true;
        self.config = config;
        tracing::info!(
            config,
            added = diff.added.len(),
            removed = diff.removed.len(),
            changed = diff.changed.len(),
            unchanged = diff.unchanged.len(),
            "reload started"
        );
        self.shell.notifier.emit(
            None,
            now,
            Event::ReloadStart {
                config,
                diff: diff.clone(),
            },
        );
        let mut settle = Vec::new();
        for (name, backend, changed) in reload {
            let Some(addr) = self.drivers.get(&name) else {
                continue;
            };
            addr.do_send(ReloadBackend {
                config,
                spec: backend.spec,
                policy: backend.policy,
                changed,
            });
            let change = if changed {
                Change::Changed
            } else {
                Change::Unchanged
            };
            settle.push(when_settled(name, change, addr, false));
        }
        for name in remove {
            // A removal drains like a reload: the backend stays routed (its
            // operations are refused as draining) until it has stopped, and
            // stays altogether if its drain deadline passes first.
            if let Some(addr) = self.drivers.get(&name) {
                addr.do_send(Remove);
                // Unrouted as soon as it stopped, not when every backend
                // of the reload has settled.
                let settled = when_settled(name, Change::Removed, addr, false);
                let (publisher, service, scheduler) = (
                    self.publisher.clone(),
                    self.service.clone(),
                    self.scheduler.clone(),
                );
                settle.push(Box::pin(async move {
                    let (name, change, settled) = settled.await;
                    if settled.state == StateName::Stopped {
                        publisher.do_send(Untrack(name.clone()));
                        service.do_send(RemoveBackend(name.clone()));
                        scheduler.do_send(ForgetBackend(name.clone()));
                    }
                    (name, change, settled)
                }));
            }
        }
        self.plan = plan;
        for (name, backend) in add {
            self.spawn_backend(&name, &backend);
            if let Some(addr) = self.drivers.get(&name) {
                settle.push(when_settled(name, Change::Added, addr, true));
            }
        }
        let outcome = ReloadOutcome::Started {
            config,
            diff: diff.clone(),
        };
        let waiting = join_all(settle);
        ctx.spawn(waiting.into_actor(self).map(move |settled, _act, ctx| {
            ctx.notify(ReloadSettled {
                config,
                diff,
                settled,
                old,
            });
        }));
        outcome
    }

    /// Checks every backend of `plan` against its driver's declared options
    /// and, for a backend that keeps its driver, the options that may not
    /// change on reload: any problem rejects the whole plan (one problem a
    /// line), so nothing running is touched.
    pub(super) fn check_reload(&self, plan: Plan) -> Result<Plan, String> {
        let problems: Vec<String> = plan
            .backends
            .iter()
            .flat_map(|(name, backend)| {
                let running = self.plan.backends.get(name).map(|b| &b.spec);
                self.shell.registry.check_reload(running, &backend.spec)
            })
            .map(|problem| problem.to_string())
            .collect();
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Answers the requesters waiting for config `config`'s reload.
    pub(super) fn answer(&mut self, config: ConfigId, outcome: &ReloadOutcome) {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(c, _, _)| *c <= config);
        self.waiting = later;
        for (_, coalesced, tx) in now {
            let mut outcome = outcome.clone();
            if let ReloadOutcome::Finished(report) = &mut outcome {
                report.coalesced = coalesced;
            }
            // The requester may have gone away; then nobody needs it.
            let _ = tx.send(outcome);
        }
    }

    /// Hands coalesced requesters to the follow-up reload's `outcome`.
    pub(super) fn follow_up_started(&mut self, outcome: &ReloadOutcome) {
        let waiters = std::mem::take(&mut self.waiting_follow_up);
        match outcome {
            ReloadOutcome::Started { config, .. } => self
                .waiting
                .extend(waiters.into_iter().map(|tx| (*config, true, tx))),
            other => {
                for tx in waiters {
                    let _ = tx.send(other.clone());
                }
            }
        }
    }
}

impl Handler<ReloadSettled> for Controller {
    type Result = ();
    fn handle(&mut self, msg: ReloadSettled, ctx: &mut Context<Self>) {
        let now = self.shell.clock.now();
        let mut backends = BTreeMap::new();
        let mut states = BTreeMap::new();
        for (name, change, settled) in &msg.settled {
            let result = BackendResult::of(*change, settled, msg.config);
            match &result {
                // Unrouted when it stopped (see `reload`).
                BackendResult::Removed => {
                    self.drivers.remove(name);
                }
                // The backend serves on its old config: the plan says so,
                // so the next reload of the same file tries again.
                BackendResult::RolledBack { .. }
                | BackendResult::Aborted { .. }
                | BackendResult::RemovalAborted { .. } => {
                    if let Some(old) = msg.old.get(name) {
                        self.plan.backends.insert(name.clone(), old.clone());
                    }
                }
                _ => {}
            }
            states.insert(name.clone(), settled.state.as_str());
            backends.insert(name.clone(), result);
        }
        let named = |wanted: &str| -> Vec<String> {
            backends
                .iter()
                .filter(|(_, r)| r.name() == wanted)
                .map(|(name, _)| name.clone())
                .collect()
        };
        let report = ReloadReport {
            config: msg.config,
            coalesced: false,
            backends: backends.clone(),
            restart_required: msg.diff.restart_required.clone(),
        };
        let ok = report.as_intended();
        self.shell.notifier.emit(
            None,
            now,
            Event::ReloadEnd(Box::new(crate::events::ReloadEnd {
                config: msg.config,
                ok,
                added: msg.diff.added.clone(),
                removed: named("removed"),
                changed: msg.diff.changed.clone(),
                unchanged: msg.diff.unchanged.clone(),
                aborted: named("aborted"),
                rolled_back: named("rolled_back"),
                failed: named("failed"),
                removal_aborted: named("removal_aborted"),
                restart_required: msg.diff.restart_required.clone(),
                states,
                backends,
            })),
        );
        let summary = summary(&report);
        if ok {
            tracing::info!(config = msg.config, %summary, "reload finished");
        } else {
            tracing::warn!(config = msg.config, %summary, "reload finished; not every backend ended as intended");
        }
        self.reloading = false;
        if self.systemd.enabled() {
            self.systemd.ready(&format!(
                "reload of config {}: {summary}; {}",
                msg.config,
                self.status_line()
            ));
        }
        self.answer(msg.config, &ReloadOutcome::Finished(report));
        if std::mem::take(&mut self.follow_up) {
            let outcome = self.reload(ctx);
            tracing::info!("follow-up reload: {}", outcome_words(&outcome));
            self.follow_up_started(&outcome);
        }
    }
}

/// A reload request's outcome for a log line, in words.
pub(super) fn outcome_words(outcome: &ReloadOutcome) -> String {
    match outcome {
        ReloadOutcome::Started { config, diff } => {
            let mut parts = Vec::new();
            for (what, names) in [
                ("changed", &diff.changed),
                ("added", &diff.added),
                ("removed", &diff.removed),
            ] {
                if !names.is_empty() {
                    parts.push(format!("{what} {}", names.join(", ")));
                }
            }
            if parts.is_empty() {
                parts.push("nothing changed".to_string());
            }
            format!("config {config} applying ({})", parts.join("; "))
        }
        ReloadOutcome::Coalesced => {
            "queued behind the running reload (one follow-up reload will cover it)".to_string()
        }
        ReloadOutcome::Rejected { error } => {
            format!("rejected, the old config keeps serving: {error}")
        }
        ReloadOutcome::ShuttingDown => "ignored: the service is shutting down".to_string(),
        ReloadOutcome::Finished(report) => {
            format!("config {} settled: {}", report.config, summary(report))
        }
    }
}

/// One line per result kind: `2 reloaded, 1 rolled_back (b1)`.
fn summary(report: &ReloadReport) -> String {
    let mut by_kind: BTreeMap<&'static str, Vec<&str>> = BTreeMap::new();
    for (name, result) in &report.backends {
        by_kind.entry(result.name()).or_default().push(name);
    }
    if by_kind.is_empty() {
        return "no backends".to_string();
    }
    by_kind
        .iter()
        .map(|(kind, names)| {
            if matches!(*kind, "unchanged" | "reloaded" | "removed") {
                format!("{} {kind}", names.len())
            } else {
                format!("{} {kind} ({})", names.len(), names.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
