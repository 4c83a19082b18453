//! Reading the aggregate reports other receivers send us (RFC 9990 §4; RFC 7489 §7.2 where
//! 9990 is silent): a whole message, or an `.xml`, `.xml.gz` or `.zip` file, down to
//! mail-auth's [`Report`].
//!
//! Everything goes through the field's crates: `mail-parser` for messages and attachments,
//! `flate2` and `zip` for the archives, `quick-xml` for a well-formedness pass and mail-auth's
//! own `Report::parse_xml` for the structure. Input is hostile until proven otherwise:
//!
//! - nothing larger than `max_size` is read, and decompression goes through a reader that
//!   stops one byte past what is left of that budget (gzip and zip bombs end there); the
//!   budget covers everything one input decompresses to, every zip entry together;
//! - XML with a DTD (`<!DOCTYPE`, so entity declarations and billion laughs) is refused before
//!   anything else is read from it, as is an entity reference other than the five predefined
//!   ones;
//! - the document must be well formed and complete (mail-auth's parser alone accepts a
//!   document cut short), with `feedback` as its root in no namespace or a DMARC one.
//!
//! What the format is comes from the bytes (gzip and zip magic, `<`), not from file names,
//! which reporters get wrong; a message's parts are picked by media type or file name, as
//! reporters label them, or by their content when the label says nothing (an
//! `application/octet-stream` part named `ATT00001.bin`), and then read the same way.
//!
//! Lenient where real reporters err and the meaning is not in doubt, as parsedmarc is, and
//! each repair is named in [`Found::repairs`] (stored with the report's errors): bytes that
//! are not UTF-8 (replaced with U+FFFD), unescaped `<`, `>` or `&` in text and a wrapper
//! element around `<feedback>` ([`repair`]), bytes after a complete gzip member, a gzip inside
//! a zip entry, an empty `org_name` (the reporter taken from the `email` domain). Strict where
//! safety needs it: the DTD, entity and size rules above are checked before any repair.

use flate2::bufread::GzDecoder;
use mail_auth::report::Report;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use quick_xml::events::Event;
use quick_xml::Reader;
use std::borrow::Cow;
use std::io::{Cursor, Read};

/// The root element's namespaces we read: none (RFC 7489 reporters mostly send none),
/// RFC 7489 Appendix C's, and RFC 9990's.
const NAMESPACES: [&str; 2] = [
    "http://dmarc.org/dmarc-xml/0.1",
    "urn:ietf:params:xml:ns:dmarc-2.0",
];
/// Zip entries read from one archive (reporters send one).
const MAX_ZIP_ENTRIES: usize = 16;
/// Report parts read from one message.
const MAX_PARTS: usize = 16;
/// Element nesting in a report is 5 deep; much deeper is not a report.
const MAX_DEPTH: usize = 32;

/// Why an input, or one report in it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("larger than {0} bytes (reports.max_import_size) once decompressed")]
    TooLarge(usize),
    #[error("corrupt or truncated gzip: {0}")]
    Gzip(String),
    #[error("corrupt zip: {0}")]
    Zip(String),
    #[error("zip holds more than {MAX_ZIP_ENTRIES} files")]
    ZipEntries,
    #[error("not a report: no XML, gzip or zip, nor a message with a report attached")]
    NotAReport,
    #[error("XML with a DTD (<!DOCTYPE>) is refused: entities could expand without bound")]
    Dtd,
    #[error("XML refers to the undeclared entity &{0};")]
    Entity(String),
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error("the root element is <{0}>, not <feedback>")]
    Root(String),
    #[error("the root element's namespace `{0}` is not a DMARC report's")]
    Namespace(String),
    #[error("not a valid aggregate report: {0}")]
    Invalid(String),
}

