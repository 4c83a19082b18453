//! The embedded SQLite store: opening a file (WAL), its migrations, and the writer's batched
//! inserts. The queries it shares with PostgreSQL are in `../queries/`, run through
//! [`Lite`] (`sql.rs`).
//!
//! One [`Sqlite`] is one connection (behind [`super::Store`]). The writer task owns one; the
//! HTTP API opens its own for reads. WAL mode lets the readers run while the writer commits.

use super::columns::Columns;
use super::migrations::SQLITE as MIGRATIONS;
use super::model::StoreError;
use super::queries::rollup::{self, Counts};
use crate::check::Record;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::time::Duration;

mod sql;
use super::sql::Sql;
use sql::Lite;

/// WAL pages between checkpoints (see [`Sqlite::open`]).
const WAL_CHECKPOINT_PAGES: i64 = 16_384;

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

pub struct Sqlite {
    pub(super) conn: Connection,
    /// The host recorded with each verdict written through this connection.
    pub(super) host: String,
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// Several connections opening one new file at once (the writer, the report importer,
    /// the report job, a command) can find it locked while another switches it to WAL, which
    /// SQLite reports at once rather than through the busy timeout: such an open is tried
    /// again, for up to about five seconds.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let mut tries = 0;
        loop {
            match Sqlite::open_once(path) {
                Err(StoreError::Open { source, .. })
                    if tries < 50
                        && source.sqlite_error_code()
                            == Some(rusqlite::ErrorCode::DatabaseBusy) =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Sqlite, StoreError> {
        let shown = path.display().to_string();
        let open_err = |source| StoreError::Open {
            path: shown.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // First, so that every statement below (switching to WAL included) waits for another
        // connection that holds the lock (the writer, the report importer and the report job
        // open the same file, new ones at the same moment), rather than failing at once.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        // WAL: readers (the HTTP API) do not block the writer. FULL: each commit (one batch)
        // syncs the WAL, so a batch committed survives a power cut (NORMAL syncs only at
        // checkpoints: up to the whole WAL lost). Checkpoints every 16,384 pages (64 MiB of
        // WAL, not SQLite's 1,000) copy a hot index page back once for many batches: the
        // batch that runs a checkpoint takes 100–150 ms instead of 40–130, and the writer
        // stores 40 % more rows a second (`bench/store.sh`, 300,000 records); the file is
        // cut back to 64 MiB after a checkpoint.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_size_limit", WAL_CHECKPOINT_PAGES * 4096)
            .map_err(open_err)?;
        // The default 2 MB page cache lets the verdicts' indexes fall out between batches
        // (each batch then reads them back from the OS): up to 32 MB per connection, used
        // only as pages are touched.
        conn.pragma_update(None, "cache_size", -32_768)
            .map_err(open_err)?;
        migrate(&mut conn).map_err(|e| match e {
            StoreError::Query(source) => open_err(source),
            StoreError::TooNew { found, known, .. } => StoreError::TooNew {
                path: shown.clone(),
                found,
                known,
            },
            other => other,
        })?;
        Ok(Sqlite {
            conn,
            host: crate::config::machine_hostname(),
        })
    }

    /// The schema version in the file.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        Ok(version(&self.conn)?)
    }

    /// Runs `f` (one of the shared queries) on the connection.
    pub fn with_sql<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut Lite(&self.conn))
    }

    /// Writes records in one transaction (one fsync per batch, not per message).
    pub fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let host = &self.host;
        let tx = self.conn.transaction()?;
        let mut counts = Counts::default();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO verdicts (received_at, transport, queue_id, message_id, client_ip, \
                 helo, mail_from, rcpts, from_domain, verdict, dmarc, duration_us, document, \
                 rcpt_count, dmarc_domain, dmarc_event, host, spf, spf_domain, dkim, \
                 dkim_domain, arc, policy, disposition) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                 ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            )?;
            for r in records {
                let c = Columns::of(&r.document);
                counts.add(r, &c);
                stmt.execute(params![
                    r.received_at,
                    r.transport.as_str(),
                    r.queue_id,
                    r.message_id,
                    r.client_ip,
                    r.helo,
                    r.mail_from,
                    serde_json::to_string(&r.rcpts).unwrap_or_else(|_| "[]".into()),
                    r.from_domain,
                    r.verdict,
                    r.dmarc,
                    r.duration.as_micros() as i64,
                    r.document.to_string(),
                    r.rcpt_count as i64,
                    r.dmarc_event.as_ref().map(|e| &e.policy.domain),
                    r.dmarc_event
                        .as_ref()
                        .and_then(|e| serde_json::to_string(e).ok()),
                    host,
                    c.spf,
                    c.spf_domain,
                    c.dkim,
                    c.dkim_domain,
                    c.arc,
                    c.policy,
                    c.disposition,
                ])?;
            }
        }
        rollup::write(&mut Lite(&tx), &counts)?;
        tx.commit()?;
        Ok(())
    }
}

fn version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.query_row("SELECT version FROM schema_version", [], |r| {
        r.get::<_, i64>(0)
    })
    .optional()
    .map(|v| v.unwrap_or(0) as usize)
}

