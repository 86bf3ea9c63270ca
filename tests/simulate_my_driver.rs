//! Property-based simulation of a user's own driver (feature `proptest`): a driver with a
//! planted bug is found by proptest over rekindle's strategies and shrunk to a tiny script.

#[path = "common/drivers.rs"]
mod drivers;

use drivers::{Script, Scripted};
use std::cell::Cell;
use std::rc::Rc;

use proptest::test_runner::{Config, TestCaseError, TestError, TestRng, TestRunner};
use rekindle::sim::strategy::{self, Step, hours};
use rekindle::{DriverError, Volume};

/// An array driver with a planted bug: after it has been set up a second
/// time (a re-initialization or a reload) it forgets its session, and every
/// volume it creates from then on fails.
struct Forgetful {
    setups: Rc<Cell<u32>>,
}

#[async_trait::async_trait(?Send)]
impl Script for Forgetful {
    async fn do_setup(&self) -> Result<(), DriverError> {
        self.setups.set(self.setups.get() + 1);
        Ok(())
    }
    async fn create_volume(&self, _: &Volume) -> Result<(), DriverError> {
        if self.setups.get() > 1 {
            return Err(DriverError::backend("session expired"));
        }
        Ok(())
    }
    async fn delete_volume(&self, _: &Volume) -> Result<(), DriverError> {
        Ok(())
    }
}

/// Runs a case with the planted bug; rekindle's invariants and the user's
/// own ("no volume create fails") must hold.
fn check(sim: &strategy::SimCase) -> Result<(), TestCaseError> {
    // One counter per backend instance: the driver is built once per setup,
    // so the count lives outside, keyed by backend.
    let counters: Rc<std::cell::RefCell<std::collections::BTreeMap<String, Rc<Cell<u32>>>>> =
        Rc::default();
    let report = sim
        .run(move |ctx| {
            let setups = counters
                .borrow_mut()
                .entry(ctx.spec.backend.clone())
                .or_default()
                .clone();
            Ok(Scripted(Forgetful { setups }))
        })
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    if !report.violations.is_empty() {
        return Err(TestCaseError::fail(format!(
            "rekindle invariant: {:?}",
            report.violations
        )));
    }
    if report.operations.failed > 0 {
        return Err(TestCaseError::fail(format!(
            "{} volume creates failed",
            report.operations.failed
        )));
    }
    Ok(())
}

#[test]
fn a_planted_bug_is_found_and_shrunk_to_a_minimal_script() {
    let config = Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let result = runner.run(&strategy::simulation(&["a", "b"], hours(1)), |sim| {
        check(&sim)
    });
    let Err(TestError::Fail(reason, minimal)) = result else {
        panic!("the planted bug was not found: {result:?}");
    };
    // Minimal: one step that makes a second setup happen (a reconfigure,
    // or a fault that loses health) and one create after it.
    let faults: usize = minimal.backends.iter().map(|(_, f)| f.len()).sum();
    assert!(
        minimal.script.len() + faults <= 3,
        "not shrunk ({reason}): {minimal:#?}"
    );
    assert!(
        minimal
            .script
            .iter()
            .any(|(_, step)| matches!(step, Step::CreateVolume(_))),
        "{minimal:#?}"
    );
    // The shrunk case still fails, and the same case with a correct driver
    // passes: the failure is the driver's, not rekindle's.
    assert!(check(&minimal).is_err());
    let fixed = minimal
        .run(|_| {
            Ok(Scripted(Forgetful {
                setups: Rc::new(Cell::new(0)),
            }))
        })
        .expect("runtime");
    assert!(fixed.violations.is_empty(), "{:?}", fixed.violations);
    assert_eq!(fixed.operations.failed, 0);
    assert!(
        fixed.operations.done > 0,
        "the creates ran: {:?}",
        fixed.operations
    );
}