/// One report found in an input, or why what was found is refused; `part` names where it was
/// (`report.xml`, `attachment 2`, ...) when the input held several.
#[derive(Debug)]
pub struct Found {
    pub part: Option<String>,
    pub report: Result<Report, ImportError>,
    /// What was repaired to read it, in words for the operator (empty for a clean report).
    pub repairs: Vec<String>,
}

/// Every report in `input` (a message, XML, gzip or zip), each parsed or refused on its own.
/// Never empty: an input without a report gives one refusal.
pub fn parse_input(input: &[u8], max_size: usize) -> Vec<Found> {
    let mut budget = Budget {
        left: max_size,
        max: max_size,
    };
    if input.len() > max_size {
        return vec![refused(None, ImportError::TooLarge(max_size))];
    }
    match sniff(input) {
        Kind::Message => message(input, &mut budget),
        kind => container(kind, input, None, &mut budget),
    }
}

fn refused(part: Option<String>, e: ImportError) -> Found {
    Found {
        part,
        report: Err(e),
        repairs: Vec::new(),
    }
}

/// A report read from XML, with the repairs made before it (decompression, labels) and in it.
fn found_xml(
    part: Option<String>,
    xml: Result<Vec<u8>, ImportError>,
    mut repairs: Vec<String>,
) -> Found {
    let report = xml.and_then(|xml| match sniff(&xml) {
        Kind::Xml => parse_xml_repaired(&xml, &mut repairs),
        _ => Err(ImportError::Xml("the file does not hold XML".into())),
    });
    Found {
        part,
        report,
        repairs,
    }
}

/// Whether `input` reads as a mail message (not XML, gzip or zip by its first bytes).
pub fn is_message(input: &[u8]) -> bool {
    sniff(input) == Kind::Message
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gzip,
    Zip,
    Xml,
    Message,
}

/// What the bytes are, by their first bytes.
fn sniff(data: &[u8]) -> Kind {
    let text = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    match data {
        [0x1f, 0x8b, ..] => Kind::Gzip,
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Kind::Zip,
        _ if start.is_some_and(|i| text[i] == b'<') => Kind::Xml,
        _ => Kind::Message,
    }
}

/// Decompression budget for one input: what is left, and the configured cap (for errors).
struct Budget {
    left: usize,
    max: usize,
}

impl Budget {
    /// Reads `reader` to its end, or refuses as soon as it yields more than is left.
    fn read(
        &mut self,
        reader: impl Read,
        corrupt: fn(String) -> ImportError,
    ) -> Result<Vec<u8>, ImportError> {
        let mut out = Vec::new();
        let mut bounded = reader.take((self.left as u64).saturating_add(1));
        bounded
            .read_to_end(&mut out)
            .map_err(|e| corrupt(e.to_string()))?;
        if out.len() > self.left {
            return Err(ImportError::TooLarge(self.max));
        }
        self.left -= out.len();
        Ok(out)
    }
}

/// A gzip, zip or XML input (not a message).
fn container(kind: Kind, data: &[u8], part: Option<String>, budget: &mut Budget) -> Vec<Found> {
    match kind {
        Kind::Xml => {
            // Plain XML counts against the budget too: one input, one cap.
            if data.len() > budget.left {
                return vec![refused(part, ImportError::TooLarge(budget.max))];
            }
            budget.left -= data.len();
            vec![found_xml(part, Ok(data.to_vec()), Vec::new())]
        }
        Kind::Gzip => {
            let mut repairs = Vec::new();
            let xml = gunzip(data, budget, &mut repairs);
            vec![found_xml(part, xml, repairs)]
        }
        Kind::Zip => zip(data, part, budget),
        Kind::Message => vec![refused(part, ImportError::NotAReport)],
    }
}

