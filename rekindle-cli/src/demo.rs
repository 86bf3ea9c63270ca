//! A scripted lifecycle on virtual time, printed as a timeline: shows the core at work
//! without any runtime (a backend down at start-up, retries 1s, 2s, Ready, reload).

use std::fmt::Write;

use rekindle::lifecycle::{DriverError, Effect, Event, Lifecycle, Moment, Policy};

/// Runs the script and returns the timeline, one line per transition.
pub fn scripted_lifecycle() -> String {
    let mut out = String::new();
    let mut lc = Lifecycle::new(Policy::default(), 1, 0);
    let mut now = Moment::ZERO;
    let mut failures_left = 2;
    let mut reloaded = false;
    let _ = writeln!(
        out,
        "{:>8}  {:<20} {:<20} effects",
        "time", "event", "state"
    );
    for _ in 0..32 {
        let Some(event) = next_event(&lc, &mut now, &mut failures_left, &mut reloaded) else {
            break;
        };
        let name = event.name();
        let line = match lc.step(event, now) {
            Ok((next, effects)) => {
                lc = next;
                describe(&effects)
            }
            Err(refused) => format!("refused: {refused}"),
        };
        let _ = writeln!(
            out,
            "{:>8}  {:<20} {:<20} {line}",
            now.to_string(),
            name.as_str(),
            lc.state().name().as_str()
        );
    }
    out
}

/// The scripted environment: what happens next, given the state.
fn next_event(
    lc: &Lifecycle,
    now: &mut Moment,
    failures_left: &mut u32,
    reloaded: &mut bool,
) -> Option<Event> {
    use rekindle::lifecycle::{State, Timer, TimerKind};
    Some(match lc.state() {
        State::Uninitialized => Event::Start,
        State::Initializing(s) | State::Reloading(s) if *failures_left > 0 => {
            *failures_left -= 1;
            Event::SetupFailed {
                setup: s.id,
                error: DriverError::backend("connection refused by 192.0.2.10:3260"),
            }
        }
        State::Initializing(s) | State::Reloading(s) => Event::SetupSucceeded { setup: s.id },
        State::RollingBack(r) => Event::SetupSucceeded { setup: r.check.id },
        State::Failed(_) => {
            let retry = lc.state().retry()?;
            *now = retry.at;
            Event::TimerFired(Timer {
                kind: TimerKind::Retry,
                generation: retry.timer,
            })
        }
        State::Ready(r) if r.in_flight == 0 && !*reloaded => Event::OperationStarted,
        State::Ready(_) if !*reloaded => {
            *reloaded = true;
            Event::ReloadRequested {
                config: 2,
                changed: true,
                policy: Box::new(*lc.policy()),
            }
        }
        State::Draining(_) => {
            *now = *now + std::time::Duration::from_secs(3);
            Event::OperationFinished
        }
        State::Ready(_) | State::Stopped => return None,
    })
}

fn describe(effects: &[Effect]) -> String {
    let parts: Vec<String> = effects
        .iter()
        .map(|e| match e {
            Effect::ApplyConfig { config, .. } => format!("apply config {config}"),
            Effect::RestorePrevious => "restore previous driver".to_string(),
            Effect::DropPrevious => "drop previous driver".to_string(),
            Effect::RunSetup { attempt, .. } => format!("run setup (attempt {attempt})"),
            Effect::AbortSetup { .. } => "abort setup".to_string(),
            Effect::ScheduleTimer { timer, at } => format!("timer {:?} at {at}", timer.kind),
            Effect::PublishCapabilities { .. } => "publish capabilities".to_string(),
            Effect::Notify(n) => rekindle::Event::from(n).event_type().to_string(),
            Effect::Stop => "stop".to_string(),
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_shows_retries_at_one_and_two_seconds_then_ready_then_a_drained_reload() {
        let timeline = super::scripted_lifecycle();
        assert!(timeline.contains("timer Retry at +1s"), "{timeline}");
        assert!(timeline.contains("timer Retry at +3s"), "{timeline}");
        assert!(
            timeline.contains("reload_requested     draining"),
            "{timeline}"
        );
        assert!(
            timeline.trim_end().ends_with("publish capabilities"),
            "{timeline}"
        );
    }
}
