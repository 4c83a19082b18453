//! Authentication-Results fields (RFC 8601): authserv-ids, and the fields claiming ours.
#![no_main]
extern crate authmilter_fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| authmilter::fuzzing::authentication_results(data));
