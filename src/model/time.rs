//! Time as plain data: [`Mono`], the monotonic instant every timer is measured on (read by
//! [`crate::clock`], the only place that reads a clock), and durations in the config syntax
//! (`250ms`, `30s`, `5m`, `2h`, `90d`, or combinations like `1m30s`), read by
//! [`parse_duration`] and written back by [`fmt_duration`].

use std::time::Duration;

/// Monotonic time: nanoseconds since an origin [`MONO_ORIGIN`] before this process first asked
/// for the time. The origin is arbitrary; only differences mean something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mono(pub u64);

impl Mono {
    /// Zero: the origin, [`MONO_ORIGIN`] before the first instant of the process.
    pub const ZERO: Mono = Mono(0);

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Mono {
        Mono(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Mono) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Milliseconds since this process first read the clock (0 for instants before it), for
    /// messages and the store's `mono_ms`.
    pub const fn as_millis(self) -> u64 {
        self.0.saturating_sub(MONO_ORIGIN.as_nanos() as u64) / 1_000_000
    }
}

/// How far before this process's first clock reading the monotonic origin lies. An alarm
/// restored after a restart was raised before this process started; its instants (raise, last
/// page) must still be monotonic instants, or escalation would lose its schedule. A year: an
/// alarm older than that restores as a year old.
pub const MONO_ORIGIN: Duration = Duration::from_secs(366 * 86_400);

/// Parses a duration such as `250ms`, `30s`, `5m`, `2h` or `1m30s`. The error says what was
/// expected and quotes the bad text.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = "a duration such as \"250ms\", \"30s\", \"5m\", \"2h\" or \"1m30s\"";
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("expected {expected}, found an empty string"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("expected {expected}, found {text:?}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("expected {expected}, found {text:?} (number too large)"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => {
                return Err(format!(
                    "expected {expected}, found {text:?} (unknown unit)"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A duration as written in a file (`"30s"`), read by serde through [`parse_duration`]: a bad
/// one is refused while the file is read, with [`parse_duration`]'s message (the text quoted,
/// what was expected). Keeps the text, so that a later message (out of range) quotes what
/// was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenDuration {
    /// The duration.
    pub value: Duration,
    /// The text as written.
    pub text: String,
}

impl<'de> serde::Deserialize<'de> for WrittenDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        let value = parse_duration(&text).map_err(serde::de::Error::custom)?;
        Ok(WrittenDuration { value, text })
    }
}

/// A duration in the config syntax that [`parse_duration`] reads back (`10s`, `250ms`).
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_combination() {
        let table = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7200)),
            ("1m30s", Duration::from_secs(90)),
            ("90d", Duration::from_secs(90 * 86_400)),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_quote_the_text() {
        for text in ["", "5", "m", "5 minutes", "-3s", "99999999999999999999999s"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("expected a duration"), "{text}: {err}");
        }
    }
}
