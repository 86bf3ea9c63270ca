//! Invariants: the safety properties of one transition, checked from the
//! outside. One module, used by property tests, the simulator and the checker.

use thiserror::Error;

use super::{AfterDrain, Effect, Event, Failed, Lifecycle, State, StateName, TimerKind};

/// A broken invariant, naming the transition that broke it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invariant `{rule}` broken by {event:?} in state {from}: {detail}")]
pub struct Violation {
    /// Short name of the invariant.
    pub rule: &'static str,
    /// State before the transition.
    pub from: StateName,
    /// The event.
    pub event: Event,
    /// What was seen.
    pub detail: String,
}

/// A rule broken: its name and what was seen.
type Broken = (&'static str, String);

/// Checks one accepted transition `before --event--> after` with `effects`:
/// every rule, in order; the first one broken is the violation.
pub fn check_transition(
    before: &Lifecycle,
    event: &Event,
    after: &Lifecycle,
    effects: &[Effect],
) -> Result<(), Violation> {
    in_flight_rules(before, event, after)
        .and_then(|()| health_rules(before, event, after))
        .and_then(|()| stop_and_reload_rules(before, event, after))
        .and_then(|()| retry_rules(after, effects))
        .and_then(|()| setup_rules(before, event, after, effects))
        .map_err(|(rule, detail)| Violation {
            rule,
            from: before.state().name(),
            event: event.clone(),
            detail,
        })
}

/// Whether `event` counts an operation out (it finished, or its call was
/// abandoned at its deadline).
fn counts_out(event: &Event) -> bool {
    matches!(
        event,
        Event::OperationFinished | Event::OperationTimedOut { .. }
    )
}

/// Operations in flight once `event` is accounted for.
fn remaining(before: &Lifecycle, event: &Event) -> u32 {
    before.state().in_flight() - u32::from(counts_out(event) && before.state().in_flight() > 0)
}

/// Operations only when Ready; a reload only with none in flight; no
/// operation in flight is cut.
fn in_flight_rules(before: &Lifecycle, event: &Event, after: &Lifecycle) -> Result<(), Broken> {
    let counts_out = counts_out(event);
    let remaining = remaining(before, event);
    if matches!(event, Event::OperationStarted) && before.state().name() != StateName::Ready {
        return Err((
            "operations only when ready",
            "an operation was accepted".into(),
        ));
    }
    if after.state().name() == StateName::Reloading
        && before.state().name() != StateName::Reloading
        && remaining > 0
    {
        return Err((
            "reloading only with zero in-flight",
            format!("{remaining} operations were still in flight"),
        ));
    }
    if after.state().in_flight() < before.state().in_flight()
        && !(counts_out && after.state().in_flight() + 1 == before.state().in_flight())
        && after.state().name() != StateName::Stopped
    {
        return Err((
            "no in-flight operation is cut",
            format!(
                "in-flight went from {} to {}",
                before.state().in_flight(),
                after.state().in_flight()
            ),
        ));
    }
    Ok(())
}

/// A backend that lost its health is not Ready again until set up again.
fn health_rules(before: &Lifecycle, event: &Event, after: &Lifecycle) -> Result<(), Broken> {
    // A backend that lost its health in this Ready period (a stats call
    // failed, or an operation's call passed its deadline) is not Ready again
    // until a setup succeeds: the loss is acted on when seen, remembered
    // through a drain (reload, removal), and never dropped by the drain's
    // end (deadline passed, change reverted). A shutdown drain stops anyway.
    let serving_epoch = |s: &State| match s {
        State::Ready(r) => Some(r.epoch),
        State::Draining(d) if d.then != AfterDrain::Shutdown => Some(d.ready.epoch),
        _ => None,
    };
    let seen = match event {
        Event::HealthLost { epoch, .. } | Event::OperationTimedOut { epoch, .. } => {
            serving_epoch(before.state()) == Some(*epoch)
        }
        _ => false,
    };
    let remembered = matches!(before.state(), State::Draining(d) if d.health_lost().is_some());
    if seen || remembered {
        let detail = match after.state() {
            State::Ready(_) => Some("Ready again without a setup"),
            State::Draining(d) if d.then != AfterDrain::Shutdown && d.health_lost().is_none() => {
                Some("the loss was forgotten while draining")
            }
            _ => None,
        };
        if let Some(detail) = detail {
            return Err((
                "a backend that lost its health is not ready until set up again",
                detail.into(),
            ));
        }
    }
    Ok(())
}

/// Only the final shutdown cuts work; a reload never fails a Ready backend
/// whose old config passes its check, and a rollback returns to it.
fn stop_and_reload_rules(
    before: &Lifecycle,
    event: &Event,
    after: &Lifecycle,
) -> Result<(), Broken> {
    let remaining = remaining(before, event);
    // Only the final shutdown may cut work: a removal by a reload drains,
    // and its deadline passing aborts the removal instead.
    let final_shutdown = matches!(event, Event::ShutdownRequested)
        || matches!(before.state(), State::Draining(d) if d.then == AfterDrain::Shutdown);
    if after.state().name() == StateName::Stopped && remaining > 0 && !final_shutdown {
        return Err((
            "only the final shutdown cuts work",
            format!("stopped with {remaining} operations in flight"),
        ));
    }
    // A reload never turns a Ready backend into a failed one while its old
    // config still passes its check: a failed setup of a reload that left
    // Ready goes to the rollback check, and only that check failing (or
    // not answering) lets the failure stand.
    let failed = matches!(
        after.state().name(),
        StateName::FailedRecoverable | StateName::FailedFatal
    );
    if failed
        && before.state().name() == StateName::Reloading
        && before.previous().is_some()
        && before.policy().reload_rollback
    {
        return Err((
            "a reload never fails a Ready backend whose old config passes its check",
            "the new config's failure was not rolled back".into(),
        ));
    }
    if before.state().name() == StateName::RollingBack {
        if failed && matches!(event, Event::SetupSucceeded { .. }) {
            return Err((
                "a reload never fails a Ready backend whose old config passes its check",
                "the old instance passed its check but the driver failed".into(),
            ));
        }
        if after.state().name() == StateName::Ready
            && before.previous().map(|p| p.config) != Some(after.config())
        {
            return Err((
                "a rollback returns to the old config",
                format!(
                    "Ready on config {} after rolling back to {:?}",
                    after.config(),
                    before.previous().map(|p| p.config)
                ),
            ));
        }
    }
    Ok(())
}

/// Retries: kept up while recovering from a health loss, within the
/// budget, never after a fatal error.
fn retry_rules(after: &Lifecycle, effects: &[Effect]) -> Result<(), Broken> {
    let budget = after.policy().reinit_driver_count;
    if after.recovering()
        && matches!(
            after.state(),
            State::Failed(Failed::Recoverable { retry: None, .. })
        )
    {
        return Err((
            "a driver that lost its health keeps retrying until it is back",
            "gave up while recovering from a health loss".to_string(),
        ));
    }
    if budget > 0 && after.state().attempt() > budget {
        return Err((
            "attempts within reinit_driver_count",
            format!("attempt {} > budget {budget}", after.state().attempt()),
        ));
    }
    let schedules_retry = effects.iter().any(
        |e| matches!(e, Effect::ScheduleTimer { timer, .. } if timer.kind == TimerKind::Retry),
    );
    if after.state().name() == StateName::FailedFatal && schedules_retry {
        return Err(("fatal never retried", "a retry was scheduled".into()));
    }
    Ok(())
}

/// One setup at a time, and none for a fatal error without a reload.
fn setup_rules(
    before: &Lifecycle,
    event: &Event,
    after: &Lifecycle,
    effects: &[Effect],
) -> Result<(), Broken> {
    let runs = effects
        .iter()
        .filter(|e| matches!(e, Effect::RunSetup { .. }))
        .count();
    if runs > 1 {
        return Err(("one setup at a time", format!("{runs} setups started")));
    }
    if runs == 1 {
        // The setup this event completes is no longer in flight.
        let completed = match event {
            Event::SetupSucceeded { setup } | Event::SetupFailed { setup, .. } => Some(*setup),
            _ => None,
        };
        if let Some(old) = before.state().setup().filter(|s| Some(s.id) != completed) {
            let aborted = effects
                .iter()
                .any(|e| matches!(e, Effect::AbortSetup { setup } if *setup == old.id));
            if !aborted {
                return Err((
                    "one setup at a time",
                    format!("setup {} still in flight when another started", old.id),
                ));
            }
        }
        if before.state().name() == StateName::FailedFatal
            && !matches!(event, Event::ReloadRequested { .. })
        {
            return Err(("fatal never retried", "setup ran without a reload".into()));
        }
        if after.state().setup().is_none() {
            return Err((
                "one setup at a time",
                "setup started but state has none".into(),
            ));
        }
    }
    Ok(())
}
