//! Every store operation whose SQL the two dialects share, written once over [`Sql`]
//! (`../sql.rs`): the dispatching `Store` hands each a connection of either back end. What
//! stays apart is where the dialects really differ: writing a batch of verdicts (SQLite
//! `INSERT`s, PostgreSQL's binary `COPY`), migrations, and the fleet-wide leases.
//!
//! [`Sql`]: super::sql::Sql

pub mod failures;
pub mod overview;
pub mod readiness;
pub mod received;
pub mod rollup;
pub mod sent;
pub mod verdicts;
