//! The `fault` driver: a real volume and backup driver whose failures are configured
//! per backend (`fault_*` options), for demos, tests and simulations.
//!
//! Its options (all optional) are declared in [`OPTIONS`]: setup failures of
//! a chosen class, a ready-after delay, hangs, panics, failing stats,
//! operation delays, seeded flapping and outages at set times.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use actix::clock::{Instant, sleep};
use async_trait::async_trait;

use super::options::{OptionDecl, OptionDefault, OptionReader, Rule};
use super::{
    BackupDriver, BackupRecord, Capabilities, ConnectionInfo, Connector, DriverContext, Volume,
    VolumeDriver, VolumeId,
};
use crate::lifecycle::DriverError;

/// The options the `fault` driver reads (registered with its factory, and
/// added to a driver registered with
/// [`DriverRegistry::register_with_faults`](super::DriverRegistry::register_with_faults)).
/// For the backup service they are written `backup_fault_*` in `[DEFAULT]`.
pub const OPTIONS: &[OptionDecl] = &[
    OptionDecl::new(
        "fault_fail_setup_times",
        Rule::Whole {
            min: 0,
            max: u32::MAX as u64,
        },
        OptionDefault::Value("0"),
        "setup fails this many times, then succeeds",
    ),
    OptionDecl::new(
        "fault_ready_after",
        Rule::Duration { nonzero: false },
        OptionDefault::Unset,
        "setup fails until this long after the service started",
    ),
    OptionDecl::new(
        "fault_error",
        Rule::OneOf(&["recoverable", "config", "not_supported", "missing_library"]),
        OptionDefault::Value("recoverable"),
        "the class of the injected setup failures",
    ),
    OptionDecl::new(
        "fault_setup_hang",
        Rule::Bool,
        OptionDefault::Value("false"),
        "setup never returns (exercises `driver_init_timeout`)",
    ),
    OptionDecl::new(
        "fault_setup_delay",
        Rule::Duration { nonzero: false },
        OptionDefault::Value("0"),
        "each setup takes this long (a slow backend coming up)",
    ),
    OptionDecl::new(
        "fault_fail_stats",
        Rule::Whole {
            min: 0,
            max: u32::MAX as u64,
        },
        OptionDefault::Value("0"),
        "the next this many stats calls (volume) or health probes (backup) fail: health lost",
    ),
    OptionDecl::new(
        "fault_op_delay",
        Rule::Duration { nonzero: false },
        OptionDefault::Value("0"),
        "each operation takes this long",
    ),
    OptionDecl::new(
        "fault_op_hang",
        Rule::OneOf(&["never", "always", "while_down"]),
        OptionDefault::Value("never"),
        "operations never return: `always`, or `while_down` (during a flap's down phase or an outage); exercises `driver_operation_timeout`",
    ),
    OptionDecl::new(
        "fault_panic_setup_times",
        Rule::Whole {
            min: 0,
            max: u32::MAX as u64,
        },
        OptionDefault::Value("0"),
        "setup panics this many times (a driver bug, caught as a recoverable failure)",
    ),
    OptionDecl::new(
        "fault_flap_period",
        Rule::Duration { nonzero: true },
        OptionDefault::Unset,
        "the backend flaps: up and down for 0.5 to 1.5 periods each, starting up; while down, setup and stats fail",
    ),
    OptionDecl::new(
        "fault_flap_seed",
        Rule::Whole {
            min: 0,
            max: u64::MAX,
        },
        OptionDefault::Value("0"),
        "the seed of the flapping schedule (with `fault_flap_period`)",
    ),
    OptionDecl::new(
        "fault_outage",
        Rule::Periods,
        OptionDefault::Unset,
        "the backend is unreachable during these periods after the service started \
         (`10m..25m, 2h..3h`): stats calls, health probes, setups and setup checks fail",
    ),
];

