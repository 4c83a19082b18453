//! SMTP AUTH PLAIN/LOGIN exchanges and passwd files.
#![no_main]
extern crate authmilter_fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| authmilter::fuzzing::smtp_auth(data));
