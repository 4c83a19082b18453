//! The writer's batches: one transaction each, the batch's token first (a batch tried again
//! after a commit whose answer was lost is not stored twice), then the rows through one
//! binary `COPY` (also `store copy`'s way in): typed columns, the document packed, and JSON
//! written as text (no `Value` built for it).

use super::conn::Postgres;
use super::sql::{json_clean, text, Pg};
use crate::check::Record;
use crate::store::columns::{json_text, pack, Columns};
use crate::store::model::{clamp, StoreError};
use crate::store::queries::rollup::{self, Counts};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::private::BytesMut;
use postgres::types::Type;
use postgres::types::{to_sql_checked, IsNull, ToSql};
use serde::Serialize;

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
        let mut counts = Counts::default();
        for r in records {
            let opt = |v: Option<&str>| v.map(|t| text(t).into_owned());
            let rcpts = RawJson::of(&r.rcpts);
            let event = r.dmarc_event.as_ref().map(RawJson::of);
            let c = Columns::of(&r.document);
            counts.add(r, &c);
            writer.write(&[
                &r.received_at,
                &host,
                &r.transport.as_str(),
                &opt(r.queue_id.as_deref()),
                &opt(r.message_id.as_deref()),
                &text(&r.client_ip).as_ref(),
                &opt(r.helo.as_deref()),
                &opt(r.mail_from.as_deref()),
                &rcpts,
                &clamp(r.rcpt_count as u64),
                &opt(r.from_domain.as_deref()),
                &r.verdict,
                &r.dmarc,
                &(r.duration.as_micros() as i64),
                &pack(&r.document),
                &r.dmarc_event
                    .as_ref()
                    .map(|e| text(&e.policy.domain).into_owned()),
                &event,
                &opt(c.spf),
                &opt(c.spf_domain),
                &opt(c.dkim),
                &opt(c.dkim_domain),
                &opt(c.arc),
                &opt(c.policy),
                &opt(c.disposition),
            ])?;
        }
        writer.finish()?;
        rollup::write(&mut Pg::new(&mut tx), &counts)?;
        tx.commit()?;
        Ok(())
    }
}

/// The writer's (and `store copy`'s) COPY of verdict rows, and its column types.
pub(in crate::store) const VERDICT_COPY: &str =
    "COPY verdicts (received_at, host, transport, queue_id, \
    message_id, client_ip, helo, mail_from, rcpts, rcpt_count, from_domain, verdict, dmarc, \
    duration_us, document, dmarc_domain, dmarc_event, spf, spf_domain, dkim, dkim_domain, arc, \
    policy, disposition) FROM STDIN BINARY";

pub(in crate::store) const VERDICT_COPY_TYPES: [Type; 24] = [
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
    Type::BYTEA,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// A `jsonb` value from JSON text serialised straight from its type (no `Value` tree, no
/// cleaning pass); text holding an escaped NUL, which `jsonb` refuses, goes the slow way.
#[derive(Debug)]
pub(in crate::store) struct RawJson(String);

impl RawJson {
    pub(in crate::store) fn of<T: Serialize>(value: &T) -> RawJson {
        RawJson(json_text(value).unwrap_or_else(|| {
            let cleaned = serde_json::to_value(value).map(json_clean);
            cleaned
                .map(|v| v.to_string())
                .unwrap_or_else(|_| "null".into())
        }))
    }
}

impl ToSql for RawJson {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // The binary format's version.
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}
