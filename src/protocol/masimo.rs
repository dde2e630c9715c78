//! Masimo Rad-8 / Radical-7 / Rad-97 "ASCII 1" serial output: one text line per second,
//! `MM/DD/YY HH:MM:SS SN=… SPO2=098% BPM=097 PI=03.60% … EXC=000800`, ending in CR LF.
//!
//! Facts: ../shared/reference/devices.md §6.1 (Rad-8 Operator's Manual §4-24 for the EXC bits,
//! yahnatan/pulseox README for a real line, OpenICE's Radical-7 spec for the field set).
//! The field set depends on model and installed parameters, so the line is read as
//! `KEY=VALUE` tokens, never by position; dashes mean "no value".

use super::{Decoder, FeedReport};
use crate::model::{DeviceTime, Flag, Flags, Invalid, Measurement, Metric};

/// The longest line accepted. Real lines are about 150 bytes (Radical-7 color about 250); a
/// longer one is noise or a wrong baud rate and is skipped up to the next line end.
pub const MAX_LINE: usize = 512;

/// Highest SpO2 the protocol can mean, %.
const SPO2_MAX: f64 = 100.0;
/// Highest pulse rate the protocol can mean, /min (Rad-8 range is 25-240).
const BPM_MAX: f64 = 300.0;
/// Highest perfusion index the protocol can mean, % (Masimo PI range 0.02-20).
const PI_MAX: f64 = 20.0;

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
        for &b in bytes {
            if b == b'\r' || b == b'\n' {
                if self.discarding {
                    self.discarding = false;
                } else if !self.line.is_empty() {
                    decode_line(&self.line, out, &mut report);
                }
                self.line.clear();
            } else if self.discarding {
                report.skipped_bytes += 1;
            } else if self.line.len() >= MAX_LINE {
                report.skipped_bytes += self.line.len() as u32 + 1;
                self.line.clear();
                self.discarding = true;
            } else {
                self.line.push(b);
            }
        }
        report
    }

    fn reset(&mut self) {
        self.line.clear();
        self.discarding = false;
    }
}

/// A field's value as the line gives it.
enum Field {
    /// A number.
    Number(f64),
    /// Dashes: the device has no value.
    Dashes,
}

