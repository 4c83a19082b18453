//! The local spool: verdict records the fleet's PostgreSQL could not take (down, restarting)
//! wait in a SQLite file on this host, and are replayed in order, exactly once, when it
//! answers again, also after a restart of the daemon.
//!
//! One row per batch, oldest first, with the batch's token: a batch replayed under the
//! token it was first tried with is stored at most once even when its commit answer was
//! lost (the database remembers tokens, see `insert_batch_once`), so a batch is deleted here
//! only after its commit, and a crash between the two repeats nothing.
//!
//! Durability: WAL with `synchronous = FULL`: each batch spooled (or taken out) is on disk
//! (fsync) before the call returns, so a spooled record survives a crash or a power cut.
//!
//! Bound: the records' encoded size (JSON) is at most `max_bytes`; a batch that would pass
//! it is refused ([`SpoolError::Full`]) and the writer drops and counts its records.

use crate::auth::Transport;
use crate::check::{DmarcEvent, Record};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A spool file, open.
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    max_bytes: u64,
    /// Encoded bytes and records held now.
    bytes: u64,
    records: u64,
}

/// Why a batch could not be spooled (or read back).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path} full ({bytes} of {max} bytes); {records} records dropped")]
    Full {
        path: String,
        bytes: u64,
        max: u64,
        records: usize,
    },
    #[error("spool {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    /// The call did not finish (the task running it failed, or time ran out).
    #[error("spool: {0}")]
    Unfinished(String),
}

/// One spooled batch, oldest first.
pub struct Spooled {
    /// Its row (to take it out once written).
    pub seq: i64,
    /// The token it was first tried with.
    pub token: i64,
    /// The records, or `None` when the row could not be read back (counted as failed).
    pub records: Option<Vec<Record>>,
    /// How many records the row holds.
    pub count: usize,
}

impl Spool {
    /// Opens (creating if needed) the spool at `path`, holding at most `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let err = |source| SpoolError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spool (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 token INTEGER NOT NULL,
                 count INTEGER NOT NULL,
                 records BLOB NOT NULL)",
        )
        .map_err(err)?;
        let (bytes, records): (i64, i64) = conn
            .query_row(
                "SELECT coalesce(sum(length(records)), 0), coalesce(sum(count), 0) FROM spool",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        Ok(Spool {
            conn,
            path: path.to_path_buf(),
            max_bytes,
            bytes: bytes as u64,
            records: records as u64,
        })
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        SpoolError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Encoded bytes held now (the `authmilter_store_spool_bytes` gauge).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records held now.
    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Appends a batch (on disk when this returns), or refuses it past the bound.
    pub fn push(&mut self, token: i64, records: &[Record]) -> Result<(), SpoolError> {
        let encoded: Vec<Stored> = records.iter().map(Stored::from).collect();
        let blob = serde_json::to_vec(&encoded).unwrap_or_default();
        if self.bytes + blob.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full {
                path: self.path.display().to_string(),
                bytes: self.bytes,
                max: self.max_bytes,
                records: records.len(),
            });
        }
        self.conn
            .execute(
                "INSERT INTO spool (token, count, records) VALUES (?1, ?2, ?3)",
                params![token, records.len() as i64, blob],
            )
            .map_err(|e| self.err(e))?;
        self.bytes += blob.len() as u64;
        self.records += records.len() as u64;
        Ok(())
    }

    /// The oldest batch, if any.
    pub fn front(&self) -> Result<Option<Spooled>, SpoolError> {
        let row = self
            .conn
            .query_row(
                "SELECT seq, token, count, records FROM spool ORDER BY seq LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(row.map(|(seq, token, count, blob)| Spooled {
            seq,
            token,
            count: count as usize,
            records: serde_json::from_slice::<Vec<Stored>>(&blob)
                .ok()
                .map(|v| v.into_iter().map(Record::from).collect()),
        }))
    }

    /// Takes out the batch at `seq` (written, or unreadable).
    pub fn pop(&mut self, seq: i64) -> Result<(), SpoolError> {
        let gone: Option<(i64, i64)> = self
            .conn
            .query_row(
                "DELETE FROM spool WHERE seq = ?1 RETURNING length(records), count",
                [seq],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some((bytes, count)) = gone {
            self.bytes = self.bytes.saturating_sub(bytes as u64);
            self.records = self.records.saturating_sub(count as u64);
        }
        Ok(())
    }
}

