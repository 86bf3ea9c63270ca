//! Runtimes: an actix `System` on a real clock, or on a paused (virtual) tokio clock
//! where timers fire at exact virtual instants and a 24 h scenario runs in milliseconds.

use std::future::Future;

use thiserror::Error;

/// The runtime could not be built.
#[derive(Debug, Error)]
#[error("cannot build the tokio runtime: {0}")]
pub struct RuntimeError(#[from] std::io::Error);

/// Runs `future` to completion in a fresh actix `System` on one
/// current-thread tokio runtime whose clock is paused: time advances only
/// when every task waits, straight to the next timer. One runtime means one
/// clock for every actor (separate arbiters would have separate clocks).
pub fn run_virtual<F: Future>(future: F) -> Result<F::Output, RuntimeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    Ok(actix::System::with_tokio_rt(move || rt).block_on(future))
}

/// Runs `future` in a fresh actix `System` on the real clock.
pub fn run_real<F: Future>(future: F) -> Result<F::Output, RuntimeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(actix::System::with_tokio_rt(move || rt).block_on(future))
}
