//! DMARC aggregate reports as the importer receives them: a message, XML, gzip or zip.
#![no_main]
extern crate authmilter_fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| authmilter::fuzzing::dmarc_report(data));