/// A [`Record`] as the spool keeps it.
#[derive(Serialize, Deserialize)]
struct Stored {
    received_at: i64,
    transport: String,
    queue_id: Option<String>,
    message_id: Option<String>,
    client_ip: String,
    helo: Option<String>,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    rcpt_count: usize,
    from_domain: Option<String>,
    verdict: String,
    dmarc: Option<String>,
    duration_us: u64,
    document: serde_json::Value,
    dmarc_event: Option<DmarcEvent>,
}

impl From<&Record> for Stored {
    fn from(r: &Record) -> Stored {
        Stored {
            received_at: r.received_at,
            transport: r.transport.as_str().to_string(),
            queue_id: r.queue_id.clone(),
            message_id: r.message_id.clone(),
            client_ip: r.client_ip.clone(),
            helo: r.helo.clone(),
            mail_from: r.mail_from.clone(),
            rcpts: r.rcpts.clone(),
            rcpt_count: r.rcpt_count,
            from_domain: r.from_domain.clone(),
            verdict: r.verdict.clone(),
            dmarc: r.dmarc.clone(),
            duration_us: r.duration.as_micros() as u64,
            document: r.document.clone(),
            dmarc_event: r.dmarc_event.clone(),
        }
    }
}

impl From<Stored> for Record {
    fn from(s: Stored) -> Record {
        Record {
            received_at: s.received_at,
            transport: Transport::ALL
                .into_iter()
                .find(|t| t.as_str() == s.transport)
                .unwrap_or(Transport::Milter),
            queue_id: s.queue_id,
            message_id: s.message_id,
            client_ip: s.client_ip,
            helo: s.helo,
            mail_from: s.mail_from,
            rcpts: s.rcpts,
            rcpt_count: s.rcpt_count,
            from_domain: s.from_domain,
            verdict: s.verdict,
            dmarc: s.dmarc,
            duration: Duration::from_micros(s.duration_us),
            document: s.document,
            dmarc_event: s.dmarc_event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(queue_id: &str) -> Record {
        Record {
            received_at: 1_700_000_000_000,
            transport: Transport::Smtp,
            queue_id: Some(queue_id.into()),
            message_id: Some("<m@x>".into()),
            client_ip: "192.0.2.1".into(),
            helo: Some("mx.example.com".into()),
            mail_from: Some(String::new()),
            rcpts: vec!["bob@example.net".into()],
            rcpt_count: 3,
            from_domain: Some("example.com".into()),
            verdict: "accept".into(),
            dmarc: Some("pass".into()),
            duration: Duration::from_micros(1234),
            document: serde_json::json!({"verdict": {"action": "accept"}}),
            dmarc_event: None,
        }
    }

    fn ids(batch: &Spooled) -> Vec<String> {
        let records = batch.records.as_ref().unwrap();
        records
            .iter()
            .map(|r| r.queue_id.clone().unwrap())
            .collect()
    }

    #[test]
    fn batches_come_back_in_order_whole_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        let mut spool = Spool::open(&path, 1 << 20).unwrap();
        assert!(spool.is_empty());
        spool.push(7, &[record("A1"), record("A2")]).unwrap();
        spool.push(8, &[record("B1")]).unwrap();
        assert_eq!(spool.records(), 3);
        let held = spool.bytes();
        drop(spool);
        let mut spool = Spool::open(&path, 1 << 20).unwrap();
        assert_eq!((spool.records(), spool.bytes()), (3, held));
        let first = spool.front().unwrap().unwrap();
        assert_eq!(
            (first.token, first.count, ids(&first)),
            (7, 2, vec!["A1".to_string(), "A2".into()])
        );
        let back = &first.records.as_ref().unwrap()[0];
        let original = record("A1");
        assert_eq!(back.transport, original.transport);
        assert_eq!(back.duration, original.duration);
        assert_eq!(back.document, original.document);
        assert_eq!(back.rcpt_count, 3);
        assert_eq!(back.mail_from.as_deref(), Some(""));
        spool.pop(first.seq).unwrap();
        let second = spool.front().unwrap().unwrap();
        assert_eq!((second.token, ids(&second)), (8, vec!["B1".to_string()]));
        spool.pop(second.seq).unwrap();
        assert!(spool.front().unwrap().is_none());
        assert_eq!((spool.records(), spool.bytes()), (0, 0));
    }

    #[test]
    fn a_batch_past_the_bound_is_refused_and_nothing_else_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(&dir.path().join("s"), 2000).unwrap();
        let mut pushed = 0;
        let refused = loop {
            match spool.push(pushed, &[record("X")]) {
                Ok(()) => pushed += 1,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(refused, SpoolError::Full { records: 1, .. }),
            "{refused}"
        );
        assert!(pushed > 0);
        assert_eq!(spool.records(), pushed as u64);
        assert!(spool.bytes() <= 2000);
    }
}
