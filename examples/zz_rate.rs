use rekindle::check::*;
fn main() {
    let outer: usize = std::env::args().nth(1).map_or(3, |a| a.parse().unwrap());
    let inner: usize = std::env::args().nth(2).map_or(40, |a| a.parse().unwrap());
    let o = CheckOptions {
        max_attempts: 3,
        max_inflight: 2,
        backends: 1,
        ..CheckOptions::default()
    };
    for _ in 0..outer {
        let t = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..inner {
            n += check(&o).states;
        }
        println!("rate {:.0}", n as f64 / t.elapsed().as_secs_f64());
    }
}