/// Reads one value: digits with at most one decimal point, or dashes (`---`, `--.-`, `+--`),
/// with an optional trailing `%`. Anything else is `None` (a corrupted line).
fn parse_field(raw: &str) -> Option<Field> {
    let v = raw.strip_suffix('%').unwrap_or(raw);
    if v.is_empty() {
        return None;
    }
    if v.contains('-') && v.chars().all(|c| matches!(c, '-' | '.' | '+')) {
        return Some(Field::Dashes);
    }
    if !v.chars().all(|c| c.is_ascii_digit() || c == '.') || v.matches('.').count() > 1 {
        return None;
    }
    v.parse::<f64>().ok().map(Field::Number)
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

/// Decodes one complete line (without its line end).
fn decode_line(line: &[u8], out: &mut Vec<Measurement>, report: &mut FeedReport) {
    let Ok(text) = std::str::from_utf8(line) else {
        report.bad_frames += 1;
        return;
    };
    if text.trim().is_empty() {
        return;
    }
    let mut tokens = text.split_ascii_whitespace();
    let mut after_time = tokens.clone();
    let device_time = match (after_time.next(), after_time.next()) {
        (Some(date), Some(time)) => parse_time(date, time),
        _ => None,
    };
    if device_time.is_some() {
        tokens = after_time;
    }
    let (mut spo2, mut bpm, mut pi, mut exc) = (None, None, None, None);
    for token in tokens {
        let Some((key, value)) = token.split_once('=') else {
            continue;
        };
        let slot = match key {
            "SPO2" => &mut spo2,
            "BPM" => &mut bpm,
            "PI" => &mut pi,
            "EXC" => &mut exc,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    let (Some(spo2), Some(bpm)) = (spo2, bpm) else {
        report.bad_frames += 1;
        return;
    };
    let flags = match exc.map(|e| u32::from_str_radix(e, 16)) {
        None => Flags::EMPTY,
        Some(Ok(bits)) => exc_flags(bits),
        // A corrupted EXC could hide "sensor off": the whole line is untrustworthy.
        Some(Err(_)) => {
            report.bad_frames += 1;
            return;
        }
    };
    let fields = [
        (Metric::Spo2, Some(spo2), SPO2_MAX),
        (Metric::PulseRate, Some(bpm), BPM_MAX),
        (Metric::PerfusionIndex, pi, PI_MAX),
    ];
    let mut parsed = [None, None, None];
    for (slot, (_, raw, _)) in parsed.iter_mut().zip(fields.iter()) {
        if let Some(raw) = raw {
            match parse_field(raw) {
                Some(f) => *slot = Some(f),
                None => {
                    report.bad_frames += 1;
                    return;
                }
            }
        }
    }
    report.frames += 1;
    for ((metric, _, max), field) in fields.into_iter().zip(parsed) {
        let m = match field {
            None => continue,
            Some(Field::Dashes) => Measurement::invalid(metric, Invalid::NoValue, flags),
            Some(Field::Number(v)) if v > max => {
                Measurement::invalid(metric, Invalid::OutOfRange, flags)
            }
            Some(Field::Number(v)) => Measurement::new(metric, v, flags),
        };
        out.push(m.at(device_time));
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

impl MasimoLine {
    /// The line byte for byte, `\r\n` included, in the Rad-8 ASCII 1 layout.
    pub fn encode(&self) -> String {
        let t = &self.device_time;
        let spo2 = self
            .spo2
            .map_or_else(|| "---".to_owned(), |v| format!("{v:03}"));
        let bpm = self
            .bpm
            .map_or_else(|| "---".to_owned(), |v| format!("{v:03}"));
        let pi = match self.pi {
            Some(v) if v.is_finite() && v >= 0.0 => format!("{v:05.2}"),
            _ => "--.--".to_owned(),
        };
        format!(
            "{:02}/{:02}/{:02} {:02}:{:02}:{:02} SN={:010} SPO2={spo2}% BPM={bpm} PI={pi}% \
             SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC={:06X}\r\n",
            t.month,
            t.day,
            t.year % 100,
            t.hour,
            t.minute,
            t.second,
            self.serial,
            self.exc
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

    #[test]
    fn every_dash_encoding_is_no_value() {
        // Dash forms from devices.md §6.1 (live line); constructed lines.
        for (spo2, bpm, pi) in [
            ("---%", "---", "--.-%"),
            ("--%", "--", "--.--%"),
            ("---", "---", "---"),
        ] {
            let line = format!("SPO2={spo2} BPM={bpm} PI={pi} EXC=000020\n");
            let (ms, r) = decode(&line);
            assert_eq!(r.frames, 1, "{line}");
            assert_eq!(ms.len(), 3);
            for m in &ms {
                assert_eq!(m.value, Value::Invalid(Invalid::NoValue), "{line}");
                assert!(m.flags.contains(Flag::SensorOff));
                assert_eq!(m.device_time, None);
            }
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
            let line = format!("SPO2=097% BPM=070 EXC={bit:06X}\r\n");
            let (ms, _) = decode(&line);
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
        // Constructed.
        let (ms, r) = decode("SPO2=101% BPM=301 PI=20.01%\n");
        assert_eq!(r.frames, 1);
        for m in &ms {
            assert_eq!(m.value, Value::Invalid(Invalid::OutOfRange));
        }
        let (ms, _) = decode("SPO2=100% BPM=300 PI=20.00%\n");
        assert!(ms.iter().all(|m| m.value.number().is_some()));
    }

    #[test]
    fn lines_without_spo2_and_bpm_or_with_corrupted_values_are_bad_frames() {
        // Constructed.
        for line in [
            "02/22/16 22:47:45 SN=0000056661\r\n",
            "PI=03.60% BPM=097\r\n",
            "SPO2=9x8% BPM=097\r\n",
            "SPO2=098% BPM=-97\r\n",
            "SPO2=098% BPM=097 PI=3.6.0%\r\n",
            "SPO2=098% BPM=097 EXC=00G800\r\n",
            "SPO2=% BPM=097\r\n",
            "\u{7f}SPO2\u{1}=098 BPM=097\n",
        ] {
            let (ms, r) = decode(line);
            assert!(ms.is_empty(), "{line:?}");
            assert_eq!(r.bad_frames, 1, "{line:?}");
        }
        let (ms, r) = feed_whole::<MasimoDecoder>(b"SPO2=\xff98 BPM=097\n");
        assert!(ms.is_empty());
        assert_eq!(r.bad_frames, 1);
    }

    #[test]
    fn line_endings_cr_lf_lf_and_cr_alone_all_end_a_line() {
        for end in ["\r\n", "\n", "\r", "\n\r"] {
            let text = format!("SPO2=097% BPM=070{end}SPO2=096% BPM=071{end}");
            let (ms, r) = decode(&text);
            assert_eq!(r.frames, 2, "{end:?}");
            assert_eq!(ms.len(), 4);
        }
        // No line end yet: nothing emitted.
        assert_eq!(decode("SPO2=097% BPM=070").0.len(), 0);
    }

    #[test]
    fn a_bad_clock_is_ignored_and_years_are_20yy() {
        let (ms, _) = decode("13/22/16 22:47:45 SPO2=097% BPM=070\n");
        assert_eq!(ms[0].device_time, None);
        let (ms, _) = decode("12/31/99 23:59:59 SPO2=097% BPM=070\n");
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
        // Exactly MAX_LINE bytes still fits.
        let mut line = b"SPO2=097% BPM=070 ".to_vec();
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
