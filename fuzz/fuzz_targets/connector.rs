//! cargo-fuzz target `connector`: see `rekindle::check::fuzz::connector`.
//! Run: `cargo fuzz run -s none connector -- -max_total_time=60`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rekindle::check::fuzz::connector(data);
});
