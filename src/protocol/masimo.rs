//! Masimo Rad-8 / Radical-7 / Rad-97 "ASCII 1" serial output: one text line per second,
//! `MM/DD/YY HH:MM:SS SN=… SPO2=098% BPM=097 PI=03.60% … EXC=000800`, ending in CR LF.
//!
//! Facts: ../shared/reference/devices.md §6.1 (Rad-8 Operator's Manual §4-24 for the EXC bits,
//! yahnatan/pulseox README for a real line, OpenICE's Radical-7 spec for the field set).
//! The line is read as `KEY=VALUE` tokens (the field set depends on model and installed
//! parameters) and checked against a layout before any value is taken: the device time first,
//! every field complete in its width (`BPM=07` where the layout has three digits is a line
//! cut short), each key once (a repeated key is two lines run together after a lost CR LF),
//! no unknown key, every required field present, the length within the layout's bounds.
//! Anything else is a bad frame and gives no value. Dashes mean "no value".

use super::{Decoder, FeedReport};
use crate::model::{DeviceTime, Flag, Flags, Invalid, Measurement, Metric};

/// The longest line accepted. Real lines are about 150 bytes (Radical-7 color about 250); a
/// longer one is noise or a wrong baud rate and is skipped up to the next line end.
pub const MAX_LINE: usize = 512;

/// EXC exception bits (Rad-8 manual §4-24) and the flag each maps to. Bits not listed
/// (0x100/0x200 reserved, 0x800 "SET active", anything higher) are masked out.
const EXC_FLAGS: [(u32, Flag); 9] = [
    (0x001, Flag::ProbeUnplugged), // no sensor
    (0x002, Flag::SensorFault),    // defective sensor
    (0x004, Flag::LowPerfusion),
    (0x008, Flag::Searching), // pulse search
    (0x010, Flag::Interference),
    (0x020, Flag::SensorOff),    // sensor off patient
    (0x040, Flag::Interference), // ambient light
    (0x080, Flag::SensorFault),  // unrecognized sensor
    (0x400, Flag::LowSignal),    // low signal IQ
];

/// The flags an EXC bit field stands for, reserved bits ignored.
pub fn exc_flags(exc: u32) -> Flags {
    let mut flags = Flags::EMPTY;
    for (bit, flag) in EXC_FLAGS {
        flags.set_if(flag, exc & bit != 0);
    }
    flags
}

/// Stream decoder for `masimo-ascii`: splits lines on CR and/or LF and emits spo2, pulse_rate
/// and perfusion_index (when present) for each line.
#[derive(Debug, Default)]
pub struct MasimoDecoder {
    /// The current, unfinished line.
    line: Vec<u8>,
    /// True while skipping the rest of an over-long line.
    discarding: bool,
}

impl Decoder for MasimoDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        let mut report = FeedReport::default();
        let mut rest = bytes;
        // A run of bytes up to a line end (or the end of `bytes`) at a time; a whole line
        // within `bytes` is decoded where it lies.
        loop {
            let end = rest.iter().position(|&b| b == b'\r' || b == b'\n');
            let run = end.map_or(rest, |i| &rest[..i]);
            if self.discarding {
                report.skipped_bytes = report.skipped_bytes.saturating_add(len32(run));
            } else if run.len() > MAX_LINE - self.line.len() {
                // Longer than a line may be: all of it is skipped, up to the next line end.
                let n = len32(run).saturating_add(len32(&self.line));
                report.skipped_bytes = report.skipped_bytes.saturating_add(n);
                self.line.clear();
                self.discarding = true;
            } else if let (Some(_), true) = (end, self.line.is_empty()) {
                if !run.is_empty() {
                    decode_line(run, out, &mut report);
                }
            } else {
                self.line.extend_from_slice(run);
            }
            let Some(i) = end else { break };
            // A line end.
            if self.discarding {
                self.discarding = false;
            } else if !self.line.is_empty() {
                decode_line(&self.line, out, &mut report);
            }
            self.line.clear();
            rest = &rest[i + 1..];
        }
        report
    }

    fn reset(&mut self) {
        self.line.clear();
        self.discarding = false;
    }
}

/// `bytes.len()` as a count of skipped bytes (saturating; a feed is never that long).
fn len32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

/// A field's value as the line gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    /// A number.
    Number(f64),
    /// Dashes: the device has no value.
    Dashes,
    /// Well formed but not a decimal number (hex bits); only checked.
    Text,
}

/// What a field of a layout is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Spo2,
    PulseRate,
    PerfusionIndex,
    /// The EXC exception bits, hex.
    Exc,
    /// Checked for shape, not used.
    Other,
}

/// One `KEY=VALUE` field of a layout. A shape spells the value character by character:
/// `d` a decimal digit, `h` a hex digit, `s` a sign (`+` or `-`), anything else itself. The
/// device's "no value" form is the same shape with every `d` as `-` (`---%`, `--.--%`, `+--`);
/// a value that mixes digits and dashes is damaged. A final `*` stands for one or more
/// comma-separated words of letters and digits (the trend layout's `EXC=820:OffPat,SET`).
#[derive(Debug)]
struct FieldSpec {
    key: &'static str,
    shapes: &'static [&'static str],
    required: bool,
    role: Role,
}

