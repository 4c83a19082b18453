//! The PostgreSQL store, shared by a fleet of filter hosts: the same calls and answers as
//! `sqlite.rs`, with each verdict carrying the host that recorded it and every query
//! answering for the whole fleet. JSON lives in `jsonb`; the writer's batches go in with one
//! binary `COPY` each.
//!
//! The client is the `postgres` crate (the blocking face of `tokio-postgres`): the store
//! interface is synchronous, and every caller already runs it on the blocking pool, as for
//! SQLite. TLS goes through rustls with ring (`pg_tls.rs`).

use super::backend::{stats_answer, where_of, Bound, Lease};
use super::migrations::POSTGRES as MIGRATIONS;
use super::overview::{Failing, HourCount, MethodCounts, Overview, HOUR_MS};
use super::report_in::{clamp, rate, Inserted, NewReport, ReportFilter};
use super::reports::SentReport;
use super::{Filter, GroupBy, Page, Record, StoreError};
use crate::dates::format_rfc3339;
use crate::report::event::DmarcEvent;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, Row};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The schema version this build writes to PostgreSQL.
pub const PG_SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Serializes migrations between hosts starting at once (an advisory lock key).
const MIGRATION_LOCK: i64 = 0x616d_0000;

/// How the connection is protected, from the URL's `sslmode` (libpq's meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unauthenticated (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is checked against `ca_file` when one is set.
    Require,
    /// TLS, the certificate chaining to `ca_file` (or the system's roots).
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A PostgreSQL database to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// The URL as configured, less `sslmode` and `sslrootcert` (held below).
    url: String,
    pub ssl: SslMode,
    /// PEM roots the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
}

impl PgTarget {
    /// Reads a `postgres://` URL; `sslmode` (default `prefer`) and `sslrootcert` (when no
    /// `ca_file` is configured) are taken from its query.
    pub fn parse(url: &str, ca_file: Option<PathBuf>) -> Result<PgTarget, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("must be a postgres:// URL".into());
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ssl = SslMode::Prefer;
        let mut ca_file = ca_file;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", mode)) => {
                    ssl = SslMode::parse(mode).ok_or_else(|| {
                        format!(
                            "sslmode={mode}: use disable, prefer, require, verify-ca or \
                             verify-full"
                        )
                    })?;
                }
                Some(("sslrootcert", path)) => {
                    ca_file.get_or_insert_with(|| PathBuf::from(path));
                }
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let target = PgTarget { url, ssl, ca_file };
        target
            .url
            .parse::<postgres::Config>()
            .map_err(|e| format!("{}: {e}", target.redacted()))?;
        Ok(target)
    }

    /// The URL without its password, for logs and errors.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rsplit_once('@') {
            Some((user, host)) => {
                let user = user.split_once(':').map(|(u, _)| u).unwrap_or(user);
                format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
            }
            None => self.url.clone(),
        }
    }

    fn client(&self) -> Result<Client, StoreError> {
        let open_err = |source| StoreError::PgOpen {
            url: self.redacted(),
            source,
        };
        let mut config: postgres::Config = self
            .url
            .parse()
            .map_err(|e| StoreError::Config(format!("{}: {e}", self.redacted())))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("authmilter");
        }
        // A database host that vanishes (no reset, no answer) is noticed within a minute.
        config.keepalives_idle(Duration::from_secs(30));
        config.tcp_user_timeout(Duration::from_secs(60));
        use postgres::config::SslMode as Mode;
        match self.ssl {
            SslMode::Disable => {
                config.ssl_mode(Mode::Disable);
                config.connect(postgres::NoTls).map_err(open_err)
            }
            mode => {
                config.ssl_mode(match mode {
                    SslMode::Prefer => Mode::Prefer,
                    _ => Mode::Require,
                });
                let tls = super::pg_tls::MakeRustls::new(mode, self.ca_file.as_deref())?;
                config.connect(tls).map_err(open_err)
            }
        }
    }
}

