//! The PostgreSQL store, shared by a fleet of filter hosts: the same calls and answers as
//! SQLite's, with each verdict carrying the host that recorded it and every query answering
//! for the whole fleet. JSON lives in `jsonb`.
//!
//! The client is the `postgres` crate (the blocking face of `tokio-postgres`): the store
//! interface is synchronous, and every caller already runs it on the blocking pool, as for
//! SQLite. `conn.rs`: the connection and its migrations; `connect.rs`, the client settings from
//! the configured URL; `tls.rs`, TLS through rustls with ring; `write.rs`, the writer's
//! batches through one binary `COPY` each; `sql.rs`, the shared queries' side (parameters,
//! rows); `lease.rs`, the fleet-wide advisory locks; `limits.rs`, the abuse limits
//! the hosts share.

mod conn;
mod connect;
mod lease;
mod limits;
mod sql;
mod tls;
mod write;

pub use conn::{Postgres, PG_SCHEMA_VERSION};
pub use limits::{PgCounts, LIMITS_DEADLINE};
pub(super) use sql::{json_clean, text, Pg};
pub(super) use write::{VERDICT_COPY, VERDICT_COPY_TYPES};