/// Every member of a gzip stream; bytes after a complete member that do not start another
/// (a stray line end one big receiver adds) are ignored and named in `repairs`, as zlib and
/// parsedmarc ignore them. A member cut short is refused.
fn gunzip(
    data: &[u8],
    budget: &mut Budget,
    repairs: &mut Vec<String>,
) -> Result<Vec<u8>, ImportError> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let mut member = GzDecoder::new(rest);
        out.extend(budget.read(&mut member, ImportError::Gzip)?);
        rest = member.into_inner();
        if rest.is_empty() {
            return Ok(out);
        }
        if !rest.starts_with(&[0x1f, 0x8b]) {
            repairs.push(format!(
                "{} byte(s) after the end of the gzip data ignored",
                rest.len()
            ));
            return Ok(out);
        }
    }
}

/// Each file in a zip archive (directories skipped).
fn zip(data: &[u8], part: Option<String>, budget: &mut Budget) -> Vec<Found> {
    let mut archive = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(a) => a,
        Err(e) => return vec![refused(part, ImportError::Zip(e.to_string()))],
    };
    if archive.len() > MAX_ZIP_ENTRIES {
        return vec![refused(part, ImportError::ZipEntries)];
    }
    let mut found = Vec::new();
    for i in 0..archive.len() {
        let mut entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                found.push(refused(part.clone(), ImportError::Zip(e.to_string())));
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().to_string();
        let mut repairs = Vec::new();
        let xml = budget.read(&mut entry, ImportError::Zip).and_then(|data| {
            if sniff(&data) == Kind::Gzip {
                // Some reporters gzip the XML and then zip the .xml.gz.
                repairs.push(format!("the zip entry {name} held gzip: decompressed"));
                gunzip(&data, budget, &mut repairs)
            } else {
                Ok(data)
            }
        });
        let one = found_xml(Some(name), xml, repairs);
        let stop = matches!(one.report, Err(ImportError::TooLarge(_)));
        found.push(one);
        if stop {
            // The budget is spent: the other entries would only be refused the same way.
            break;
        }
    }
    if found.is_empty() {
        found.push(refused(part, ImportError::NotAReport));
    }
    found
}

/// The report parts of a message: XML, gzip or zip by media type or file name.
fn message(data: &[u8], budget: &mut Budget) -> Vec<Found> {
    let Some(msg) = MessageParser::new().parse(data) else {
        return vec![refused(None, ImportError::NotAReport)];
    };
    let mut found = Vec::new();
    for (i, part) in msg.parts.iter().enumerate() {
        let body: &[u8] = match &part.body {
            PartType::Text(t) => t.as_bytes(),
            PartType::Binary(b) | PartType::InlineBinary(b) => b,
            _ => continue,
        };
        let subtype = part
            .content_type()
            .and_then(|ct| ct.subtype())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let name = part.attachment_name().map(str::to_ascii_lowercase);
        let by_type = ["xml", "gzip", "x-gzip", "zip", "x-zip", "x-zip-compressed"]
            .contains(&subtype.as_str());
        let by_name = name
            .as_deref()
            .is_some_and(|n| n.ends_with(".xml") || n.ends_with(".gz") || n.ends_with(".zip"));
        // A part the label says nothing about (application/octet-stream, `ATT00001.bin`) is
        // read when its bytes are gzip, zip or XML; the message's own text parts are not.
        let ctype = part
            .content_type()
            .map(|ct| ct.ctype().to_ascii_lowercase())
            .unwrap_or_default();
        let by_content = !by_type
            && !by_name
            && !matches!(ctype.as_str(), "text" | "multipart" | "message" | "")
            && sniff(body) != Kind::Message;
        if !by_type && !by_name && !by_content {
            continue;
        }
        if found.len() == MAX_PARTS {
            break;
        }
        let label = Some(
            part.attachment_name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("part {i}")),
        );
        match sniff(body) {
            Kind::Message => found.push(refused(
                label,
                ImportError::Xml("the attachment is not XML, gzip or zip".into()),
            )),
            kind => {
                let first = found.len();
                found.extend(container(kind, body, label, budget));
                if by_content {
                    let said = format!(
                        "the attachment labelled {ctype}/{subtype}{} was read by its content",
                        part.attachment_name()
                            .map(|n| format!(" ({n})"))
                            .unwrap_or_default()
                    );
                    for f in &mut found[first..] {
                        f.repairs.insert(0, said.clone());
                    }
                }
            }
        }
    }
    if found.is_empty() {
        found.push(refused(None, ImportError::NotAReport));
    }
    found
}