/// Applies the migrations the file lacks, each with its version bump in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current = version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: String::new(),
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        // Several connections may open a new file at once (the writer, the report importer,
        // the report job): the write lock is taken first and the version read again under
        // it, so each migration runs once.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if version(&tx)? > i {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [(i + 1) as i64],
        )?;
        tx.commit()?;
        tracing::info!(version = i + 1, "verdict store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Filter, Store, Transport};
    use serde_json::{json, Value};

    // A file written before hosts were recorded (schema 3) is upgraded in place: its rows
    // stay, with no host; new rows carry the connection's.
    #[test]
    fn schema_3_file_gains_the_host_column_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                .unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                "INSERT INTO schema_version VALUES (3);
                 INSERT INTO verdicts (received_at, transport, client_ip, rcpts, verdict,
                     duration_us, document) VALUES (1, 'milter', '192.0.2.1', '[]', 'accept',
                     5, '{}');",
            )
            .unwrap();
        }
        let mut s = Sqlite::open(&path).unwrap();
        s.host = "mx-new".into();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.insert_batch(&[Record {
            received_at: 2,
            transport: Transport::Smtp,
            queue_id: None,
            message_id: None,
            client_ip: "192.0.2.2".into(),
            helo: None,
            mail_from: None,
            rcpts: vec![],
            rcpt_count: 0,
            from_domain: None,
            verdict: "accept".into(),
            dmarc: None,
            duration: Duration::ZERO,
            document: json!({}),
            dmarc_event: None,
        }])
        .unwrap();
        let s = Store::Sqlite(s);
        let page = s.list(&Filter::default(), 10).unwrap();
        let hosts: Vec<_> = page.items.iter().map(|i| i["host"].clone()).collect();
        assert_eq!(hosts, [json!("mx-new"), Value::Null]);
        let mine = Filter {
            host: Some("mx-new".into()),
            ..Filter::default()
        };
        assert_eq!(s.list(&mine, 10).unwrap().items.len(), 1);
    }

    // A file written before the typed columns (schema 5, made by the previous release's
    // migrations and its row format) is upgraded in place: the columns are filled from the
    // stored documents, and the rows read as before (list, overview, DMARC events).
    #[test]
    fn schema_5_rows_gain_their_columns_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v5.sqlite");
        let event = r#"{"policy":{"domain":"old.example","adkim":"r","aspf":"r","p":"reject","sp":"reject","np":"reject","testing":false,"fo":"0","rua":[["mailto:d@old.example",0]],"ruf":[]},"header_from":"old.example","envelope_from":"old.example","envelope_to":"example.net","disposition":"none","dkim_aligned":true,"spf_aligned":false,"reasons":[],"dkim":[["old.example","s1","pass"]],"spf":["old.example","mfrom","fail"]}"#;
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                .unwrap();
            for sql in &MIGRATIONS[..5] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch("INSERT INTO schema_version VALUES (5)")
                .unwrap();
            let old = |at: i64, doc: &str, event: Option<&str>| {
                conn.execute(
                    "INSERT INTO verdicts (received_at, transport, client_ip, rcpts, verdict,
                     dmarc, duration_us, document, rcpt_count, from_domain, dmarc_domain,
                     dmarc_event, host)
                     VALUES (?1, 'milter', '192.0.2.1', '[\"b@example.net\"]', 'accept',
                     'pass', 5, ?2, 1, 'old.example', ?3, ?4, 'mx-old')",
                    rusqlite::params![at, doc, event.map(|_| "old.example"), event],
                )
                .unwrap();
            };
            old(
                1_000,
                r#"{"verdict":"accept","spf":{"result":"fail","domain":"old.example"},
                    "dkim":[{"result":"fail","domain":"x.example"},
                            {"result":"pass","domain":"old.example"}],
                    "arc":{"result":"none"},
                    "dmarc":{"result":"pass","policy":"reject","disposition":"none"}}"#,
                Some(event),
            );
            // Signed by this host (no checks), and a damaged document.
            old(1_001, r#"{"verdict":"accept","spf":null,"dkim":[]}"#, None);
            old(1_002, "not json", None);
        }
        let s = Store::Sqlite(Sqlite::open(&path).unwrap());
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let Store::Sqlite(lite) = &s else {
            unreachable!()
        };
        let columns: Vec<String> = lite
            .conn
            .prepare(
                "SELECT concat_ws(' ', spf, dkim, dkim_domain, policy, disposition) FROM verdicts
                 ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(columns, ["fail pass old.example reject none", "", ""]);
        let page = s.list(&Filter::default(), 10).unwrap();
        assert_eq!(page.items.len(), 3);
        assert_eq!(page.items[2]["dmarc"]["policy"], "reject");
        assert_eq!(page.items[2]["rcpts"], json!(["b@example.net"]));
        let o = s.overview(0, 10_000, 10).unwrap();
        assert_eq!(
            (o.methods[1].count("pass"), o.methods[1].count("none")),
            (1, 2)
        );
        let mut events = Vec::new();
        s.for_each_dmarc_event("old.example", 0, 10_000, |ip, e| {
            events.push((ip.to_string(), e))
        })
        .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1.dkim[0].selector, "s1");
        assert_eq!(serde_json::to_string(&events[0].1).unwrap(), event);
    }

    // The writer, the report importer and the report job open a new store at the same time;
    // each migration must run once (it failed with "duplicate column name: dmarc_domain"),
    // and no open may fail because another one is switching the new file to WAL ("database
    // is locked").
    #[test]
    fn concurrent_opens_of_a_new_store_migrate_once() {
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("new{round}.sqlite"));
            let openers: Vec<_> = (0..12)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || Sqlite::open(&path).map(|s| s.schema_version()))
                })
                .collect();
            for opener in openers {
                let version = opener.join().unwrap().unwrap().unwrap();
                assert_eq!(version, SCHEMA_VERSION);
            }
        }
    }
}
