#![no_main]
//! Fuzz target `atom_cache`: see `erl_quorum::fuzz_api::atom_cache`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| erl_quorum::fuzz_api::atom_cache(data));
