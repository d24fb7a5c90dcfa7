#![no_main]
//! Fuzz target `term`: see `erl_quorum::fuzz_api::term`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| erl_quorum::fuzz_api::term(data));
