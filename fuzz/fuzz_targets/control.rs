#![no_main]
//! Fuzz target `control`: see `erl_quorum::fuzz_api::control`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| erl_quorum::fuzz_api::control(data));