/// Counters of one backend's fault driver, shared with tests.
#[derive(Debug, Default)]
pub struct Probe {
    /// `do_setup` calls.
    pub setup_calls: Cell<u32>,
    /// Setups running right now (a cancelled setup counts out when dropped).
    pub concurrent_setups: Cell<u32>,
    /// The most setups ever running at once (must stay 1).
    pub max_concurrent_setups: Cell<u32>,
    /// `get_volume_stats` calls.
    pub stats_calls: Cell<u32>,
    /// `create_export` calls, with the connector each received.
    pub exports: RefCell<Vec<(String, Connector)>>,
    /// `initialize_connection` calls.
    pub connections: Cell<u32>,
    /// Operations (create, delete, backup, ...) that ran.
    pub operations: Cell<u32>,
    /// `BackupDriver::probe` calls.
    pub health_probes: Cell<u32>,
    /// `BackupDriver::probe` calls that answered an error.
    pub health_probes_failed: Cell<u32>,
    /// The last health probe answered an error, and no probe, setup or
    /// setup check succeeded since: the driver is known unhealthy.
    pub health_failing: Cell<bool>,
    /// Operations that reached the driver while `health_failing` (must stay
    /// 0: a failed probe takes the backend out of service at once).
    pub operations_while_unhealthy: Cell<u32>,
}

/// Probes by backend name; survive driver rebuilds on reload.
#[derive(Debug, Clone, Default)]
pub struct Probes(Rc<RefCell<BTreeMap<String, Rc<Probe>>>>);

impl Probes {
    /// The probe of `backend`, created on first use.
    pub fn probe(&self, backend: &str) -> Rc<Probe> {
        self.0
            .borrow_mut()
            .entry(backend.to_string())
            .or_default()
            .clone()
    }
}

/// The `fault` driver.
#[derive(Debug)]
pub struct FaultDriver {
    backend: String,
    started: Instant,
    fail_setup_times: Cell<u32>,
    ready_after: Option<Duration>,
    error: fn(String) -> DriverError,
    setup_hang: bool,
    setup_delay: Duration,
    fail_stats: Cell<u32>,
    op_delay: Duration,
    op_hang: &'static str,
    panic_setup_times: Cell<u32>,
    flap: Option<Flap>,
    outages: Vec<(Duration, Duration)>,
    inner: Inner,
    volumes: RefCell<BTreeMap<VolumeId, Volume>>,
    exports: RefCell<BTreeMap<VolumeId, Connector>>,
    probe: Rc<Probe>,
}

impl FaultDriver {
    /// Builds the driver from `ctx.spec.options`, read through [`OPTIONS`];
    /// bad values are fatal `Config` errors naming the option.
    pub fn from_context(ctx: &DriverContext, probe: Rc<Probe>) -> Result<Self, DriverError> {
        let read = OptionReader::new("fault", OPTIONS, &ctx.spec);
        let error: fn(String) -> DriverError = match read.get("fault_error")? {
            "config" => |m| DriverError::Config(m.into()),
            "not_supported" => |m| DriverError::NotSupported(m.into()),
            "missing_library" => |m| DriverError::MissingLibrary(m.into()),
            _ => |m| DriverError::Backend(m.into()),
        };
        Ok(FaultDriver {
            backend: ctx.spec.backend.clone(),
            started: ctx.started,
            fail_setup_times: Cell::new(read.get("fault_fail_setup_times")?),
            ready_after: read.optional("fault_ready_after")?,
            error,
            setup_hang: read.get("fault_setup_hang")?,
            setup_delay: read.get("fault_setup_delay")?,
            fail_stats: Cell::new(read.get("fault_fail_stats")?),
            op_delay: read.get("fault_op_delay")?,
            op_hang: read.get("fault_op_hang")?,
            panic_setup_times: Cell::new(read.get("fault_panic_setup_times")?),
            flap: read
                .optional("fault_flap_period")?
                .map(|period| -> Result<Flap, DriverError> {
                    Ok(Flap {
                        period,
                        seed: read.get("fault_flap_seed")?,
                    })
                })
                .transpose()?,
            outages: read.optional("fault_outage")?.unwrap_or_default(),
            inner: Inner::Memory,
            volumes: RefCell::default(),
            exports: RefCell::default(),
            probe,
        })
    }

