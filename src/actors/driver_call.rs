//! One operation's driver call: the operation paired with a driver of the right kind,
//! the future that performs it, and the reusable heap slot that future runs in.
//!
//! A driver call that completes on its first poll (an instant driver) is
//! finished inline by the actor. Its future lives in a slot the actor keeps
//! and reuses, so such a call costs no allocation of ours; a call that is
//! still pending takes the slot with it and the next call allocates afresh.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_util::FutureExt;

use crate::driver::registry::AnyDriver;
use crate::driver::{BackupDriver, BackupRecord, Connector, Volume, VolumeDriver};
use crate::lifecycle::DriverError;

use super::operation::{Operation, OperationOutput};

/// What a driver call returns.
pub type CallResult = Result<OperationOutput, DriverError>;

/// A driver call still running after its first poll.
pub type RunningCall = Pin<Box<dyn Future<Output = CallResult>>>;

/// An operation paired with the driver that performs it: the kind is
/// checked when this is built, so performing it cannot mismatch.
pub enum DriverCall {
    /// `create_volume`.
    CreateVolume(Rc<dyn VolumeDriver>, Volume),
    /// `delete_volume`.
    DeleteVolume(Rc<dyn VolumeDriver>, Volume),
    /// `create_export` then `initialize_connection` (rolled back on failure).
    Attach(Rc<dyn VolumeDriver>, Volume, Box<Connector>),
    /// `initialize_connection` alone.
    InitializeConnection(Rc<dyn VolumeDriver>, Volume, Box<Connector>),
    /// `terminate_connection` then `remove_export`.
    Detach(Rc<dyn VolumeDriver>, Volume, Box<Connector>),
    /// `terminate_connection` alone.
    TerminateConnection(Rc<dyn VolumeDriver>, Volume, Box<Connector>),
    /// `extend_volume`.
    ExtendVolume(Rc<dyn VolumeDriver>, Volume, u64),
    /// `locate`.
    Locate(Rc<dyn VolumeDriver>, Volume),
    /// `backup`.
    Backup(Rc<dyn BackupDriver>, Box<BackupRecord>, Volume),
    /// `restore`.
    Restore(Rc<dyn BackupDriver>, Box<BackupRecord>, Volume),
    /// `delete_backup`.
    DeleteBackup(Rc<dyn BackupDriver>, Box<BackupRecord>),
}

/// Why an operation cannot be paired with a driver: it needs the other kind
/// of backend (names what was asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongKind(pub &'static str);

impl DriverCall {
    /// Pairs `operation` with `driver`, or says which kind it needed.
    pub fn new(driver: &AnyDriver, operation: Operation) -> Result<Self, WrongKind> {
        let volume = || driver.volume().ok_or(WrongKind("run volume operations"));
        let backup = || driver.backup().ok_or(WrongKind("run backup operations"));
        Ok(match operation {
            Operation::CreateVolume(v) => DriverCall::CreateVolume(volume()?, v),
            Operation::DeleteVolume(v) => DriverCall::DeleteVolume(volume()?, v),
            Operation::Attach {
                volume: v,
                connector,
            } => DriverCall::Attach(volume()?, v, connector),
            Operation::InitializeConnection {
                volume: v,
                connector,
            } => DriverCall::InitializeConnection(volume()?, v, connector),
            Operation::Detach {
                volume: v,
                connector,
            } => DriverCall::Detach(volume()?, v, connector),
            Operation::TerminateConnection {
                volume: v,
                connector,
            } => DriverCall::TerminateConnection(volume()?, v, connector),
            Operation::ExtendVolume(v, size) => DriverCall::ExtendVolume(volume()?, v, size),
            Operation::Locate(v) => DriverCall::Locate(volume()?, v),
            Operation::Backup {
                backup: b,
                volume: v,
            } => DriverCall::Backup(backup()?, b, v),
            Operation::Restore {
                backup: b,
                volume: v,
            } => DriverCall::Restore(backup()?, b, v),
            Operation::DeleteBackup(b) => DriverCall::DeleteBackup(backup()?, b),
        })
    }
}

