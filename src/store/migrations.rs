//! The schema migrations of both back ends, side by side so that a change to one is made to
//! the other in the same commit. Each back end keeps a `schema_version` table holding how
//! many of its migrations have been applied; a database newer than the build is refused.
//!
//! PostgreSQL starts from the schema SQLite reached in four steps (with `host` NOT NULL and
//! JSON in `jsonb`), so its versions count separately.

/// The statements that count the verdicts already stored into the (empty) hour tables
/// (`queries/rollup.rs`), shared by both back ends' migrations and `Store::recount_hours`:
/// a macro, so that the migrations' SQL (string literals, `concat!`ed) and the code use one
/// text.
#[macro_export]
#[doc(hidden)]
macro_rules! rollup_backfill {
    () => {
        "
INSERT INTO verdict_hours (hour, verdict, spf, dkim, dmarc, messages)
    SELECT received_at / 3600000 * 3600000, verdict, COALESCE(spf, 'none'),
        COALESCE(dkim, 'none'), COALESCE(dmarc, 'none'), COUNT(*)
    FROM verdicts GROUP BY 1, 2, 3, 4, 5;
INSERT INTO failing_hours (kind, hour, name, failed)
    SELECT 'from_domain', received_at / 3600000 * 3600000, from_domain, COUNT(*)
    FROM verdicts WHERE dmarc = 'fail' AND from_domain IS NOT NULL GROUP BY 2, 3;
INSERT INTO failing_hours (kind, hour, name, failed)
    SELECT 'client_ip', received_at / 3600000 * 3600000, client_ip, COUNT(*)
    FROM verdicts WHERE dmarc = 'fail' GROUP BY 2, 3;
"
    };
}

