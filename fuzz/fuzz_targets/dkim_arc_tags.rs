//! DKIM/ARC tag lists (RFC 6376 §3.2), ARC header helpers, DKIM key records.
#![no_main]
extern crate authmilter_fuzz;
use authmilter::sign::PrivateKey;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static KEY: LazyLock<PrivateKey> = LazyLock::new(|| {
    PrivateKey::from_pem(include_bytes!("../../testdata/keys/ed25519.pem")).expect("test key")
});

fuzz_target!(|data: &[u8]| {
    authmilter::fuzzing::tag_lists(data);
    authmilter::fuzzing::key_record(data, &KEY);
});