/// Performs the call (one future type for every operation, so one slot
/// serves them all).
async fn perform(call: DriverCall) -> CallResult {
    use OperationOutput::{Connection, Done, Location};
    match call {
        DriverCall::CreateVolume(d, v) => d.create_volume(&v).await.map(|()| Done),
        DriverCall::DeleteVolume(d, v) => d.delete_volume(&v).await.map(|()| Done),
        DriverCall::Attach(d, volume, connector) => {
            d.create_export(&volume, &connector).await?;
            match d.initialize_connection(&volume, &connector).await {
                Ok(info) => Ok(Connection(Box::new(info))),
                Err(error) => {
                    // Cinder's rollback: the export must not outlive a
                    // failed attach.
                    if let Err(cleanup) = d.remove_export(&volume).await {
                        tracing::error!(volume = %volume.id, %cleanup, "rollback of create_export failed");
                    }
                    Err(error)
                }
            }
        }
        DriverCall::InitializeConnection(d, v, connector) => d
            .initialize_connection(&v, &connector)
            .await
            .map(|info| Connection(Box::new(info))),
        DriverCall::Detach(d, v, connector) => {
            d.terminate_connection(&v, &connector).await?;
            d.remove_export(&v).await.map(|()| Done)
        }
        DriverCall::TerminateConnection(d, v, connector) => {
            d.terminate_connection(&v, &connector).await.map(|()| Done)
        }
        DriverCall::ExtendVolume(d, v, size) => d.extend_volume(&v, size).await.map(|()| Done),
        DriverCall::Locate(d, v) => d.locate(&v).await.map(|l| Location(l.map(Box::new))),
        DriverCall::Backup(d, b, v) => d.backup(&b, &v).await.map(|()| Done),
        DriverCall::Restore(d, b, v) => d.restore(&b, &v).await.map(|()| Done),
        DriverCall::DeleteBackup(d, b) => d.delete_backup(&b).await.map(|()| Done),
    }
}

/// How a started call went on its first poll.
pub enum FirstPoll {
    /// It finished (a panic is already a recoverable [`DriverError`]).
    Finished(CallResult),
    /// It is still running; poll this to its end (panics still unwind out
    /// of it: the caller catches them).
    Running(RunningCall),
}

/// Starts driver calls in a reused heap slot (one per driver actor; made
/// at the first call, so a backend that never runs one costs no heap).
#[derive(Default)]
pub struct CallSlot {
    slot: Option<Box<dyn StartCall>>,
}

impl CallSlot {
    /// Starts `call` and polls it once (with a waker that does nothing: a
    /// pending call is polled again, with the real waker, by its runner).
    pub fn start(&mut self, call: DriverCall) -> FirstPoll {
        self.slot
            .get_or_insert_with(|| {
                Box::new(Reused {
                    perform,
                    spare: None,
                })
            })
            .start(call)
    }
}

/// [`CallSlot`]'s erased implementation: the future type of [`perform`]
/// cannot be named in a struct field, so it is a type parameter here.
trait StartCall {
    fn start(&mut self, call: DriverCall) -> FirstPoll;
}

/// A spare box for the call future. Between calls it holds the last
/// finished one, which owns nothing any more (an async fn drops its locals
/// before it returns) and is overwritten by the next call.
struct Reused<F, P> {
    perform: P,
    spare: Option<Pin<Box<F>>>,
}

impl<F, P> StartCall for Reused<F, P>
where
    F: Future<Output = CallResult> + 'static,
    P: Fn(DriverCall) -> F,
{
    fn start(&mut self, call: DriverCall) -> FirstPoll {
        let future = (self.perform)(call);
        let mut slot = match self.spare.take() {
            Some(mut spare) => {
                spare.set(future);
                spare
            }
            None => Box::pin(future),
        };
        let mut probe = Context::from_waker(futures_util::task::noop_waker_ref());
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| slot.as_mut().poll(&mut probe)));
        match polled {
            Ok(Poll::Ready(result)) => {
                self.spare = Some(slot);
                FirstPoll::Finished(result)
            }
            Ok(Poll::Pending) => FirstPoll::Running(slot),
            // A future that panicked is not polled or reused again.
            Err(panic) => FirstPoll::Finished(Err(panicked(panic))),
        }
    }
}

/// Runs a driver future, turning a panic into a recoverable error: a
/// panicking driver never kills its actor or the arbiter.
pub(super) async fn guarded<T>(
    call: impl Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(panicked(panic)))
}

