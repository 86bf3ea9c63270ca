//! Watching rekindle (feature `http`): Prometheus metrics and the `/metrics`,
//! `/healthz`, `/readyz` listener.

pub mod http;
pub mod metrics;