/// A line layout: a `MM/DD/YY HH:MM:SS` device time, then its fields in any order, each at
/// most once, each in one of its shapes, every required one present.
#[derive(Debug)]
struct Layout {
    fields: &'static [FieldSpec],
    /// The layout writes "no value" as zeros (`SpO2=000 PR=000 PI=00.00`), not dashes.
    zero_is_no_value: bool,
}

const fn field(key: &'static str, shapes: &'static [&'static str], role: Role) -> FieldSpec {
    FieldSpec {
        key,
        shapes,
        required: true,
        role,
    }
}

const fn optional(key: &'static str, shapes: &'static [&'static str]) -> FieldSpec {
    FieldSpec {
        key,
        shapes,
        required: false,
        role: Role::Other,
    }
}

/// ASCII 1, the 1 Hz live line of the Rad-8 (devices.md §6.1: yahnatan/pulseox README, a real
/// line) and the Radical-7 (OpenICE's `masimo-radical-7.spec` regex, which adds `PVI=`).
const ASCII1: Layout = Layout {
    fields: &[
        field("SN", &["dddddddddd"], Role::Other),
        field("SPO2", &["ddd%"], Role::Spo2),
        field("BPM", &["ddd"], Role::PulseRate),
        field("PI", &["dd.dd%"], Role::PerfusionIndex),
        field("SPCO", &["dd.d%"], Role::Other),
        field("SPMET", &["dd.d%"], Role::Other),
        field("DESAT", &["dd"], Role::Other),
        field("PIDELTA", &["sdd"], Role::Other),
        optional("PVI", &["ddd"]),
        field("ALARM", &["hhhh"], Role::Other),
        // Rad-8 6 digits; Radical-7 7 digits (devices.md §6.1).
        field("EXC", &["hhhhhh", "hhhhhhh"], Role::Exc),
    ],
    zero_is_no_value: false,
};

/// ASCII 1 of the Radical-7 color (devices.md §6.1: "Radical-7 color adds SPHB= SPOC= RESVD=
/// PVI= EXC1="): a real line in Nishanth Menon's capture script (`_parse_rad7_color_serial_1`):
/// `03/17/16 19:19:36 SN=---------- SPO2=098% BPM=123 PI=00.55 SPCO=--% SPMET=--.-% SPHB=--.-
/// SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC=0000C00 EXC1=00000000`.
/// Its widths differ from the Rad-8's: PI without `%`, SPCO two digits, ALARM six.
const RADICAL7_COLOR: Layout = Layout {
    fields: &[
        field("SN", &["dddddddddd"], Role::Other),
        field("SPO2", &["ddd%"], Role::Spo2),
        field("BPM", &["ddd"], Role::PulseRate),
        field("PI", &["dd.dd"], Role::PerfusionIndex),
        field("SPCO", &["dd%"], Role::Other),
        field("SPMET", &["dd.d%"], Role::Other),
        field("SPHB", &["dd.d"], Role::Other),
        field("SPOC", &["dd"], Role::Other),
        field("RESVD", &["ddd"], Role::Other),
        field("DESAT", &["dd"], Role::Other),
        field("PIDELTA", &["sdd"], Role::Other),
        field("PVI", &["ddd"], Role::Other),
        field("ALARM", &["hhhhhh"], Role::Other),
        field("EXC", &["hhhhhhh"], Role::Exc),
        field("EXC1", &["hhhhhhhh"], Role::Other),
    ],
    zero_is_no_value: false,
};

/// The trend-output layout of the Rad-8 operator's manual (devices.md §6.1):
/// `09/21/08 09:56:12 SpO2=097 PR=069 PI=04.69 EXC=800:SET`; no value is zeros
/// (`SpO2=000 PR=000 PI=00.00`), with EXC decoded in words (`EXC=820:OffPat,SET`).
const TREND: Layout = Layout {
    fields: &[
        field("SpO2", &["ddd"], Role::Spo2),
        field("PR", &["ddd"], Role::PulseRate),
        field("PI", &["dd.dd"], Role::PerfusionIndex),
        field("EXC", &["hhh:*"], Role::Exc),
    ],
    zero_is_no_value: true,
};

/// The layouts a `masimo-ascii` line may have; a line is read in the first that it fits.
const LAYOUTS: [&Layout; 3] = [&ASCII1, &RADICAL7_COLOR, &TREND];

/// The widest the words of a `*` may be (every EXC bit named).
const MAX_WORDS: usize = 80;

/// Length of `MM/DD/YY HH:MM:SS`.
const TIME_LEN: usize = 17;
/// Whitespace allowed between two tokens (OpenICE's regex allows any; real lines have one).
const MAX_GAP: usize = 3;

/// Reads `value` in `shape`; `None` when it does not fit (damaged).
fn read_shape(value: &str, shape: &str) -> Option<Field> {
    if let Some(head) = shape.strip_suffix('*') {
        let words = value.get(head.len()..)?;
        let ok = !words.is_empty()
            && words.len() <= MAX_WORDS
            && words
                .split(',')
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric()));
        read_shape(value.get(..head.len())?, head)?;
        return ok.then_some(Field::Text);
    }
    if value.len() != shape.len() {
        return None;
    }
    let (mut digits, mut dashes) = (false, false);
    for (c, want) in value.chars().zip(shape.chars()) {
        let ok = match want {
            'd' if c.is_ascii_digit() => {
                digits = true;
                true
            }
            'd' if c == '-' => {
                dashes = true;
                true
            }
            'h' => c.is_ascii_hexdigit(),
            's' => c == '+' || c == '-',
            lit => c == lit,
        };
        if !ok {
            return None;
        }
    }
    match (digits, dashes) {
        (true, true) => None,
        (false, true) => Some(Field::Dashes),
        _ => Some(
            value
                .trim_end_matches('%')
                .parse::<f64>()
                .map_or(Field::Text, Field::Number),
        ),
    }
}