/// A caught panic as a recoverable driver error.
pub(super) fn panicked(panic: Box<dyn std::any::Any + Send>) -> DriverError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    DriverError::Panicked(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Capabilities, ConnectionInfo};

    /// `create_volume` of volume "instant" returns at once, "slow" returns
    /// on its second poll, "panic" panics on its first poll and "late-panic"
    /// on its second.
    struct Scripted;

    /// Pending once, then ready.
    async fn yield_once() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await
    }

    #[async_trait::async_trait(?Send)]
    impl VolumeDriver for Scripted {
        async fn do_setup(&self) -> Result<(), DriverError> {
            Ok(())
        }
        async fn check_for_setup_error(&self) -> Result<(), DriverError> {
            Ok(())
        }
        async fn get_volume_stats(&self) -> Result<Capabilities, DriverError> {
            Ok(Capabilities::default())
        }
        async fn create_volume(&self, volume: &Volume) -> Result<(), DriverError> {
            match volume.id.as_str() {
                "panic" => panic!("driver bug on first poll"),
                "slow" => yield_once().await,
                "late-panic" => {
                    yield_once().await;
                    panic!("driver bug on second poll")
                }
                _ => {}
            }
            Ok(())
        }
        async fn delete_volume(&self, _: &Volume) -> Result<(), DriverError> {
            Ok(())
        }
        async fn create_export(&self, _: &Volume, _: &Connector) -> Result<(), DriverError> {
            Ok(())
        }
        async fn remove_export(&self, _: &Volume) -> Result<(), DriverError> {
            Ok(())
        }
        async fn initialize_connection(
            &self,
            _: &Volume,
            _: &Connector,
        ) -> Result<ConnectionInfo, DriverError> {
            Err(DriverError::Other("not exported".into()))
        }
        async fn terminate_connection(&self, _: &Volume, _: &Connector) -> Result<(), DriverError> {
            Ok(())
        }
    }

    fn create(id: &str) -> DriverCall {
        DriverCall::CreateVolume(Rc::new(Scripted), Volume::new(id, 1))
    }

    /// A slot as [`CallSlot::start`] makes, but inspectable.
    fn reused<F, P: Fn(DriverCall) -> F>(perform: P) -> Reused<F, P> {
        Reused {
            perform,
            spare: None,
        }
    }

    /// The address of the spare box, if there is one.
    fn spare_at<F, P>(slot: &Reused<F, P>) -> Option<*const F> {
        slot.spare.as_ref().map(|b| &**b as *const F)
    }

    fn finished(started: FirstPoll) -> CallResult {
        match started {
            FirstPoll::Finished(result) => result,
            FirstPoll::Running(_) => panic!("expected the call to finish on its first poll"),
        }
    }

    #[test]
    fn a_call_finished_on_its_first_poll_leaves_its_box_for_the_next() {
        let mut slot = reused(perform);
        assert_eq!(
            finished(slot.start(create("instant"))),
            Ok(OperationOutput::Done)
        );
        let first = spare_at(&slot).expect("a spare box after an inline call");
        assert_eq!(
            finished(slot.start(create("instant"))),
            Ok(OperationOutput::Done)
        );
        assert_eq!(spare_at(&slot), Some(first), "the same box, reused");
    }

    #[test]
    fn a_pending_call_takes_the_box_and_finishes_when_polled_again() {
        let mut slot = reused(perform);
        finished(slot.start(create("instant"))).expect("instant call");
        let FirstPoll::Running(running) = slot.start(create("slow")) else {
            panic!("a slow call is still running after its first poll");
        };
        assert_eq!(spare_at(&slot), None, "the running call took the box");
        assert_eq!(
            futures_util::FutureExt::now_or_never(running),
            Some(Ok(OperationOutput::Done))
        );
        // The next call allocates a fresh box and works as before.
        assert_eq!(
            finished(slot.start(create("instant"))),
            Ok(OperationOutput::Done)
        );
        assert!(spare_at(&slot).is_some());
    }

    #[test]
    fn a_panic_on_the_first_poll_is_a_recoverable_error_and_the_box_is_dropped() {
        let mut slot = reused(perform);
        finished(slot.start(create("instant"))).expect("instant call");
        let error = finished(slot.start(create("panic"))).expect_err("the driver panicked");
        assert_eq!(
            error,
            DriverError::Panicked("driver bug on first poll".into())
        );
        assert!(!error.is_fatal());
        assert_eq!(
            spare_at(&slot),
            None,
            "a box whose future panicked is not reused"
        );
        assert_eq!(
            finished(slot.start(create("instant"))),
            Ok(OperationOutput::Done)
        );
    }

    #[test]
    fn a_panic_after_the_first_poll_unwinds_out_of_the_running_call() {
        let mut slot = reused(perform);
        let FirstPoll::Running(running) = slot.start(create("late-panic")) else {
            panic!("still running after its first poll");
        };
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            futures_util::FutureExt::now_or_never(running)
        }));
        assert!(caught.is_err(), "the runner (the actor) catches this panic");
    }

    #[test]
    fn operations_are_paired_only_with_a_driver_of_their_kind() {
        let volume_driver = AnyDriver::Volume(Rc::new(Scripted));
        let backup = Operation::DeleteBackup(Box::new(BackupRecord {
            id: "b".into(),
            volume_id: "v".into(),
            size_bytes: 1,
            progress: Default::default(),
        }));
        assert_eq!(
            DriverCall::new(&volume_driver, backup).err(),
            Some(WrongKind("run backup operations"))
        );
        assert!(
            DriverCall::new(&volume_driver, Operation::CreateVolume(Volume::new("v", 1))).is_ok()
        );
    }
}