/// Checks the document with quick-xml, then reads it with mail-auth and checks what a report
/// must carry, repairing what may be repaired (the repairs are dropped: see
/// [`parse_xml_repaired`]).
pub fn parse_xml(xml: &[u8]) -> Result<Report, ImportError> {
    parse_xml_repaired(xml, &mut Vec::new())
}

/// As [`parse_xml`], naming each repair made in `repairs`.
pub fn parse_xml_repaired(xml: &[u8], repairs: &mut Vec<String>) -> Result<Report, ImportError> {
    let text = match String::from_utf8_lossy(xml) {
        Cow::Borrowed(t) => Cow::Borrowed(t),
        Cow::Owned(t) => {
            repairs.push("bytes that are not UTF-8 replaced with U+FFFD".into());
            Cow::Owned(t)
        }
    };
    // Before any repair: a DTD or entity declaration is never read.
    if repair::has_dtd(&text) {
        return Err(ImportError::Dtd);
    }
    let text = repaired(text, repairs)?;
    let mut report = Report::parse_xml(text.as_bytes()).map_err(ImportError::Xml)?;
    check(&mut report, repairs)?;
    Ok(report)
}

/// The document, well formed, after at most one markup repair and one unwrapping; the first
/// error when those do not make it so. DTDs, entities and foreign namespaces are never
/// repaired.
fn repaired<'a>(
    mut text: Cow<'a, str>,
    repairs: &mut Vec<String>,
) -> Result<Cow<'a, str>, ImportError> {
    let (mut escaped, mut unwrapped) = (false, false);
    let mut first = None;
    loop {
        let e = match well_formed(&text) {
            Ok(()) => return Ok(text),
            Err(e @ (ImportError::Dtd | ImportError::Entity(_) | ImportError::Namespace(_))) => {
                return Err(e)
            }
            Err(e) => e,
        };
        let fixed = match &e {
            ImportError::Root(name) if !unwrapped => {
                unwrapped = true;
                repair::unwrap_feedback(&text).map(|inner| {
                    (
                        inner,
                        format!("the wrapper element <{name}> around <feedback> removed"),
                    )
                })
            }
            ImportError::Xml(_) if !escaped => {
                escaped = true;
                repair::escape_stray_markup(&text)
                    .map(|t| (t, "unescaped '<', '>' or '&' in text escaped".to_string()))
            }
            _ => None,
        };
        let first_error = first.get_or_insert(e).clone();
        match fixed {
            Some((t, said)) => {
                text = Cow::Owned(t);
                repairs.push(said);
            }
            None => return Err(first_error),
        }
    }
}