/// SQLite's migrations, in order; `schema_version` holds how many have been applied.
pub const SQLITE: &[&str] = &[
    r#"
CREATE TABLE verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    transport TEXT NOT NULL,
    queue_id TEXT,
    message_id TEXT,
    client_ip TEXT NOT NULL,
    helo TEXT,
    mail_from TEXT,
    rcpts TEXT NOT NULL,
    from_domain TEXT,
    verdict TEXT NOT NULL,
    dmarc TEXT,
    duration_us INTEGER NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX verdicts_received_at ON verdicts (received_at);
CREATE INDEX verdicts_queue_id ON verdicts (queue_id);
CREATE INDEX verdicts_message_id ON verdicts (message_id);
CREATE INDEX verdicts_from_domain ON verdicts (from_domain, received_at);
CREATE INDEX verdicts_client_ip ON verdicts (client_ip);
"#,
    // 2: a record keeps at most `MAX_STORED_RCPTS` recipients; this is how many there were.
    // Older rows have none and count their list.
    r#"
ALTER TABLE verdicts ADD COLUMN rcpt_count INTEGER;
"#,
    // 3: DMARC reporting. Out: what an aggregate report needs of each message whose From
    // domain asks for reports, and the reports sent (one per policy domain and period).
    // In: aggregate reports received from other receivers, and their rows.
    r#"
ALTER TABLE verdicts ADD COLUMN dmarc_domain TEXT;
ALTER TABLE verdicts ADD COLUMN dmarc_event TEXT;
CREATE INDEX verdicts_dmarc_domain ON verdicts (dmarc_domain, received_at)
    WHERE dmarc_domain IS NOT NULL;
CREATE TABLE reports_sent (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain TEXT NOT NULL,
    period_begin INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    report_id TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER,
    destinations TEXT NOT NULL DEFAULT '[]',
    messages INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER,
    detail TEXT,
    updated_at INTEGER NOT NULL,
    UNIQUE (domain, period_begin)
);
CREATE TABLE reports_received (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    org_name TEXT NOT NULL,
    email TEXT NOT NULL,
    report_id TEXT NOT NULL,
    domain TEXT NOT NULL,
    date_begin INTEGER NOT NULL,
    date_end INTEGER NOT NULL,
    policy TEXT NOT NULL,
    messages INTEGER NOT NULL,
    dmarc_pass INTEGER NOT NULL,
    errors TEXT NOT NULL DEFAULT '[]',
    UNIQUE (email, report_id)
);
CREATE INDEX reports_received_domain ON reports_received (domain, date_begin);
CREATE TABLE report_rows (
    report INTEGER NOT NULL REFERENCES reports_received (id) ON DELETE CASCADE,
    source_ip TEXT NOT NULL,
    count INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    dkim TEXT NOT NULL,
    spf TEXT NOT NULL,
    header_from TEXT NOT NULL,
    envelope_from TEXT,
    envelope_to TEXT,
    reasons TEXT NOT NULL DEFAULT '[]',
    auth_results TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX report_rows_report ON report_rows (report);
"#,
    // 4: fleets. The host that recorded each verdict (older rows: NULL, "before hosts were
    // recorded").
    r#"
ALTER TABLE verdicts ADD COLUMN host TEXT;
"#,
    // 5: failure reports received (RFC 9991 / ARF auth-failure, plain-text notices), once
    // per report message (its Message-ID; NULLs are distinct).
    r#"
CREATE TABLE failure_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    reporter TEXT NOT NULL,
    report_message_id TEXT UNIQUE,
    format TEXT NOT NULL,
    feedback_type TEXT NOT NULL,
    auth_failure TEXT,
    domain TEXT,
    source_ip TEXT,
    arrival INTEGER,
    mail_from TEXT,
    rcpt_to TEXT,
    header_from TEXT,
    subject TEXT,
    original_message_id TEXT,
    delivery_result TEXT,
    identity_alignment TEXT,
    dkim_domain TEXT,
    dkim_selector TEXT,
    authentication_results TEXT NOT NULL DEFAULT '[]',
    incidents INTEGER NOT NULL DEFAULT 1,
    headers TEXT NOT NULL DEFAULT ''
);
CREATE INDEX failure_reports_domain ON failure_reports (domain, received_at);
CREATE INDEX failure_reports_source_ip ON failure_reports (source_ip);
"#,
    // 6: what queries filter and group on, as columns (per-method results and domains,
    // DMARC policy and disposition), filled for the rows already stored from their
    // documents (`store/columns.rs`).
    r#"
ALTER TABLE verdicts ADD COLUMN spf TEXT;
ALTER TABLE verdicts ADD COLUMN spf_domain TEXT;
ALTER TABLE verdicts ADD COLUMN dkim TEXT;
ALTER TABLE verdicts ADD COLUMN dkim_domain TEXT;
ALTER TABLE verdicts ADD COLUMN arc TEXT;
ALTER TABLE verdicts ADD COLUMN policy TEXT;
ALTER TABLE verdicts ADD COLUMN disposition TEXT;
UPDATE verdicts SET
    spf = json_extract(document, '$.spf.result'),
    spf_domain = json_extract(document, '$.spf.domain'),
    dkim = CASE WHEN json_type(document, '$.dkim') = 'array' THEN COALESCE(
        (SELECT json_extract(value, '$.result') FROM json_each(document, '$.dkim')
         WHERE json_extract(value, '$.result') = 'pass' LIMIT 1),
        json_extract(document, '$.dkim[0].result')) END,
    dkim_domain = CASE WHEN json_type(document, '$.dkim') = 'array' THEN COALESCE(
        (SELECT json_extract(value, '$.domain') FROM json_each(document, '$.dkim')
         WHERE json_extract(value, '$.result') = 'pass' LIMIT 1),
        json_extract(document, '$.dkim[0].domain')) END,
    arc = json_extract(document, '$.arc.result'),
    policy = json_extract(document, '$.dmarc.policy'),
    disposition = json_extract(document, '$.dmarc.disposition')
WHERE json_valid(document) AND json_type(document) = 'object';
"#,
    // 7: the window's covering index: the overview and `/v1/stats` over a day read it
    // alone, not the rows (replaces the plain received_at index it starts with); a client
    // address's messages in a window are counted from its index.
    r#"
CREATE INDEX verdicts_window ON verdicts
    (received_at, verdict, dmarc, spf, dkim, from_domain, client_ip, host);
DROP INDEX verdicts_received_at;
CREATE INDEX verdicts_client_ip_at ON verdicts (client_ip, received_at);
DROP INDEX verdicts_client_ip;
"#,
    // 8: the verdicts counted by hour, for the overview (`store/queries/rollup.rs`),
    // counting the rows already stored.
    concat!(
        r#"
CREATE TABLE verdict_hours (
    hour INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    spf TEXT NOT NULL,
    dkim TEXT NOT NULL,
    dmarc TEXT NOT NULL,
    messages INTEGER NOT NULL,
    PRIMARY KEY (hour, verdict, spf, dkim, dmarc)
) WITHOUT ROWID;
CREATE TABLE failing_hours (
    kind TEXT NOT NULL,
    hour INTEGER NOT NULL,
    name TEXT NOT NULL,
    failed INTEGER NOT NULL,
    PRIMARY KEY (kind, hour, name)
) WITHOUT ROWID;
"#,
        crate::rollup_backfill!()
    ),
];

