//! cargo-fuzz target `config`: see `rekindle::check::fuzz::config`.
//! Run: `cargo fuzz run -s none config -- -max_total_time=60`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rekindle::check::fuzz::config(data);
});
