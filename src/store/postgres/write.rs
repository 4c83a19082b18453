//! The writer's batches: one transaction each, the batch's token first (a batch tried again
//! after a commit whose answer was lost is not stored twice), then the rows through one
//! binary `COPY` (also `store copy`'s way in).

use super::conn::Postgres;
use super::sql::{json_clean, text};
use crate::check::Record;
use crate::store::model::{clamp, StoreError};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use serde_json::Value;

impl Postgres {
    pub fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError> {
        self.write(records, None)
    }

    pub fn insert_batch_once(&mut self, records: &[Record], token: i64) -> Result<(), StoreError> {
        self.write(records, Some(token))
    }

    /// One transaction: the batch's token (when given; a batch already committed under it
    /// is skipped), then the rows through one binary COPY.
    fn write(&mut self, records: &[Record], token: Option<i64>) -> Result<(), StoreError> {
        let host = text(&self.host).into_owned();
        let mut client = self.client();
        let mut tx = client.transaction()?;
        if let Some(token) = token {
            let done = tx.query_opt("SELECT 1 FROM store_batches WHERE token = $1", &[&token])?;
            if done.is_some() {
                return Ok(());
            }
            tx.execute(
                "INSERT INTO store_batches (token, host, written_at) VALUES ($1, $2, $3)",
                &[&token, &host, &crate::dates::now_ms()],
            )?;
        }
        let sink = tx.copy_in(VERDICT_COPY)?;
        let mut writer = BinaryCopyInWriter::new(sink, &VERDICT_COPY_TYPES);
        for r in records {
            let opt = |v: &Option<String>| v.as_deref().map(|t| text(t).into_owned());
            let rcpts = json_clean(Value::from(r.rcpts.clone()));
            let event = r
                .dmarc_event
                .as_ref()
                .and_then(|e| serde_json::to_value(e).ok())
                .map(json_clean);
            writer.write(&[
                &r.received_at,
                &host,
                &r.transport.as_str(),
                &opt(&r.queue_id),
                &opt(&r.message_id),
                &text(&r.client_ip).as_ref(),
                &opt(&r.helo),
                &opt(&r.mail_from),
                &rcpts,
                &clamp(r.rcpt_count as u64),
                &opt(&r.from_domain),
                &r.verdict,
                &r.dmarc,
                &(r.duration.as_micros() as i64),
                &json_clean(r.document.clone()),
                &r.dmarc_event
                    .as_ref()
                    .map(|e| text(&e.policy.domain).into_owned()),
                &event,
            ])?;
        }
        writer.finish()?;
        tx.commit()?;
        Ok(())
    }
}

/// The writer's (and `store copy`'s) COPY of verdict rows, and its column types.
pub(in crate::store) const VERDICT_COPY: &str =
    "COPY verdicts (received_at, host, transport, queue_id, \
    message_id, client_ip, helo, mail_from, rcpts, rcpt_count, from_domain, verdict, dmarc, \
    duration_us, document, dmarc_domain, dmarc_event) FROM STDIN BINARY";

pub(in crate::store) const VERDICT_COPY_TYPES: [Type; 17] = [
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::JSONB,
    Type::TEXT,
    Type::JSONB,
];