    async fn operation(&self) {
        self.probe.operations.set(self.probe.operations.get() + 1);
        if self.probe.health_failing.get() {
            let count = self.probe.operations_while_unhealthy.get();
            self.probe.operations_while_unhealthy.set(count + 1);
        }
        if !self.op_delay.is_zero() {
            sleep(self.op_delay).await;
        }
        let hangs = match self.op_hang {
            "always" => true,
            "while_down" => self.down().is_some(),
            _ => false,
        };
        if hangs {
            std::future::pending::<()>().await;
        }
    }

    async fn setup(&self) -> Result<(), DriverError> {
        self.probe.setup_calls.set(self.probe.setup_calls.get() + 1);
        let _running = SetupGuard::enter(&self.probe);
        if self.setup_hang {
            std::future::pending::<()>().await;
        }
        if !self.setup_delay.is_zero() {
            sleep(self.setup_delay).await;
        }
        let panics = self.panic_setup_times.get();
        if panics > 0 {
            self.panic_setup_times.set(panics - 1);
            panic!(
                "{}: injected driver panic in do_setup ({panics} left)",
                self.backend
            );
        }
        self.check_fault()?;
        let left = self.fail_setup_times.get();
        if left > 0 {
            self.fail_setup_times.set(left - 1);
            return Err((self.error)(format!(
                "{}: injected setup failure ({left} left)",
                self.backend
            )));
        }
        if let Some(after) = self.ready_after {
            let up_at = self.started + after;
            if Instant::now() < up_at {
                return Err((self.error)(format!(
                    "{}: backend not up yet (up {} after start)",
                    self.backend,
                    humantime::format_duration(after)
                )));
            }
        }
        Ok(())
    }
}

/// A seeded up/down schedule.
#[derive(Debug, Clone, Copy)]
struct Flap {
    period: Duration,
    seed: u64,
}

impl Flap {
    /// Up during even stretches, down during odd ones; each stretch lasts
    /// 0.5 to 1.5 periods, drawn from the seed. Pure in `since_start`.
    fn is_up(&self, since_start: Duration) -> bool {
        let mut rng = crate::lifecycle::Jitter::from_seed(self.seed);
        let period_ms = u64::try_from(self.period.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let target = u64::try_from(since_start.as_millis()).unwrap_or(u64::MAX);
        let mut elapsed = 0u64;
        let mut up = true;
        // Bounded: each stretch is at least half a period long.
        loop {
            let stretch = period_ms / 2 + rng.below(period_ms);
            elapsed = elapsed.saturating_add(stretch.max(1));
            if elapsed > target {
                return up;
            }
            up = !up;
        }
    }
}

/// Counts a setup in while it runs, out when it ends or is cancelled.
struct SetupGuard<'a>(&'a Probe);

impl<'a> SetupGuard<'a> {
    fn enter(probe: &'a Probe) -> Self {
        let now = probe.concurrent_setups.get() + 1;
        probe.concurrent_setups.set(now);
        probe
            .max_concurrent_setups
            .set(probe.max_concurrent_setups.get().max(now));
        SetupGuard(probe)
    }
}

impl Drop for SetupGuard<'_> {
    fn drop(&mut self) {
        self.0
            .concurrent_setups
            .set(self.0.concurrent_setups.get().saturating_sub(1));
    }
}

/// What a fault driver runs behind its injected faults.
#[derive(Clone, Default)]
pub enum Inner {
    /// An in-memory store (the plain `fault` driver).
    #[default]
    Memory,
    /// A real volume driver (simulating *your* driver under faults).
    Volume(Rc<dyn VolumeDriver>),
    /// A real backup driver.
    Backup(Rc<dyn BackupDriver>),
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Inner::Memory => "Memory",
            Inner::Volume(_) => "Volume",
            Inner::Backup(_) => "Backup",
        })
    }
}

