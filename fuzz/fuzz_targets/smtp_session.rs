//! An SMTP conversation (command parser, session, DATA reader, AUTH) over loopback.
#![no_main]
extern crate authmilter_fuzz;
use authmilter::fuzzing::SmtpSession;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static HARNESS: LazyLock<SmtpSession> = LazyLock::new(SmtpSession::default);

fuzz_target!(|data: &[u8]| HARNESS.run(data));
