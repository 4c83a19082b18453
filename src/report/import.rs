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
//! reporters label them, and then read the same way.

use flate2::read::MultiGzDecoder;
use mail_auth::report::Report;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use quick_xml::events::Event;
use quick_xml::Reader;
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
    }
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
            vec![Found {
                part,
                report: parse_xml(data),
            }]
        }
        Kind::Gzip => {
            let xml = budget.read(MultiGzDecoder::new(data), ImportError::Gzip);
            vec![Found {
                report: xml.and_then(|xml| match sniff(&xml) {
                    Kind::Xml => parse_xml(&xml),
                    _ => Err(ImportError::Xml("the gzip does not hold XML".into())),
                }),
                part,
            }]
        }
        Kind::Zip => zip(data, part, budget),
        Kind::Message => vec![refused(part, ImportError::NotAReport)],
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
        let name = Some(entry.name().to_string());
        let report = budget
            .read(&mut entry, ImportError::Zip)
            .and_then(|xml| match sniff(&xml) {
                Kind::Xml => parse_xml(&xml),
                _ => Err(ImportError::Xml("the zip entry is not XML".into())),
            });
        let stop = matches!(report, Err(ImportError::TooLarge(_)));
        found.push(Found { part: name, report });
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
        if !by_type && !by_name {
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
            kind => found.extend(container(kind, body, label, budget)),
        }
    }
    if found.is_empty() {
        found.push(refused(None, ImportError::NotAReport));
    }
    found
}

/// Checks the document with quick-xml, then reads it with mail-auth and checks what a report
/// must carry.
pub fn parse_xml(xml: &[u8]) -> Result<Report, ImportError> {
    let text =
        std::str::from_utf8(xml).map_err(|e| ImportError::Xml(format!("not UTF-8 ({e})")))?;
    well_formed(text)?;
    let report = Report::parse_xml(text.as_bytes()).map_err(ImportError::Xml)?;
    check(&report)?;
    Ok(report)
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
fn check(report: &Report) -> Result<(), ImportError> {
    let meta = &report.report_metadata;
    let missing = |what: &str| Err(ImportError::Invalid(format!("no {what}")));
    if meta.org_name.trim().is_empty() {
        return missing("report_metadata/org_name");
    }
    if meta.email.trim().is_empty() {
        return missing("report_metadata/email");
    }
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
    if let Some(i) = report.record.iter().position(|r| r.row.source_ip.is_none()) {
        return Err(ImportError::Invalid(format!(
            "record {} has no valid source_ip",
            i + 1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
