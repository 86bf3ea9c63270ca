//! DriverRegistry: builds drivers by name (`volume_driver = fault`) from a backend's
//! options. Unknown names become a fatal `NotSupported` for that backend only.

use std::collections::BTreeMap;
use std::rc::Rc;

use actix::clock::Instant;
use serde::Serialize;

use super::{BackupDriver, VolumeDriver, fault};
use crate::lifecycle::DriverError;

/// Whether a backend hosts a volume or a backup driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A `cinder-volume` backend.
    Volume,
    /// The `cinder-backup` backend.
    Backup,
}

impl Kind {
    /// `"volume"` or `"backup"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Volume => "volume",
            Kind::Backup => "backup",
        }
    }
}

/// Everything needed to build one backend's driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverSpec {
    /// The backend's name (its config section).
    pub backend: String,
    /// Volume or backup.
    pub kind: Kind,
    /// The driver's registered name (`fault`, `qemu`, ...).
    pub driver: String,
    /// The driver's own options from the backend's section.
    pub options: BTreeMap<String, String>,
}

/// What a driver factory receives.
#[derive(Debug, Clone)]
pub struct DriverContext {
    /// The spec being built.
    pub spec: DriverSpec,
    /// When the service started (on the runtime's clock, virtual in tests).
    pub started: Instant,
}

/// A built driver.
#[derive(Clone)]
pub enum AnyDriver {
    /// A volume driver.
    Volume(Rc<dyn VolumeDriver>),
    /// A backup driver.
    Backup(Rc<dyn BackupDriver>),
}

impl AnyDriver {
    /// Runs `do_setup` then `check_for_setup_error`.
    pub async fn setup(&self) -> Result<(), DriverError> {
        match self {
            AnyDriver::Volume(d) => {
                d.do_setup().await?;
                d.check_for_setup_error().await
            }
            AnyDriver::Backup(d) => {
                d.do_setup().await?;
                d.check_for_setup_error().await
            }
        }
    }

    /// The volume driver, if this is one.
    pub fn volume(&self) -> Option<Rc<dyn VolumeDriver>> {
        match self {
            AnyDriver::Volume(d) => Some(d.clone()),
            AnyDriver::Backup(_) => None,
        }
    }

    /// The backup driver, if this is one.
    pub fn backup(&self) -> Option<Rc<dyn BackupDriver>> {
        match self {
            AnyDriver::Backup(d) => Some(d.clone()),
            AnyDriver::Volume(_) => None,
        }
    }
}

type Factory = Rc<dyn Fn(&DriverContext) -> Result<AnyDriver, DriverError>>;

/// Builds drivers by `(kind, name)`. Embedders register their own drivers.
#[derive(Clone, Default)]
pub struct DriverRegistry {
    factories: BTreeMap<(Kind, String), Factory>,
    faults: fault::Probes,
}

impl DriverRegistry {
    /// A registry with rekindle's own drivers: `fault` (volumes and
    /// backups), `qemu` (volumes) and `posix` (backups), without durable
    /// export records.
    pub fn with_builtin() -> Self {
        Self::with_records(None)
    }

    /// [`DriverRegistry::with_builtin`] whose `qemu` driver records its
    /// exports in `records` (so they survive restarts).
    pub fn with_records(records: Option<Rc<crate::records::Records>>) -> Self {
        let mut registry = DriverRegistry::default();
        registry.register(Kind::Volume, "qemu", move |ctx| {
            let driver = super::qemu::QemuDriver::from_context(ctx, records.clone())?;
            Ok(AnyDriver::Volume(Rc::new(driver)))
        });
        registry.register(Kind::Backup, "posix", |ctx| {
            Ok(AnyDriver::Backup(Rc::new(
                super::posix::PosixBackupDriver::from_context(ctx)?,
            )))
        });
        let probes = registry.faults.clone();
        registry.register(Kind::Volume, "fault", move |ctx| {
            let driver = fault::FaultDriver::from_context(ctx, probes.probe(&ctx.spec.backend))?;
            Ok(AnyDriver::Volume(Rc::new(driver)))
        });
        let probes = registry.faults.clone();
        registry.register(Kind::Backup, "fault", move |ctx| {
            let driver = fault::FaultDriver::from_context(ctx, probes.probe(&ctx.spec.backend))?;
            Ok(AnyDriver::Backup(Rc::new(driver)))
        });
        registry
    }

    /// Registers `factory` for `kind` drivers named `name`, replacing any
    /// earlier one.
    pub fn register(
        &mut self,
        kind: Kind,
        name: &str,
        factory: impl Fn(&DriverContext) -> Result<AnyDriver, DriverError> + 'static,
    ) {
        self.factories
            .insert((kind, name.to_string()), Rc::new(factory));
    }

    /// Registers a driver of yours behind rekindle's fault injection: the
    /// backend's `fault_*` options (see [`fault`]) inject failures, hangs,
    /// panics and flapping in front of your driver. This is how
    /// `rekindle::sim` simulates your own drivers.
    pub fn register_with_faults(
        &mut self,
        kind: Kind,
        name: &str,
        factory: impl Fn(&DriverContext) -> Result<AnyDriver, DriverError> + 'static,
    ) {
        let probes = self.faults.clone();
        self.register(kind, name, move |ctx| {
            let inner = match factory(ctx)? {
                AnyDriver::Volume(d) => fault::Inner::Volume(d),
                AnyDriver::Backup(d) => fault::Inner::Backup(d),
            };
            let wrapped = fault::FaultDriver::from_context(ctx, probes.probe(&ctx.spec.backend))?
                .wrapping(inner);
            Ok(match kind {
                Kind::Volume => AnyDriver::Volume(Rc::new(wrapped)),
                Kind::Backup => AnyDriver::Backup(Rc::new(wrapped)),
            })
        });
    }

    /// Builds the driver `ctx.spec` names. An unknown name is a fatal
    /// `NotSupported` error for this backend only.
    pub fn build(&self, ctx: &DriverContext) -> Result<AnyDriver, DriverError> {
        let key = (ctx.spec.kind, ctx.spec.driver.clone());
        match self.factories.get(&key) {
            Some(factory) => factory(ctx),
            None => {
                let known: Vec<&str> = self
                    .factories
                    .keys()
                    .filter(|(k, _)| *k == ctx.spec.kind)
                    .map(|(_, n)| n.as_str())
                    .collect();
                Err(DriverError::NotSupported(
                    format!(
                        "{} driver `{}` is not registered (known: {})",
                        ctx.spec.kind.as_str(),
                        ctx.spec.driver,
                        known.join(", ")
                    )
                    .into(),
                ))
            }
        }
    }

    /// Call counters of the `fault` driver of `backend` (for tests and the
    /// simulator).
    pub fn fault_probe(&self, backend: &str) -> Rc<fault::Probe> {
        self.faults.probe(backend)
    }
}
