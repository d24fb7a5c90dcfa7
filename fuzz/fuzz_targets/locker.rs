#![no_main]
//! Fuzz target `locker`: see `erl_quorum::fuzz_api::locker`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| erl_quorum::fuzz_api::locker(data));
