//! Operations on the driver actor: refused unless Ready, counted in flight, called on
//! the driver with its deadline, answered with the driver's result.

use super::*;

impl DriverActor {
    pub(super) fn driver_result(
        &self,
        operation: &'static str,
        result: Result<OperationOutput, DriverError>,
    ) -> Result<OperationOutput, OperationError> {
        result.map_err(|error| OperationError::Driver {
            operation,
            backend: self.spec.backend.clone(),
            error,
        })
    }

    /// Pairs `operation` with this backend's driver, or says why it cannot run.
    /// `refused`, for `operation`, in an operator's words as of now.
    pub(super) fn refusal(&self, operation: &'static str, refused: Refused) -> OperationError {
        let state = self.lifecycle.state();
        let last_error = state.last_error().map(ToString::to_string);
        let clock = &self.shell.clock;
        let (draining_for, until) = match state {
            crate::lifecycle::State::Draining(d) => (
                Some(match d.then {
                    crate::lifecycle::AfterDrain::Reload(_) => "a reload",
                    crate::lifecycle::AfterDrain::Remove => "its removal",
                    crate::lifecycle::AfterDrain::Shutdown => "shutdown",
                    crate::lifecycle::AfterDrain::HealthLost(_) => {
                        "setting up again (its backend was lost)"
                    }
                }),
                d.deadline.map(|(at, _)| clock.wall(at)),
            ),
            _ => (None, state.setup().map(|s| clock.wall(s.deadline))),
        };
        let situation = crate::events::refusal::Situation {
            state: state.name(),
            attempt: state.attempt(),
            gave_up: state.gave_up(),
            last_error: last_error.as_deref(),
            next_retry: state.retry().map(|r| clock.wall(r.at)),
            draining_for,
            until,
        };
        let now = self.shell.clock.wall(self.shell.clock.now());
        OperationError::Refused(Box::new(crate::events::refusal::Refusal::new(
            &self.spec.backend,
            operation,
            refused,
            &situation,
            now,
        )))
    }

    pub(super) fn driver_call(&self, operation: Operation) -> Result<DriverCall, OperationError> {
        let driver = self.driver.as_ref().map_err(|error| {
            // No driver could be built (its config failed its check): the
            // lifecycle has failed (or is failing) fatally, so this is a
            // refusal in the lifecycle's words.
            match self
                .lifecycle
                .step(Event::OperationStarted, self.shell.clock.now())
            {
                Err(refused) => self.refusal(operation.name(), refused),
                Ok(_) => OperationError::Driver {
                    operation: operation.name(),
                    backend: self.spec.backend.clone(),
                    error: error.clone(),
                },
            }
        })?;
        DriverCall::new(driver, operation).map_err(|WrongKind(operation)| {
            OperationError::WrongKind {
                backend: self.spec.backend.clone(),
                kind: self.spec.kind.as_str(),
                operation,
            }
        })
    }
}

/// The answer to an [`Operation`]: finished inline (an instant driver call),
/// or still running concurrently with other messages.
pub enum OperationResponse {
    /// Finished during the handler.
    Done(Result<OperationOutput, OperationError>),
    /// Running; answered when the driver call completes.
    Running(ResponseActFuture<DriverActor, Result<OperationOutput, OperationError>>),
}

impl actix::dev::MessageResponse<DriverActor, Operation> for OperationResponse {
    fn handle(
        self,
        ctx: &mut Context<DriverActor>,
        tx: Option<actix::dev::OneshotSender<Result<OperationOutput, OperationError>>>,
    ) {
        match self {
            OperationResponse::Done(result) => {
                if let Some(tx) = tx {
                    // The caller may have gone away; then nobody needs it.
                    let _ = tx.send(result);
                }
            }
            OperationResponse::Running(future) => {
                actix::dev::MessageResponse::<DriverActor, Operation>::handle(future, ctx, tx)
            }
        }
    }
}

impl Handler<Operation> for DriverActor {
    type Result = OperationResponse;

    fn handle(&mut self, operation: Operation, ctx: &mut Context<Self>) -> Self::Result {
        let name = operation.name();
        let watch = crate::actors::driver_call::Watch::of(&operation, self.lifecycle.policy());
        // Check the kind before counting the operation in.
        let call = match self.driver_call(operation) {
            Ok(call) => call,
            Err(error) => return OperationResponse::Done(Err(error)),
        };
        if let Err(refused) = self.count_operation(true, ctx) {
            return OperationResponse::Done(Err(self.refusal(name, refused)));
        }
        match self.calls.start(call) {
            // A driver call that completes on its first poll is finished
            // inline, without a round through the context (nobody can see
            // the count between in and out: it is not published).
            FirstPoll::Finished(result) => {
                if let Err(refused) = self.count_operation(false, ctx) {
                    tracing::error!(backend = %self.spec.backend, %refused, "operation finish refused");
                }
                OperationResponse::Done(self.driver_result(name, result))
            }
            // Otherwise it runs concurrently with other messages (actix
            // spawns a ResponseActFuture into the context); counted out when
            // done.
            // Its deadline is watched: past it, the call is abandoned, the
            // operation fails in words and the backend has lost its health.
            FirstPoll::Running(call) => {
                self.publish_in_flight();
                let epoch = match self.lifecycle.state() {
                    crate::lifecycle::State::Ready(r) => r.epoch,
                    _ => 0,
                };
                OperationResponse::Running(Box::pin(
                    AssertUnwindSafe(watch.run(name, call))
                        .catch_unwind()
                        .into_actor(self)
                        .map(move |result, act, ctx| {
                            let result = match result {
                                Ok(Ok(result)) => result,
                                Ok(Err(overrun)) => {
                                    tracing::error!(backend = %act.spec.backend, error = %overrun, "operation abandoned at its deadline");
                                    act.event_or_log(
                                        Event::OperationTimedOut {
                                            epoch,
                                            error: overrun.clone(),
                                        },
                                        ctx,
                                    );
                                    act.publish_in_flight();
                                    return act.driver_result(name, Err(overrun));
                                }
                                Err(panic) => Err(panicked(panic)),
                            };
                            if let Err(refused) = act.count_operation(false, ctx) {
                                tracing::error!(backend = %act.spec.backend, %refused, "operation finish refused");
                            }
                            act.publish_in_flight();
                            act.driver_result(name, result)
                        }),
                ))
            }
        }
    }
}
