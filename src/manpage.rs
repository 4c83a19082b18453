//! `authmilter.toml(5)`, generated from the README's "Configuration reference": the README's
//! table stays the one place the keys, defaults and meanings are written, and the man page
//! shipped in the package is rendered from the copy compiled into the binary.
//!
//! Only the Markdown that section uses is understood: paragraphs, one table of
//! `| key | default | meaning |` rows, and a fenced example.

/// The README the binary was built from.
pub const README: &str = include_str!("../README.md");

/// The heading whose section becomes the man page.
const SECTION: &str = "## Configuration reference";

/// One row of the reference table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub key: String,
    pub default: String,
    pub meaning: String,
}

/// The section's Markdown, from its heading up to the next `## ` heading.
pub fn reference_section(readme: &str) -> Option<&str> {
    let start = readme.find(SECTION)?;
    let body = &readme[start + SECTION.len()..];
    let end = body.find("\n## ").unwrap_or(body.len());
    Some(&body[..end])
}

/// The table rows of the reference (the header and separator rows left out).
pub fn reference_keys(readme: &str) -> Vec<Key> {
    let Some(section) = reference_section(readme) else {
        return Vec::new();
    };
    section
        .lines()
        .filter_map(|line| {
            let cells = table_cells(line)?;
            let [key, default, meaning] = cells.as_slice() else {
                return None;
            };
            if key == "key" || key.starts_with("---") {
                return None;
            }
            Some(Key {
                key: key.clone(),
                default: default.clone(),
                meaning: meaning.clone(),
            })
        })
        .collect()
}

fn table_cells(line: &str) -> Option<Vec<String>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split(" | ").map(|c| c.trim().to_string()).collect())
}

/// The whole `authmilter.toml(5)` page in roff (man(7) macros).
pub fn config_page(readme: &str, version: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH AUTHMILTER.TOML 5 \"\" \"authmilter {}\" \"File Formats\"\n",
        escape(version)
    ));
    out.push_str(".SH NAME\nauthmilter.toml \\- configuration file of authmilter(8)\n");
    out.push_str(".SH SYNOPSIS\n/etc/authmilter/authmilter.toml\n");
    let section = reference_section(readme).unwrap_or("");
    out.push_str(".SH DESCRIPTION\n");
    let mut in_table = false;
    let mut in_code = false;
    let mut paragraph = String::new();
    let flush = |paragraph: &mut String, out: &mut String| {
        if !paragraph.trim().is_empty() {
            out.push_str(".PP\n");
            out.push_str(&inline(paragraph.trim()));
            out.push('\n');
        }
        paragraph.clear();
    };
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            flush(&mut paragraph, &mut out);
            in_code = !in_code;
            out.push_str(if in_code {
                ".PP\n.nf\n.RS 4\n"
            } else {
                ".RE\n.fi\n"
            });
            continue;
        }
        if in_code {
            out.push_str(&escape_line(line));
            out.push('\n');
            continue;
        }
        if let Some(cells) = table_cells(line) {
            flush(&mut paragraph, &mut out);
            if !in_table {
                in_table = true;
                out.push_str(".SH KEYS\n");
            }
            if let [key, default, meaning] = cells.as_slice() {
                if key == "key" || key.starts_with("---") {
                    continue;
                }
                out.push_str(&format!(
                    ".TP\n{}\n{}\n.br\nDefault: {}\n",
                    inline(key),
                    inline(meaning),
                    inline(default)
                ));
            }
            continue;
        }
        if in_table && !line.trim().is_empty() {
            in_table = false;
            out.push_str(".SH EXAMPLE\n");
        }
        if line.trim().is_empty() {
            flush(&mut paragraph, &mut out);
        } else {
            paragraph.push_str(line);
            paragraph.push('\n');
        }
    }
    flush(&mut paragraph, &mut out);
    out.push_str(
        ".SH FILES\n.TP\n/etc/authmilter/authmilter.toml\nthe configuration the packaged \
         service reads\n.TP\n/var/lib/authmilter\nthe service's state (verdict store)\n",
    );
    out.push_str(".SH SEE ALSO\nauthmilter(8)\n");
    out
}

/// Markdown inline text to roff: `code` and **strong** in bold, the rest escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['`', '*']) {
        let (before, after) = rest.split_at(i);
        out.push_str(&escape(before));
        let marker = if after.starts_with("**") {
            "**"
        } else {
            &after[..1]
        };
        if marker == "*" {
            out.push('*');
            rest = &after[1..];
            continue;
        }
        let body = &after[marker.len()..];
        match body.find(marker) {
            Some(end) => {
                out.push_str("\\fB");
                out.push_str(&escape(&body[..end]));
                out.push_str("\\fR");
                rest = &body[end + marker.len()..];
            }
            None => {
                out.push_str(&escape(marker));
                rest = body;
            }
        }
    }
    out.push_str(&escape(rest));
    // A line starting with `.` or `'` would be read as a request.
    out.lines()
        .map(|l| {
            if l.starts_with(['.', '\'']) {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

fn escape_line(line: &str) -> String {
    let escaped = escape(line);
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_reference_has_the_keys() {
        let keys = reference_keys(README);
        assert!(keys.len() > 50, "{} keys", keys.len());
        for wanted in ["`authserv_id`", "`dns.nameservers`", "`milter.listen`"] {
            assert!(keys.iter().any(|k| k.key == wanted), "{wanted} missing");
        }
    }

    #[test]
    fn every_key_reaches_the_page() {
        let page = config_page(README, "0.0.0");
        for key in reference_keys(README) {
            assert!(page.contains(&inline(&key.key)), "{} missing", key.key);
        }
        assert!(page.starts_with(".TH AUTHMILTER.TOML 5"));
        assert!(page.contains(".SH EXAMPLE\n"));
        assert!(page.contains("[dns]\n"), "the example is kept verbatim");
    }

    #[test]
    fn roff_requests_and_backslashes_are_escaped() {
        assert_eq!(inline(".x `a\\b` **c**"), "\\&.x \\fBa\\eb\\fR \\fBc\\fR");
        assert_eq!(inline("a * b"), "a * b");
        assert_eq!(escape_line("'quoted"), "\\&'quoted");
    }
}
