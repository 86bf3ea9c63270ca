//! DriverRegistry: each driver's factory and option declarations by name; checks a
//! backend's spec against them and builds its driver (invalid specs fail fatally).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use actix::clock::Instant;
use serde::Serialize;

use super::options::{OptionDecl, Place, SpecOrigin, SpecProblem, did_you_mean};
use super::{BackupDriver, VolumeDriver, fault};
use crate::lifecycle::{DriverError, Policy};

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

/// Everything needed to build one backend's driver. Two specs are equal when
/// backend, kind, driver and options are: `origin` is not compared.
#[derive(Debug, Clone, Eq, Serialize)]
pub struct DriverSpec {
    /// The backend's name (its config section).
    pub backend: String,
    /// Volume or backup.
    pub kind: Kind,
    /// The driver's registered name (`fault`, `qemu`, ...).
    pub driver: String,
    /// The driver's own options from the backend's section.
    pub options: BTreeMap<String, String>,
    /// Where the options were written (set by the config layer), so problems
    /// name file and section; `None` for specs built in code.
    #[serde(skip)]
    pub origin: Option<Arc<SpecOrigin>>,
}

impl PartialEq for DriverSpec {
    fn eq(&self, other: &Self) -> bool {
        self.backend == other.backend
            && self.kind == other.kind
            && self.driver == other.driver
            && self.options == other.options
    }
}

impl DriverSpec {
    /// A spec built in code (no origin).
    pub fn new(
        backend: impl Into<String>,
        kind: Kind,
        driver: impl Into<String>,
        options: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        DriverSpec {
            backend: backend.into(),
            kind,
            driver: driver.into(),
            options: options.into_iter().collect(),
            origin: None,
        }
    }
}

/// What a driver factory receives.
#[derive(Debug, Clone)]
pub struct DriverContext {
    /// The spec being built.
    pub spec: DriverSpec,
    /// When the service started (on the runtime's clock, virtual in tests).
    pub started: Instant,
    /// Where the driver reports what it did on its own (an export
    /// restarted); `DriverEvents::default()` drops them.
    pub events: super::DriverEvents,
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