impl FaultDriver {
    /// Puts `inner` behind this driver's injected faults.
    pub fn wrapping(mut self, inner: Inner) -> Self {
        self.inner = inner;
        self
    }

    fn flapped_down(&self) -> bool {
        self.flap
            .as_ref()
            .is_some_and(|flap| !flap.is_up(Instant::now().saturating_duration_since(self.started)))
    }

    /// Why the backend is unreachable right now (flapped down, in an
    /// outage), if it is.
    fn down(&self) -> Option<String> {
        if self.flapped_down() {
            return Some(format!("{}: backend flapped down", self.backend));
        }
        let since_start = Instant::now().saturating_duration_since(self.started);
        self.outages
            .iter()
            .find(|(start, end)| (*start..*end).contains(&since_start))
            .map(|(_, end)| {
                format!(
                    "{}: injected outage (until {} after start)",
                    self.backend,
                    humantime::format_duration(*end)
                )
            })
    }

    fn check_fault(&self) -> Result<(), DriverError> {
        match self.down() {
            Some(why) => Err((self.error)(why)),
            None => Ok(()),
        }
    }

    /// Marks the driver healthy again after a setup or check succeeded.
    fn set_up(&self, result: Result<(), DriverError>) -> Result<(), DriverError> {
        if result.is_ok() {
            self.probe.health_failing.set(false);
        }
        result
    }

    async fn stats_fault(&self) -> Result<(), DriverError> {
        self.probe.stats_calls.set(self.probe.stats_calls.get() + 1);
        if let Some(why) = self.down() {
            return Err(DriverError::backend(why));
        }
        let left = self.fail_stats.get();
        if left > 0 {
            self.fail_stats.set(left - 1);
            return Err(DriverError::backend(format!(
                "{}: injected stats failure",
                self.backend
            )));
        }
        Ok(())
    }
}

