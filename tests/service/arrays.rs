//! Drivers on pretend arrays that come and go, for the reload suites: each instance
//! numbered, set up and checked fine while its array is alive.

use super::*;

/// Storage arrays a test turns on and off, and which driver instance served
/// each operation.
#[derive(Default)]
pub(super) struct Arrays {
    pub(super) alive: RefCell<std::collections::BTreeSet<String>>,
    pub(super) built: std::cell::Cell<u32>,
    pub(super) served_by: RefCell<Vec<u32>>,
}

/// A volume driver on the array named by its `array` option: set up and
/// checked fine while that array is alive; each instance has a number.
pub(super) struct ArrayDriver {
    pub(super) arrays: Rc<Arrays>,
    pub(super) array: String,
    pub(super) instance: u32,
}

impl ArrayDriver {
    fn reachable(&self) -> Result<(), rekindle::lifecycle::DriverError> {
        if self.arrays.alive.borrow().contains(&self.array) {
            Ok(())
        } else {
            Err(rekindle::lifecycle::DriverError::backend(format!(
                "array {} does not answer",
                self.array
            )))
        }
    }
}

#[async_trait::async_trait(?Send)]
impl Script for ArrayDriver {
    async fn do_setup(&self) -> Result<(), rekindle::lifecycle::DriverError> {
        self.reachable()
    }
    async fn check_for_setup_error(&self) -> Result<(), rekindle::lifecycle::DriverError> {
        self.reachable()
    }
    async fn create_volume(&self, _: &Volume) -> Result<(), rekindle::lifecycle::DriverError> {
        self.arrays.served_by.borrow_mut().push(self.instance);
        Ok(())
    }
    async fn delete_volume(&self, _: &Volume) -> Result<(), rekindle::lifecycle::DriverError> {
        Ok(())
    }
}

pub(super) fn with_arrays(arrays: &Rc<Arrays>) -> DriverRegistry {
    let mut registry = DriverRegistry::with_builtin();
    let arrays = arrays.clone();
    use rekindle::driver::options::{OptionDecl, OptionDefault, Rule};
    const ARRAY: OptionDecl = OptionDecl::new(
        "array",
        Rule::Text,
        OptionDefault::Required,
        "the array the driver talks to",
    );
    registry.register(Kind::Volume, "array", &[ARRAY], move |ctx| {
        arrays.built.set(arrays.built.get() + 1);
        Ok(rekindle::driver::registry::AnyDriver::Volume(Rc::new(
            Scripted(ArrayDriver {
                arrays: arrays.clone(),
                array: ctx.spec.options.get("array").cloned().unwrap_or_default(),
                instance: arrays.built.get(),
            }),
        )))
    });
    registry
}

pub(super) fn on_array(name: &str, array: &str, rollback: bool) -> (String, BackendPlan) {
    (
        name.to_string(),
        BackendPlan {
            spec: spec(name, Kind::Volume, "array", &[("array", array)]),
            policy: Policy {
                reload_rollback: rollback,
                ..Policy::default()
            },
        },
    )
}