/// PostgreSQL's migrations, in order (same bookkeeping as SQLite's).
pub const POSTGRES: &[&str] = &[
    // 1: verdicts with their reporting host, the reporting tables, and the batches the
    // writers committed (so a batch retried after a lost commit acknowledgement is not
    // stored twice).
    r#"
CREATE TABLE verdicts (
    id BIGSERIAL PRIMARY KEY,
    received_at BIGINT NOT NULL,
    host TEXT NOT NULL,
    transport TEXT NOT NULL,
    queue_id TEXT,
    message_id TEXT,
    client_ip TEXT NOT NULL,
    helo TEXT,
    mail_from TEXT,
    rcpts JSONB NOT NULL,
    rcpt_count BIGINT NOT NULL,
    from_domain TEXT,
    verdict TEXT NOT NULL,
    dmarc TEXT,
    duration_us BIGINT NOT NULL,
    document JSONB NOT NULL,
    dmarc_domain TEXT,
    dmarc_event JSONB
);
CREATE INDEX verdicts_received_at ON verdicts (received_at);
CREATE INDEX verdicts_queue_id ON verdicts (queue_id);
CREATE INDEX verdicts_message_id ON verdicts (message_id);
CREATE INDEX verdicts_from_domain ON verdicts (from_domain, received_at);
CREATE INDEX verdicts_client_ip ON verdicts (client_ip);
CREATE INDEX verdicts_host ON verdicts (host, received_at);
CREATE INDEX verdicts_dmarc_domain ON verdicts (dmarc_domain, received_at)
    WHERE dmarc_domain IS NOT NULL;
CREATE TABLE store_batches (
    token BIGINT PRIMARY KEY,
    host TEXT NOT NULL,
    written_at BIGINT NOT NULL
);
CREATE INDEX store_batches_written_at ON store_batches (written_at);
CREATE TABLE reports_sent (
    id BIGSERIAL PRIMARY KEY,
    domain TEXT NOT NULL,
    period_begin BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    report_id TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt BIGINT,
    destinations JSONB NOT NULL DEFAULT '[]',
    messages BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT,
    detail TEXT,
    updated_at BIGINT NOT NULL,
    UNIQUE (domain, period_begin)
);
CREATE TABLE reports_received (
    id BIGSERIAL PRIMARY KEY,
    received_at BIGINT NOT NULL,
    org_name TEXT NOT NULL,
    email TEXT NOT NULL,
    report_id TEXT NOT NULL,
    domain TEXT NOT NULL,
    date_begin BIGINT NOT NULL,
    date_end BIGINT NOT NULL,
    policy JSONB NOT NULL,
    messages BIGINT NOT NULL,
    dmarc_pass BIGINT NOT NULL,
    errors JSONB NOT NULL DEFAULT '[]',
    UNIQUE (email, report_id)
);
CREATE INDEX reports_received_domain ON reports_received (domain, date_begin);
CREATE TABLE report_rows (
    id BIGSERIAL PRIMARY KEY,
    report BIGINT NOT NULL REFERENCES reports_received (id) ON DELETE CASCADE,
    source_ip TEXT NOT NULL,
    count BIGINT NOT NULL,
    disposition TEXT NOT NULL,
    dkim TEXT NOT NULL,
    spf TEXT NOT NULL,
    header_from TEXT NOT NULL,
    envelope_from TEXT,
    envelope_to TEXT,
    reasons JSONB NOT NULL DEFAULT '[]',
    auth_results JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX report_rows_report ON report_rows (report);
"#,
    // 2: failure reports received, as SQLite's 5 (the same columns, BIGINT for integers).
    r#"
CREATE TABLE failure_reports (
    id BIGSERIAL PRIMARY KEY,
    received_at BIGINT NOT NULL,
    reporter TEXT NOT NULL,
    report_message_id TEXT UNIQUE,
    format TEXT NOT NULL,
    feedback_type TEXT NOT NULL,
    auth_failure TEXT,
    domain TEXT,
    source_ip TEXT,
    arrival BIGINT,
    mail_from TEXT,
    rcpt_to TEXT,
    header_from TEXT,
    subject TEXT,
    original_message_id TEXT,
    delivery_result TEXT,
    identity_alignment TEXT,
    dkim_domain TEXT,
    dkim_selector TEXT,
    authentication_results TEXT NOT NULL DEFAULT '[]',
    incidents BIGINT NOT NULL DEFAULT 1,
    headers TEXT NOT NULL DEFAULT ''
);
CREATE INDEX failure_reports_domain ON failure_reports (domain, received_at);
CREATE INDEX failure_reports_source_ip ON failure_reports (source_ip);
"#,
    // 3: abuse limits shared by the hosts of a fleet (issue 22): AUTH failure counts and
    // blocks, hourly per-user allowances (`key` says which: `net:`, `user:`, `msg:`, `rcpt:`),
    // and the networks each user logged in from. SQLite keeps them in memory instead.
    r#"
CREATE TABLE auth_limits (
    key TEXT PRIMARY KEY,
    window_start TIMESTAMPTZ NOT NULL,
    count INTEGER NOT NULL,
    blocked_until TIMESTAMPTZ
);
CREATE INDEX auth_limits_window ON auth_limits (window_start);
CREATE TABLE auth_known (
    login TEXT NOT NULL,
    network TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (login, network)
);
"#,
    // 4: as SQLite's 6: the columns, filled from the stored documents, and the document
    // as JSON text in `bytea` (`store/columns.rs`), so that neither the writer nor the
    // server builds `jsonb` of it.
    r#"
ALTER TABLE verdicts
    ADD COLUMN spf TEXT,
    ADD COLUMN spf_domain TEXT,
    ADD COLUMN dkim TEXT,
    ADD COLUMN dkim_domain TEXT,
    ADD COLUMN arc TEXT,
    ADD COLUMN policy TEXT,
    ADD COLUMN disposition TEXT;
UPDATE verdicts SET
    spf = document->'spf'->>'result',
    spf_domain = document->'spf'->>'domain',
    dkim = CASE WHEN jsonb_typeof(document->'dkim') = 'array' THEN COALESCE(
        (SELECT s->>'result' FROM jsonb_array_elements(document->'dkim') AS s
         WHERE s->>'result' = 'pass' LIMIT 1),
        document->'dkim'->0->>'result') END,
    dkim_domain = CASE WHEN jsonb_typeof(document->'dkim') = 'array' THEN COALESCE(
        (SELECT s->>'domain' FROM jsonb_array_elements(document->'dkim') AS s
         WHERE s->>'result' = 'pass' LIMIT 1),
        document->'dkim'->0->>'domain') END,
    arc = document->'arc'->>'result',
    policy = document->'dmarc'->>'policy',
    disposition = document->'dmarc'->>'disposition'
WHERE jsonb_typeof(document) = 'object';
ALTER TABLE verdicts ALTER COLUMN document TYPE BYTEA USING convert_to(document::text, 'UTF8');
"#,
    // 5: as SQLite's 7.
    r#"
CREATE INDEX verdicts_window ON verdicts
    (received_at, verdict, dmarc, spf, dkim, from_domain, client_ip, host);
DROP INDEX verdicts_received_at;
CREATE INDEX verdicts_client_ip_at ON verdicts (client_ip, received_at);
DROP INDEX verdicts_client_ip;
"#,
    // 6: verdicts partitioned by UTC day of `received_at` (`verdicts_dYYYYMMDD`, and a
    // DEFAULT partition for a day without one), so that retention drops whole days
    // (`verdicts_drop_days_before`) instead of deleting row by row. The rows move across;
    // the key becomes (id, received_at), as a partitioned table's must hold the partition
    // column. `verdicts_day_partition` creates a day's partition unless the DEFAULT
    // partition already holds rows of that day (those stay there until pruned).
    r#"
ALTER TABLE verdicts RENAME TO verdicts_unpartitioned;
ALTER SEQUENCE verdicts_id_seq OWNED BY NONE;
CREATE TABLE verdicts (LIKE verdicts_unpartitioned INCLUDING DEFAULTS)
    PARTITION BY RANGE (received_at);
ALTER TABLE verdicts ADD PRIMARY KEY (id, received_at);
CREATE TABLE verdicts_default PARTITION OF verdicts DEFAULT;
CREATE FUNCTION verdicts_day_partition(at_ms BIGINT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    day_ms BIGINT := at_ms - ((at_ms % 86400000) + 86400000) % 86400000;
    name TEXT := 'verdicts_d'
        || to_char(to_timestamp(day_ms / 1000) AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    IF EXISTS (SELECT 1 FROM verdicts_default
               WHERE received_at >= day_ms AND received_at < day_ms + 86400000) THEN
        RETURN FALSE;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF verdicts FOR VALUES FROM (%s) TO (%s)',
        name, day_ms, day_ms + 86400000);
    RETURN TRUE;
END $$;
CREATE FUNCTION verdicts_drop_days_before(before_ms BIGINT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    part RECORD;
    rows BIGINT;
    dropped BIGINT := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'verdicts'::regclass AND c.relname ~ '^verdicts_d[0-9]{8}$'
          AND extract(epoch FROM to_date(substr(c.relname, 11), 'YYYYMMDD'))::bigint
              * 1000 + 86400000 <= before_ms
    LOOP
        EXECUTE format('SELECT count(*) FROM %I', part.relname) INTO rows;
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + rows;
    END LOOP;
    RETURN dropped;
END $$;
SELECT verdicts_day_partition(day) FROM
    (SELECT DISTINCT received_at - ((received_at % 86400000) + 86400000) % 86400000 AS day
     FROM verdicts_unpartitioned) AS days;
INSERT INTO verdicts SELECT * FROM verdicts_unpartitioned;
DROP TABLE verdicts_unpartitioned;
ALTER SEQUENCE verdicts_id_seq OWNED BY verdicts.id;
CREATE INDEX verdicts_queue_id ON verdicts (queue_id);
CREATE INDEX verdicts_message_id ON verdicts (message_id);
CREATE INDEX verdicts_from_domain ON verdicts (from_domain, received_at);
CREATE INDEX verdicts_host ON verdicts (host, received_at);
CREATE INDEX verdicts_dmarc_domain ON verdicts (dmarc_domain, received_at)
    WHERE dmarc_domain IS NOT NULL;
CREATE INDEX verdicts_window ON verdicts
    (received_at, verdict, dmarc, spf, dkim, from_domain, client_ip, host);
CREATE INDEX verdicts_client_ip_at ON verdicts (client_ip, received_at);
"#,
    // 7: as SQLite's 8.
    concat!(
        r#"
CREATE TABLE verdict_hours (
    hour BIGINT NOT NULL,
    verdict TEXT NOT NULL,
    spf TEXT NOT NULL,
    dkim TEXT NOT NULL,
    dmarc TEXT NOT NULL,
    messages BIGINT NOT NULL,
    PRIMARY KEY (hour, verdict, spf, dkim, dmarc)
);
CREATE TABLE failing_hours (
    kind TEXT NOT NULL,
    hour BIGINT NOT NULL,
    name TEXT NOT NULL,
    failed BIGINT NOT NULL,
    PRIMARY KEY (kind, hour, name)
);
"#,
        crate::rollup_backfill!()
    ),
];