#[async_trait(?Send)]
impl VolumeDriver for FaultDriver {
    async fn do_setup(&self) -> Result<(), DriverError> {
        self.setup().await?;
        match &self.inner {
            Inner::Volume(d) => d.do_setup().await,
            _ => Ok(()),
        }
    }

    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        // A flapping backend that is down fails its check too (a rollback
        // to this instance is then refused).
        self.check_fault()?;
        match &self.inner {
            Inner::Volume(d) => d.check_for_setup_error().await,
            _ => Ok(()),
        }
    }

    async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> {
        self.stats_fault().await?;
        if let Inner::Volume(d) = &self.inner {
            return d.get_volume_stats().await;
        }
        let used: u64 = self.volumes.borrow().values().map(|v| v.size_bytes).sum();
        let total = 1 << 40;
        Ok(Capabilities {
            volume_backend_name: self.backend.clone(),
            driver_version: env!("CARGO_PKG_VERSION").to_string(),
            storage_protocol: "fault".to_string(),
            total_capacity_bytes: total,
            free_capacity_bytes: total.saturating_sub(used),
            extra: BTreeMap::new(),
        })
    }

    async fn create_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        self.operation().await;
        if let Inner::Volume(d) = &self.inner {
            return d.create_volume(volume).await;
        }
        self.volumes
            .borrow_mut()
            .insert(volume.id.clone(), volume.clone());
        Ok(())
    }

    async fn delete_volume(&self, volume: &Volume) -> Result<(), DriverError> {
        self.operation().await;
        if let Inner::Volume(d) = &self.inner {
            return d.delete_volume(volume).await;
        }
        self.volumes.borrow_mut().remove(&volume.id);
        Ok(())
    }

    async fn extend_volume(&self, volume: &Volume, new_size_bytes: u64) -> Result<(), DriverError> {
        self.operation().await;
        if let Inner::Volume(d) = &self.inner {
            return d.extend_volume(volume, new_size_bytes).await;
        }
        let mut volumes = self.volumes.borrow_mut();
        let kept = volumes
            .entry(volume.id.clone())
            .or_insert_with(|| volume.clone());
        kept.size_bytes = new_size_bytes;
        Ok(())
    }

    async fn create_export(
        &self,
        volume: &Volume,
        connector: &Connector,
    ) -> Result<(), DriverError> {
        self.operation().await;
        self.probe
            .exports
            .borrow_mut()
            .push((volume.id.to_string(), connector.clone()));
        if let Inner::Volume(d) = &self.inner {
            return d.create_export(volume, connector).await;
        }
        self.exports
            .borrow_mut()
            .insert(volume.id.clone(), connector.clone());
        Ok(())
    }

    async fn remove_export(&self, volume: &Volume) -> Result<(), DriverError> {
        self.operation().await;
        if let Inner::Volume(d) = &self.inner {
            return d.remove_export(volume).await;
        }
        self.exports.borrow_mut().remove(&volume.id);
        Ok(())
    }

    async fn initialize_connection(
        &self,
        volume: &Volume,
        connector: &Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        self.probe.connections.set(self.probe.connections.get() + 1);
        if let Inner::Volume(d) = &self.inner {
            return d.initialize_connection(volume, connector).await;
        }
        if !self.exports.borrow().contains_key(&volume.id) {
            return Err(DriverError::Other(
                format!("volume {} is not exported", volume.id).into(),
            ));
        }
        let mut data = BTreeMap::new();
        data.insert("backend".to_string(), self.backend.clone().into());
        data.insert("volume_id".to_string(), volume.id.as_str().into());
        Ok(ConnectionInfo {
            driver_volume_type: "fault".to_string(),
            data,
        })
    }

    async fn terminate_connection(
        &self,
        volume: &Volume,
        connector: &Connector,
    ) -> Result<(), DriverError> {
        self.operation().await;
        if let Inner::Volume(d) = &self.inner {
            return d.terminate_connection(volume, connector).await;
        }
        Ok(())
    }

    async fn ensure_exports(&self) -> Result<(), DriverError> {
        match &self.inner {
            Inner::Volume(d) => d.ensure_exports().await,
            _ => Ok(()),
        }
    }
}

#[async_trait(?Send)]
impl BackupDriver for FaultDriver {
    async fn do_setup(&self) -> Result<(), DriverError> {
        self.setup().await?;
        let result = match &self.inner {
            Inner::Backup(d) => d.do_setup().await,
            _ => Ok(()),
        };
        self.set_up(result)
    }

    async fn check_for_setup_error(&self) -> Result<(), DriverError> {
        // A flapping backend that is down fails its check too (a rollback
        // to this instance is then refused).
        self.check_fault()?;
        let result = match &self.inner {
            Inner::Backup(d) => d.check_for_setup_error().await,
            _ => Ok(()),
        };
        self.set_up(result)
    }

    async fn backup(&self, backup: &BackupRecord, volume: &Volume) -> Result<(), DriverError> {
        self.operation().await;
        match &self.inner {
            Inner::Backup(d) => d.backup(backup, volume).await,
            _ => Ok(()),
        }
    }

    async fn restore(&self, backup: &BackupRecord, volume: &Volume) -> Result<(), DriverError> {
        self.operation().await;
        match &self.inner {
            Inner::Backup(d) => d.restore(backup, volume).await,
            _ => Ok(()),
        }
    }

    async fn delete_backup(&self, backup: &BackupRecord) -> Result<(), DriverError> {
        self.operation().await;
        match &self.inner {
            Inner::Backup(d) => d.delete_backup(backup).await,
            _ => Ok(()),
        }
    }

