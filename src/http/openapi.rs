//! The OpenAPI 3.1 description of the API, served at `/openapi.json`. A test checks that its
//! paths are exactly the router's routes.

use super::auth::{access, Access};
use super::browser::body_types;
use serde_json::{json, Map, Value};

fn param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
}

fn error_ref() -> Value {
    json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn json_ok(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"type": "object"}}}})
}

/// One operation: summary, parameters, request body type, success response.
fn op(
    method: &str,
    path: &str,
    summary: &str,
    params: Vec<Value>,
    body: Option<&str>,
    ok: Value,
) -> (String, String, Value) {
    let mut o = Map::new();
    o.insert("summary".into(), summary.into());
    o.insert(
        "operationId".into(),
        format!("{method}{}", path.replace(['/', '{', '}', '.'], "_")).into(),
    );
    if !params.is_empty() {
        o.insert("parameters".into(), params.into());
    }
    if body.is_some() {
        // Every type the route accepts (`browser::body_types`: no type a browser may send
        // cross-site without a preflight).
        let content: Map<String, Value> = body_types(path)
            .unwrap_or_default()
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    json!({"schema": {"type": "string", "format": "binary"}}),
                )
            })
            .collect();
        o.insert(
            "requestBody".into(),
            json!({"required": true, "content": content}),
        );
    }
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    responses.insert("default".into(), error_ref());
    o.insert("responses".into(), responses.into());
    let security = match access(path) {
        Access::Open => json!([{}, {"bearer": []}]),
        Access::Scoped(s) => json!([{}, {"bearer": [s.as_str()]}]),
        Access::Token(s) => json!([{"bearer": [s.as_str()]}]),
    };
    o.insert("security".into(), security);
    (path.to_string(), method.to_string(), Value::Object(o))
}

