//! What the driver actor does for each effect the core decides: build a driver, run
//! or abort a setup, arm a timer, publish capabilities, deliver a notification.

use super::*;

impl DriverActor {
    /// Performs one effect the core decided.
    pub(super) fn perform(&mut self, effect: Effect, now: Moment, ctx: &mut Context<Self>) {
        match effect {
            Effect::ApplyConfig {
                config,
                keep_previous,
            } => self.apply_config(config, keep_previous),
            Effect::RestorePrevious => {
                if let Some(previous) = self.previous.take() {
                    (self.spec, self.driver) = *previous;
                }
            }
            Effect::DropPrevious => self.previous = None,
            Effect::RunSetup {
                setup, previous, ..
            } => self.run_setup(setup, previous, ctx),
            Effect::AbortSetup { .. } if self.shell.plant_bug_keep_hung_setups => {}
            Effect::AbortSetup { setup } => {
                if let Some((running, handle)) = self.setup_task.take() {
                    if running == setup {
                        ctx.cancel_future(handle);
                    } else {
                        self.setup_task = Some((running, handle));
                    }
                }
            }
            Effect::ScheduleTimer { timer, at } => {
                let handle = ctx.run_later(at.saturating_since(now), move |act, ctx| {
                    act.timers.retain(|(armed, _)| *armed != timer);
                    act.event_or_log(Event::TimerFired(timer), ctx);
                });
                self.timers.push((timer, handle));
            }
            Effect::PublishCapabilities { epoch } => self.publish_capabilities(epoch, ctx),
            Effect::Notify(notification) => self.notify(notification, now),
            Effect::Stop => ctx.stop(),
        }
    }

    /// Builds the driver for `config` (its spec, kept when the reload was
    /// asked for), setting the serving instance aside when `keep_previous`.
    pub(super) fn apply_config(&mut self, config: ConfigId, keep_previous: bool) {
        let spec = match self.pending_specs.remove(&config) {
            Some(spec) => spec,
            None => self.spec.clone(),
        };
        self.pending_specs.retain(|id, _| *id > config);
        let driver = build(&self.shell, &spec);
        let old_spec = std::mem::replace(&mut self.spec, spec);
        let old_driver = std::mem::replace(&mut self.driver, driver);
        // The serving instance is set aside (drained, not torn
        // down) until the new one is Ready; otherwise it goes now.
        if keep_previous {
            self.previous = Some(Box::new((old_spec, old_driver)));
        }
        self.set_stale_config(None);
    }

    /// Runs `setup` (a rollback's `check` of the kept instance when
    /// `previous`) as a future of this actor, cancelled by `AbortSetup`.
    pub(super) fn run_setup(&mut self, setup: Generation, previous: bool, ctx: &mut Context<Self>) {
        let driver = if previous {
            match self.previous.as_deref() {
                Some((_, driver)) => driver.clone(),
                None => Err(DriverError::backend(
                    "no driver instance was kept to roll back to",
                )),
            }
        } else {
            self.driver.clone()
        };
        let call = async move {
            match driver {
                Ok(driver) if previous => guarded(driver.check()).await,
                Ok(driver) => guarded(driver.setup()).await,
                Err(error) => Err(error),
            }
        };
        let handle = ctx.spawn(call.into_actor(self).map(move |result, act, ctx| {
            if act.setup_task.as_ref().is_some_and(|(g, _)| *g == setup) {
                act.setup_task = None;
            }
            let event = match result {
                Ok(()) => Event::SetupSucceeded { setup },
                Err(error) => Event::SetupFailed { setup, error },
            };
            act.event_or_log(event, ctx);
        }));
        self.setup_task = Some((setup, handle));
    }

    /// Asks the driver for its stats (a backup driver: its health probe)
    /// within the operations' deadline: a hung call is health lost at that
    /// deadline, not a call piling up on every tick.
    pub(super) fn publish_capabilities(&mut self, epoch: Generation, ctx: &mut Context<Self>) {
        let limit = self.lifecycle.policy().driver_operation_timeout;
        let driver = match self.driver.clone() {
            Ok(AnyDriver::Volume(driver)) => driver,
            Ok(AnyDriver::Backup(driver)) => {
                // A backup driver's health probe (its store still
                // there and writable); a failure is health lost.
                let call = crate::actors::driver_call::within(
                    limit,
                    "health probe",
                    guarded(async move { driver.probe().await }),
                );
                ctx.spawn(call.into_actor(self).map(move |result, act, ctx| {
                    if let Err(error) = result {
                        act.event_or_log(Event::HealthLost { epoch, error }, ctx);
                    }
                }));
                return;
            }
            Err(_) => return,
        };
        let backend = self.spec.backend.clone();
        let call = crate::actors::driver_call::within(limit, "get_volume_stats", async move {
            let stats = guarded(driver.get_volume_stats()).await;
            if stats.is_ok() {
                // Exports are checked and repaired while the
                // backend is healthy; each restart is notified by
                // the driver, a failure here is only logged.
                if let Err(error) = guarded(driver.ensure_exports()).await {
                    tracing::error!(%backend, %error, "export check");
                }
            }
            stats
        });
        ctx.spawn(call.into_actor(self).map(move |result, act, ctx| {
            act.capabilities(epoch, result, ctx);
        }));
    }

    /// Delivers a driver-level notification (and what it says of a stale
    /// config to the status board).
    pub(super) fn notify(&mut self, notification: Notification, now: Moment) {
        match &notification {
            Notification::ReloadRolledBack { error } => {
                self.set_stale_config(Some(StaleConfig::RolledBack {
                    error: error.to_string(),
                }));
            }
            Notification::ReloadAborted { in_flight } => {
                self.set_stale_config(Some(StaleConfig::ReloadAborted {
                    in_flight: *in_flight,
                }));
            }
            Notification::RemovalAborted { in_flight } => {
                self.set_stale_config(Some(StaleConfig::RemovalAborted {
                    in_flight: *in_flight,
                }));
            }
            _ => {}
        }
        let backend = &self.spec.backend;
        self.shell.notifier.driver(backend, now, &notification);
        if self.spec.kind == Kind::Backup {
            backup_notification(&self.shell.notifier, backend, now, &notification);
        }
    }
}
