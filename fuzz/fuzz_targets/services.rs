#![no_main]
//! Fuzz target `services`: see `erl_quorum::fuzz_api::services`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| erl_quorum::fuzz_api::services(data));