/// A line read against a layout.
#[derive(Debug)]
struct Parsed {
    time: DeviceTime,
    spo2: Field,
    pulse_rate: Field,
    pi: Option<Field>,
    exc: u32,
}

impl Layout {
    /// The shortest and longest line (line end excluded) this layout allows.
    fn length_bounds(&self) -> (usize, usize) {
        let (mut min, mut max) = (TIME_LEN, TIME_LEN);
        let width = |s: &str, words: usize| match s.strip_suffix('*') {
            Some(head) => head.len() + words,
            None => s.len(),
        };
        for f in self.fields {
            let lens = f.shapes.iter().map(|s| (width(s, 1), width(s, MAX_WORDS)));
            let lo = lens.clone().map(|(lo, _)| lo).min().unwrap_or(0);
            let hi = lens.map(|(_, hi)| hi).max().unwrap_or(0);
            if f.required {
                min += 1 + f.key.len() + 1 + lo;
            }
            max += MAX_GAP + f.key.len() + 1 + hi;
        }
        (min, max)
    }

    /// `text` read in this layout (whose [`Layout::length_bounds`] are `(min, max)`), or
    /// `None` when it does not fit in every respect.
    fn read(&self, text: &str, (min, max): (usize, usize)) -> Option<Parsed> {
        if !(min..=max).contains(&text.len()) {
            return None;
        }
        let mut tokens = text.split_ascii_whitespace();
        let time = parse_time(tokens.next()?, tokens.next()?)?;
        let mut seen = [None; 16];
        for token in tokens {
            let (key, value) = token.split_once('=')?;
            let i = self.fields.iter().position(|f| f.key == key)?;
            let slot = seen.get_mut(i)?;
            if slot.is_some() {
                return None; // one of each key: two lines run together
            }
            let f = &self.fields[i];
            let field = f.shapes.iter().find_map(|s| read_shape(value, s))?;
            *slot = Some(match (f.role, field) {
                (Role::Exc, _) => {
                    let hex = value.split(':').next()?;
                    Field::Number(f64::from(u32::from_str_radix(hex, 16).ok()?))
                }
                (Role::Spo2 | Role::PulseRate | Role::PerfusionIndex, Field::Number(v))
                    if self.zero_is_no_value && v == 0.0 =>
                {
                    Field::Dashes
                }
                _ => field,
            });
        }
        let mut parsed = Parsed {
            time,
            spo2: Field::Dashes,
            pulse_rate: Field::Dashes,
            pi: None,
            exc: 0,
        };
        for (f, got) in self.fields.iter().zip(seen) {
            let Some(got) = got else {
                if f.required {
                    return None;
                }
                continue;
            };
            match (f.role, got) {
                (Role::Spo2, v) => parsed.spo2 = v,
                (Role::PulseRate, v) => parsed.pulse_rate = v,
                (Role::PerfusionIndex, v) => parsed.pi = Some(v),
                (Role::Exc, Field::Number(bits)) => parsed.exc = bits as u32,
                _ => {}
            }
        }
        Some(parsed)
    }
}

