//! The one error of SPF record and macro-string parsing.

use std::fmt;

/// Why a record (or an explanation) does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError(String);

impl SyntaxError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        SyntaxError(message.into())
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
