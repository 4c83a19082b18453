//! Indicator checks: the SVG Tiny Portable/Secure profile (draft-svg-tiny-ps-abrotman) as far
//! as it protects the reader, with a real XML parser (quick-xml) that never expands anything.
//!
//! Refused: a DTD (and so any entity defined in it, the "billion laughs"), references to
//! entities other than XML's five, processing instructions, scripts, animation, foreign
//! content, event handlers, references to anything outside the document, `x`/`y` on the
//! root, a root that is not `<svg baseProfile="tiny-ps">`, no `<title>`, and documents
//! larger than the limit, before or after gzip decompression (SVGZ).

use flate2::read::GzDecoder;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::io::Read;

/// Elements SVG Tiny PS forbids (scripting, animation, foreign content, external media).
const FORBIDDEN: &[&str] = &[
    "script",
    "foreignObject",
    "animate",
    "animateColor",
    "animateMotion",
    "animateTransform",
    "set",
    "discard",
    "image",
    "video",
    "audio",
    "iframe",
    "handler",
    "listener",
    "a",
];

/// Elements deeper than this are refused (no profile logo comes near it).
const MAX_DEPTH: usize = 64;
const MAX_ELEMENTS: usize = 20_000;

/// The gzip magic: an SVGZ indicator.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// The SVG text of an indicator as fetched or embedded: gunzipped when it is SVGZ, refused
/// past `max` bytes either way (a small file can inflate to gigabytes).
pub fn decompress(data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    if !is_gzip(data) {
        if data.len() > max {
            return Err(format!("indicator larger than {max} bytes"));
        }
        return Ok(data.to_vec());
    }
    let mut out = Vec::new();
    GzDecoder::new(data)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("indicator is not valid gzip: {e}"))?;
    if out.len() > max {
        return Err(format!(
            "indicator larger than {max} bytes after decompression"
        ));
    }
    Ok(out)
}

/// Checks an (uncompressed) indicator against the profile; `Err` says the first thing wrong.
pub fn check(svg: &[u8], max: usize) -> Result<(), String> {
    if svg.len() > max {
        return Err(format!("indicator larger than {max} bytes"));
    }
    let text = std::str::from_utf8(svg).map_err(|_| "indicator is not UTF-8".to_string())?;
    let mut reader = Reader::from_reader(text.as_bytes());
    reader.config_mut().check_end_names = true;
    let mut state = State::default();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("indicator is not well-formed XML: {e}"))?;
        match event {
            Event::DocType(_) => return Err("indicator has a DTD".into()),
            Event::PI(_) => return Err("indicator has a processing instruction".into()),
            Event::GeneralRef(r) if !r.is_char_ref() && !is_predefined(&r) => {
                return Err("indicator refers to an undefined entity".into());
            }
            Event::Start(e) => state.element(&e, false)?,
            Event::Empty(e) => state.element(&e, true)?,
            Event::End(_) => {
                state.depth = state.depth.saturating_sub(1);
                state.in_style = false;
            }
            Event::Text(t) if state.in_style => check_value(&t)?,
            Event::CData(t) if state.in_style => check_value(&t)?,
            Event::Eof => break,
            _ => {}
        }
    }
    if state.depth != 0 {
        return Err("indicator is not well-formed XML: an element is not closed".into());
    }
    if !state.root_seen {
        return Err("indicator has no root element".into());
    }
    if !state.title_seen {
        return Err("indicator has no <title>".into());
    }
    Ok(())
}

/// Where the reader is in the document.
#[derive(Default)]
struct State {
    depth: usize,
    elements: usize,
    root_seen: bool,
    title_seen: bool,
    in_style: bool,
}

impl State {
    fn element(&mut self, e: &BytesStart<'_>, empty: bool) -> Result<(), String> {
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err("indicator has too many elements".into());
        }
        let name = local(e.name().into_inner());
        if !self.root_seen {
            check_root(e, &name)?;
            self.root_seen = true;
        } else if self.depth == 0 {
            return Err("indicator has more than one root element".into());
        }
        if self.depth == 1 && name == "title" {
            self.title_seen = true;
        }
        if FORBIDDEN.contains(&name.as_str()) {
            return Err(format!("indicator has a forbidden <{name}> element"));
        }
        check_attributes(e)?;
        if !empty {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err("indicator nests elements too deeply".into());
            }
            self.in_style = name == "style";
        }
        Ok(())
    }
}

fn is_predefined(r: &str) -> bool {
    matches!(r, "lt" | "gt" | "amp" | "apos" | "quot")
}

/// The local part of a qualified name, as text.
fn local(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => name.to_string(),
    }
}

fn check_root(e: &BytesStart<'_>, name: &str) -> Result<(), String> {
    if name != "svg" {
        return Err(format!("indicator's root is <{name}>, not <svg>"));
    }
    let mut profile_ok = false;
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("indicator has a malformed attribute: {e}"))?;
        match attr.key.into_inner() {
            "baseProfile" => profile_ok = attr.value == "tiny-ps",
            "x" | "y" => return Err("indicator's root has x or y".into()),
            _ => {}
        }
    }
    if !profile_ok {
        return Err("indicator's root lacks baseProfile=\"tiny-ps\"".into());
    }
    Ok(())
}