/// Reads `MM/DD/YY` and `HH:MM:SS` into a device time (years 20YY), if both are well formed.
fn parse_time(date: &str, time: &str) -> Option<DeviceTime> {
    fn two(s: &str, sep: char) -> Option<[u8; 3]> {
        let mut parts = s.split(sep);
        let mut v = [0u8; 3];
        for slot in &mut v {
            let p = parts.next()?;
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = p.parse().ok()?;
        }
        parts.next().is_none().then_some(v)
    }
    let [month, day, yy] = two(date, '/')?;
    let [hour, minute, second] = two(time, ':')?;
    let ok = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    ok.then_some(DeviceTime {
        year: 2000 + u16::from(yy),
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// Decodes one complete line (without its line end). A line that does not fit a layout in
/// every respect (a field cut short, a key twice, an unknown key, no device time, a length
/// outside the layout's bounds) is one bad frame and gives no value at all.
fn decode_line(line: &[u8], out: &mut Vec<Measurement>, report: &mut FeedReport) {
    let Ok(text) = std::str::from_utf8(line) else {
        report.bad_frames += 1;
        return;
    };
    let text = text.trim_end_matches(|c: char| c.is_ascii_whitespace());
    if text.is_empty() {
        return;
    }
    // Each layout's length bounds, worked out once.
    static BOUNDS: std::sync::LazyLock<[(usize, usize); LAYOUTS.len()]> =
        std::sync::LazyLock::new(|| LAYOUTS.map(Layout::length_bounds));
    let Some(p) = LAYOUTS
        .iter()
        .zip(BOUNDS.iter())
        .find_map(|(l, &bounds)| l.read(text, bounds))
    else {
        report.bad_frames += 1;
        return;
    };
    report.frames += 1;
    let flags = exc_flags(p.exc);
    let fields = [
        (Metric::Spo2, Some(p.spo2)),
        (Metric::PulseRate, Some(p.pulse_rate)),
        (Metric::PerfusionIndex, p.pi),
    ];
    for (metric, field) in fields {
        let m = match field {
            None => continue,
            Some(Field::Dashes | Field::Text) => {
                Measurement::invalid(metric, Invalid::NoValue, flags)
            }
            Some(Field::Number(v)) => Measurement::new(metric, v, flags),
        };
        out.push(m.at(Some(p.time)));
    }
}

/// One ASCII 1 line as a Rad-8 prints it; the simulator's encoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MasimoLine {
    /// The device clock (printed `MM/DD/YY HH:MM:SS`, two-digit year).
    pub device_time: DeviceTime,
    /// Device serial number (printed as 10 digits).
    pub serial: u32,
    /// SpO2 %, `None` prints `---`.
    pub spo2: Option<u8>,
    /// Pulse rate /min, `None` prints `---`.
    pub bpm: Option<u16>,
    /// Perfusion index %, `None` (or not finite) prints `--.--`.
    pub pi: Option<f32>,
    /// EXC exception bits (see [`exc_flags`]), printed as 6 hex digits.
    pub exc: u32,
}

/// Which serial output layout a simulated Masimo prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MasimoLayout {
    /// Rad-8 / Radical-7 ASCII 1 ([`MasimoLine::encode`]).
    #[default]
    Ascii1,
    /// Radical-7 color ASCII 1 ([`MasimoLine::encode_radical7_color`]).
    Radical7Color,
    /// Rad-8 trend output ([`MasimoLine::encode_trend`]).
    Trend,
}

impl MasimoLine {
    /// `MM/DD/YY HH:MM:SS`.
    fn time_text(&self) -> String {
        let t = &self.device_time;
        format!(
            "{:02}/{:02}/{:02} {:02}:{:02}:{:02}",
            t.month,
            t.day,
            t.year % 100,
            t.hour,
            t.minute,
            t.second
        )
    }

    /// SpO2, pulse rate and PI as three-digit, three-digit and `NN.NN` fields, `no_value`
    /// in place of any that is absent.
    fn vitals_text(&self, none3: &str, none_pi: &str) -> (String, String, String) {
        let three = |v: Option<u16>| v.map_or_else(|| none3.to_owned(), |v| format!("{v:03}"));
        let pi = match self.pi {
            Some(v) if v.is_finite() && v >= 0.0 => format!("{v:05.2}"),
            _ => none_pi.to_owned(),
        };
        (three(self.spo2.map(u16::from)), three(self.bpm), pi)
    }

    /// The line in `layout`.
    pub fn encode_as(&self, layout: MasimoLayout) -> String {
        match layout {
            MasimoLayout::Ascii1 => self.encode(),
            MasimoLayout::Radical7Color => self.encode_radical7_color(),
            MasimoLayout::Trend => self.encode_trend(),
        }
    }

    /// The line byte for byte, `\r\n` included, in the Rad-8 ASCII 1 layout.
    pub fn encode(&self) -> String {
        let (spo2, bpm, pi) = self.vitals_text("---", "--.--");
        format!(
            "{} SN={:010} SPO2={spo2}% BPM={bpm} PI={pi}% \
             SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC={:06X}\r\n",
            self.time_text(),
            self.serial,
            self.exc
        )
    }

    /// The line in the Radical-7 color ASCII 1 layout (see `RADICAL7_COLOR`), `\r\n`
    /// included; the rainbow parameters have no value.
    pub fn encode_radical7_color(&self) -> String {
        let (spo2, bpm, pi) = self.vitals_text("---", "--.--");
        format!(
            "{} SN={:010} SPO2={spo2}% BPM={bpm} PI={pi} SPCO=--% SPMET=--.-% SPHB=--.- \
             SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC={:07X} \
             EXC1=00000000\r\n",
            self.time_text(),
            self.serial,
            self.exc & 0x0FFF_FFFF
        )
    }

    /// The line in the Rad-8 trend-output layout (see `TREND`), `\r\n` included: no value
    /// prints as zeros. EXC keeps its low 12 bits, with the 0x800 "SET" bit always set, and
    /// names the bits the manual's sample names (`OffPat` 0x020, `SET` 0x800).
    pub fn encode_trend(&self) -> String {
        let (spo2, bpm, pi) = self.vitals_text("000", "00.00");
        let exc = (self.exc & 0xFFF) | 0x800;
        let words: Vec<&str> = [(0x020, "OffPat"), (0x800, "SET")]
            .into_iter()
            .filter(|(bit, _)| exc & bit != 0)
            .map(|(_, w)| w)
            .collect();
        format!(
            "{} SpO2={spo2} PR={bpm} PI={pi} EXC={exc:03X}:{}\r\n",
            self.time_text(),
            words.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use crate::protocol::testutil::{
        XorShift, assert_every_split_matches_whole, feed_random_chunks, feed_whole,
    };

    /// Real line from the yahnatan/pulseox README (a Rad-8 in ASCII 1 mode).
    const YAHNATAN: &str = "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n";

    fn t(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> DeviceTime {
        DeviceTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
        }
    }

    fn decode(line: &str) -> (Vec<Measurement>, FeedReport) {
        feed_whole::<MasimoDecoder>(line.as_bytes())
    }

    fn values(ms: &[Measurement]) -> Vec<(Metric, Value)> {
        ms.iter().map(|m| (m.metric, m.value)).collect()
    }

    #[test]
    fn the_yahnatan_readme_line_gives_spo2_pulse_and_decimal_pi() {
        let (ms, r) = decode(YAHNATAN);
        assert_eq!(r.frames, 1);
        assert_eq!(
            values(&ms),
            vec![
                (Metric::Spo2, Value::Valid(98.0)),
                (Metric::PulseRate, Value::Valid(97.0)),
                (Metric::PerfusionIndex, Value::Valid(3.6)),
            ]
        );
        for m in &ms {
            // EXC 0x800 is "SET active": not a condition.
            assert!(m.flags.is_empty());
            assert_eq!(m.device_time, Some(t(2016, 2, 22, 22, 47, 45)));
        }
    }

    #[test]
    fn a_radical_7_line_with_extra_fields_is_read_by_key() {
        // Field set of the OpenICE Radical-7 spec regex (mdpnp masimo-radical-7.spec): PVI added
        // between PIDELTA and ALARM; values constructed.
        let line = "11/05/13 08:15:02 SN=----------  SPO2=100% BPM=060 PI=12.34% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=0000C00\r\n";
        let (ms, r) = decode(line);
        assert_eq!(
            r,
            FeedReport {
                frames: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            values(&ms),
            vec![
                (Metric::Spo2, Value::Valid(100.0)),
                (Metric::PulseRate, Value::Valid(60.0)),
                (Metric::PerfusionIndex, Value::Valid(12.34)),
            ]
        );
        // 0xC00: low signal IQ (0x400) + SET active (0x800, masked).
        assert_eq!(ms[0].flags, Flags::EMPTY.with(Flag::LowSignal));
    }

    /// The yahnatan line with its SPO2, BPM, PI and EXC values replaced (constructed).
    fn rad8(spo2: &str, bpm: &str, pi: &str, exc: &str) -> String {
        format!(
            "02/22/16 22:47:45 SN=0000056661 SPO2={spo2} BPM={bpm} PI={pi} SPCO=--.-% \
             SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC={exc}\r\n"
        )
    }

    #[test]
    fn every_dash_encoding_is_no_value() {
        // Dash forms from devices.md §6.1 (live line: `---`, `--.--`, `%` still attached).
        let (ms, r) = decode(&rad8("---%", "---", "--.--%", "000020"));
        assert_eq!(r.frames, 1);
        assert_eq!(ms.len(), 3);
        for m in &ms {
            assert_eq!(m.value, Value::Invalid(Invalid::NoValue));
            assert!(m.flags.contains(Flag::SensorOff));
            assert_eq!(m.device_time, Some(t(2016, 2, 22, 22, 47, 45)));
        }
    }

    #[test]
    fn every_exc_bit_maps_to_its_flag_and_reserved_bits_are_masked() {
        // Rad-8 Operator's Manual §4-24 EXC bits (devices.md §6.1).
        let table: [(u32, Option<Flag>); 12] = [
            (0x001, Some(Flag::ProbeUnplugged)),
            (0x002, Some(Flag::SensorFault)),
            (0x004, Some(Flag::LowPerfusion)),
            (0x008, Some(Flag::Searching)),
            (0x010, Some(Flag::Interference)),
            (0x020, Some(Flag::SensorOff)),
            (0x040, Some(Flag::Interference)),
            (0x080, Some(Flag::SensorFault)),
            (0x100, None),
            (0x200, None),
            (0x400, Some(Flag::LowSignal)),
            (0x800, None),
        ];
        for (bit, flag) in table {
            let (ms, _) = decode(&rad8("097%", "070", "03.60%", &format!("{bit:06X}")));
            let expected = flag.map_or(Flags::EMPTY, |f| Flags::EMPTY.with(f));
            assert_eq!(ms[0].flags, expected, "bit {bit:#x}");
            let voids = flag.is_some_and(Flag::voids_value);
            let want = if voids {
                Value::Invalid(Invalid::DeviceFlagged)
            } else {
                Value::Valid(97.0)
            };
            assert_eq!(ms[0].value, want, "bit {bit:#x}");
        }
        assert_eq!(exc_flags(0xFFFF_F300), Flags::EMPTY);
    }

    #[test]
    fn out_of_range_numbers_are_invalid_not_shown() {
        // Constructed; ranges from `Metric::plausible_range` (SpO2 0-100 %, rates 0-350 /min).
        let (ms, r) = decode(&rad8("101%", "351", "03.60%", "000000"));
        assert_eq!(r.frames, 1);
        assert_eq!(ms[0].value, Value::Invalid(Invalid::OutOfRange));
        assert_eq!(ms[1].value, Value::Invalid(Invalid::OutOfRange));
        assert_eq!(ms[2].value, Value::Valid(3.6));
        let (ms, _) = decode(&rad8("100%", "350", "99.99%", "000000"));
        assert!(ms.iter().all(|m| m.value.number().is_some()));
    }

    #[test]
    fn a_damaged_line_is_one_bad_frame_and_gives_no_value() {
        // Each case is the yahnatan line (devices.md §6.1) with one kind of damage. The first
        // two are the issue-9 findings: a line cut inside a field (real BPM 097, so 07 would
        // be a false pulse of 7), and two lines run together after a lost CR LF (the second,
        // real SpO2 80, would be hidden behind the first's 98).
        let y = YAHNATAN.trim_end();
        let second = y
            .replace("22:47:45", "22:47:46")
            .replace("SPO2=098%", "SPO2=080%");
        let table: [(String, &str); 22] = [
            (
                format!("{}\r\n", &y[..y.find("BPM=097").unwrap() + 6]),
                "cut inside BPM (BPM=09, then the line end)",
            ),
            (format!("{y}{second}\r\n"), "two lines run together"),
            (format!("{y} {second}\r\n"), "two lines, a space between"),
            (
                y.replace("SN=0000056661", "SN=000056661"),
                "a digit lost in SN",
            ),
            (y.replace("SPO2=098%", "SPO2=98%"), "a digit lost in SPO2"),
            (y.replace("SPO2=098%", "SPO2=098"), "the % of SPO2 lost"),
            (y.replace("BPM=097", "BPM=0977"), "a digit too many in BPM"),
            (y.replace("PI=03.60%", "PI=3.60%"), "a digit lost in PI"),
            (y.replace("PI=03.60%", "PI=03.6%"), "a decimal lost in PI"),
            (y.replace("PI=03.60%", "PI=0360%"), "the point of PI lost"),
            (
                y.replace("ALARM=0000", "ALARM=000"),
                "a digit lost in ALARM",
            ),
            (y.replace("EXC=000800", "EXC=00800"), "a digit lost in EXC"),
            (
                y.replace("EXC=000800", "EXC=00G800"),
                "a bad hex digit in EXC",
            ),
            (
                y.replace("BPM=097 PI", "BPM=097PI"),
                "a space lost between fields",
            ),
            (y.replace("BPM=097", "BPM097"), "an = lost"),
            (
                y.replace("SPO2=098%", "SPO2=0-8%"),
                "digits and dashes mixed",
            ),
            (y.replace("DESAT=--", "DESAT=-- DESAT=--"), "a key twice"),
            (y.replace("DESAT=--", "DESAT=-- XYZ=1"), "an unknown key"),
            (
                y.replace(" EXC=000800", ""),
                "a required field (EXC, the last) missing: the end cut off",
            ),
            (
                y[18..].to_owned(),
                "the device time cut off: joined mid-line",
            ),
            (y.replace("02/22/16", "13/22/16"), "a month 13 in the time"),
            (
                y.replace(' ', "          "),
                "longer than the layout allows (10 spaces between fields)",
            ),
        ];
        for (line, what) in table {
            let (ms, r) = decode(&format!("{}\r\n", line.trim_end()));
            assert!(ms.is_empty(), "{what}: {ms:?}");
            assert_eq!(
                r,
                FeedReport {
                    bad_frames: 1,
                    ..Default::default()
                },
                "{what}"
            );
        }
        // Not UTF-8.
        let mut bytes = YAHNATAN.as_bytes().to_vec();
        bytes[40] = 0xFF;
        let (ms, r) = feed_whole::<MasimoDecoder>(&bytes);
        assert!(ms.is_empty());
        assert_eq!(r.bad_frames, 1);
    }

    #[test]
    fn the_good_line_after_a_damaged_one_gives_its_values() {
        // Issue 9: `BPM=07` + CR LF (real 72), then the next line whole.
        let good = rad8("097%", "072", "03.60%", "000000");
        let mut stream = good[..good.find("BPM=07").unwrap() + 6].to_owned();
        stream.push_str("\r\n");
        stream.push_str(&good);
        let (ms, r) = decode(&stream);
        assert_eq!(
            r,
            FeedReport {
                frames: 1,
                skipped_bytes: 0,
                bad_frames: 1
            }
        );
        assert_eq!(
            values(&ms),
            vec![
                (Metric::Spo2, Value::Valid(97.0)),
                (Metric::PulseRate, Value::Valid(72.0)),
                (Metric::PerfusionIndex, Value::Valid(3.6)),
            ]
        );
    }

    #[test]
    fn line_endings_cr_lf_lf_and_cr_alone_all_end_a_line() {
        let y = YAHNATAN.trim_end();
        for end in ["\r\n", "\n", "\r", "\n\r"] {
            let text = format!("{y}{end}{y}{end}");
            let (ms, r) = decode(&text);
            assert_eq!(r.frames, 2, "{end:?}");
            assert_eq!(r.bad_frames, 0, "{end:?}");
            assert_eq!(ms.len(), 6);
        }
        // No line end yet: nothing emitted.
        assert_eq!(decode(y).0.len(), 0);
    }

    #[test]
    fn years_are_20yy() {
        let y = YAHNATAN.replace("02/22/16 22:47:45", "12/31/99 23:59:59");
        let (ms, _) = decode(&y);
        assert_eq!(ms[0].device_time, Some(t(2099, 12, 31, 23, 59, 59)));
    }

    #[test]
    fn an_over_long_line_is_skipped_up_to_the_next_line_end() {
        let mut bytes = vec![b'A'; MAX_LINE + 100];
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(YAHNATAN.as_bytes());
        let (ms, r) = feed_whole::<MasimoDecoder>(&bytes);
        assert_eq!(r.skipped_bytes, MAX_LINE as u32 + 100);
        assert_eq!(r.frames, 1);
        assert_eq!(ms.len(), 3);
        // Trailing spaces up to MAX_LINE bytes still fit.
        let mut line = YAHNATAN.trim_end().as_bytes().to_vec();
        line.resize(MAX_LINE, b' ');
        line.push(b'\n');
        assert_eq!(feed_whole::<MasimoDecoder>(&line).1.frames, 1);
    }

    #[test]
    fn a_stream_joined_mid_line_and_split_anywhere_decodes_the_same() {
        // Joined after the line's BPM field: the tail has no SPO2/BPM.
        let mut bytes =
            b"1=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- EXC=000800\r\n".to_vec();
        bytes.extend_from_slice(YAHNATAN.as_bytes());
        bytes.extend_from_slice(YAHNATAN.as_bytes());
        bytes.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]); // trailing junk, no line end
        let (ms, r) = feed_whole::<MasimoDecoder>(&bytes);
        // The partial first line lacks BPM: one bad frame, then both good lines.
        assert_eq!(
            r,
            FeedReport {
                frames: 2,
                skipped_bytes: 0,
                bad_frames: 1
            }
        );
        assert_eq!(ms.len(), 6);
        assert_every_split_matches_whole::<MasimoDecoder>(&bytes);
    }

    /// Real Radical-7 color line, Nishanth Menon's capture script (devices.md §6.1).
    const MENON_RADICAL7_COLOR: &str = "03/17/16 19:19:36 SN=---------- SPO2=098% BPM=123 PI=00.55 SPCO=--% SPMET=--.-% SPHB=--.- SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC=0000C00 EXC1=00000000\r\n";
    /// Radical-7 (blue) line quoted in the same script from the Radical-7 service manual.
    const RADICAL7_SERVICE_MANUAL: &str = "05/15/07 08:12:21 SN=0000070986 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=000000 \r\n";
    /// Trend output, Rad-8 operator's manual sample (devices.md §6.1; issue 15).
    const MANUAL_TREND: &str = "09/21/08 09:56:12 SpO2=097 PR=069 PI=04.69 EXC=800:SET\r\n";
    /// Trend output with the sensor off the patient, same sample (devices.md §6.1).
    const MANUAL_TREND_OFF: &str =
        "09/21/08 09:56:14 SpO2=000 PR=000 PI=00.00 EXC=820:OffPat,SET\r\n";

    #[test]
    fn every_layout_decodes_its_documented_lines() {
        let no = Value::Invalid(Invalid::NoValue);
        let table: [(&str, [Value; 3], Flags, &str); 4] = [
            (
                MENON_RADICAL7_COLOR,
                [Value::Valid(98.0), Value::Valid(123.0), Value::Valid(0.55)],
                // 0xC00: low signal IQ + SET (masked).
                Flags::EMPTY.with(Flag::LowSignal),
                "Radical-7 color, Menon capture",
            ),
            (
                RADICAL7_SERVICE_MANUAL,
                [no, no, no],
                Flags::EMPTY,
                "Radical-7 service manual, all dashes",
            ),
            (
                MANUAL_TREND,
                [Value::Valid(97.0), Value::Valid(69.0), Value::Valid(4.69)],
                Flags::EMPTY,
                "Rad-8 trend output",
            ),
            (
                MANUAL_TREND_OFF,
                [no, no, no],
                Flags::EMPTY.with(Flag::SensorOff),
                "Rad-8 trend output, zeros are no value, sensor off",
            ),
        ];
        for (line, want, flags, what) in table {
            let (ms, r) = decode(line);
            assert_eq!(
                r,
                FeedReport {
                    frames: 1,
                    ..Default::default()
                },
                "{what}"
            );
            let metrics: Vec<Metric> = ms.iter().map(|m| m.metric).collect();
            assert_eq!(
                metrics,
                [Metric::Spo2, Metric::PulseRate, Metric::PerfusionIndex],
                "{what}"
            );
            let got: Vec<Value> = ms.iter().map(|m| m.value).collect();
            assert_eq!(got, want, "{what}");
            assert!(ms.iter().all(|m| m.flags == flags), "{what}: {ms:?}");
            assert!(ms.iter().all(|m| m.device_time.is_some()), "{what}");
        }
    }

    #[test]
    fn damaged_radical_7_color_and_trend_lines_are_bad_frames() {
        // The documented lines of the other layouts (sources on the constants), damaged.
        let c = MENON_RADICAL7_COLOR.trim_end();
        let tr = MANUAL_TREND.trim_end();
        let table: [(String, &str); 12] = [
            (c.replace("BPM=123", "BPM=12"), "color: BPM cut short"),
            (
                c.replace("PI=00.55", "PI=00.55%"),
                "color: PI in the Rad-8 width",
            ),
            (
                c.replace(" EXC1=00000000", ""),
                "color: EXC1 (the last) cut off",
            ),
            (
                c.replace("EXC1=00000000", "EXC1=0000000"),
                "color: EXC1 short",
            ),
            (
                c.replace("ALARM=000000", "ALARM=0000"),
                "color: ALARM in the Rad-8 width",
            ),
            (format!("{c}{tr}"), "color and trend lines run together"),
            (
                tr[..tr.find("PR=06").unwrap() + 5].to_owned(),
                "trend: cut inside PR",
            ),
            (
                tr.replace("EXC=800:SET", "EXC=800:"),
                "trend: EXC without words",
            ),
            (tr.replace("EXC=800:SET", "EXC=80:SET"), "trend: EXC short"),
            (
                tr.replace("EXC=800:SET", "EXC=800:SET,,"),
                "trend: an empty word",
            ),
            (
                tr.replace("SpO2=097", "SPO2=097%"),
                "trend with an ASCII 1 key",
            ),
            (tr.replace("PR=069", "PR=069 PR=069"), "trend: a key twice"),
        ];
        for (line, what) in table {
            let (ms, r) = decode(&format!("{line}\r\n"));
            assert!(ms.is_empty(), "{what}: {ms:?}");
            assert_eq!(
                r,
                FeedReport {
                    bad_frames: 1,
                    ..Default::default()
                },
                "{what}"
            );
        }
    }

    #[test]
    fn every_layout_encodes_lines_that_decode_to_the_same_values() {
        let menon = MasimoLine {
            device_time: t(2016, 3, 17, 19, 19, 36),
            serial: 0,
            spo2: Some(98),
            bpm: Some(123),
            pi: Some(0.55),
            exc: 0xC00,
        };
        // Byte for byte as the capture, except SN (the encoder always prints a number).
        assert_eq!(
            menon.encode_radical7_color(),
            MENON_RADICAL7_COLOR.replace("SN=----------", "SN=0000000000")
        );
        let trend = MasimoLine {
            device_time: t(2008, 9, 21, 9, 56, 12),
            serial: 0,
            spo2: Some(97),
            bpm: Some(69),
            pi: Some(4.69),
            exc: 0x000,
        };
        assert_eq!(trend.encode_trend(), MANUAL_TREND);
        let off = MasimoLine {
            device_time: t(2008, 9, 21, 9, 56, 14),
            spo2: None,
            bpm: None,
            pi: None,
            exc: 0x020,
            ..trend
        };
        assert_eq!(off.encode_trend(), MANUAL_TREND_OFF);
        for layout in [
            MasimoLayout::Ascii1,
            MasimoLayout::Radical7Color,
            MasimoLayout::Trend,
        ] {
            for line in [menon, trend, off] {
                let (ms, r) = decode(&line.encode_as(layout));
                assert_eq!(r.frames, 1, "{layout:?} {line:?}");
                let spo2 = line.spo2.map(f64::from);
                assert_eq!(ms[0].value.number(), spo2, "{layout:?} {line:?}");
            }
        }
    }

    #[test]
    fn reset_forgets_a_partial_line() {
        let mut d = MasimoDecoder::default();
        let mut out = Vec::new();
        d.feed(b"SPO2=097% BP", &mut out);
        d.reset();
        let r = d.feed(b"M=070\n", &mut out);
        assert_eq!(r.bad_frames, 1);
        assert!(out.is_empty());
    }

    #[test]
    fn the_encoder_reproduces_the_yahnatan_line_byte_for_byte() {
        let line = MasimoLine {
            device_time: t(2016, 2, 22, 22, 47, 45),
            serial: 56661,
            spo2: Some(98),
            bpm: Some(97),
            pi: Some(3.6),
            exc: 0x800,
        };
        assert_eq!(line.encode(), YAHNATAN);
    }

    #[test]
    fn encoded_lines_round_trip_through_the_decoder() {
        let cases = [
            (Some(98), Some(97), Some(3.6), 0x000),
            (None, None, None, 0x020),
            (Some(85), Some(142), Some(0.02), 0x004),
            (Some(100), None, Some(19.99), 0x408),
        ];
        for (spo2, bpm, pi, exc) in cases {
            let line = MasimoLine {
                device_time: t(2026, 1, 2, 3, 4, 5),
                serial: 1,
                spo2,
                bpm,
                pi,
                exc,
            };
            let (ms, r) = decode(&line.encode());
            assert_eq!(r.frames, 1);
            let flags = exc_flags(exc);
            let want = |metric, v: Option<f64>| {
                match v {
                    None => Measurement::invalid(metric, Invalid::NoValue, flags),
                    Some(v) => Measurement::new(metric, v, flags),
                }
                .at(Some(t(2026, 1, 2, 3, 4, 5)))
            };
            assert_eq!(
                ms,
                vec![
                    want(Metric::Spo2, spo2.map(f64::from)),
                    want(Metric::PulseRate, bpm.map(f64::from)),
                    want(
                        Metric::PerfusionIndex,
                        pi.map(|p| format!("{p:.2}").parse().unwrap())
                    ),
                ]
            );
        }
    }

    #[test]
    fn random_bytes_never_panic_and_good_lines_among_garbage_are_all_recovered() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let noise: Vec<u8> = (0..200_000).map(|_| rng.byte()).collect();
        let _ = feed_random_chunks::<MasimoDecoder>(&noise, &mut rng, 300);

        let mut stream = Vec::new();
        let mut expected = Vec::new();
        while stream.len() < 200_000 {
            let n = rng.below(700);
            stream.extend(
                (0..n)
                    .map(|_| rng.byte())
                    .filter(|b| *b != b'\r' && *b != b'\n'),
            );
            stream.extend_from_slice(b"\r\n");
            let spo2 = rng.below(101) as u8;
            let line = MasimoLine {
                device_time: t(2026, 1, 1, 0, 0, 0),
                serial: rng.below(1000) as u32,
                spo2: Some(spo2),
                bpm: None,
                pi: None,
                exc: 0,
            };
            stream.extend_from_slice(line.encode().as_bytes());
            expected.push(f64::from(spo2));
        }
        let (ms, r) = feed_random_chunks::<MasimoDecoder>(&stream, &mut rng, 4096);
        let got: Vec<f64> = ms
            .iter()
            .filter(|m| m.metric == Metric::Spo2)
            .filter_map(|m| m.value.number())
            .collect();
        assert_eq!(got, expected);
        assert_eq!(r.frames as usize, expected.len());
    }
}
