//! Fuzz target `yaml`: see `harness::yaml` (shared with the stable replay test).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::yaml(data));
