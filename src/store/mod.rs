//! The verdict store. Every verdict (milter, SMTP, HTTP check) becomes a [`Record`] (built by
//! `check`, next to the decision it records) that goes through a bounded channel
//! ([`Journal`]) to a writer task, which batches records into the store: SQLite for one host,
//! or PostgreSQL shared by a fleet (see [`Store`] and [`Location`]).
//!
//! The hot path only ever calls [`Journal::record`], which never waits. Mail is never held up
//! by the database (DESIGN.md, "side effects leave the hot path").
//!
//! Floors inside, lowest first (a file imports only from those below it):
//! - `model.rs`: the vocabulary both back ends share (filters, pages, answers, errors);
//!   `columns.rs`: a verdict's typed columns and packed document; `migrations.rs`: both
//!   back ends' schema steps;
//! - `sql.rs`: SQL written once for both (the [`Sql`](sql::Sql) trait, the dialect's
//!   fragments); `queries/`: every operation the dialects agree on, defined once;
//! - `sqlite/`, `postgres/`: each back end's connection, migrations, batch writes, and its
//!   side of `sql.rs`;
//! - `dispatch.rs`: the [`Store`] every caller uses, and the reconnecting [`Handle`];
//! - `journal.rs`, `writer.rs`, `copy.rs`: the hot path's queue, the writer task, `store copy`.

mod columns;
pub mod copy;
mod dispatch;
mod journal;
mod migrations;
mod model;
mod postgres;
mod queries;
mod spool;
mod sql;
mod sqlite;
mod writer;

pub use crate::auth::Transport;
pub use crate::check::{
    cut, message_id, DmarcEvent, Envelope, Recipients, Record, MAX_RCPT_LEN, MAX_STORED_RCPTS,
};
pub use crate::config::{Location, PgTarget, SslMode};
pub use dispatch::{Handle, Store, PRUNE_STEP};
pub use journal::Journal;
/// PostgreSQL's schema steps, for the tests that build a database of an earlier version.
#[doc(hidden)]
pub use migrations::POSTGRES as PG_MIGRATIONS;
pub use model::{
    Failing, FailureFilter, FailureInserted, Filter, GroupBy, HourCount, Inserted, Lease,
    MethodCounts, NewFailureReport, NewReport, NewRow, Overview, Page, Pruned, ReportFilter,
    SentReport, StoreError,
};
pub use postgres::{PgCounts, LIMITS_DEADLINE, PG_SCHEMA_VERSION};
pub use queries::readiness::ReportedRow;
pub use spool::{Spool, SpoolError};
pub use sqlite::SCHEMA_VERSION;
pub use writer::{spawn_writer, Writer, BATCH, LAST_WORDS};
