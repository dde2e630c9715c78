//! Durations in config files: `250ms`, `30s`, `5m`, `2h`, `90d`, or combinations like `1m30s`.

use std::time::Duration;

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
