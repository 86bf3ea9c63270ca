//! What to run: the [`Plan`] (host, service intervals, and each backend's driver
//! spec and policy) that config produces and the actors and the front door consume.

pub mod reload;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::driver::DriverSpec;
use crate::events::PlanDiff;
use crate::lifecycle::Policy;

/// One backend as the plan runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendPlan {
    /// Driver and options.
    pub spec: DriverSpec,
    /// Retry and drain limits.
    pub policy: Policy,
}

/// What the service runs: everything a config file decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// This host's name (service rows are `host@backend`).
    pub host: String,
    /// Publisher period.
    pub periodic_interval: Duration,
    /// Heartbeat period.
    pub report_interval: Duration,
    /// A backend not Ready for this long is down.
    pub service_down_time: Duration,
    /// After this long without a Ready backup driver, a notification says so.
    pub backup_initialization_timeout: Duration,
    /// How long shutdown waits for in-flight operations.
    pub graceful_shutdown_timeout: Duration,
    /// `reinit_backoff_jitter_seed`: the fixed jitter seed, if the config
    /// sets one (read at start-up; a change takes effect on restart).
    pub jitter_seed: Option<u64>,
    /// Backends by name (volume backends and the backup backend).
    pub backends: BTreeMap<String, BackendPlan>,
}

impl Plan {
    /// The per-backend difference from `self` (running) to `new`.
    pub fn diff(&self, new: &Plan) -> PlanDiff {
        let mut diff = PlanDiff::default();
        for (name, backend) in &new.backends {
            match self.backends.get(name) {
                None => diff.added.push(name.clone()),
                Some(old) if old == backend => diff.unchanged.push(name.clone()),
                Some(_) => diff.changed.push(name.clone()),
            }
        }
        diff.removed = self
            .backends
            .keys()
            .filter(|name| !new.backends.contains_key(*name))
            .cloned()
            .collect();
        let service_options = [
            ("host", self.host != new.host),
            (
                "periodic_interval",
                self.periodic_interval != new.periodic_interval,
            ),
            (
                "report_interval",
                self.report_interval != new.report_interval,
            ),
            (
                "service_down_time",
                self.service_down_time != new.service_down_time,
            ),
            (
                "backup_initialization_timeout",
                self.backup_initialization_timeout != new.backup_initialization_timeout,
            ),
            (
                "reinit_backoff_jitter_seed",
                self.jitter_seed != new.jitter_seed,
            ),
        ];
        diff.restart_required = service_options
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| (*name).to_string())
            .collect();
        diff
    }
}

/// Re-reads and validates the config; the error names file, section, option
/// and problem.
pub type Loader = Box<dyn Fn() -> Result<Plan, String>>;