    /// `fault_fail_stats`, `fault_flap_*` and `fault_outage` make the probe fail (the
    /// store lost while Ready), then the wrapped driver's own probe runs.
    /// Records the answer in [`Probe::health_failing`] (the simulator
    /// checks that no operation is accepted while it is set).
    async fn probe(&self) -> Result<(), DriverError> {
        self.probe
            .health_probes
            .set(self.probe.health_probes.get() + 1);
        let result = match self.stats_fault().await {
            Ok(()) => match &self.inner {
                Inner::Backup(d) => d.probe().await,
                _ => Ok(()),
            },
            Err(error) => Err(error),
        };
        self.probe.health_failing.set(result.is_err());
        if result.is_err() {
            let failed = self.probe.health_probes_failed.get();
            self.probe.health_probes_failed.set(failed + 1);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::driver_actor::spec;
    use crate::driver::Kind;
    use crate::engine::runtime::run_virtual;

    fn backup_driver(options: &[(&str, &str)]) -> (FaultDriver, Rc<Probe>) {
        let ctx = DriverContext {
            spec: spec("backup", Kind::Backup, "fault", options),
            started: Instant::now(),
            events: Default::default(),
        };
        let probe = Rc::new(Probe::default());
        let driver = FaultDriver::from_context(&ctx, probe.clone()).expect("valid options");
        (driver, probe)
    }

    fn record() -> BackupRecord {
        BackupRecord {
            id: "b1".to_string(),
            volume_id: "v1".to_string(),
            size_bytes: 1,
            progress: Default::default(),
        }
    }

    #[test]
    fn an_outage_fails_probes_and_setups_in_its_period_and_the_driver_remembers_it() {
        run_virtual(async {
            let (driver, probe) = backup_driver(&[("fault_outage", "10s..20s, 1m..2m")]);
            let volume = Volume::new("v1".to_string(), 1);
            assert!(
                BackupDriver::probe(&driver).await.is_ok(),
                "before the outage"
            );
            assert!(!probe.health_failing.get());
            sleep(Duration::from_secs(12)).await;
            let error = BackupDriver::probe(&driver)
                .await
                .expect_err("in the outage");
            assert!(
                error.to_string().contains("injected outage (until 20s"),
                "{error}"
            );
            assert!(probe.health_failing.get());
            assert!(BackupDriver::do_setup(&driver).await.is_err());
            assert!(BackupDriver::check_for_setup_error(&driver).await.is_err());
            assert!(probe.health_failing.get(), "a failed setup heals nothing");
            // An operation that reaches the driver now is counted.
            driver
                .backup(&record(), &volume)
                .await
                .expect("memory backup");
            assert_eq!(probe.operations_while_unhealthy.get(), 1);
            sleep(Duration::from_secs(8)).await;
            assert!(
                probe.health_failing.get(),
                "until a probe or setup succeeds"
            );
            BackupDriver::do_setup(&driver)
                .await
                .expect("after the outage");
            assert!(!probe.health_failing.get(), "a setup heals");
            driver
                .backup(&record(), &volume)
                .await
                .expect("memory backup");
            assert_eq!(probe.operations_while_unhealthy.get(), 1);
            sleep(Duration::from_secs(45)).await;
            assert!(BackupDriver::probe(&driver).await.is_err(), "second period");
            sleep(Duration::from_secs(60)).await;
            assert!(BackupDriver::probe(&driver).await.is_ok(), "a probe heals");
            assert!(!probe.health_failing.get());
            assert_eq!(
                (probe.health_probes.get(), probe.health_probes_failed.get()),
                (4, 2)
            );
        })
        .expect("runtime");
    }

    #[test]
    fn outage_periods_are_checked_by_their_rule() {
        let ctx = DriverContext {
            spec: spec(
                "backup",
                Kind::Backup,
                "fault",
                &[("fault_outage", "20s..10s")],
            ),
            started: Instant::now(),
            events: Default::default(),
        };
        let error = FaultDriver::from_context(&ctx, Rc::default()).expect_err("bad periods");
        assert!(error.to_string().contains("fault_outage"), "{error}");
    }
}