/// The document.
pub fn document() -> Value {
    let filters = [
        (
            "since",
            "RFC 3339 time, Unix seconds, or a duration ago (24h, 7d)",
        ),
        ("until", "as since; exclusive"),
        ("queue_id", "MTA queue id"),
        ("message_id", "Message-ID, with angle brackets"),
        ("from_domain", "RFC 5322.From domain"),
        ("client_ip", "SMTP client address"),
        ("verdict", "accept, quarantine, tempfail or reject"),
        (
            "dmarc",
            "DMARC result: pass, fail, none, temperror, permerror",
        ),
        ("host", "the filter host that recorded it (store.host)"),
        ("limit", "items per page, 1 to 1000 (default 100)"),
        ("next", "cursor from the previous page"),
    ];
    let ops = vec![
        op("get", "/healthz", "Liveness", vec![], None, json_ok("alive")),
        op("get", "/readyz", "Readiness (the verdict store answers)", vec![], None, json_ok("ready")),
        op(
            "post",
            "/v1/check",
            "Verify a message: the `authmilter check --json` document",
            vec![
                param("ip", "SMTP client address (SPF is not evaluated without one)"),
                param("helo", "HELO/EHLO name"),
                param("mail_from", "envelope sender; empty or <> for the null sender"),
                param("rcpt", "envelope recipient (repeatable; recorded only)"),
            ],
            Some("message/rfc822"),
            json!({"description": "verdict", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckDocument"}}}}),
        ),
        op(
            "post",
            "/v1/sign",
            "DKIM-sign a message with the configured keys",
            vec![
                param("domain", "sign with this domain's keys instead of the From domain's"),
                param("selector", "only this selector (with domain)"),
                param("output", "message (default: the signed message) or fields (JSON list of DKIM-Signature fields)"),
            ],
            Some("message/rfc822"),
            json!({"description": "signed message, or the signatures", "content": {"message/rfc822": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}}}),
        ),
        op(
            "get",
            "/v1/verdicts",
            "Past verdicts, newest first, with cursor pagination",
            filters.iter().map(|(n, d)| param(n, d)).collect(),
            None,
            json!({"description": "a page", "content": {"application/json": {"schema": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Verdict"}}, "next": {"type": ["string", "null"]}}}}}}),
        ),
        op(
            "get",
            "/v1/verdicts/{id}",
            "One past verdict",
            vec![json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}})],
            None,
            json!({"description": "the verdict", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Verdict"}}}}),
        ),
        op(
            "get",
            "/v1/stats",
            "Counts since a time, grouped, each group split by DMARC result",
            vec![
                param("since", "as for /v1/verdicts (default: 24h)"),
                param("group_by", "from_domain, verdict (default), dmarc or host"),
                param("from_domain", "only this From domain"),
            ],
            None,
            json_ok("counts"),
        ),
        op(
            "get",
            "/v1/reports",
            "DMARC aggregate reports received, newest import first, with cursor pagination",
            vec![
                param("domain", "the policy domain reported on"),
                param("reporter", "the reporter's org_name or email (exact, any case)"),
                param("since", "reports whose period ends after this (RFC 3339, Unix seconds, or an age like 7d)"),
                param("until", "reports whose period begins before this"),
                param("limit", "items per page, 1 to 1000 (default 100)"),
                param("next", "cursor from the previous page"),
            ],
            None,
            json!({"description": "a page", "content": {"application/json": {"schema": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/ReceivedReport"}}, "next": {"type": ["string", "null"]}}}}}}),
        ),
        op(
            "get",
            "/v1/reports/{id}",
            "One received report with its rows",
            vec![json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}})],
            None,
            json!({"description": "the report", "content": {"application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/ReceivedReport"}, {"type": "object", "properties": {"rows": {"type": "array", "items": {"$ref": "#/components/schemas/ReportRow"}}}}]}}}}),
        ),
        op(
            "get",
            "/v1/reports/summary",
            "What received reports say: messages, DMARC pass rate, top failing sources, per reporter",
            vec![
                param("domain", "only this policy domain"),
                param("since", "reports whose period ends after this (default: 7d)"),
            ],
            None,
            json!({"description": "the summary", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReportSummary"}}}}),
        ),
        op(
            "get",
            "/v1/reports/readiness",
            "Enforcement readiness of a domain: its sending sources classed aligned / fixable / failing, and the share of its mail p=quarantine or p=reject would hold or refuse today",
            vec![
                json!({"name": "domain", "in": "query", "required": true, "description": "the policy domain", "schema": {"type": "string"}}),
                param("since", "the start of the period (RFC 3339, Unix seconds, or an age like 30d; default 30d)"),
            ],
            None,
            json!({"description": "the view", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}}),
        ),
        op(
            "get",
            "/v1/reports/failures",
            "DMARC failure reports received (ARF auth-failure, plain-text notices), newest first",
            vec![
                param("domain", "the reported domain"),
                param("source_ip", "the source address the report names"),
                param("q", "words in the original headers, envelope sender, From domain, subject or reporter (any case)"),
                param("since", "received at or after this (RFC 3339, Unix seconds, or an age like 7d)"),
                param("until", "received before this"),
                param("limit", "items per page, 1 to 1000 (default 100)"),
                param("next", "cursor from the previous page"),
            ],
            None,
            json!({"description": "a page", "content": {"application/json": {"schema": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/FailureReport"}}, "next": {"type": ["string", "null"]}}}}}}),
        ),
        op(
            "get",
            "/v1/reports/failures/{id}",
            "One failure report with the original header section as given",
            vec![json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}})],
            None,
            json!({"description": "the report", "content": {"application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/FailureReport"}, {"type": "object", "properties": {"headers": {"type": "string"}}}]}}}}),
        ),
        op("post", "/v1/reload", "Reload configuration and policy (as SIGHUP)", vec![], None, json_ok("reloaded (422 with the reason when the new configuration is broken; the old one stays)")),
        op(
            "get",
            "/metrics",
            "Prometheus metrics",
            vec![],
            None,
            json!({"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}),
        ),
        op("get", "/openapi.json", "This document", vec![], None, json_ok("OpenAPI 3.1")),
    ];
    let mut paths = Map::new();
    for (path, method, operation) in ops {
        let entry = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[method.as_str()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "authmilter HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "license": {"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "CheckDocument": {"type": "object", "required": ["verdict", "smtp", "reasons", "dkim"], "properties": {
                    "verdict": {"enum": ["accept", "quarantine", "tempfail", "reject"]},
                    "smtp": {"type": "object"}, "reasons": {"type": "array", "items": {"type": "string"}},
                    "spf": {"type": ["object", "null"]}, "dkim": {"type": "array"}, "arc": {"type": ["object", "null"]},
                    "dmarc": {"type": ["object", "null"]}, "iprev": {"type": ["string", "null"]},
                    "authentication_results": {"type": ["string", "null"]}, "received_spf": {"type": ["string", "null"]}}},
                "Verdict": {"allOf": [{"$ref": "#/components/schemas/CheckDocument"}, {"type": "object", "properties": {
                    "id": {"type": "integer"}, "received_at": {"type": "string", "format": "date-time"},
                    "transport": {"enum": ["milter", "smtp", "http"]}, "queue_id": {"type": ["string", "null"]},
                    "message_id": {"type": ["string", "null"]}, "client_ip": {"type": "string"},
                    "helo": {"type": ["string", "null"]}, "mail_from": {"type": ["string", "null"]},
                    "rcpts": {"type": "array", "items": {"type": "string"}, "maxItems": 100,
                        "description": "the first 100 recipients, each cut to 256 octets"},
                    "rcpt_count": {"type": "integer", "description": "how many recipients the message had"},
                    "from_domain": {"type": ["string", "null"]},
                    "host": {"type": ["string", "null"], "description": "the filter host that recorded it (null: recorded before hosts were)"},
                    "duration_ms": {"type": "number"}}}]},
                "FailureReport": {"type": "object", "required": ["id", "reporter", "format", "feedback_type"], "properties": {
                    "id": {"type": "integer"}, "received_at": {"type": "string", "format": "date-time"},
                    "reporter": {"type": "string", "description": "the report message's From address"},
                    "report_message_id": {"type": ["string", "null"]},
                    "format": {"type": "string", "description": "arf or text"},
                    "feedback_type": {"type": "string"}, "auth_failure": {"type": ["string", "null"], "description": "dmarc, spf, signature, bodyhash, ..."},
                    "domain": {"type": ["string", "null"]}, "owned": {"type": "boolean"},
                    "source_ip": {"type": ["string", "null"]}, "arrival": {"type": ["string", "null"], "format": "date-time"},
                    "mail_from": {"type": ["string", "null"]}, "rcpt_to": {"type": ["string", "null"]},
                    "header_from": {"type": ["string", "null"]}, "subject": {"type": ["string", "null"]}, "original_message_id": {"type": ["string", "null"]},
                    "delivery_result": {"type": ["string", "null"]}, "identity_alignment": {"type": ["string", "null"]},
                    "dkim_domain": {"type": ["string", "null"]}, "dkim_selector": {"type": ["string", "null"]},
                    "authentication_results": {"type": "array", "items": {"type": "string"}},
                    "incidents": {"type": "integer"}}},
                "ReceivedReport": {"type": "object", "required": ["id", "org_name", "email", "report_id", "domain", "period"], "properties": {
                    "id": {"type": "integer"}, "received_at": {"type": "string", "format": "date-time"},
                    "org_name": {"type": "string"}, "email": {"type": "string"}, "report_id": {"type": "string"},
                    "domain": {"type": "string"}, "owned": {"type": "boolean", "description": "the domain is in reports.owned_domains (or that list is empty)"},
                    "period": {"type": "object", "properties": {"begin": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"}}},
                    "policy": {"type": "object", "description": "policy_published: domain, adkim, aspf, p, sp, np, testing, fo, discovery_method"},
                    "messages": {"type": "integer"}, "dmarc_pass": {"type": "integer"}, "pass_rate": {"type": ["number", "null"]},
                    "errors": {"type": "array", "items": {"type": "string"}},
                    "row_count": {"type": "integer", "description": "in lists only"}}},
                "ReportRow": {"type": "object", "properties": {
                    "source_ip": {"type": "string"}, "count": {"type": "integer"},
                    "disposition": {"enum": ["none", "pass", "quarantine", "reject", "unspecified"]},
                    "dkim": {"enum": ["pass", "fail", "unspecified"]}, "spf": {"enum": ["pass", "fail", "unspecified"]},
                    "header_from": {"type": "string"}, "envelope_from": {"type": ["string", "null"]}, "envelope_to": {"type": ["string", "null"]},
                    "reasons": {"type": "array", "items": {"type": "object"}}, "auth_results": {"type": "object"}}},
                "Readiness": readiness_schema(),
                "Loss": {"type": "object", "properties": {"messages": {"type": "integer"}, "share": {"type": ["number", "null"]}}},
                "ReportSummary": {"type": "object", "properties": {
                    "domain": {"type": ["string", "null"]}, "since": {"type": "string", "format": "date-time"},
                    "reports": {"type": "integer"}, "messages": {"type": "integer"}, "dmarc_pass": {"type": "integer"},
                    "pass_rate": {"type": ["number", "null"]},
                    "top_failing_sources": {"type": "array", "items": {"type": "object", "properties": {"source_ip": {"type": "string"}, "messages": {"type": "integer"}}}},
                    "reporters": {"type": "array", "items": {"type": "object", "properties": {"org_name": {"type": "string"}, "email": {"type": "string"}, "reports": {"type": "integer"}, "messages": {"type": "integer"}, "dmarc_pass": {"type": "integer"}, "pass_rate": {"type": ["number", "null"]}}}}}},
            },
        },
    })
}

/// `GET /v1/reports/readiness`'s answer (apart: one `json!` this deep reaches the macro
/// recursion limit).
fn readiness_schema() -> Value {
    json!({"type": "object", "properties": {
        "domain": {"type": "string"}, "since": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
        "reports": {"type": "integer"}, "reported_messages": {"type": "integer"}, "seen_here": {"type": "integer"},
        "messages": {"type": "integer"}, "dmarc_pass": {"type": "integer"}, "pass_rate": {"type": ["number", "null"]},
        "projected": {"type": "object", "properties": {
            "quarantine": {"$ref": "#/components/schemas/Loss"}, "reject": {"$ref": "#/components/schemas/Loss"}}},
        "classes": {"type": "object", "additionalProperties": {"type": "object", "properties": {"sources": {"type": "integer"}, "messages": {"type": "integer"}}}},
        "sources": {"type": "array", "items": {"type": "object", "properties": {
            "source_ip": {"type": "string"}, "reverse_name": {"type": ["string", "null"]},
            "spf_domains": {"type": "array", "items": {"type": "string"}},
            "dkim_domains": {"type": "array", "items": {"type": "string"}},
            "messages": {"type": "integer"}, "reported": {"type": "integer"}, "seen_here": {"type": "integer"},
            "dmarc_pass": {"type": "integer"}, "pass_rate": {"type": ["number", "null"]},
            "fixable": {"type": "integer"}, "failing": {"type": "integer"},
            "class": {"type": "string", "enum": ["aligned", "fixable", "failing"]},
            "loss_if_fixed": {"oneOf": [{"$ref": "#/components/schemas/Loss"}, {"type": "null"}]}}}},
        "unreadable_verdicts": {"type": "integer"}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document();
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(p, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), p.clone()))
            })
            .collect();
        let mut routed: Vec<(String, String)> = super::super::route_list()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
