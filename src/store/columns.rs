//! What a verdict row keeps beside its document: the values queries filter and group on,
//! as typed columns ([`Columns`], taken from the record's `check` document), so that no
//! query reads the document row by row; the document itself is kept as compact JSON
//! ([`pack`]) for the API's single verdict and list.
//!
//! Rows stored before schema 6 (SQLite) / 4 (PostgreSQL) get their columns from their
//! documents in the migration.

use serde_json::Value;

/// A verdict's per-method results and domains, as the `check` document says them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Columns<'d> {
    /// SPF result for the MAIL FROM identity, and its domain.
    pub spf: Option<&'d str>,
    pub spf_domain: Option<&'d str>,
    /// `pass` when any DKIM signature passed, else the first signature's result; `d=` of
    /// that signature.
    pub dkim: Option<&'d str>,
    pub dkim_domain: Option<&'d str>,
    pub arc: Option<&'d str>,
    /// The DMARC policy (`none`, `quarantine`, `reject`) and the disposition applied.
    pub policy: Option<&'d str>,
    pub disposition: Option<&'d str>,
}

impl Columns<'_> {
    /// The columns of a `check` document (all `None` where it has no such part).
    pub fn of(document: &Value) -> Columns<'_> {
        fn s(v: &Value) -> Option<&str> {
            v.as_str()
        }
        let spf = &document["spf"];
        let signatures = document["dkim"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let counted = signatures
            .iter()
            .find(|sig| sig["result"] == "pass")
            .or(signatures.first());
        let dmarc = &document["dmarc"];
        Columns {
            spf: s(&spf["result"]),
            spf_domain: s(&spf["domain"]),
            dkim: counted.and_then(|sig| s(&sig["result"])),
            dkim_domain: counted.and_then(|sig| s(&sig["domain"])),
            arc: s(&document["arc"]["result"]),
            policy: s(&dmarc["policy"]),
            disposition: s(&dmarc["disposition"]),
        }
    }
}

/// The document as stored: its compact JSON (text in SQLite, `bytea` in PostgreSQL, where
/// the server then parses no `jsonb` of it). Deflating it as well was measured and left
/// out: miniz_oxide's fastest level costs ~20 µs per 1.4 KB document, more than the whole
/// row's insert.
pub fn pack(document: &Value) -> Vec<u8> {
    serde_json::to_vec(document).unwrap_or_else(|_| b"{}".to_vec())
}

/// A stored document; `None` when it is not JSON (a damaged row).
pub fn unpack(stored: &[u8]) -> Option<Value> {
    serde_json::from_slice(stored).ok()
}

/// JSON text for a column PostgreSQL types `jsonb`, written without building a `Value`
/// tree; `None` when the text holds an escaped NUL, which `jsonb` refuses (the caller then
/// cleans the value).
pub fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Option<String> {
    let text = serde_json::to_string(value).ok()?;
    (!text.contains("\\u0000")).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_count_a_message_once_for_dkim() {
        let doc = json!({
            "spf": {"result": "softfail", "domain": "mf.example"},
            "dkim": [{"result": "fail", "domain": "a.example"},
                     {"result": "pass", "domain": "b.example"}],
            "arc": {"result": "none"},
            "dmarc": {"result": "pass", "policy": "reject", "disposition": "none"},
        });
        let c = Columns::of(&doc);
        assert_eq!(
            c,
            Columns {
                spf: Some("softfail"),
                spf_domain: Some("mf.example"),
                dkim: Some("pass"),
                dkim_domain: Some("b.example"),
                arc: Some("none"),
                policy: Some("reject"),
                disposition: Some("none"),
            }
        );
        let unsigned = json!({"dkim": [], "spf": null});
        assert_eq!(Columns::of(&unsigned), Columns::default());
        let first = json!({"dkim": [{"result": "permerror", "domain": "x.example"},
                                    {"result": "fail", "domain": "y.example"}]});
        assert_eq!(Columns::of(&first).dkim, Some("permerror"));
        assert_eq!(Columns::of(&first).dkim_domain, Some("x.example"));
    }

    #[test]
    fn documents_read_back() {
        let doc = json!({"verdict": "accept", "reasons": ["x\0y"], "n": 1});
        assert_eq!(unpack(&pack(&doc)), Some(doc));
        assert_eq!(unpack(b"\x78\x01garbage"), None);
        assert_eq!(unpack(b""), None);
    }

    #[test]
    fn json_text_refuses_nul_for_jsonb() {
        assert_eq!(json_text(&["a"]).as_deref(), Some(r#"["a"]"#));
        assert_eq!(json_text(&["a\0"]), None);
    }
}