/// Whether `e` means the connection is gone (or never came) rather than a refused statement.
pub(super) fn is_connection_error(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        // Class 08: connection exception; 57P0x: shutdown, crash, cannot connect now.
        let code = db.code().code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// The blocking client. It owns a small runtime of its own, which must not be dropped on an
/// async thread (tokio panics): when a runtime is around, the client is let go on a thread
/// of its own.
pub(super) struct Conn(Option<Client>);

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

/// One connection to a PostgreSQL store.
pub struct Postgres {
    /// The blocking client wants `&mut` for every call; the store interface reads through
    /// `&self` (a SQLite connection does), hence the lock (never contended: one caller).
    client: Mutex<Conn>,
    /// The host recorded with each verdict written through this connection.
    pub(super) host: String,
    url: String,
}

impl Postgres {
    /// Connects and brings the schema up to date.
    pub fn connect(target: &PgTarget) -> Result<Postgres, StoreError> {
        let client = off_runtime(|| {
            let mut client = target.client()?;
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

    pub(super) fn client(&self) -> MutexGuard<'_, Conn> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.client().is_closed()
    }

    pub fn schema_version(&self) -> Result<usize, StoreError> {
        Ok(version(&mut **self.client())?)
    }

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

    /// Deletes what is past the retention period, on one host of the fleet at a time (the
    /// others find the lease taken and leave it to that one).
    pub fn prune(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        let mut client = self.client();
        let mut tx = client.transaction()?;
        let granted: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock($1)",
                &[&Lease::Retention.key()],
            )?
            .get(0);
        if !granted {
            return Ok(0);
        }
        let n = tx.execute("DELETE FROM verdicts WHERE received_at < $1", &[&before_ms])?;
        tx.execute(
            "DELETE FROM store_batches WHERE written_at < $1",
            &[&before_ms],
        )?;
        tx.execute(
            "DELETE FROM reports_sent WHERE period_end < $1",
            &[&before_ms],
        )?;
        // Rows go with their report (ON DELETE CASCADE); periods are in seconds.
        tx.execute(
            "DELETE FROM reports_received WHERE date_end < $1",
            &[&(before_ms / 1000)],
        )?;
        tx.commit()?;
        Ok(n as usize)
    }

    pub fn list(&self, filter: &Filter, limit: usize) -> Result<Page, StoreError> {
        let (clause, args) = where_clause(filter);
        let sql = format!(
            "SELECT {COLUMNS} FROM verdicts {clause} ORDER BY id DESC LIMIT {}",
            limit + 1
        );
        let rows = self.client().query(&sql, &refs(&args))?;
        Ok(Page::of(rows.iter().map(item).collect(), limit))
    }

    pub fn get(&self, id: i64) -> Result<Option<Value>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM verdicts WHERE id = $1");
        Ok(self.client().query_opt(&sql, &[&id])?.as_ref().map(item))
    }

    pub fn stats(
        &self,
        since: Option<i64>,
        group_by: GroupBy,
        from_domain: Option<&str>,
    ) -> Result<Value, StoreError> {
        let filter = Filter {
            since,
            from_domain: from_domain.map(str::to_string),
            ..Filter::default()
        };
        let (clause, args) = where_clause(&filter);
        let col = group_by.column();
        let sql =
            format!("SELECT {col}, dmarc, COUNT(*) FROM verdicts {clause} GROUP BY {col}, dmarc");
        let rows = self.client().query(&sql, &refs(&args))?;
        Ok(stats_answer(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2))),
        ))
    }

    pub fn overview(&self, since: i64, until: i64, top: usize) -> Result<Overview, StoreError> {
        let window = "received_at >= $1 AND received_at < $2";
        let mut client = self.client();
        let hours = client
            .query(
                &format!(
                    "SELECT received_at / {HOUR_MS} * {HOUR_MS} AS hour, verdict, COUNT(*) \
                     FROM verdicts WHERE {window} GROUP BY 1, 2 \
                     ORDER BY 1, verdict COLLATE \"C\""
                ),
                &[&since, &until],
            )?
            .iter()
            .map(|r| HourCount {
                hour: r.get(0),
                verdict: r.get(1),
                count: r.get::<_, i64>(2) as u64,
            })
            .collect::<Vec<_>>();
        let total = hours.iter().map(|h| h.count).sum();
        let mut methods = Vec::with_capacity(METHOD_SQL.len());
        for (method, expr) in METHOD_SQL {
            let results = client
                .query(
                    &format!(
                        "SELECT COALESCE({expr}, 'none') AS result, COUNT(*) AS n FROM verdicts \
                         WHERE {window} GROUP BY 1 ORDER BY 2 DESC, COALESCE({expr}, 'none') COLLATE \"C\""
                    ),
                    &[&since, &until],
                )?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
                .collect();
            methods.push(MethodCounts { method, results });
        }
        let mut failing = |column: &str| -> Result<Vec<Failing>, StoreError> {
            let failed = "SUM(CASE WHEN dmarc = 'fail' THEN 1 ELSE 0 END)";
            Ok(client
                .query(
                    &format!(
                        "SELECT {column}, {failed}::bigint, COUNT(*) FROM verdicts \
                         WHERE {window} AND {column} IS NOT NULL GROUP BY {column} \
                         HAVING {failed} > 0 ORDER BY 2 DESC, {column} COLLATE \"C\" LIMIT {top}"
                    ),
                    &[&since, &until],
                )?
                .iter()
                .map(|r| Failing {
                    key: r.get(0),
                    failed: r.get::<_, i64>(1) as u64,
                    messages: r.get::<_, i64>(2) as u64,
                })
                .collect())
        };
        let failing_domains = failing("from_domain")?;
        let failing_ips = failing("client_ip")?;
        Ok(Overview {
            since,
            until,
            total,
            hours,
            methods,
            failing_domains,
            failing_ips,
        })
    }

    pub fn dmarc_domains(&self, begin: i64, end: i64) -> Result<Vec<String>, StoreError> {
        Ok(self
            .client()
            .query(
                "SELECT DISTINCT dmarc_domain FROM verdicts \
                 WHERE dmarc_domain IS NOT NULL AND received_at >= $1 AND received_at < $2",
                &[&begin, &end],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Streams the rows (a day of a busy domain does not fit in memory at once).
    pub fn for_each_dmarc_event(
        &self,
        domain: &str,
        begin: i64,
        end: i64,
        mut each: impl FnMut(&str, DmarcEvent),
    ) -> Result<usize, StoreError> {
        let mut client = self.client();
        let params: [&(dyn ToSql + Sync); 3] = [&domain, &begin, &end];
        let mut rows = client.query_raw(
            "SELECT client_ip, dmarc_event FROM verdicts \
             WHERE dmarc_domain = $1 AND received_at >= $2 AND received_at < $3 \
             ORDER BY received_at, id",
            params,
        )?;
        let mut skipped = 0;
        while let Some(row) = rows.next()? {
            let ip: String = row.get(0);
            let event: Option<Value> = row.get(1);
            match event.map(serde_json::from_value::<DmarcEvent>) {
                Some(Ok(event)) => each(&ip, event),
                _ => skipped += 1,
            }
        }
        Ok(skipped)
    }

    pub fn sent_report(
        &self,
        domain: &str,
        period_begin: i64,
    ) -> Result<Option<SentReport>, StoreError> {
        let sql = format!(
            "SELECT {SENT_COLUMNS} FROM reports_sent WHERE domain = $1 AND period_begin = $2"
        );
        Ok(self
            .client()
            .query_opt(&sql, &[&domain, &period_begin])?
            .as_ref()
            .map(sent_report))
    }

    pub fn save_sent_report(&mut self, report: &SentReport, now: i64) -> Result<(), StoreError> {
        self.client().execute(
            "INSERT INTO reports_sent (domain, period_begin, period_end, report_id, state, \
             attempts, next_attempt, destinations, messages, bytes, detail, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (domain, period_begin) DO UPDATE SET period_end = $3, state = $5, \
             attempts = $6, next_attempt = $7, destinations = $8, messages = $9, bytes = $10, \
             detail = $11, updated_at = $12",
            &[
                &report.domain,
                &report.period_begin,
                &report.period_end,
                &report.report_id,
                &report.state,
                &(report.attempts.min(i32::MAX as u32) as i32),
                &report.next_attempt,
                &Value::from(report.destinations.clone()),
                &clamp(report.messages),
                &report.bytes.map(clamp),
                &report.detail.as_deref().map(|d| text(d).into_owned()),
                &now,
            ],
        )?;
        Ok(())
    }

    pub fn sent_reports(&self, begin: i64, end: i64) -> Result<Vec<SentReport>, StoreError> {
        let sql = format!(
            "SELECT {SENT_COLUMNS} FROM reports_sent \
             WHERE period_begin >= $1 AND period_begin < $2 ORDER BY period_begin DESC, id DESC"
        );
        Ok(self
            .client()
            .query(&sql, &[&begin, &end])?
            .iter()
            .map(sent_report)
            .collect())
    }

    pub fn insert_received_report(&mut self, r: &NewReport) -> Result<Inserted, StoreError> {
        let mut client = self.client();
        let mut tx = client.transaction()?;
        let errors = json_clean(Value::from(r.errors.clone()));
        let inserted = tx.query_opt(
            "INSERT INTO reports_received (received_at, org_name, email, report_id, domain, \
             date_begin, date_end, policy, messages, dmarc_pass, errors) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (email, report_id) DO NOTHING RETURNING id",
            &[
                &r.received_at,
                &text(&r.org_name).as_ref(),
                &text(&r.email).as_ref(),
                &text(&r.report_id).as_ref(),
                &text(&r.domain).as_ref(),
                &r.date_begin,
                &r.date_end,
                &json_clean(r.policy.clone()),
                &clamp(r.messages),
                &clamp(r.dmarc_pass),
                &errors,
            ],
        )?;
        let Some(row) = inserted else {
            let id = tx
                .query_one(
                    "SELECT id FROM reports_received WHERE email = $1 AND report_id = $2",
                    &[&text(&r.email).as_ref(), &text(&r.report_id).as_ref()],
                )?
                .get(0);
            return Ok(Inserted::Duplicate(id));
        };
        let id: i64 = row.get(0);
        let stmt = tx.prepare(
            "INSERT INTO report_rows (report, source_ip, count, disposition, dkim, spf, \
             header_from, envelope_from, envelope_to, reasons, auth_results) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )?;
        for row in &r.rows {
            let opt = |v: &Option<String>| v.as_deref().map(|t| text(t).into_owned());
            tx.execute(
                &stmt,
                &[
                    &id,
                    &text(&row.source_ip).as_ref(),
                    &clamp(row.count),
                    &text(&row.disposition).as_ref(),
                    &text(&row.dkim).as_ref(),
                    &text(&row.spf).as_ref(),
                    &text(&row.header_from).as_ref(),
                    &opt(&row.envelope_from),
                    &opt(&row.envelope_to),
                    &json_clean(row.reasons.clone()),
                    &json_clean(row.auth_results.clone()),
                ],
            )?;
        }
        tx.commit()?;
        Ok(Inserted::Stored(id))
    }

    pub fn received_reports(
        &self,
        filter: &ReportFilter,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let (clause, args) = report_where(filter);
        let sql = format!(
            "SELECT {REPORT_COLUMNS}, (SELECT COUNT(*) FROM report_rows \
             WHERE report_rows.report = reports_received.id) \
             FROM reports_received {clause} ORDER BY id DESC LIMIT {}",
            limit + 1
        );
        let rows = self.client().query(&sql, &refs(&args))?;
        let items = rows
            .iter()
            .map(|r| {
                let mut v = report_item(r);
                v["row_count"] = r.get::<_, i64>(12).into();
                v
            })
            .collect();
        Ok(Page::of(items, limit))
    }

    pub fn received_report(&self, id: i64) -> Result<Option<Value>, StoreError> {
        let mut client = self.client();
        let sql = format!("SELECT {REPORT_COLUMNS} FROM reports_received WHERE id = $1");
        let Some(row) = client.query_opt(&sql, &[&id])? else {
            return Ok(None);
        };
        let mut report = report_item(&row);
        let rows = client
            .query(
                "SELECT source_ip, count, disposition, dkim, spf, header_from, envelope_from, \
                 envelope_to, reasons, auth_results FROM report_rows WHERE report = $1 \
                 ORDER BY count DESC, id",
                &[&id],
            )?
            .iter()
            .map(|r| {
                json!({
                    "source_ip": r.get::<_, String>(0),
                    "count": r.get::<_, i64>(1),
                    "disposition": r.get::<_, String>(2),
                    "dkim": r.get::<_, String>(3),
                    "spf": r.get::<_, String>(4),
                    "header_from": r.get::<_, String>(5),
                    "envelope_from": r.get::<_, Option<String>>(6),
                    "envelope_to": r.get::<_, Option<String>>(7),
                    "reasons": r.get::<_, Value>(8),
                    "auth_results": r.get::<_, Value>(9),
                })
            })
            .collect();
        report["rows"] = Value::Array(rows);
        Ok(Some(report))
    }

    pub fn received_summary(&self, domain: Option<&str>, since: i64) -> Result<Value, StoreError> {
        let filter = ReportFilter {
            domain: domain.map(str::to_string),
            since: Some(since),
            ..ReportFilter::default()
        };
        let (clause, args) = report_where(&filter);
        let args = refs(&args);
        let mut client = self.client();
        let totals = client.query_one(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(messages), 0)::bigint, \
                 COALESCE(SUM(dmarc_pass), 0)::bigint FROM reports_received {clause}"
            ),
            &args,
        )?;
        let (reports, messages, pass): (i64, i64, i64) =
            (totals.get(0), totals.get(1), totals.get(2));
        // A row fails DMARC when neither aligned result passed (RFC 7489 §6.6.2).
        let failing: Vec<Value> = client
            .query(
                &format!(
                    "SELECT source_ip, SUM(count)::bigint AS failing FROM report_rows \
                     WHERE dkim <> 'pass' AND spf <> 'pass' \
                     AND report IN (SELECT id FROM reports_received {clause}) \
                     GROUP BY source_ip ORDER BY 2 DESC, source_ip COLLATE \"C\" LIMIT {}",
                    super::report_in::TOP_FAILING
                ),
                &args,
            )?
            .iter()
            .map(|r| json!({"source_ip": r.get::<_, String>(0), "messages": r.get::<_, i64>(1)}))
            .collect();
        let reporters: Vec<Value> = client
            .query(
                &format!(
                    "SELECT org_name, email, COUNT(*), SUM(messages)::bigint, \
                     SUM(dmarc_pass)::bigint FROM reports_received {clause} \
                     GROUP BY org_name, email \
                     ORDER BY 4 DESC, org_name COLLATE \"C\", email COLLATE \"C\""
                ),
                &args,
            )?
            .iter()
            .map(|r| {
                let (messages, pass) = (r.get::<_, i64>(3), r.get::<_, i64>(4));
                json!({
                    "org_name": r.get::<_, String>(0),
                    "email": r.get::<_, String>(1),
                    "reports": r.get::<_, i64>(2),
                    "messages": messages,
                    "dmarc_pass": pass,
                    "pass_rate": rate(pass, messages),
                })
            })
            .collect();
        Ok(json!({
            "domain": domain,
            "since": format_rfc3339(since.saturating_mul(1000)),
            "reports": reports,
            "messages": messages,
            "dmarc_pass": pass,
            "pass_rate": rate(pass, messages),
            "top_failing_sources": failing,
            "reporters": reporters,
        }))
    }

    /// `SET statement_timeout`: the server stops a statement of this session past `limit`
    /// (SQLSTATE 57014, see `StoreError::is_cancelled`).
    pub fn limit_statements(&self, limit: Duration) -> Result<(), StoreError> {
        let ms = limit.as_millis().max(1);
        Ok(self
            .client()
            .batch_execute(&format!("SET statement_timeout = {ms}"))?)
    }

    /// `pg_try_advisory_lock`: held by this session until released or disconnected.
    pub fn try_lease(&self, job: Lease) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .query_one("SELECT pg_try_advisory_lock($1)", &[&job.key()])?
            .get(0))
    }

    pub fn release(&self, job: Lease) -> Result<(), StoreError> {
        self.client()
            .execute("SELECT pg_advisory_unlock($1)", &[&job.key()])?;
        Ok(())
    }

    /// The URL (without password), for messages.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The writer's (and `store copy`'s) COPY of verdict rows, and its column types.