fn check_attributes(e: &BytesStart<'_>) -> Result<(), String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("indicator has a malformed attribute: {e}"))?;
        let key = local(attr.key.into_inner());
        if key.len() > 2 && key[..2].eq_ignore_ascii_case("on") {
            return Err(format!("indicator has an event handler ({key})"));
        }
        if key == "href" && !attr.value.starts_with('#') {
            return Err("indicator refers to an external resource".into());
        }
        check_value(&attr.value)?;
    }
    Ok(())
}

/// Attribute values and style sheets: no entity beyond XML's own, no `url(...)` or
/// `@import` leaving the document.
fn check_value(value: &str) -> Result<(), String> {
    let text = value.to_ascii_lowercase();
    if text.contains("@import") {
        return Err("indicator imports a style sheet".into());
    }
    for (i, _) in text.match_indices("url(") {
        let target = text[i + 4..].trim_start_matches([' ', '\'', '"']);
        if !target.starts_with('#') {
            return Err("indicator refers to an external resource".into());
        }
    }
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        let tail = &rest[at + 1..];
        let end = tail.find(';').unwrap_or(tail.len());
        let name = &tail[..end];
        if !name.starts_with('#') && !is_predefined(name) {
            return Err("indicator refers to an undefined entity".into());
        }
        rest = &tail[end..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const GOOD: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.2" baseProfile="tiny-ps" viewBox="0 0 100 100">
<title>Example &amp; Co</title>
<circle cx="50" cy="50" r="40" fill="#1a5"/>
<use href="#c"/>
</svg>"##;

    #[test]
    fn a_tiny_ps_logo_passes() {
        check(GOOD.as_bytes(), 32 * 1024).unwrap();
    }

    #[test]
    fn hostile_indicators_are_refused() {
        let cases = [
            (
                r#"<!DOCTYPE svg [<!ENTITY a "aaaa">]><svg baseProfile="tiny-ps"><title>&a;</title></svg>"#,
                "DTD",
            ),
            (
                r#"<svg baseProfile="tiny-ps"><title>&a;</title></svg>"#,
                "undefined entity",
            ),
            (
                r#"<svg baseProfile="tiny-ps"><title>t</title><script>alert(1)</script></svg>"#,
                "<script>",
            ),
            (
                r#"<svg baseProfile="tiny-ps"><title>t</title><use href="https://evil.example/x.svg#a"/></svg>"#,
                "external",
            ),
            (
                r#"<svg xmlns:xlink="http://www.w3.org/1999/xlink" baseProfile="tiny-ps"><title>t</title><use xlink:href="//evil.example/x"/></svg>"#,
                "external",
            ),
            (
                r#"<svg baseProfile="tiny-ps"><title>t</title><rect style="fill:url(https://e.example/p)"/></svg>"#,
                "external",
            ),
            (
                r#"<svg baseProfile="tiny-ps"><title>t</title><style>@import "https://e.example/s.css";</style></svg>"#,
                "imports",
            ),
            (
                r#"<svg baseProfile="tiny-ps" onload="x()"><title>t</title></svg>"#,
                "event handler",
            ),
            (
                r#"<svg baseProfile="tiny-ps"><title>t</title><animate attributeName="r"/></svg>"#,
                "<animate>",
            ),
            (
                r#"<svg baseProfile="tiny-ps" x="0"><title>t</title></svg>"#,
                "x or y",
            ),
            (
                r#"<svg baseProfile="tiny"><title>t</title></svg>"#,
                "tiny-ps",
            ),
            (
                r#"<svg baseProfile="tiny-ps"><g><title>t</title></g></svg>"#,
                "no <title>",
            ),
            (
                r#"<html baseProfile="tiny-ps"><title>t</title></html>"#,
                "not <svg>",
            ),
            (
                r#"<svg baseProfile="tiny-ps"><title>t</title>"#,
                "well-formed",
            ),
        ];
        for (svg, why) in cases {
            let e = check(svg.as_bytes(), 32 * 1024).expect_err(svg);
            assert!(e.contains(why), "{svg}: {e}");
        }
        let big = format!("{}{}", GOOD, " ".repeat(40 * 1024));
        assert!(check(big.as_bytes(), 32 * 1024)
            .unwrap_err()
            .contains("larger"));
    }

    #[test]
    fn an_svgz_bomb_is_refused_while_inflating() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 50 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 100 * 1024);
        let e = decompress(&bomb, 32 * 1024).unwrap_err();
        assert!(e.contains("after decompression"), "{e}");

        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(GOOD.as_bytes()).unwrap();
        let svgz = gz.finish().unwrap();
        assert_eq!(decompress(&svgz, 32 * 1024).unwrap(), GOOD.as_bytes());
    }
}
