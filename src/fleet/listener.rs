//! The daemon's side of a rolling reload: listens for reload requests to this host in
//! the fleet's database, reloads its own config file, and answers each request with the report.
//!
//! The listener never takes the daemon down: a database that cannot be
//! reached is retried every few seconds (connecting, listening, claiming
//! and answering alike), and the daemon keeps serving meanwhile.

use std::rc::Rc;
use std::time::Duration;

use crate::engine::{EngineHandle, Reload};
use crate::events::BackendResult;
use crate::records::FleetStore;
use crate::records::requests::{Answer, RequestId};
use crate::{ReloadOutcome, ReloadReport};

/// How long to wait before trying the database again after a failure.
const RETRY: Duration = Duration::from_secs(2);

/// Connects to `url` (retrying until the database answers), then runs
/// [`spawn_reload_listener`] for `host`. Returns at once; the work runs
/// on the current actix system.
pub fn spawn_connecting(
    url: String,
    service_down_time: Duration,
    host: String,
    engine: Rc<EngineHandle>,
) {
    actix::spawn(async move {
        let store = loop {
            match crate::records::connect(&url, service_down_time).await {
                Ok(store) => break store,
                Err(error) => {
                    tracing::warn!(%error, "reload listener cannot reach the records database; retrying");
                    actix::clock::sleep(RETRY).await;
                }
            }
        };
        tracing::info!(%host, "listening for fleet reload requests");
        spawn_reload_listener(store, host, engine);
    });
}

/// Listens for reload requests to `host`: on each wake-up claims this
/// host's pending requests, reloads the engine's own config file once per
/// request, and answers each with whether every backend ended as intended
/// and a JSON report (`{"summary": "...", "outcome": ...}`). Returns at
/// once; stops when the engine has stopped.
pub fn spawn_reload_listener(store: Rc<dyn FleetStore>, host: String, engine: Rc<EngineHandle>) {
    actix::spawn(async move {
        let mut wake = store.listen_for_reloads(&host);
        while wake.recv().await.is_some() {
            // Requests claimed but not yet answered (the database went away
            // in between) are answered on the next round.
            let mut pending: Vec<RequestId> = Vec::new();
            loop {
                match store.take_reload_requests(&host).await {
                    Ok(ids) => pending.extend(ids),
                    Err(error) => {
                        tracing::warn!(%error, "cannot claim reload requests; retrying");
                        actix::clock::sleep(RETRY).await;
                        continue;
                    }
                }
                let Some(id) = pending.first().copied() else {
                    break;
                };
                let answer = match engine.reload(Reload::Current).await {
                    Ok(outcome) => answer_of(&outcome),
                    Err(error) => {
                        // The engine stopped: nothing more to answer for.
                        tracing::info!(%error, "reload listener stops");
                        return;
                    }
                };
                tracing::info!(
                    request = id.0,
                    as_intended = answer.as_intended,
                    "answered a fleet reload request"
                );
                while let Err(error) = store.answer_reload(id, &answer).await {
                    tracing::warn!(%error, request = id.0, "cannot answer a reload request; retrying");
                    actix::clock::sleep(RETRY).await;
                }
                pending.remove(0);
            }
        }
    });
}

/// The answer to a request, from the reload's outcome.
pub fn answer_of(outcome: &ReloadOutcome) -> Answer {
    let as_intended = matches!(outcome, ReloadOutcome::Finished(r) if r.as_intended())
        || matches!(
            outcome,
            ReloadOutcome::Started { .. } | ReloadOutcome::Coalesced
        );
    let report = serde_json::json!({
        "summary": summary(outcome),
        "outcome": outcome,
    });
    Answer {
        as_intended,
        report: report.to_string(),
    }
}

/// One line saying what a reload did, naming what did not end as intended.
pub fn summary(outcome: &ReloadOutcome) -> String {
    match outcome {
        ReloadOutcome::Started { .. } => "reload started".to_string(),
        ReloadOutcome::Coalesced => "reload queued behind a running one".to_string(),
        ReloadOutcome::Rejected { error } => format!("config rejected: {error}"),
        ReloadOutcome::ShuttingDown => "ignored: the service is shutting down".to_string(),
        ReloadOutcome::Finished(report) => finished(report),
    }
}

fn finished(report: &ReloadReport) -> String {
    let bad: Vec<String> = report
        .backends
        .iter()
        .filter(|(_, result)| !result.as_intended())
        .map(|(name, result)| format!("{name} {}", result_words(result)))
        .collect();
    if bad.is_empty() {
        format!(
            "reloaded as intended ({} backend{})",
            report.backends.len(),
            if report.backends.len() == 1 { "" } else { "s" }
        )
    } else {
        format!("not as intended: {}", bad.join("; "))
    }
}

fn result_words(result: &BackendResult) -> String {
    match serde_json::to_value(result) {
        Ok(value) => {
            let kind = value["result"]
                .as_str()
                .unwrap_or("failed")
                .replace('_', " ");
            match value["error"].as_str() {
                Some(error) => format!("{kind}: {error}"),
                None => kind,
            }
        }
        Err(_) => "failed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_file_is_answered_not_as_intended_with_the_reason() {
        let answer = answer_of(&ReloadOutcome::Rejected {
            error: "t.conf: [a] volume_driver: unknown".into(),
        });
        assert!(!answer.as_intended);
        let report: serde_json::Value = serde_json::from_str(&answer.report).expect("JSON");
        assert_eq!(
            report["summary"],
            "config rejected: t.conf: [a] volume_driver: unknown"
        );
        assert_eq!(report["outcome"]["outcome"], "rejected");
        assert!(!answer_of(&ReloadOutcome::ShuttingDown).as_intended);
    }
}
