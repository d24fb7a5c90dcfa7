#![no_main]
//! Fuzz target `incoming`: see `erl_quorum::fuzz_api::incoming`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| erl_quorum::fuzz_api::incoming(data));
