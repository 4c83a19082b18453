//! Loaders for the conformance suites' DNS data: the RFC 7208 SPF suite's per-scenario
//! `zonedata`, and the DKIM/ARC suites' `{owner name: TXT}` maps.

use super::{character_strings, split_character_strings, Entry, Zone};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

impl Zone {
    /// Converts one scenario's `zonedata` (from rfc7208-tests.json, or the raw YAML converted
    /// with `serde_json::to_value`).
    ///
    /// The JSON already has the driver's rules applied: every entry is an object with a
    /// `type`, TXT/SPF carry `strings` (one RR), copies of SPF records are explicit TXT entries
    /// (flagged `generated_from_spf`, placed after the name's own entries) and `TXT: NONE`
    /// leaves no trace. Those entries are loaded as they are. Raw YAML entries
    /// (`TIMEOUT`, `{TXT: ..}`, `{SPF: [..]}`, `{MX: [pref, host]}`) get the rules applied here:
    /// SPF values are copied to TXT at the end of the name's list unless the name has any TXT
    /// entry, and `NONE` values publish nothing.
    pub fn from_spf_suite_zonedata(zonedata: &Value) -> Result<Zone, String> {
        let names = zonedata.as_object().ok_or("zonedata is not an object")?;
        let mut zone = Zone::new();
        for (name, entries) in names {
            let entries = entries
                .as_array()
                .ok_or(format!("{name}: entries are not a list"))?;
            let mut has_raw_txt = false;
            let mut spf_copies = Vec::new();
            for entry in entries {
                let err = |e: String| format!("{name}: {e} in {entry}");
                if let Some(rtype) = entry.get("type") {
                    zone.push(name, suite_applied_entry(rtype, entry).map_err(err)?);
                } else if entry.as_str() == Some("TIMEOUT") {
                    zone.push(name, Entry::Timeout);
                } else {
                    let (rtype, value) = single_pair(entry).map_err(err)?;
                    has_raw_txt |= rtype == "TXT";
                    if value.as_str() == Some("NONE") {
                        continue;
                    }
                    let parsed = suite_raw_entry(rtype, value).map_err(err)?;
                    if let Entry::Spf(strings) = &parsed {
                        spf_copies.push(Entry::Txt(strings.clone()));
                    }
                    zone.push(name, parsed);
                }
            }
            if !has_raw_txt {
                for copy in spf_copies {
                    zone.push(name, copy);
                }
            }
        }
        Ok(zone)
    }
}

fn single_pair(entry: &Value) -> Result<(&str, &Value), String> {
    match entry.as_object() {
        Some(map) if map.len() == 1 => {
            let (k, v) = map.iter().next().ok_or("empty entry")?;
            Ok((k.as_str(), v))
        }
        _ => Err("unrecognised entry".to_string()),
    }
}

fn scalar_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a scalar, got {other}")),
    }
}

fn suite_applied_entry(rtype: &Value, entry: &Value) -> Result<Entry, String> {
    let field = |key: &str| entry.get(key).ok_or(format!("missing {key:?}"));
    let text = |key: &str| field(key).and_then(scalar_text);
    let strings = || -> Result<Vec<Vec<u8>>, String> {
        let list = field("strings")?
            .as_array()
            .ok_or("strings is not a list")?;
        let texts = list
            .iter()
            .map(scalar_text)
            .collect::<Result<Vec<_>, _>>()?;
        // An empty list stays an RR with no character-strings, as the suite says (`SPF: [ ]`);
        // the server puts it on the wire as one empty string.
        Ok(character_strings(texts))
    };
    Ok(match rtype.as_str().ok_or("type is not a string")? {
        "TIMEOUT" => Entry::Timeout,
        "SERVFAIL" => Entry::ServFail,
        "TXT" => Entry::Txt(strings()?),
        "SPF" => Entry::Spf(strings()?),
        "A" => Entry::A(text("value")?.parse().map_err(|e| format!("A: {e}"))?),
        "AAAA" => Entry::Aaaa(text("value")?.parse().map_err(|e| format!("AAAA: {e}"))?),
        "PTR" => Entry::Ptr(text("value")?),
        "CNAME" => Entry::Cname(text("value")?),
        "MX" => Entry::Mx {
            preference: field("preference")?
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or("bad MX preference")?,
            exchange: text("exchange")?,
        },
        other => return Err(format!("unknown type {other:?}")),
    })
}

fn suite_raw_entry(rtype: &str, value: &Value) -> Result<Entry, String> {
    let strings = || -> Result<Vec<Vec<u8>>, String> {
        match value {
            Value::Array(list) => Ok(character_strings(
                list.iter()
                    .map(scalar_text)
                    .collect::<Result<Vec<_>, _>>()?,
            )),
            other => Ok(split_character_strings(scalar_text(other)?.as_bytes())),
        }
    };
    Ok(match rtype {
        "TXT" => Entry::Txt(strings()?),
        "SPF" => Entry::Spf(strings()?),
        "A" => Entry::A(scalar_text(value)?.parse().map_err(|e| format!("A: {e}"))?),
        "AAAA" => Entry::Aaaa(
            scalar_text(value)?
                .parse()
                .map_err(|e| format!("AAAA: {e}"))?,
        ),
        "PTR" => Entry::Ptr(scalar_text(value)?),
        "CNAME" => Entry::Cname(scalar_text(value)?),
        "MX" => match value.as_array().map(Vec::as_slice) {
            Some([preference, exchange]) => Entry::Mx {
                preference: preference
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or("bad MX preference")?,
                exchange: scalar_text(exchange)?,
            },
            _ => return Err("MX needs [preference, exchange]".to_string()),
        },
        other => return Err(format!("unknown type {other:?}")),
    })
}

impl Zone {
    /// Each value becomes one TXT RR (split into 255-byte character-strings as needed).
    pub fn from_txt_map(map: &HashMap<String, String>) -> Zone {
        let mut zone = Zone::new();
        for (name, txt) in map {
            zone.txt(name, txt);
        }
        zone
    }

    /// The `dns.json` shape: `{name: "txt" | null | {"error": "..."}}`. `null` leaves the name
    /// out (NXDOMAIN). An error mentioning a timeout (Mail::DKIM's "Query timed out") becomes a
    /// timeout, any other error SERVFAIL.
    pub fn from_txt_json(value: &Value) -> Result<Zone, String> {
        let map = value.as_object().ok_or("TXT map is not a JSON object")?;
        let mut zone = Zone::new();
        for (name, v) in map {
            match v {
                Value::String(txt) => {
                    zone.txt(name, txt);
                }
                Value::Null => {}
                Value::Object(obj) if obj.contains_key("error") => {
                    let reason = obj["error"].as_str().unwrap_or("").to_ascii_lowercase();
                    if reason.contains("timed out") || reason.contains("timeout") {
                        zone.timeout(name);
                    } else {
                        zone.servfail(name);
                    }
                }
                other => return Err(format!("{name}: unsupported value {other}")),
            }
        }
        Ok(zone)
    }

    pub fn from_txt_json_file(path: impl AsRef<Path>) -> Result<Zone, String> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Zone::from_txt_json(&value).map_err(|e| format!("{}: {e}", path.display()))
    }
}
