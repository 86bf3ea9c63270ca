//! Publisher: every `periodic_interval` ticks every driver actor (Ready ones publish
//! capabilities, due failed ones re-initialize); a full mailbox is counted, not hidden.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;

use super::driver_actor::{DriverActor, Tick};

/// Adds (or replaces) a driver to tick.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Track(pub String, pub Addr<DriverActor>);

/// Stops ticking a driver.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Untrack(pub String);

/// Ticks every tracked driver now (tests and `rekindle sim` use it too).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct TickNow;

/// The periodic capability publisher.
pub struct Publisher {
    interval: Duration,
    drivers: BTreeMap<String, Addr<DriverActor>>,
    ticks: u64,
    skipped: u64,
}

impl Publisher {
    /// A publisher ticking every `interval` (`periodic_interval`).
    pub fn new(interval: Duration) -> Self {
        Publisher {
            interval,
            drivers: BTreeMap::new(),
            ticks: 0,
            skipped: 0,
        }
    }

    fn tick_all(&mut self) {
        self.ticks += 1;
        for (name, addr) in &self.drivers {
            // A tick is idempotent: when a mailbox is full, the tick already
            // queued there does the same job. Counted and logged, never silent.
            match addr.try_send(Tick) {
                Ok(()) => {}
                // A backend that stopped (shutdown, removal) needs no tick.
                Err(actix::prelude::SendError::Closed(_)) => {}
                Err(actix::prelude::SendError::Full(_)) => {
                    self.skipped += 1;
                    tracing::warn!(
                        backend = %name,
                        skipped = self.skipped,
                        "publisher tick skipped: the backend's mailbox is full (the tick already queued does the same job)"
                    );
                }
            }
        }
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
        ctx.run_interval(self.interval, |act, _| act.tick_all());
    }
}

impl Handler<Track> for Publisher {
    type Result = ();
    fn handle(&mut self, msg: Track, _: &mut Context<Self>) {
        self.drivers.insert(msg.0, msg.1);
    }
}

impl Handler<Untrack> for Publisher {
    type Result = ();
    fn handle(&mut self, msg: Untrack, _: &mut Context<Self>) {
        self.drivers.remove(&msg.0);
    }
}

impl Handler<TickNow> for Publisher {
    type Result = ();
    fn handle(&mut self, _: TickNow, _: &mut Context<Self>) {
        self.tick_all();
    }
}
