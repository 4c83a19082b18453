//! One connection to the PostgreSQL store: connecting (off the async threads), bringing the
//! schema up to date under an advisory lock, and the blocking client's lock.

use super::connect;
use super::lease;
use super::sql::Pg;
use crate::config::PgTarget;
use crate::store::migrations::POSTGRES as MIGRATIONS;
use crate::store::model::{Lease, StoreError};
use crate::store::sql::Sql;
use postgres::{Client, GenericClient};
use std::sync::{Mutex, MutexGuard};

/// The schema version this build writes to PostgreSQL.
pub const PG_SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Serializes migrations between hosts starting at once (an advisory lock key).
const MIGRATION_LOCK: i64 = 0x616d_0000;

/// The blocking client. It owns a small runtime of its own, which must not be dropped on an
/// async thread (tokio panics): when a runtime is around, the client is let go on a thread
/// of its own.
pub(in crate::store) struct Conn(Option<Client>);

impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.0.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                std::thread::spawn(move || drop(client));
            }
        }
    }
}

/// Runs `f` (which makes the client's own runtime) off the async threads when called on
/// one: connecting happens at start-up, from async code too.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    } else {
        f()
    }
}

/// Logs, once per database and process, that TLS to it does not authenticate the server
/// when it is not on this machine (issue 22: `prefer` can be downgraded to plain TCP without
/// a word).
fn warn_unverified(target: &PgTarget) {
    static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let Some(why) = target.unverified_tls() else {
        return;
    };
    let shown = target.redacted();
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if !warned.contains(&shown) {
        tracing::warn!(store = %shown, "TLS to the verdict store does not authenticate the server: {why}");
        warned.push(shown);
    }
}

/// One connection to a PostgreSQL store.
pub struct Postgres {
    /// The blocking client wants `&mut` for every call; the store interface reads through
    /// `&self` (a SQLite connection does), hence the lock (never contended: one caller).
    client: Mutex<Conn>,
    /// The host recorded with each verdict written through this connection.
    pub(in crate::store) host: String,
    url: String,
}

impl Postgres {
    /// Connects and brings the schema up to date.
    pub fn connect(target: &PgTarget) -> Result<Postgres, StoreError> {
        warn_unverified(target);
        let client = off_runtime(|| {
            let mut client = connect::client(target)?;
            migrate(&mut client)?;
            Ok(Conn(Some(client)))
        })
        .map_err(|e| match e {
            StoreError::TooNew { found, known, .. } => StoreError::TooNew {
                path: target.redacted(),
                found,
                known,
            },
            StoreError::Pg(source) => StoreError::PgOpen {
                url: target.redacted(),
                source,
            },
            other => other,
        })?;
        Ok(Postgres {
            client: Mutex::new(client),
            host: crate::config::machine_hostname(),
            url: target.redacted(),
        })
    }

    pub(in crate::store) fn client(&self) -> MutexGuard<'_, Conn> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.client().is_closed()
    }

    pub fn schema_version(&self) -> Result<usize, StoreError> {
        Ok(version(&mut **self.client())?)
    }

    /// Runs `f` (one of the shared queries) on the client.
    pub fn with_sql<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut Pg::new(&mut **self.client()))
    }

    /// Takes the fleet-wide lease for `job`, held by this session until released or
    /// disconnected (see `lease.rs`).
    pub fn try_lease(&self, job: Lease) -> Result<bool, StoreError> {
        lease::try_lease(&mut **self.client(), job)
    }

    pub fn release(&self, job: Lease) -> Result<(), StoreError> {
        lease::release(&mut **self.client(), job)
    }

    /// The URL (without password), for messages.
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn version(client: &mut impl GenericClient) -> Result<usize, postgres::Error> {
    let row = client.query_opt("SELECT version FROM schema_version", &[])?;
    Ok(row.map(|r| r.get::<_, i32>(0)).unwrap_or(0).max(0) as usize)
}

/// Applies the migrations the database lacks in one transaction, under an advisory lock so
/// that hosts starting together migrate once.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current = version(&mut tx)?;
    if current > PG_SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: String::new(),
            found: current,
            known: PG_SCHEMA_VERSION,
        });
    }
    if current == PG_SCHEMA_VERSION {
        return Ok(());
    }
    for sql in &MIGRATIONS[current..] {
        tx.batch_execute(sql)?;
    }
    tx.execute("DELETE FROM schema_version", &[])?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&(PG_SCHEMA_VERSION as i32)],
    )?;
    tx.commit()?;
    tracing::info!(
        from = current,
        to = PG_SCHEMA_VERSION,
        "verdict store schema migrated (PostgreSQL)"
    );
    Ok(())
}
