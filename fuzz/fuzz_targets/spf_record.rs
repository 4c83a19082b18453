//! SPF records and macro-strings (RFC 7208 §4.6, §7).
#![no_main]
extern crate authmilter_fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| authmilter::fuzzing::spf_record(data));