/// The deadline an operation's driver call runs under (the policy's
/// `driver_operation_timeout`, or, for a backup or restore, its progress
/// within `backup_progress_timeout`).
#[derive(Debug, Clone)]
pub enum Watch {
    /// The call must return within this long.
    Total(std::time::Duration),
    /// The call must report progress at least this often.
    Progress(crate::driver::backup::Progress, std::time::Duration),
}

impl Watch {
    /// The watch of `operation` under `policy`.
    pub fn of(operation: &Operation, policy: &crate::lifecycle::Policy) -> Watch {
        match operation {
            Operation::Backup { backup, .. } | Operation::Restore { backup, .. } => {
                Watch::Progress(backup.progress.clone(), policy.backup_progress_timeout)
            }
            _ => Watch::Total(policy.driver_operation_timeout),
        }
    }

    /// Resolves, with why in words, once the call has overrun: its total
    /// deadline passed, or it reported no progress for the progress window
    /// (checked eight times per window).
    async fn overrun(self, name: &str) -> DriverError {
        let words = |d: std::time::Duration| humantime::format_duration(d).to_string();
        match self {
            Watch::Total(limit) => {
                actix::clock::sleep(limit).await;
                no_answer(name, limit)
            }
            Watch::Progress(progress, window) => {
                let step = (window / 8).max(std::time::Duration::from_millis(1));
                let mut seen = (progress.done(), progress.bytes());
                let mut since = actix::clock::Instant::now();
                loop {
                    actix::clock::sleep(step).await;
                    let now = (progress.done(), progress.bytes());
                    if now != seen {
                        seen = now;
                        since = actix::clock::Instant::now();
                    } else if since.elapsed() >= window {
                        return DriverError::Other(
                            format!(
                                "{name}: the driver reported no progress for {} (backup_progress_timeout); the call was abandoned",
                                words(window)
                            )
                            .into(),
                        );
                    }
                }
            }
        }
    }

    /// Runs `call` under this watch: its result, or `Err` with the overrun
    /// in words (the call is then dropped: abandoned).
    pub async fn run(self, name: &str, call: RunningCall) -> Result<CallResult, DriverError> {
        let overrun = std::pin::pin!(self.overrun(name));
        match futures_util::future::select(call, overrun).await {
            futures_util::future::Either::Left((result, _)) => Ok(result),
            futures_util::future::Either::Right((error, _)) => Err(error),
        }
    }
}

/// `name` did not answer within `limit` (`driver_operation_timeout`).
fn no_answer(name: &str, limit: std::time::Duration) -> DriverError {
    DriverError::Other(
        format!(
            "{name}: the driver did not answer within {} (driver_operation_timeout); the call was abandoned",
            humantime::format_duration(limit)
        )
        .into(),
    )
}

/// Runs a driver call the lifecycle does not count as an operation (a
/// publisher tick's stats call or health probe) under `limit`: its result,
/// or the overrun in words (the call is dropped).
pub async fn within<T>(
    limit: std::time::Duration,
    name: &str,
    call: impl Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    actix::clock::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(no_answer(name, limit)))
}

#[cfg(test)]
mod deadline_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_call_past_its_limit_is_abandoned_in_words_and_one_within_it_answers() {
        crate::engine::runtime::run_virtual(async {
            let started = actix::clock::Instant::now();
            let hung: Result<(), DriverError> = within(
                Duration::from_secs(60),
                "get_volume_stats",
                std::future::pending(),
            )
            .await;
            assert_eq!(started.elapsed(), Duration::from_secs(60));
            let text = hung.expect_err("abandoned").to_string();
            assert_eq!(
                text,
                "get_volume_stats: the driver did not answer within 1m (driver_operation_timeout); the call was abandoned"
            );
            let quick = within(Duration::from_secs(60), "probe", async { Ok(7) }).await;
            assert_eq!(quick, Ok(7));
        })
        .expect("runtime");
    }
}
