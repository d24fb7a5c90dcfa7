#![no_main]
//! Fuzz target `handshake`: see `erl_quorum::fuzz_api::handshake`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| erl_quorum::fuzz_api::handshake(data));
