//! authmilter: an email-authentication filter.
//!
//! The library holds everything; `main.rs` is a thin CLI over it. The verification core
//! (`auth`, `policy`) knows nothing about transports: the milter, the SMTP front end and the
//! HTTP API all drive the same [`auth::Transaction`], so a message gets the same verdict
//! whichever door it came through.

pub mod auth;
pub mod bimi;
pub mod check;
pub mod config;
pub mod dates;
pub mod dns;
/// Entry points of the fuzz targets in `fuzz/`; not a supported API.
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod loadgen;
pub mod log_sink;
pub mod manpage;
pub mod metrics;
pub mod milter;
pub mod notify;
pub mod policy;
pub mod progress;
pub mod relay;
pub mod report;
pub mod runtime;
pub mod server;
pub mod sign;
pub mod smtp;
pub mod store;
pub mod tls;
