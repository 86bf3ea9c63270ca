//! SignalActor: turns SIGHUP into a reload request and SIGTERM/SIGINT into a graceful
//! shutdown request, as messages; and keeps those signals safe from process start.
//!
//! A signal's default action kills the process. The binary blocks the three
//! control signals as its first step ([`hold_control_signals`]), installs the
//! handlers ([`SignalListeners::install`], before the config is even read),
//! then unblocks them: a signal sent at any instant is either pending or
//! handled, never fatal. A listener keeps what arrived until the controller
//! is up, so a SIGHUP during start-up becomes one reload once the service runs
//! and a SIGTERM during start-up a graceful shutdown.

use actix::prelude::*;
use futures_util::stream;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// What an operator asked for with a signal (or `rekindle reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum ControlSignal {
    /// SIGHUP: reload the config file.
    Reload,
    /// SIGTERM or SIGINT: drain and exit.
    Shutdown,
}

/// The control signals and what each asks for.
const CONTROL_SIGNALS: [(libc::c_int, ControlSignal); 3] = [
    (libc::SIGHUP, ControlSignal::Reload),
    (libc::SIGTERM, ControlSignal::Shutdown),
    (libc::SIGINT, ControlSignal::Shutdown),
];

fn control_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set we own, with valid
    // signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for (number, _) in CONTROL_SIGNALS {
            libc::sigaddset(&mut set, number);
        }
        set
    }
}

fn mask_control_signals(how: libc::c_int) {
    let set = control_signal_set();
    // SAFETY: pthread_sigmask with a valid set and no old set to store.
    let rc = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    if rc != 0 {
        tracing::error!(rc, "cannot change the signal mask");
    }
}

/// Blocks SIGHUP, SIGTERM and SIGINT on the calling thread (and on every
/// thread it starts later): they stay pending instead of killing the process
/// until [`SignalListeners::install`] has handlers in place. Call it first
/// thing in `main`, before any other thread exists. Programs that do not run
/// the daemon undo it with [`release_control_signals`].
pub fn hold_control_signals() {
    mask_control_signals(libc::SIG_BLOCK);
}

/// Unblocks the control signals on the calling thread; pending ones are
/// delivered now (to handlers if installed, else with their default action).
pub fn release_control_signals() {
    mask_control_signals(libc::SIG_UNBLOCK);
}

/// Handlers for the control signals, installed and listening; what arrives
/// is kept until a [`SignalActor`] takes the listeners.
pub struct SignalListeners {
    listeners: Vec<(Signal, ControlSignal)>,
}

impl SignalListeners {
    /// Installs handlers for SIGHUP, SIGTERM and SIGINT, then releases them
    /// (see [`hold_control_signals`]). Must run inside a tokio runtime.
    ///
    /// Errors: the OS refused a handler (the signals stay blocked then, so
    /// they still cannot kill the process).
    pub fn install() -> std::io::Result<Self> {
        let mut listeners = Vec::with_capacity(CONTROL_SIGNALS.len());
        for (number, message) in CONTROL_SIGNALS {
            listeners.push((signal(SignalKind::from_raw(number))?, message));
        }
        release_control_signals();
        Ok(SignalListeners { listeners })
    }
}

/// Listens for Unix signals and forwards them to `target`.
pub struct SignalActor {
    target: Recipient<ControlSignal>,
    listeners: Option<SignalListeners>,
}

impl SignalActor {
    /// Forwards signals to `target` (the controller), installing the
    /// handlers when started.
    pub fn new(target: Recipient<ControlSignal>) -> Self {
        SignalActor {
            target,
            listeners: None,
        }
    }

    /// Forwards what `listeners` caught (including signals that arrived
    /// before this actor existed) and everything after to `target`.
    pub fn with_listeners(target: Recipient<ControlSignal>, listeners: SignalListeners) -> Self {
        SignalActor {
            target,
            listeners: Some(listeners),
        }
    }
}

impl Actor for SignalActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let listeners = match self.listeners.take() {
            Some(listeners) => listeners,
            None => match SignalListeners::install() {
                Ok(listeners) => listeners,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for signals");
                    return;
                }
            },
        };
        for (listener, message) in listeners.listeners {
            let signals = stream::unfold(listener, move |mut listener| async move {
                listener.recv().await.map(|()| (message, listener))
            });
            ctx.add_stream(signals);
        }
    }
}

impl StreamHandler<ControlSignal> for SignalActor {
    fn handle(&mut self, message: ControlSignal, _: &mut Context<Self>) {
        match message {
            ControlSignal::Reload => tracing::info!("SIGHUP received: reloading the config file"),
            ControlSignal::Shutdown => {
                tracing::info!("SIGTERM or SIGINT received: draining, then exiting")
            }
        }
        // The controller coalesces bursts; do_send never drops a message to a
        // live actor.
        self.target.do_send(message);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // One listener ending must not stop the actor (and the others).
    }
}
