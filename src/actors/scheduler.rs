//! Scheduler: the embedded default recipient of published capabilities; keeps the
//! latest capabilities per backend (what cinder-scheduler's host manager holds).

use std::collections::BTreeMap;

use actix::prelude::*;

use crate::driver::Capabilities;
use crate::lifecycle::Moment;

/// Capabilities a Ready volume driver published.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct CapabilitiesReport {
    /// The backend.
    pub backend: String,
    /// What it reported.
    pub capabilities: Capabilities,
    /// When (service time).
    pub at: Moment,
}

/// Asks for the latest capabilities of every backend.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "BTreeMap<String, (Moment, Capabilities)>")]
pub struct LatestCapabilities;

/// Forgets a removed backend.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ForgetBackend(pub String);

/// Keeps the latest capabilities per backend.
#[derive(Debug, Default)]
pub struct Scheduler {
    latest: BTreeMap<String, (Moment, Capabilities)>,
    reports: u64,
}

impl Actor for Scheduler {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
    }
}

impl Handler<CapabilitiesReport> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: CapabilitiesReport, _: &mut Context<Self>) {
        self.reports += 1;
        self.latest.insert(msg.backend, (msg.at, msg.capabilities));
    }
}

impl Handler<LatestCapabilities> for Scheduler {
    type Result = MessageResult<LatestCapabilities>;
    fn handle(&mut self, _: LatestCapabilities, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.latest.clone())
    }
}

impl Handler<ForgetBackend> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: ForgetBackend, _: &mut Context<Self>) {
        self.latest.remove(&msg.0);
    }
}
