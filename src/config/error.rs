//! Errors of the config loaders, and [`read_toml`], the one way every TOML file of the daemon
//! is read (the clinic config, device profiles, scenarios): serde reads the text into typed
//! values, and an error says where (1-based line and column), under which key (the path serde
//! was at, such as `rooms[0].recliners[1].bp_interval`, tracked by `serde_path_to_error`) and
//! what is wrong (serde's message; the value types' own `Deserialize` impls quote the bad value
//! and say what was expected).

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a config file or device profile was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file or directory could not be read (missing, no permission). The I/O error is the
    /// source, printed by the error chain.
    #[error("{}: cannot read {what}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What it was supposed to be (`config file`, `device profile`, `devices_dir`).
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A value in a file is wrong: a syntax error, an unknown key, a wrong type, or a value that
    /// does not validate.
    #[error("{}:{line}:{column}: {}{message}", path.display(), key_prefix(key))]
    Invalid {
        /// The file, as given to the loader.
        path: PathBuf,
        /// 1-based line of the bad value or key.
        line: usize,
        /// 1-based column (in characters) of the bad value or key.
        column: usize,
        /// The key path, such as `rooms[0].recliners[1].devices[0].profile`; empty when the
        /// error is not about one key (a TOML syntax error).
        key: String,
        /// What is wrong: the bad value and what was expected.
        message: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl ConfigError {
    /// The key path the error is about, if it is about a value in a file.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Io { .. } => None,
        }
    }

    /// The 1-based line the error points at, if it is about a value in a file.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => Some(*line),
            ConfigError::Io { .. } => None,
        }
    }
}

/// A file being validated: turns byte spans into line/column errors.
pub(crate) struct Source<'a> {
    pub(crate) origin: &'a Path,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    pub(crate) fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: String,
    ) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid {
            path: self.origin.to_path_buf(),
            line,
            column,
            key: key.into(),
            message,
        }
    }

    /// Reads the file into `T` ([`read_toml`]); an error names this file.
    pub(crate) fn read<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        read_toml(self.text).map_err(|e| self.err(e.span.clone(), e.key, e.message))
    }
}

/// Why [`read_toml`] refused a text: where, under which key, and serde's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlError {
    /// Byte range of the bad value (of its table for a missing key; empty when unknown).
    pub span: Range<usize>,
    /// 1-based line of `span`'s start.
    pub line: usize,
    /// 1-based column (in characters) of `span`'s start.
    pub column: usize,
    /// The key path, such as `rooms[0].recliners[1].id`; empty for a TOML syntax error.
    pub key: String,
    /// What is wrong: the bad value and what was expected.
    pub message: String,
}

/// Reads TOML `text` into `T`. Unknown keys are refused by `T`'s `deny_unknown_fields`; every
/// other check a value type can make on its own (a duration's syntax, an id's characters) is
/// its `Deserialize` impl's. The error's key path is the one serde was at; for a missing key,
/// its table's path plus the key.
pub fn read_toml<T: DeserializeOwned>(text: &str) -> Result<T, TomlError> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, &e, String::new()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = key_path(e.path());
        toml_error(text, e.inner(), key)
    })
}

/// The key path of `path`, without the fields `toml::Spanned` reads through.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let mut key = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if k.starts_with("$__") {
                    continue;
                }
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            Segment::Unknown => {}
        }
    }
    key
}

fn toml_error(text: &str, e: &toml::de::Error, key: String) -> TomlError {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim_end();
    // A missing key has no span of its own: the span is its table's, and the path too.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field);
    let (key, message) = match missing {
        Some(field) => (
            if key.is_empty() {
                field.to_owned()
            } else {
                format!("{key}.{field}")
            },
            format!("{message}, expected this key to be set"),
        ),
        None => (key, message.to_owned()),
    };
    let (line, column) = line_col(text, span.start);
    TomlError {
        span,
        line,
        column,
        key,
        message,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = text.get(..end).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or("").chars().count() + 1;
    (line, column)
}
