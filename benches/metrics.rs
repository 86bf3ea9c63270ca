//! Benchmark of the Prometheus metrics, measured against runs without them in the same run.
//! Prints metrics_render_10k_backends_ms, metrics_overhead_ratio, metrics_operation_timer_ns.
//!
//! `metrics_overhead_ratio`: operation round trips through a Ready driver
//! actor whose shell counts every notification into `Metrics` (as
//! `rekindle run` does), over the same without metrics, in alternating
//! pairs; the median pair is the figure (goal >= 0.97: metrics stay off the
//! actors' hot path). `metrics_operation_timer_ns` is what the control
//! socket adds per user operation (counted in, timed, counted out).

use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rekindle::actors::driver_actor::{Start, spec};
use rekindle::actors::{DriverActor, Operation};
use rekindle::driver::{Kind, Volume};
use rekindle::engine::clock::ServiceClock;
use rekindle::engine::runtime::run_real;
use rekindle::events::status::{BackendStatus, StatusBoard};
use rekindle::lifecycle::{Moment, Policy, StateName};
use rekindle::watch::metrics::{Format, Metrics};

#[path = "common/instant.rs"]
mod instant;
use instant::shell;

/// A Ready driver actor; with metrics counting its shell's notifications
/// when `metered`.
async fn ready_driver_actor(name: &str, metered: bool) -> (Addr<DriverActor>, Option<Rc<Metrics>>) {
    let shell = shell();
    let metrics = metered.then(|| {
        let metrics = Rc::new(Metrics::new(shell.board.clone(), shell.clock));
        let observed = metrics.clone();
        shell.notifier.on_notice(move |n| observed.observe(n));
        metrics
    });
    let addr = DriverActor::new(
        spec(name, Kind::Volume, "instant", &[]),
        Policy::default(),
        1,
        1,
        shell.clone(),
    )
    .start();
    addr.send(Start).await.expect("driver actor alive");
    while shell.board.backend(name).map(|b| b.state) != Some(StateName::Ready) {
        actix::clock::sleep(Duration::from_millis(1)).await;
    }
    (addr, metrics)
}

/// Operation round trips per second through a Ready driver actor.
async fn roundtrips(addr: &Addr<DriverActor>, n: u64) -> f64 {
    let volume = Volume::new("v", 1);
    let started = Instant::now();
    for _ in 0..n {
        addr.send(Operation::CreateVolume(volume.clone()))
            .await
            .expect("driver actor alive")
            .expect("operation succeeds");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Rendering the metrics of 10,000 backends (ms, median of 15).
fn render_10k_ms() -> (f64, usize) {
    let clock = ServiceClock::start();
    let board = StatusBoard::default();
    for i in 0..10_000u32 {
        let state = StateName::ALL[(i % 4) as usize];
        board.set_backend(
            BackendStatus {
                name: format!("backend-{i:05}"),
                kind: Kind::Volume,
                driver: "fault".to_string(),
                state,
                attempt: 0,
                max_attempts: Some(4),
                gave_up: false,
                last_error: None,
                next_retry: None,
                in_flight: 0,
                config: 1,
                stale_config: None,
                last_ready: None,
                changed_at: None,
            },
            Moment::ZERO,
        );
    }
    let metrics = Metrics::new(board, clock);
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..15 {
        let started = Instant::now();
        size = metrics.render(Format::Text).len();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    (median(&mut times), size)
}

const PAIRS: usize = 31;
const CHUNK: u64 = 20_000;

fn main() {
    let (render_ms, render_bytes) = render_10k_ms();
    let (mut ratios, timer_ns) = run_real(async move {
        let (plain, _) = ready_driver_actor("plain", false).await;
        let (metered, metrics) = ready_driver_actor("metered", true).await;
        let metrics = metrics.expect("metered");
        roundtrips(&plain, CHUNK).await;
        roundtrips(&metered, CHUNK).await;
        let mut ratios = Vec::new();
        for pair in 0..PAIRS {
            let (p, m) = if pair % 2 == 0 {
                let p = roundtrips(&plain, CHUNK).await;
                (p, roundtrips(&metered, CHUNK).await)
            } else {
                let m = roundtrips(&metered, CHUNK).await;
                (roundtrips(&plain, CHUNK).await, m)
            };
            ratios.push(m / p);
        }
        let n = 200_000u32;
        let started = Instant::now();
        for _ in 0..n {
            metrics.operation("volume create").ended("ok");
        }
        let timer_ns = started.elapsed().as_secs_f64() * 1e9 / f64::from(n);
        (ratios, timer_ns)
    })
    .expect("runtime");
    println!("metrics_render_10k_backends_ms: {render_ms:.2}");
    println!("metrics_render_10k_backends_bytes: {render_bytes}");
    println!("metrics_overhead_ratio: {:.3}", median(&mut ratios));
    println!("metrics_overhead_ratio_pair_min: {:.3}", ratios[0]);
    println!("metrics_operation_timer_ns: {timer_ns:.0}");
}
