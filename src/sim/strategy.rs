//! Proptest strategies over simulations of *your* driver (feature `proptest`): fault
//! plans and environment scripts over named backends, run on virtual time, shrunk by proptest.
//!
//! ```
//! use proptest::prelude::*;
//! use rekindle::sim::strategy::{self, hours};
//! # use async_trait::async_trait;
//! # use rekindle::{Capabilities, ConnectionInfo, Connector, DriverError, Volume, VolumeDriver};
//! # struct MyArray;
//! # #[async_trait(?Send)]
//! # impl VolumeDriver for MyArray {
//! #     async fn do_setup(&self) -> Result<(), DriverError> { Ok(()) }
//! #     async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> { Ok(Capabilities::default()) }
//! #     async fn create_volume(&self, _: &Volume) -> Result<(), DriverError> { Ok(()) }
//! #     async fn delete_volume(&self, _: &Volume) -> Result<(), DriverError> { Ok(()) }
//! #     async fn create_export(&self, _: &Volume, _: &Connector) -> Result<(), DriverError> { Ok(()) }
//! #     async fn remove_export(&self, _: &Volume) -> Result<(), DriverError> { Ok(()) }
//! #     async fn initialize_connection(&self, _: &Volume, _: &Connector) -> Result<ConnectionInfo, DriverError> {
//! #         Ok(ConnectionInfo { driver_volume_type: "x".into(), data: Default::default() })
//! #     }
//! # }
//! proptest!(ProptestConfig::with_cases(4), |(sim in strategy::simulation(&["a", "b"], hours(1)))| {
//!     let report = sim.run(|_ctx| Ok(MyArray)).expect("runtime");
//!     // rekindle's invariants, then your own.
//!     prop_assert!(report.violations.is_empty(), "{:?}", report.violations);
//!     prop_assert_eq!(report.operations.failed, 0);
//! });
//! ```

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;

use super::{Action, Scripted, SimReport, Simulation};
use crate::driver::registry::AnyDriver;
use crate::driver::{DriverContext, DriverRegistry, DriverSpec, Kind, VolumeDriver};
use crate::engine::runtime::RuntimeError;
use crate::lifecycle::{DriverError, Policy};
use crate::plan::{BackendPlan, Plan};

/// `n` hours.
pub fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

/// The registry name your driver runs under in a simulation.
pub const DRIVER: &str = "yours";

/// One fault injected into a backend (rekindle's `fault_*` options, applied
/// around your driver's own behaviour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The first `n` setups fail (recoverable).
    FailSetups(u32),
    /// Setups fail until this long after the start (a backend not ready yet).
    ReadyAfter(Duration),
    /// The next `n` stats calls while Ready fail (health lost, set up again).
    FailStats(u32),
    /// Every setup hangs (until the setup timeout).
    SetupHangs,
    /// The first `n` setups panic.
    PanicSetups(u32),
    /// Every operation takes this long (drains then have work to wait for).
    OperationDelay(Duration),
}

impl Fault {
    fn option(&self) -> (&'static str, String) {
        match self {
            Fault::FailSetups(n) => ("fault_fail_setup_times", n.to_string()),
            Fault::ReadyAfter(d) => ("fault_ready_after", format!("{}s", d.as_secs())),
            Fault::FailStats(n) => ("fault_fail_stats", n.to_string()),
            Fault::SetupHangs => ("fault_setup_hang", "true".to_string()),
            Fault::PanicSetups(n) => ("fault_panic_setup_times", n.to_string()),
            Fault::OperationDelay(d) => ("fault_op_delay", format!("{}s", d.as_secs())),
        }
    }
}

/// What the environment does at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A user creates a volume on the backend with this index.
    CreateVolume(usize),
    /// The operator changes the backend's policy in the file (so a reload
    /// drains it and sets it up again) and sends SIGHUP.
    Reconfigure(usize),
    /// The operator breaks the file and sends SIGHUP (the reload is rejected).
    BreakConfig,
    /// SIGHUP with the file unchanged.
    Sighup,
}

/// One generated case: each backend's faults, the environment's script
/// (sorted by time), the duration and the jitter seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCase {
    /// Backend names with their faults.
    pub backends: Vec<(String, Vec<Fault>)>,
    /// `(offset from the start, step)`, sorted by offset.
    pub script: Vec<(Duration, Step)>,
    /// Virtual duration before the final graceful shutdown.
    pub duration: Duration,
    /// The jitter seed.
    pub seed: u64,
}

/// Faults of one backend: none to three.
pub fn faults(duration: Duration) -> impl Strategy<Value = Vec<Fault>> {
    let secs = duration.as_secs().max(2);
    let fault = prop_oneof![
        (1u32..6).prop_map(Fault::FailSetups),
        (1u64..secs / 2).prop_map(|s| Fault::ReadyAfter(Duration::from_secs(s))),
        (1u32..4).prop_map(Fault::FailStats),
        Just(Fault::SetupHangs),
        (1u32..3).prop_map(Fault::PanicSetups),
        (1u64..30).prop_map(|s| Fault::OperationDelay(Duration::from_secs(s))),
    ];
    proptest::collection::vec(fault, 0..3)
}