pub(super) const VERDICT_COPY: &str = "COPY verdicts (received_at, host, transport, queue_id, \
    message_id, client_ip, helo, mail_from, rcpts, rcpt_count, from_domain, verdict, dmarc, \
    duration_us, document, dmarc_domain, dmarc_event) FROM STDIN BINARY";

pub(super) const VERDICT_COPY_TYPES: [Type; 17] = [
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

const COLUMNS: &str = "id, received_at, transport, queue_id, message_id, client_ip, helo, \
                       mail_from, rcpts, from_domain, duration_us, document, rcpt_count, host";

const SENT_COLUMNS: &str = "domain, period_begin, period_end, report_id, state, attempts, \
                            next_attempt, destinations, messages, bytes, detail";

const REPORT_COLUMNS: &str = "id, received_at, org_name, email, report_id, domain, date_begin, \
                              date_end, policy, messages, dmarc_pass, errors";

/// The result expression of each method over a verdict row (as `overview.rs` for SQLite).
const METHOD_SQL: [(&str, &str); 3] = [
    ("spf", "document->'spf'->>'result'"),
    (
        "dkim",
        "CASE WHEN jsonb_typeof(document->'dkim') = 'array' AND EXISTS \
         (SELECT 1 FROM jsonb_array_elements(document->'dkim') AS s \
         WHERE s->>'result' = 'pass') THEN 'pass' \
         ELSE document->'dkim'->0->>'result' END",
    ),
    ("dmarc", "dmarc"),
];

/// A verdict row as the API returns it (the same shape as SQLite's).
fn item(r: &Row) -> Value {
    let mut v = match r.get::<_, Value>(11) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    v.insert("id".into(), r.get::<_, i64>(0).into());
    v.insert(
        "received_at".into(),
        format_rfc3339(r.get::<_, i64>(1)).into(),
    );
    v.insert("transport".into(), r.get::<_, String>(2).into());
    v.insert("queue_id".into(), r.get::<_, Option<String>>(3).into());
    v.insert("message_id".into(), r.get::<_, Option<String>>(4).into());
    v.insert("client_ip".into(), r.get::<_, String>(5).into());
    v.insert("helo".into(), r.get::<_, Option<String>>(6).into());
    v.insert("mail_from".into(), r.get::<_, Option<String>>(7).into());
    v.insert("rcpts".into(), r.get::<_, Value>(8));
    v.insert("rcpt_count".into(), r.get::<_, i64>(12).into());
    v.insert("from_domain".into(), r.get::<_, Option<String>>(9).into());
    v.insert(
        "duration_ms".into(),
        (r.get::<_, i64>(10) as f64 / 1000.0).into(),
    );
    v.insert("host".into(), r.get::<_, String>(13).into());
    Value::Object(v)
}

fn sent_report(r: &Row) -> SentReport {
    SentReport {
        domain: r.get(0),
        period_begin: r.get(1),
        period_end: r.get(2),
        report_id: r.get(3),
        state: r.get(4),
        attempts: r.get::<_, i32>(5).max(0) as u32,
        next_attempt: r.get(6),
        destinations: serde_json::from_value(r.get::<_, Value>(7)).unwrap_or_default(),
        messages: r.get::<_, i64>(8).max(0) as u64,
        bytes: r.get::<_, Option<i64>>(9).map(|b| b.max(0) as u64),
        detail: r.get(10),
    }
}

fn report_item(r: &Row) -> Value {
    let secs = |i| format_rfc3339(r.get::<_, i64>(i).saturating_mul(1000));
    json!({
        "id": r.get::<_, i64>(0),
        "received_at": format_rfc3339(r.get::<_, i64>(1)),
        "org_name": r.get::<_, String>(2),
        "email": r.get::<_, String>(3),
        "report_id": r.get::<_, String>(4),
        "domain": r.get::<_, String>(5),
        "period": {"begin": secs(6), "end": secs(7)},
        "policy": r.get::<_, Value>(8),
        "messages": r.get::<_, i64>(9),
        "dmarc_pass": r.get::<_, i64>(10),
        "pass_rate": rate(r.get(10), r.get(9)),
        "errors": r.get::<_, Value>(11),
    })
}

type Args = Vec<Box<dyn ToSql + Sync>>;

fn refs(args: &Args) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a.as_ref()).collect()
}

