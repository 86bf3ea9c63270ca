//! SignalActor: turns SIGHUP into a reload request and SIGTERM/SIGINT into a graceful
//! shutdown request, as messages; it does nothing else (tests send the messages directly).

use actix::prelude::*;
use futures_util::stream;
use tokio::signal::unix::{SignalKind, signal};

/// What an operator asked for with a signal (or `rekindle reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum ControlSignal {
    /// SIGHUP: reload the config file.
    Reload,
    /// SIGTERM or SIGINT: drain and exit.
    Shutdown,
}

/// Listens for Unix signals and forwards them to `target`.
pub struct SignalActor {
    target: Recipient<ControlSignal>,
}

impl SignalActor {
    /// Forwards signals to `target` (the controller).
    pub fn new(target: Recipient<ControlSignal>) -> Self {
        SignalActor { target }
    }
}

impl Actor for SignalActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for (kind, message) in [
            (SignalKind::hangup(), ControlSignal::Reload),
            (SignalKind::terminate(), ControlSignal::Shutdown),
            (SignalKind::interrupt(), ControlSignal::Shutdown),
        ] {
            match signal(kind) {
                Ok(listener) => {
                    let signals = stream::unfold(listener, move |mut listener| async move {
                        listener.recv().await.map(|()| (message, listener))
                    });
                    ctx.add_stream(signals);
                }
                Err(error) => tracing::error!(%error, ?message, "cannot listen for signal"),
            }
        }
    }
}

impl StreamHandler<ControlSignal> for SignalActor {
    fn handle(&mut self, message: ControlSignal, _: &mut Context<Self>) {
        tracing::info!(?message, "signal received");
        // The controller coalesces bursts; do_send never drops a message to a
        // live actor.
        self.target.do_send(message);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // One listener ending must not stop the actor (and the others).
    }
}
