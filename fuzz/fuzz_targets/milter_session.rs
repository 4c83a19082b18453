//! A milter conversation (decoder, commands, session) over an in-memory stream.
#![no_main]
extern crate authmilter_fuzz;
use authmilter::fuzzing::MilterSession;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static HARNESS: LazyLock<MilterSession> = LazyLock::new(MilterSession::default);

fuzz_target!(|data: &[u8]| HARNESS.run(data));