/// One pass over every event: no DTD, no undeclared entity, one `feedback` root in a DMARC
/// namespace (or none), closed properly, nothing after it.
fn well_formed(text: &str) -> Result<(), ImportError> {
    let mut reader = Reader::from_str(text);
    let mut depth = 0usize;
    let mut root_done = false;
    let at = |r: &Reader<&[u8]>| r.buffer_position();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ImportError::Xml(format!("at byte {}: {e}", at(&reader))))?;
        match event {
            Event::DocType(_) => return Err(ImportError::Dtd),
            Event::GeneralRef(r) => {
                let name: &str = &r;
                if !r.is_char_ref() && !["lt", "gt", "amp", "apos", "quot"].contains(&name) {
                    return Err(ImportError::Entity(name.chars().take(64).collect()));
                }
                r.resolve_char_ref()
                    .map_err(|e| ImportError::Xml(format!("at byte {}: {e}", at(&reader))))?;
            }
            Event::Start(e) if depth == 0 => {
                root(&e, root_done)?;
                depth = 1;
            }
            Event::Empty(e) if depth == 0 => {
                root(&e, root_done)?;
                root_done = true;
            }
            Event::Start(_) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ImportError::Xml(format!("nested deeper than {MAX_DEPTH}")));
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    root_done = true;
                }
            }
            Event::Text(t) if depth == 0 && !t.trim().is_empty() => {
                return Err(ImportError::Xml("text outside the root element".into()));
            }
            Event::Eof if depth > 0 => {
                return Err(ImportError::Xml(format!(
                    "the document ends inside <feedback> (truncated at byte {})",
                    text.len()
                )));
            }
            Event::Eof if !root_done => {
                return Err(ImportError::Xml("no root element".into()));
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The root element: `feedback`, in no namespace or a DMARC one, and the only one.
fn root(e: &quick_xml::events::BytesStart<'_>, root_done: bool) -> Result<(), ImportError> {
    if root_done {
        return Err(ImportError::Xml("content after the root element".into()));
    }
    let name = e.name();
    if name.0 != "feedback" {
        return Err(ImportError::Root(name.0.chars().take(64).collect()));
    }
    for attr in e.attributes() {
        let attr = attr.map_err(|e| ImportError::Xml(e.to_string()))?;
        if attr.key.0 == "xmlns" && !NAMESPACES.contains(&attr.value.trim()) {
            return Err(ImportError::Namespace(
                attr.value.chars().take(200).collect(),
            ));
        }
    }
    Ok(())
}

/// What a report must carry to be stored and told apart (RFC 9990 §3.1.1: report_metadata
/// with org_name, email, report_id and date_range; policy_published with the domain; each
/// record with its source address).
///
/// An empty `org_name` is taken from the `email` domain, as parsedmarc does; a record without
/// a source address is skipped, as parsedmarc skips it.
fn check(report: &mut Report, repairs: &mut Vec<String>) -> Result<(), ImportError> {
    let missing = |what: &str| Err(ImportError::Invalid(format!("no {what}")));
    let meta = &mut report.report_metadata;
    if meta.email.trim().is_empty() {
        return missing("report_metadata/email");
    }
    if meta.org_name.trim().is_empty() {
        let domain = meta.email.trim().rsplit('@').next().unwrap_or_default();
        let domain = domain.trim_end_matches('>').trim();
        if domain.is_empty() {
            return missing("report_metadata/org_name");
        }
        repairs.push(format!(
            "empty org_name: the reporter taken from the email domain ({domain})"
        ));
        meta.org_name = domain.to_string();
    }
    let meta = &report.report_metadata;
    if meta.report_id.trim().is_empty() {
        return missing("report_metadata/report_id");
    }
    if report.policy_published.domain.trim().is_empty() {
        return missing("policy_published/domain");
    }
    let range = &meta.date_range;
    if range.begin == 0 || range.end < range.begin || i64::try_from(range.end).is_err() {
        return Err(ImportError::Invalid(format!(
            "date_range {}..{} is not a period",
            range.begin, range.end
        )));
    }
    // A record without a valid source address is skipped, as parsedmarc skips it, and named
    // in the repairs; a report left with no record at all is refused.
    let before = report.record.len();
    let mut position = 0;
    report.record.retain(|r| {
        position += 1;
        if r.row.source_ip.is_some() {
            return true;
        }
        repairs.push(format!(
            "record {position} has no valid source_ip: skipped ({} message(s) not counted)",
            r.row.count
        ));
        false
    });
    if before > 0 && report.record.is_empty() {
        return Err(ImportError::Invalid(
            "no record has a valid source_ip".into(),
        ));
    }
    Ok(())
}

mod repair;
#[cfg(test)]
mod tests;
