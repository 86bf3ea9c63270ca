//! cargo-fuzz target `step_events`: see `rekindle::check::fuzz::step_events`.
//! Run: `cargo fuzz run -s none step_events -- -max_total_time=60`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rekindle::check::fuzz::step_events(data);
});