    /// Runs `check_for_setup_error` alone (a set-aside instance checked
    /// before a rollback returns to it).
    pub async fn check(&self) -> Result<(), DriverError> {
        match self {
            AnyDriver::Volume(d) => d.check_for_setup_error().await,
            AnyDriver::Backup(d) => d.check_for_setup_error().await,
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

/// A registered driver: its factory and the options it declares.
#[derive(Clone)]
struct Entry {
    factory: Factory,
    options: Rc<[OptionDecl]>,
}

/// Options every volume backend's spec carries besides its driver's own.
const VOLUME_COMMON: [&str; 1] = ["volume_backend_name"];
/// Names a misspelt volume backend option may have meant besides the
/// driver's own (the section's other options).
const VOLUME_SECTION: [&str; 2] = ["volume_driver", "volume_backend_name"];
/// Names a misspelt `backup_*` option may have meant besides the driver's
/// own: the backup service's options in `[DEFAULT]`.
const BACKUP_SERVICE: [&str; 3] = [
    "backup_driver",
    "backup_periodic_initialization",
    "backup_initialization_timeout",
];

/// Builds drivers by `(kind, name)`. Embedders register their own drivers.
#[derive(Clone, Default)]
pub struct DriverRegistry {
    factories: BTreeMap<(Kind, String), Entry>,
    faults: fault::Probes,
}

impl DriverRegistry {
    /// A registry with rekindle's own drivers: `fault` (volumes and
    /// backups), and with their features `qemu` (volumes) and `posix`
    /// (backups), without durable export records.
    pub fn with_builtin() -> Self {
        let mut registry = DriverRegistry::default();
        #[cfg(feature = "qemu")]
        registry.register_qemu(None);
        registry.register_builtin_backups();
        registry
    }

    /// [`DriverRegistry::with_builtin`] whose `qemu` driver records its
    /// exports in `records` (so they survive restarts).
    #[cfg(feature = "sqlite")]
    pub fn with_records(records: Option<Rc<dyn crate::records::RecordStore>>) -> Self {
        let mut registry = DriverRegistry::default();
        #[cfg(feature = "qemu")]
        registry.register_qemu(records);
        #[cfg(not(feature = "qemu"))]
        drop(records);
        registry.register_builtin_backups();
        registry
    }

    #[cfg(feature = "qemu")]
    fn register_qemu(&mut self, records: Option<Rc<dyn crate::records::RecordStore>>) {
        self.register(Kind::Volume, "qemu", super::qemu::OPTIONS, move |ctx| {
            let driver = super::qemu::QemuDriver::from_context(ctx, records.clone())?;
            Ok(AnyDriver::Volume(Rc::new(driver)))
        });
    }

    /// `posix` (with its feature) and both `fault` drivers.
    fn register_builtin_backups(&mut self) {
        let registry = self;
        #[cfg(feature = "posix")]
        registry.register(Kind::Backup, "posix", super::posix::OPTIONS, |ctx| {
            Ok(AnyDriver::Backup(Rc::new(
                super::posix::PosixBackupDriver::from_context(ctx)?,
            )))
        });
        let probes = registry.faults.clone();
        registry.register(Kind::Volume, "fault", fault::OPTIONS, move |ctx| {
            let driver = fault::FaultDriver::from_context(ctx, probes.probe(&ctx.spec.backend))?;
            Ok(AnyDriver::Volume(Rc::new(driver)))
        });
        let probes = registry.faults.clone();
        registry.register(Kind::Backup, "fault", fault::OPTIONS, move |ctx| {
            let driver = fault::FaultDriver::from_context(ctx, probes.probe(&ctx.spec.backend))?;
            Ok(AnyDriver::Backup(Rc::new(driver)))
        });
    }

    /// Registers `factory` for `kind` drivers named `name`, reading the
    /// options `options` declares, replacing any earlier one. A spec with an
    /// option the declaration does not list, or a value its rule refuses,
    /// never reaches `factory`: [`DriverRegistry::build`] fails it first.
    pub fn register(
        &mut self,
        kind: Kind,
        name: &str,
        options: &[OptionDecl],
        factory: impl Fn(&DriverContext) -> Result<AnyDriver, DriverError> + 'static,
    ) {
        self.factories.insert(
            (kind, name.to_string()),
            Entry {
                factory: Rc::new(factory),
                options: options.into(),
            },
        );
    }

    /// Registers a driver of yours behind rekindle's fault injection: the
    /// backend's `fault_*` options (see [`fault`]) inject failures, hangs,
    /// panics and flapping in front of your driver. This is how
    /// `rekindle::sim` simulates your own drivers. The driver declares
    /// `options` plus [`fault::OPTIONS`].
    pub fn register_with_faults(
        &mut self,
        kind: Kind,
        name: &str,
        options: &[OptionDecl],
        factory: impl Fn(&DriverContext) -> Result<AnyDriver, DriverError> + 'static,
    ) {
        let probes = self.faults.clone();
        let mut all = options.to_vec();
        all.extend(
            fault::OPTIONS
                .iter()
                .filter(|f| !options.iter().any(|o| o.name == f.name)),
        );
        self.register(kind, name, &all, move |ctx| {
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

    /// Every registered driver with its declared options, by kind then name.
    pub fn drivers(&self) -> impl Iterator<Item = (Kind, &str, &[OptionDecl])> {
        self.factories
            .iter()
            .map(|((kind, name), entry)| (*kind, name.as_str(), &*entry.options))
    }

    /// The options driver `name` of `kind` declares, if it is registered.
    pub fn options(&self, kind: Kind, name: &str) -> Option<&[OptionDecl]> {
        self.factories
            .get(&(kind, name.to_string()))
            .map(|e| &*e.options)
    }

    /// Checks `spec` against its driver's declaration and returns every
    /// problem (empty if valid): an unknown driver (listing the known ones),
    /// an unknown option (with a "did you mean" among the driver's options
    /// and the section's other options), a bad value (naming the rule), a
    /// missing required option.
    pub fn check(&self, spec: &DriverSpec) -> Vec<SpecProblem> {
        let kind = spec.kind.as_str();
        let Some(entry) = self.factories.get(&(spec.kind, spec.driver.clone())) else {
            let known: Vec<&str> = self
                .factories
                .keys()
                .filter(|(k, _)| *k == spec.kind)
                .map(|(_, n)| n.as_str())
                .collect();
            return vec![SpecProblem::UnknownDriver {
                at: Place::of_driver(spec),
                kind,
                driver: spec.driver.clone(),
                known: known.join(", "),
            }];
        };
        let mut problems = Vec::new();
        for (key, value) in &spec.options {
            if spec.kind == Kind::Volume && VOLUME_COMMON.contains(&key.as_str()) {
                continue;
            }
            let at = Place::of(spec, key);
            match entry.options.iter().find(|d| d.name == key) {
                Some(decl) => {
                    if let Err(rule) = decl.rule.parse(value) {
                        problems.push(SpecProblem::BadValue {
                            at,
                            value: value.trim().to_string(),
                            rule,
                        });
                    }
                }
                None => {
                    let written = |name: &str| match spec.origin.as_deref() {
                        Some(origin) => super::options::written_name(origin, name),
                        None => name.to_string(),
                    };
                    let mut candidates: Vec<String> =
                        entry.options.iter().map(|d| written(d.name)).collect();
                    match spec.kind {
                        Kind::Volume => candidates.extend(
                            VOLUME_SECTION
                                .iter()
                                .chain(Policy::OPTIONS.iter().map(|(n, _)| n))
                                .map(|n| (*n).to_string()),
                        ),
                        Kind::Backup => {
                            candidates.extend(BACKUP_SERVICE.iter().map(|n| (*n).to_string()))
                        }
                    }
                    let suggestion =
                        did_you_mean(&at.option, candidates.iter().map(String::as_str))
                            .map(str::to_string);
                    problems.push(SpecProblem::UnknownOption {
                        at,
                        value: value.trim().to_string(),
                        driver: spec.driver.clone(),
                        kind,
                        suggestion,
                    });
                }
            }
        }
        for decl in entry.options.iter() {
            if decl.default == super::options::OptionDefault::Required
                && !spec.options.contains_key(decl.name)
            {
                problems.push(SpecProblem::Missing {
                    at: Place::of(spec, decl.name),
                    driver: spec.driver.clone(),
                    kind,
                    help: decl.help,
                });
            }
        }
        problems
    }

    /// Checks `new` as the reload of a backend running `running` (`None`:
    /// a new backend): every problem of [`DriverRegistry::check`], and, when
    /// the driver stays the same, each option declared not reloadable whose
    /// value (or default) changes.
    pub fn check_reload(&self, running: Option<&DriverSpec>, new: &DriverSpec) -> Vec<SpecProblem> {
        let mut problems = self.check(new);
        let (Some(old), true) = (running, problems.is_empty()) else {
            return problems;
        };
        if old.kind != new.kind || old.driver != new.driver {
            return problems;
        }
        let Some(decls) = self.options(new.kind, &new.driver) else {
            return problems;
        };
        for decl in decls.iter().filter(|d| !d.reloadable) {
            let effective = |spec: &DriverSpec| -> Option<(String, super::options::Value)> {
                let text = match (spec.options.get(decl.name), decl.default) {
                    (Some(v), _) => v.trim().to_string(),
                    (None, super::options::OptionDefault::Value(d)) => d.to_string(),
                    (None, _) => String::new(),
                };
                if text.is_empty() {
                    return Some((text, super::options::Value::Text(String::new())));
                }
                decl.rule.parse(&text).ok().map(|v| (text, v))
            };
            // A running value that does not parse never ran: nothing to keep.
            if let (Some((running, was)), Some((value, is))) = (effective(old), effective(new))
                && was != is
            {
                problems.push(SpecProblem::NotReloadable {
                    at: Place::of(new, decl.name),
                    value,
                    running,
                });
            }
        }
        problems
    }

    /// Builds the driver `ctx.spec` names, after [`DriverRegistry::check`]:
    /// a spec with problems fails with every one of them, as a fatal
    /// `NotSupported` (unknown driver) or `Config` error for this backend
    /// only.
    pub fn build(&self, ctx: &DriverContext) -> Result<AnyDriver, DriverError> {
        let problems = self.check(&ctx.spec);
        if !problems.is_empty() {
            return Err(SpecProblem::driver_error(&problems));
        }
        match self
            .factories
            .get(&(ctx.spec.kind, ctx.spec.driver.clone()))
        {
            Some(entry) => (entry.factory)(ctx),
            None => Err(DriverError::NotSupported(
                format!(
                    "{} driver `{}` is not registered",
                    ctx.spec.kind.as_str(),
                    ctx.spec.driver
                )
                .into(),
            )),
        }
    }

    /// Call counters of the `fault` driver of `backend` (for tests and the
    /// simulator).
    pub fn fault_probe(&self, backend: &str) -> Rc<fault::Probe> {
        self.faults.probe(backend)
    }

    /// Every backend's `fault` driver counters (shared, not copied: the
    /// simulator's recorder reads them while the run goes on).
    pub fn fault_probes(&self) -> fault::Probes {
        self.faults.clone()
    }
}
