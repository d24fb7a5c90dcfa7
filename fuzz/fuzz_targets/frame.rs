#![no_main]
//! Fuzz target `frame`: see `erl_quorum::fuzz_api::frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| erl_quorum::fuzz_api::frame(data));
