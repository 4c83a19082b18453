//! Integration tests: one binary, one module per area (see each module's doc comment).

mod arc_suite;
mod bench_milter;
mod cli;
mod common;
mod dkim_vectors;
mod dns_server;
mod dns_server_selftest;
mod dns_zone;
mod hostile;
mod http;
mod key_files;
mod milter;
mod milter_client;
mod miltertest;
mod pipeline;
mod postfix;
mod regressions;
mod serve;
mod signing;
mod signing_interop;
mod smtp_client;
mod smtp_front;
mod spf_suite;
mod submission;
