//! Configuration errors that say where: file, line and key.
//!
//! Shared by the configuration and the policy files, which are both TOML.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A configuration (or policy) file the program refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when the error is about a place in the file.
    pub line: Option<usize>,
    /// Dotted key path (`dns.timeout_ms`), when known.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole (unreadable, missing).
    pub fn file(file: &Path, message: String) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message,
        }
    }

    /// An error about the value at `span` in `text`.
    pub fn at(file: &Path, text: &str, span: Range<usize>, message: String) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: Some(line_of(text, span.start)),
            key: key_at(text, span.start),
            message,
        }
    }

    /// Wraps a TOML syntax or type error, keeping its position and the key it names.
    pub fn from_toml(file: &Path, text: &str, error: &toml::de::Error) -> Self {
        let message = error.message().trim().to_string();
        match error.span() {
            Some(span) => {
                let mut e = ConfigError::at(file, text, span, message);
                // For an unknown key, the key itself is the best name for the place.
                if let Some(name) =
                    backticked(&e.message).filter(|_| e.message.contains("unknown field"))
                {
                    e.key = Some(match table_at(text, e.line.unwrap_or(1)) {
                        Some(table) => format!("{table}.{name}"),
                        None => name,
                    });
                }
                e
            }
            None => ConfigError::file(file, message),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key whose value sits at `offset`: the `key =` on that line (or the line of the
/// array it belongs to), prefixed by the enclosing `[table]`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_no = line_of(text, offset);
    let lines: Vec<&str> = text.lines().collect();
    let key = lines[..line_no.min(lines.len())]
        .iter()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            if l.starts_with('[') {
                return Some(None);
            }
            let (k, _) = l.split_once('=')?;
            let k = k.trim().trim_matches('"');
            (!k.is_empty() && !k.starts_with('#')).then(|| Some(k.to_string()))
        })
        .flatten();
    let table = table_at(text, line_no);
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

/// The `[table]` (or `[[array]]`) header in force at `line_no`.
fn table_at(text: &str, line_no: usize) -> Option<String> {
    text.lines()
        .take(line_no)
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix('[')
                .and_then(|r| r.split(']').next())
                .map(|t| t.trim_matches('[').trim().to_string())
        })
        .last()
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}
