//! Checks shared by the config's validators: ids, non-empty text, bounded durations.

use super::error::{ConfigError, Source};
use super::parse_duration;
use crate::model::WrittenDuration;
use std::time::Duration;
use toml::Spanned;

/// Whether `s` is a valid id: 1 to 64 of `[A-Za-z0-9_-]`. Ids appear in URLs, topics and logs.
pub(super) fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(super) const ID_EXPECTED: &str = "expected 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'";

pub(super) fn check_text(
    src: &Source<'_>,
    s: &Spanned<String>,
    key: &str,
) -> Result<String, ConfigError> {
    let text = s.get_ref().trim();
    if text.is_empty() {
        Err(src.err(
            s.span(),
            key,
            format!("{:?} is empty, expected some text", s.get_ref()),
        ))
    } else {
        Ok(text.to_owned())
    }
}

/// A duration value of a raw file: typed ([`WrittenDuration`], read by serde) or, for keys
/// not typed yet, its text.
pub(super) trait DurationValue {
    /// The text as written.
    fn text(&self) -> &str;
    /// The duration, or what was expected.
    fn duration(&self) -> Result<Duration, String>;
}

impl DurationValue for WrittenDuration {
    fn text(&self) -> &str {
        &self.text
    }
    fn duration(&self) -> Result<Duration, String> {
        Ok(self.value)
    }
}

impl DurationValue for String {
    fn text(&self) -> &str {
        self
    }
    fn duration(&self) -> Result<Duration, String> {
        parse_duration(self)
    }
}

/// A duration within `range` (`min`, `max` and how to write them); the message quotes the
/// value as written.
pub(super) fn check_duration(
    src: &Source<'_>,
    s: &Spanned<impl DurationValue>,
    key: &str,
    range: (Duration, Duration, &str, &str),
) -> Result<Duration, ConfigError> {
    let (min, max, min_text, max_text) = range;
    let d = s
        .get_ref()
        .duration()
        .map_err(|m| src.err(s.span(), key, m))?;
    if d < min || d > max {
        return Err(src.err(
            s.span(),
            key,
            format!(
                "{:?} is out of range, expected a duration between {min_text} and {max_text}",
                s.get_ref().text()
            ),
        ));
    }
    Ok(d)
}

pub(super) fn join_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().collect::<Vec<_>>().join(", ")
}