/// An environment script over `backends` (their count) within `duration`.
pub fn script(backends: usize, duration: Duration) -> impl Strategy<Value = Vec<(Duration, Step)>> {
    let secs = duration.as_secs().max(2);
    let last = backends.max(1);
    let step = prop_oneof![
        6 => (0..last).prop_map(Step::CreateVolume),
        2 => (0..last).prop_map(Step::Reconfigure),
        1 => Just(Step::BreakConfig),
        1 => Just(Step::Sighup),
    ];
    proptest::collection::vec(((1..secs).prop_map(Duration::from_secs), step), 0..24).prop_map(
        |mut script| {
            script.sort_by_key(|(at, _)| *at);
            script
        },
    )
}

/// Simulations of your driver on `backends` (volume backends of those
/// names) over `duration`: each backend's faults and the environment's
/// script. Shrinking drops steps and faults and simplifies the rest.
pub fn simulation(backends: &[&str], duration: Duration) -> impl Strategy<Value = SimCase> {
    let names: Vec<String> = backends.iter().map(|b| (*b).to_string()).collect();
    let count = names.len();
    (
        proptest::collection::vec(faults(duration), count),
        script(count, duration),
        any::<u64>(),
    )
        .prop_map(move |(faults, script, seed)| SimCase {
            backends: names.iter().cloned().zip(faults).collect(),
            script,
            duration,
            seed,
        })
}

impl SimCase {
    /// Runs this case with your volume driver (built by `factory` on every
    /// setup, behind rekindle's fault injection) on virtual time, every
    /// invariant checked at every step.
    ///
    /// # Errors
    /// Only if the runtime cannot start; what the run found is in the report
    /// (`violations`, `operations.failed`, ...).
    pub fn run<D: VolumeDriver + 'static>(
        &self,
        factory: impl Fn(&DriverContext) -> Result<D, DriverError> + 'static,
    ) -> Result<SimReport, RuntimeError> {
        let factory = Rc::new(factory);
        let registry = Rc::new(move || {
            let mut registry = DriverRegistry::with_builtin();
            let factory = factory.clone();
            registry.register_with_faults(Kind::Volume, DRIVER, &[], move |ctx| {
                factory(ctx).map(|d| AnyDriver::Volume(Rc::new(d)))
            });
            registry
        });
        self.simulation(registry).run()
    }

    fn plan(&self, reconfigured: &BTreeMap<usize, u32>) -> Plan {
        let backends = self
            .backends
            .iter()
            .enumerate()
            .map(|(index, (name, faults))| {
                let options = faults
                    .iter()
                    .map(|f| {
                        let (key, value) = f.option();
                        (key.to_string(), value)
                    })
                    .collect();
                let policy = Policy {
                    // Each reconfiguration is a different budget: a change.
                    reinit_driver_count: 3 + reconfigured.get(&index).copied().unwrap_or(0),
                    graceful_shutdown_timeout: Duration::from_secs(60),
                    ..Policy::default()
                };
                let spec = DriverSpec {
                    backend: name.clone(),
                    kind: Kind::Volume,
                    driver: DRIVER.to_string(),
                    options,
                    origin: None,
                };
                (name.clone(), BackendPlan { spec, policy })
            })
            .collect();
        Plan {
            host: "sim".to_string(),
            periodic_interval: Duration::from_secs(60),
            report_interval: Duration::from_secs(10),
            service_down_time: Duration::from_secs(60),
            backup_initialization_timeout: Duration::from_secs(120),
            graceful_shutdown_timeout: Duration::from_secs(60),
            jitter_seed: None,
            backends,
        }
    }

    /// The simulation this case describes, with drivers from `registry`.
    pub fn simulation(&self, registry: super::RegistryFactory) -> Simulation {
        let mut reconfigured = BTreeMap::new();
        let mut script = Vec::new();
        for (n, (at, step)) in self.script.iter().enumerate() {
            let at = *at;
            match step {
                Step::CreateVolume(index) => {
                    if let Some((name, _)) = self.backends.get(*index) {
                        script.push(Scripted {
                            at,
                            action: Action::CreateVolume {
                                backend: name.clone(),
                                volume: format!("volume-{n}"),
                            },
                        });
                    }
                }
                Step::Reconfigure(index) => {
                    *reconfigured.entry(*index).or_insert(0) += 1;
                    script.push(Scripted {
                        at,
                        action: Action::WriteConfig(Ok(self.plan(&reconfigured))),
                    });
                    script.push(Scripted {
                        at,
                        action: Action::Sighup,
                    });
                }
                Step::BreakConfig => {
                    script.push(Scripted {
                        at,
                        action: Action::WriteConfig(Err(
                            "cinder.conf: [DEFAULT] enabled_backends: broken on purpose".into(),
                        )),
                    });
                    script.push(Scripted {
                        at,
                        action: Action::Sighup,
                    });
                    // The operator fixes it a second later.
                    script.push(Scripted {
                        at: at + Duration::from_secs(1),
                        action: Action::WriteConfig(Ok(self.plan(&reconfigured))),
                    });
                }
                Step::Sighup => script.push(Scripted {
                    at,
                    action: Action::Sighup,
                }),
            }
        }
        script.sort_by_key(|s| s.at);
        Simulation {
            seed: self.seed,
            duration: self.duration,
            plan: self.plan(&BTreeMap::new()),
            script,
            registry,
            keep: None,
            plant_bug: false,
            progress: None,
        }
    }
}
