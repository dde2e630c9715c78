//! A small HL7 v2 (ER7) writer: segments of fields of components, with the standard
//! delimiters `|^~\&`, escaping of every text value, and trailing empty fields and
//! components left out (HL7 v2.6 ch. 2.5.3: "trailing delimiters may be omitted").
//!
//! Why not a crate: of the Rust HL7 crates on crates.io (`hl7v2-writer`, `hl7-2`, `hl7-net`,
//! `rust-hl7`), the maintained ones are young single-maintainer projects and `rust-hl7` only
//! parses; writing the few segments PCD-01/PCD-04 need is this file, and the one subtle part,
//! escaping, is tested below.

use std::fmt::Write as _;

/// The encoding characters, MSH-2: component, repetition, escape, subcomponent.
pub const ENCODING_CHARS: &str = "^~\\&";

/// Escapes a text value so that no delimiter in it is read as one (HL7 v2.6 ch. 2.7.4):
/// `|` `\F\`, `^` `\S\`, `&` `\T\`, `~` `\R\`, `\` `\E\`; a carriage return or line feed,
/// which would end the segment, as the hex escapes `\X0D\` / `\X0A\`. Other control
/// characters become a space.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            '\r' => out.push_str("\\X0D\\"),
            '\n' => out.push_str("\\X0A\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A composite value: each part escaped, joined with `^`, trailing empty parts left out.
pub fn comp(parts: &[&str]) -> String {
    join(parts.iter().map(|p| esc(p)), '^')
}

/// A composite built from parts that are already encoded (escaped text, or subcomponents
/// joined with `&`), joined with `^`, trailing empty parts left out.
pub fn comp_raw(parts: &[String]) -> String {
    join(parts.iter().cloned(), '^')
}

/// Subcomponents (inside a component): each escaped, joined with `&`.
pub fn sub(parts: &[&str]) -> String {
    join(parts.iter().map(|p| esc(p)), '&')
}

/// Repetitions of already encoded values, joined with `~`.
pub fn reps(values: &[String]) -> String {
    join(values.iter().cloned(), '~')
}

fn join(parts: impl Iterator<Item = String>, sep: char) -> String {
    let mut v: Vec<String> = parts.collect();
    while v.last().is_some_and(String::is_empty) {
        v.pop();
    }
    let mut out = String::new();
    for (i, p) in v.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push_str(p);
    }
    out
}

/// One segment: its id and its fields by number (already encoded values).
#[derive(Debug, Clone)]
pub struct Segment {
    id: &'static str,
    /// `fields[n - 1]` is field n (for MSH, field 1 is the field separator itself).
    fields: Vec<String>,
}

impl Segment {
    /// An empty segment `id`.
    pub fn new(id: &'static str) -> Segment {
        Segment {
            id,
            fields: Vec::new(),
        }
    }

    /// Sets field `n` (1-based) to an encoded value (see [`esc`], [`comp`]).
    pub fn set(mut self, n: usize, value: impl Into<String>) -> Segment {
        if n == 0 {
            return self;
        }
        if self.fields.len() < n {
            self.fields.resize(n, String::new());
        }
        self.fields[n - 1] = value.into();
        self
    }

    /// Sets field `n` to escaped text.
    pub fn text(self, n: usize, value: &str) -> Segment {
        self.set(n, esc(value))
    }

    fn encode(&self, out: &mut String) {
        out.push_str(self.id);
        let mut fields: &[String] = &self.fields;
        while fields.last().is_some_and(String::is_empty) {
            fields = &fields[..fields.len() - 1];
        }
        // MSH-1 is the field separator that follows "MSH" itself.
        let skip = usize::from(self.id == "MSH");
        for f in fields.iter().skip(skip) {
            out.push('|');
            out.push_str(f);
        }
    }
}

/// A message: segments, each ended by a carriage return.
pub fn message(segments: &[Segment]) -> String {
    let mut out = String::with_capacity(segments.len() * 64);
    for s in segments {
        s.encode(&mut out);
        out.push('\r');
    }
    out
}

/// HL7 DTM in UTC with milliseconds: `YYYYMMDDHHMMSS.SSS+0000`.
pub fn dtm(ms: i64) -> String {
    let t = crate::clock::calendar_utc(ms);
    let mut s = String::with_capacity(23);
    let _ = write!(
        s,
        "{:04}{:02}{:02}{:02}{:02}{:02}.{:03}+0000",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        ms.rem_euclid(1000)
    );
    s
}

/// A number for OBX-5 (NM): no exponent, at most 3 decimals, no trailing zeros.
pub fn number(v: f64) -> String {
    let mut s = format!("{v:.3}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" { "0".to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delimiter_in_text_is_escaped() {
        assert_eq!(esc(r"a|b^c&d~e\f"), r"a\F\b\S\c\T\d\R\e\E\f");
        assert_eq!(esc("line1\rline2\nx"), r"line1\X0D\line2\X0A\x");
        assert_eq!(esc("tab\tbell\u{7}"), "tab bell ");
        assert_eq!(esc("Müller, Anna"), "Müller, Anna");
    }

    #[test]
    fn trailing_empty_fields_and_components_are_left_out() {
        assert_eq!(
            comp(&["150456", "MDC_PULS_OXIM_SAT_O2", "MDC", "", ""]),
            "150456^MDC_PULS_OXIM_SAT_O2^MDC"
        );
        assert_eq!(comp(&["", "", "x"]), "^^x");
        let s = Segment::new("OBX").set(1, "1").set(2, "NM").set(11, "");
        assert_eq!(message(&[s]), "OBX|1|NM\r");
    }

    #[test]
    fn msh_starts_with_its_encoding_characters() {
        let msh = Segment::new("MSH")
            .set(2, ENCODING_CHARS)
            .text(3, "vitalsd")
            .set(9, comp(&["ORU", "R01", "ORU_R01"]));
        assert_eq!(message(&[msh]), "MSH|^~\\&|vitalsd||||||ORU^R01^ORU_R01\r");
    }

    #[test]
    fn a_component_holding_a_delimiter_stays_one_component() {
        // A patient label with a caret must not split PID-5 into family^given.
        assert_eq!(
            comp(&["Smith^John", "", "", "", "", "", "U"]),
            r"Smith\S\John^^^^^^U"
        );
        assert_eq!(sub(&["a&b", "c"]), r"a\T\b&c");
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        // 2009-08-13 09:57:15.250 UTC, the PCD TF-2 example's OBR-7 with milliseconds.
        assert_eq!(dtm(1_250_157_435_250), "20090813095715.250+0000");
        assert_eq!(dtm(0), "19700101000000.000+0000");
    }

    #[test]
    fn numbers_have_no_exponent_and_no_trailing_zeros() {
        assert_eq!(number(97.0), "97");
        assert_eq!(number(3.5), "3.5");
        assert_eq!(number(0.125), "0.125");
        assert_eq!(number(120.0004), "120");
        assert_eq!(number(-0.0), "0");
    }
}
