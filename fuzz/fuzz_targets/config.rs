//! The configuration file (TOML): parsing and validation.
#![no_main]
extern crate authmilter_fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| authmilter::fuzzing::config(data));