/// The WHERE clause for a verdict filter, with its values to bind.
fn where_clause(f: &Filter) -> (String, Args) {
    bind(f.conditions())
}

/// The WHERE clause for a report filter.
fn report_where(f: &ReportFilter) -> (String, Args) {
    bind(f.conditions())
}

/// PostgreSQL's `$N` placeholders for conditions (`?` marks the place, or it goes at the end).
fn bind(conditions: Vec<(&str, Bound)>) -> (String, Args) {
    let mut args: Args = Vec::new();
    let mut conds = Vec::new();
    for (cond, value) in conditions {
        args.push(match value {
            Bound::Int(n) => Box::new(n),
            Bound::Text(t) => Box::new(text(&t).into_owned()),
        });
        let mark = format!("${}", args.len());
        conds.push(if cond.contains('?') {
            cond.replace('?', &mark)
        } else {
            format!("{cond} {mark}")
        });
    }
    (where_of(conds), args)
}

/// PostgreSQL text cannot hold NUL (SQLite's can): a NUL from a client becomes U+FFFD.
pub(super) fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// The same for the strings (and keys) of a JSON document (`jsonb` refuses `\u0000`).
pub(super) fn json_clean(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "\u{fffd}")),
        Value::Array(items) => Value::Array(items.into_iter().map(json_clean).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (text(&k).into_owned(), json_clean(v)))
                .collect(),
        ),
        other => other,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_sslmode_and_password_redaction() {
        let t = PgTarget::parse(
            "postgres://am:s3cret@db.example:5433/authmilter?sslmode=verify-full&connect_timeout=3",
            None,
        )
        .unwrap();
        assert_eq!(t.ssl, SslMode::VerifyFull);
        assert_eq!(
            t.redacted(),
            "postgres://am:***@db.example:5433/authmilter?connect_timeout=3"
        );
        let t = PgTarget::parse("postgresql://db.example/x?sslrootcert=/etc/ca.pem", None).unwrap();
        assert_eq!(
            (t.ssl, t.ca_file.as_deref()),
            (SslMode::Prefer, Some("/etc/ca.pem".as_ref()))
        );
        assert!(PgTarget::parse("postgres://db/x?sslmode=allow", None)
            .unwrap_err()
            .contains("verify-full"));
        assert!(PgTarget::parse("mysql://db/x", None).is_err());
    }

    #[test]
    fn nul_is_replaced_for_text_and_jsonb() {
        assert_eq!(text("a\0b"), "a\u{fffd}b");
        let v = json_clean(json!({"k\0": ["x\0", 1]}));
        assert_eq!(v, json!({"k\u{fffd}": ["x\u{fffd}", 1]}));
    }
}
