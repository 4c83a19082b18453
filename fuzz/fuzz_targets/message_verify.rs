//! A message through the inbound check: DKIM and ARC verification, DMARC, policy, A-R.
#![no_main]
extern crate authmilter_fuzz;
use authmilter::fuzzing::Verify;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static HARNESS: LazyLock<Verify> = LazyLock::new(Verify::default);

fuzz_target!(|data: &[u8]| HARNESS.run(data));
