//! SunTech Advantage OEM NIBP module, binary serial protocol (9600 8N1).
//!
//! Host to module: `3A` (':') + command bytes + checksum, no length byte. Module to host:
//! `3E` ('>') + total length + data + checksum. Either way the checksum makes the byte sum of
//! the whole frame 0 mod 256. Facts: ../shared/reference/devices.md §7.1 (ak-git/DesktopFX
//! NIBP classes and tests; nPM `SuntechProvider.cpp` for acks and error codes, decimal per
//! warning 6).
//!
//! [`SuntechDecoder`] is the host side (responses in, measurements out); [`CommandDecoder`]
//! and the `encode` methods are the module side, for the simulator.

use super::{Decoder, FeedReport};
use crate::model::{Flag, Flags, Invalid, Measurement, Metric};

/// Start byte of a host-to-module command.
pub const COMMAND_START: u8 = 0x3A;
/// Start byte of a module-to-host response.
pub const RESPONSE_START: u8 = 0x3E;
/// Longest response, bytes.
pub const MAX_RESPONSE: usize = 0x43;
/// Shortest response (`3E 04 c CS`), bytes.
const MIN_RESPONSE: usize = 4;
/// Length of a cuff-pressure response.
const CUFF_LEN: usize = 5;
/// Length of a BP data response.
const BP_DATA_LEN: usize = 0x18;

/// The one-character acknowledgements (nPM defines): executed, received, aborted, busy,
/// error, invalid, unrecognizable, sleep, timeout.
pub const ACKS: [u8; 9] = [b'K', b'O', b'A', b'B', b'E', b'N', b'D', b'S', b'T'];

/// SunTech error codes (nPM enum, decimal; devices.md §7.1 and warning 6).
pub mod error_code {
    /// Weak or no signal.
    pub const WEAK_SIGNAL: u8 = 1;
    /// Erratic signal, artifact.
    pub const ARTIFACT: u8 = 2;
    /// Out of range.
    pub const OUT_OF_RANGE: u8 = 3;
    /// Measurement timeout.
    pub const MEASUREMENT_TIMEOUT: u8 = 4;
    /// Pneumatic blockage.
    pub const PNEUMATIC_BLOCKAGE: u8 = 85;
    /// Terminated by the user.
    pub const TERMINATED: u8 = 86;
    /// Inflation timeout, air leak, loose cuff.
    pub const LOOSE_CUFF: u8 = 87;
    /// Safety timeout.
    pub const SAFETY_TIMEOUT: u8 = 88;
    /// Cuff overpressure.
    pub const OVERPRESSURE: u8 = 89;
    /// Power or hardware failure.
    pub const HARDWARE: u8 = 90;
    /// Permission / auto-zero out of range.
    pub const AUTO_ZERO: u8 = 91;
    /// Transducer out of range.
    pub const TRANSDUCER: u8 = 97;
    /// EEPROM calibration failure.
    pub const EEPROM: u8 = 99;
}

/// The byte that makes the sum of `bytes` plus itself 0 mod 256.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Appends the checksum to a frame under construction.
fn seal(mut frame: Vec<u8>) -> Vec<u8> {
    frame.push(checksum(&frame));
    frame
}

/// The result of a BP measurement (`3E 18 …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BpData {
    /// Systolic, mmHg.
    pub sys: u16,
    /// Diastolic, mmHg.
    pub dia: u16,
    /// Heart beats detected during the measurement.
    pub beats: u8,
    /// BP status byte (module-specific, kept for logs).
    pub status: u8,
    /// Test codes TC[0..8] (module-specific).
    pub test_codes: [u8; 8],
    /// Heart rate, /min.
    pub hr: u8,
    /// Mean arterial pressure, mmHg.
    pub map: u16,
    /// 0 = good reading; otherwise an [`error_code`].
    pub error_code: u8,
}

impl BpData {
    /// Reads the data bytes of a 24-byte frame (after `3E 18`, before the checksum).
    fn parse(d: &[u8; BP_DATA_LEN - 3]) -> BpData {
        let mut test_codes = [0u8; 8];
        test_codes.copy_from_slice(&d[6..14]);
        BpData {
            sys: u16::from_le_bytes([d[0], d[1]]),
            dia: u16::from_le_bytes([d[2], d[3]]),
            beats: d[4],
            status: d[5],
            test_codes,
            hr: d[14],
            map: u16::from_le_bytes([d[16], d[17]]),
            error_code: d[18],
        }
    }

    /// The whole 24-byte response frame (spares 0).
    pub fn encode(&self) -> Vec<u8> {
        let mut f = vec![RESPONSE_START, BP_DATA_LEN as u8];
        f.extend_from_slice(&self.sys.to_le_bytes());
        f.extend_from_slice(&self.dia.to_le_bytes());
        f.extend_from_slice(&[self.beats, self.status]);
        f.extend_from_slice(&self.test_codes);
        f.extend_from_slice(&[self.hr, 0]);
        f.extend_from_slice(&self.map.to_le_bytes());
        f.extend_from_slice(&[self.error_code, 0, 0]);
        seal(f)
    }
}

/// One module-to-host response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A one-character acknowledgement, one of [`ACKS`].
    Ack(u8),
    /// Current cuff pressure while measuring, mmHg.
    CuffPressure(u16),
    /// A finished measurement.
    BpData(BpData),
    /// Any other well-formed response (module data, strings, status); kept, not interpreted.
    Other {
        /// The data bytes (without start, length and checksum).
        data: Vec<u8>,
    },
}

impl Response {
    /// Reads a checked frame (start, length, data, checksum).
    fn parse(frame: &[u8]) -> Response {
        let data = frame.get(2..frame.len().saturating_sub(1)).unwrap_or(&[]);
        match (frame.len(), data) {
            (MIN_RESPONSE, &[c]) if ACKS.contains(&c) => Response::Ack(c),
            (CUFF_LEN, &[lo, hi]) => Response::CuffPressure(u16::from_le_bytes([lo, hi])),
            (BP_DATA_LEN, d) => match d.first_chunk::<{ BP_DATA_LEN - 3 }>() {
                Some(d) => Response::BpData(BpData::parse(d)),
                None => Response::Other { data: d.to_vec() },
            },
            _ => Response::Other {
                data: data.to_vec(),
            },
        }
    }

    /// The measurements this response stands for: cuff pressure while measuring, or the
    /// four NIBP values of a finished measurement (all invalid, with the cuff error, when the
    /// module reports an error).
    pub fn measurements(&self, out: &mut Vec<Measurement>) {
        match self {
            Response::CuffPressure(p) => out.push(Measurement::new(
                Metric::CuffPressure,
                f64::from(*p),
                Flags::EMPTY.with(Flag::MeasurementOngoing),
            )),
            Response::BpData(bp) => {
                let values = [
                    (Metric::NibpSys, f64::from(bp.sys)),
                    (Metric::NibpDia, f64::from(bp.dia)),
                    (Metric::NibpMean, f64::from(bp.map)),
                    (Metric::NibpPulse, f64::from(bp.hr)),
                ];
                if bp.error_code == 0 {
                    for (metric, v) in values {
                        out.push(Measurement::new(metric, v, Flags::EMPTY));
                    }
                } else {
                    let mut flags = Flags::EMPTY;
                    flags.set_cuff_error(u16::from(bp.error_code));
                    flags.set_if(Flag::CuffLoose, bp.error_code == error_code::LOOSE_CUFF);
                    flags.set_if(Flag::LowSignal, bp.error_code == error_code::WEAK_SIGNAL);
                    flags.set_if(Flag::Artifact, bp.error_code == error_code::ARTIFACT);
                    for (metric, _) in values {
                        out.push(Measurement::invalid(
                            metric,
                            Invalid::DeviceMarkedInvalid,
                            flags,
                        ));
                    }
                }
            }
            Response::Ack(_) | Response::Other { .. } => {}
        }
    }

    /// The whole frame as the module sends it. `Other` data longer than a frame allows is cut
    /// to fit.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Response::Ack(c) => seal(vec![RESPONSE_START, MIN_RESPONSE as u8, *c]),
            Response::CuffPressure(p) => {
                let [lo, hi] = p.to_le_bytes();
                seal(vec![RESPONSE_START, CUFF_LEN as u8, lo, hi])
            }
            Response::BpData(bp) => bp.encode(),
            Response::Other { data } => {
                let data = data.get(..MAX_RESPONSE - 3).unwrap_or(data);
                let mut f = vec![RESPONSE_START, (data.len() + 3) as u8];
                f.extend_from_slice(data);
                seal(f)
            }
        }
    }
}

/// Host-side stream decoder for `suntech`: frames responses, checks their checksums and
/// turns them into measurements.
#[derive(Debug, Default)]
pub struct SuntechDecoder {
    /// Bytes not yet framed (at most one response's worth between calls).
    buf: Vec<u8>,
}

impl SuntechDecoder {
    /// Consumes `bytes` and appends every complete, checked response to `out`.
    pub fn feed_responses(&mut self, bytes: &[u8], out: &mut Vec<Response>) -> FeedReport {
        let mut report = FeedReport::default();
        self.buf.extend_from_slice(bytes);
        let mut i = 0;
        while let Some(rest) = self.buf.get(i..) {
            let Some(&first) = rest.first() else { break };
            if first != RESPONSE_START {
                report.skipped_bytes += 1;
                i += 1;
                continue;
            }
            let Some(&len) = rest.get(1) else { break };
            let len = usize::from(len);
            if !(MIN_RESPONSE..=MAX_RESPONSE).contains(&len) {
                report.skipped_bytes += 1;
                i += 1;
                continue;
            }
            let Some(frame) = rest.get(..len) else { break };
            if checksum(frame) != 0 {
                // Resync from the next byte: a real frame may start inside this one.
                report.bad_frames += 1;
                i += 1;
                continue;
            }
            report.frames += 1;
            out.push(Response::parse(frame));
            i += len;
        }
        self.buf.drain(..i.min(self.buf.len()));
        report
    }
}

impl Decoder for SuntechDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        let mut responses = Vec::new();
        let report = self.feed_responses(bytes, &mut responses);
        for r in &responses {
            r.measurements(out);
        }
        report
    }

    fn reset(&mut self) {
        self.buf.clear();
    }
}

/// A host-to-module command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Start an adult BP measurement (`3A 20 A6`).
    StartAdult,
    /// Start a pediatric BP measurement (`0x87`).
    StartPediatric,
    /// Start a neonate BP measurement (`0x28`).
    StartNeonate,
    /// Abort the measurement and deflate (`79 01 00`).
    Abort,
    /// Ask for the current cuff pressure (`79 05 00`).
    GetCuffPressure,
    /// Ask for the last BP result (`79 03 00`).
    GetBpData,
    /// Ask for the module data (`00`).
    GetModuleData,
    /// Ask for the return code (`79 02 03`).
    GetReturnCode,
    /// Ask for the return string (`79 02 40`).
    GetReturnString,
    /// Reset the module (`8A`).
    Reset,
}

impl Command {
    /// Every supported command.
    pub const ALL: [Command; 10] = [
        Command::StartAdult,
        Command::StartPediatric,
        Command::StartNeonate,
        Command::Abort,
        Command::GetCuffPressure,
        Command::GetBpData,
        Command::GetModuleData,
        Command::GetReturnCode,
        Command::GetReturnString,
        Command::Reset,
    ];

    /// The command bytes between ':' and the checksum.
    const fn body(self) -> &'static [u8] {
        match self {
            Command::StartAdult => &[0x20],
            Command::StartPediatric => &[0x87],
            Command::StartNeonate => &[0x28],
            Command::Abort => &[0x79, 0x01, 0x00],
            Command::GetCuffPressure => &[0x79, 0x05, 0x00],
            Command::GetBpData => &[0x79, 0x03, 0x00],
            Command::GetModuleData => &[0x00],
            Command::GetReturnCode => &[0x79, 0x02, 0x03],
            Command::GetReturnString => &[0x79, 0x02, 0x40],
            Command::Reset => &[0x8A],
        }
    }

    /// The whole command frame as the host sends it.
    pub fn encode(&self) -> Vec<u8> {
        let mut f = vec![COMMAND_START];
        f.extend_from_slice(self.body());
        seal(f)
    }

    /// The command whose body starts `body`: `Ok(Some)` if complete, `Ok(None)` if more
    /// bytes are needed, `Err(())` if no supported command starts this way.
    fn match_body(body: &[u8]) -> Result<Option<Command>, ()> {
        let mut partial = false;
        for c in Command::ALL {
            let b = c.body();
            if body.len() >= b.len() {
                if body.get(..b.len()) == Some(b) {
                    return Ok(Some(c));
                }
            } else if b.get(..body.len()) == Some(body) {
                partial = true;
            }
        }
        if partial { Ok(None) } else { Err(()) }
    }
}

/// Module-side stream decoder (for the simulator): host bytes in, [`Command`]s out.
/// Commands carry no length byte, so each supported command's length is known; an unknown
/// command after ':' is skipped and the decoder resyncs on the next ':'.
#[derive(Debug, Default)]
pub struct CommandDecoder {
    /// Bytes not yet framed.
    buf: Vec<u8>,
}

impl CommandDecoder {
    /// Consumes `bytes` and appends every complete, checked command to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Command>) -> FeedReport {
        let mut report = FeedReport::default();
        self.buf.extend_from_slice(bytes);
        let mut i = 0;
        while let Some(rest) = self.buf.get(i..) {
            let Some(&first) = rest.first() else { break };
            if first != COMMAND_START {
                report.skipped_bytes += 1;
                i += 1;
                continue;
            }
            // Body + checksum after the ':'.
            let after = rest.get(1..).unwrap_or(&[]);
            let cmd = match Command::match_body(after) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(()) => {
                    report.skipped_bytes += 1;
                    i += 1;
                    continue;
                }
            };
            let len = 1 + cmd.body().len() + 1;
            let Some(frame) = rest.get(..len) else { break };
            if checksum(frame) != 0 {
                report.bad_frames += 1;
                i += 1;
                continue;
            }
            report.frames += 1;
            out.push(cmd);
            i += len;
        }
        self.buf.drain(..i.min(self.buf.len()));
        report
    }

    /// Forgets any partial command.
    pub fn reset(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use crate::protocol::testutil::{
        XorShift, assert_every_split_matches_whole, feed_random_chunks, feed_whole,
    };

    /// DesktopFX NIBPBytesInterceptorTest / NIBPConverterTest: 115/74 mmHg, 30 beats,
    /// status 1, HR 85, MAP 88, error 0.
    const DESKTOPFX_BP: [u8; 24] = [
        0x3e, 0x18, // start, length 24
        0x73, 0x00, // systolic 115
        0x4a, 0x00, // diastolic 74
        0x1e, // 30 beats
        0x01, // BP status
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x31, 0x07, // test codes
        0x55, // HR 85
        0x00, // spare
        0x58, 0x00, // MAP 88
        0x00, // error code
        0x00, 0x00, // spares
        0xe9, // checksum
    ];
    /// DesktopFX: cuff pressure 258 mmHg.
    const DESKTOPFX_CUFF: [u8; 5] = [0x3E, 0x05, 0x02, 0x01, 0xBA];
    /// DesktopFX: the same with a wrong checksum (rejected there too).
    const DESKTOPFX_CUFF_BAD: [u8; 5] = [0x3E, 0x05, 0x02, 0x01, 0xB1];
    /// DesktopFX: 'K', command executed.
    const DESKTOPFX_ACK: [u8; 4] = [0x3E, 0x04, 0x4B, 0x73];

    fn responses(bytes: &[u8]) -> (Vec<Response>, FeedReport) {
        let mut d = SuntechDecoder::default();
        let mut out = Vec::new();
        let r = d.feed_responses(bytes, &mut out);
        (out, r)
    }

    fn bp(error_code: u8) -> BpData {
        BpData {
            sys: 115,
            dia: 74,
            beats: 30,
            status: 1,
            test_codes: [0, 0, 0, 0, 0, 0, 0x31, 0x07],
            hr: 85,
            map: 88,
            error_code,
        }
    }

    #[test]
    fn the_desktopfx_vectors_decode_to_their_values() {
        let cases: [(&[u8], Option<Response>); 4] = [
            (&DESKTOPFX_CUFF, Some(Response::CuffPressure(258))),
            (&DESKTOPFX_CUFF_BAD, None),
            (&DESKTOPFX_ACK, Some(Response::Ack(b'K'))),
            (&DESKTOPFX_BP, Some(Response::BpData(bp(0)))),
        ];
        for (bytes, want) in cases {
            let (rs, r) = responses(bytes);
            assert_eq!(rs.first().cloned(), want, "{bytes:02x?}");
            assert_eq!(r.frames, u32::from(want.is_some()));
            assert_eq!(r.bad_frames, u32::from(want.is_none()));
        }
    }

    #[test]
    fn a_good_bp_result_gives_four_nibp_values_and_cuff_pressure_is_flagged_ongoing() {
        let mut bytes = DESKTOPFX_CUFF.to_vec();
        bytes.extend_from_slice(&DESKTOPFX_BP);
        let (ms, _) = feed_whole::<SuntechDecoder>(&bytes);
        let ongoing = Flags::EMPTY.with(Flag::MeasurementOngoing);
        assert_eq!(
            ms,
            vec![
                Measurement::new(Metric::CuffPressure, 258.0, ongoing),
                Measurement::new(Metric::NibpSys, 115.0, Flags::EMPTY),
                Measurement::new(Metric::NibpDia, 74.0, Flags::EMPTY),
                Measurement::new(Metric::NibpMean, 88.0, Flags::EMPTY),
                Measurement::new(Metric::NibpPulse, 85.0, Flags::EMPTY),
            ]
        );
    }

    #[test]
    fn every_error_code_voids_the_values_and_carries_the_code() {
        // Error codes from nPM SuntechProvider.cpp (decimal, devices.md warning 6); frames
        // constructed with the encoder.
        use error_code::*;
        let table: [(u8, Option<Flag>); 13] = [
            (WEAK_SIGNAL, Some(Flag::LowSignal)),
            (ARTIFACT, Some(Flag::Artifact)),
            (OUT_OF_RANGE, None),
            (MEASUREMENT_TIMEOUT, None),
            (PNEUMATIC_BLOCKAGE, None),
            (TERMINATED, None),
            (LOOSE_CUFF, Some(Flag::CuffLoose)),
            (SAFETY_TIMEOUT, None),
            (OVERPRESSURE, None),
            (HARDWARE, None),
            (AUTO_ZERO, None),
            (TRANSDUCER, None),
            (EEPROM, None),
        ];
        for (code, flag) in table {
            let (ms, r) = feed_whole::<SuntechDecoder>(&bp(code).encode());
            assert_eq!(r.frames, 1);
            let metrics: Vec<Metric> = ms.iter().map(|m| m.metric).collect();
            assert_eq!(
                metrics,
                [
                    Metric::NibpSys,
                    Metric::NibpDia,
                    Metric::NibpMean,
                    Metric::NibpPulse
                ]
            );
            for m in &ms {
                assert_eq!(m.value, Value::Invalid(Invalid::DeviceMarkedInvalid));
                assert_eq!(m.flags.cuff_error(), Some(u16::from(code)));
                let mut want = Flags::EMPTY;
                if let Some(f) = flag {
                    want.insert(f);
                }
                want.set_cuff_error(u16::from(code));
                assert_eq!(m.flags, want, "code {code}");
            }
        }
    }

    #[test]
    fn acks_and_other_responses_give_no_measurements() {
        for c in ACKS {
            let bytes = Response::Ack(c).encode();
            let (rs, _) = responses(&bytes);
            assert_eq!(rs, vec![Response::Ack(c)]);
            assert!(feed_whole::<SuntechDecoder>(&bytes).0.is_empty());
        }
        // Constructed: an unknown one-char response and a module-data string.
        let odd = Response::Other { data: vec![b'Z'] };
        let text = Response::Other {
            data: b"SunTech Advantage".to_vec(),
        };
        for r in [odd, text] {
            let bytes = r.encode();
            assert_eq!(responses(&bytes).0, vec![r]);
            assert!(feed_whole::<SuntechDecoder>(&bytes).0.is_empty());
        }
    }

    #[test]
    fn the_encoders_reproduce_the_desktopfx_responses() {
        assert_eq!(Response::CuffPressure(258).encode(), DESKTOPFX_CUFF);
        assert_eq!(Response::Ack(b'K').encode(), DESKTOPFX_ACK);
        assert_eq!(Response::BpData(bp(0)).encode(), DESKTOPFX_BP);
    }

    #[test]
    fn commands_encode_as_in_desktopfx_and_round_trip() {
        // DesktopFX NIBPRequest tests: start adult, get cuff pressure, get BP data; abort
        // constructed from devices.md §7.1 (`79 01 00`).
        let table: [(Command, &[u8]); 4] = [
            (Command::StartAdult, &[0x3A, 0x20, 0xA6]),
            (Command::GetCuffPressure, &[0x3A, 0x79, 0x05, 0x00, 0x48]),
            (Command::GetBpData, &[0x3A, 0x79, 0x03, 0x00, 0x4A]),
            (Command::Abort, &[0x3A, 0x79, 0x01, 0x00, 0x4C]),
        ];
        for (cmd, bytes) in table {
            assert_eq!(cmd.encode(), bytes, "{cmd:?}");
        }
        let mut stream = Vec::new();
        for c in Command::ALL {
            stream.extend_from_slice(&c.encode());
        }
        for k in 0..=stream.len() {
            let mut d = CommandDecoder::default();
            let mut out = Vec::new();
            let mut r = d.feed(&stream[..k], &mut out);
            r.absorb(d.feed(&stream[k..], &mut out));
            assert_eq!(out, Command::ALL, "split at {k}");
            assert_eq!(
                r,
                FeedReport {
                    frames: 10,
                    ..Default::default()
                }
            );
        }
    }

    #[test]
    fn the_command_decoder_skips_unknown_commands_and_bad_checksums() {
        let mut bytes = vec![0x3A, 0x55, 0x71]; // unknown opcode
        bytes.extend_from_slice(&[0x3A, 0x79, 0x09, 0x00, 0x44]); // unknown 79 sub-command
        bytes.extend_from_slice(&[0x3A, 0x20, 0xA7]); // bad checksum
        bytes.extend_from_slice(&Command::GetBpData.encode());
        bytes.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
        let mut d = CommandDecoder::default();
        let mut out = Vec::new();
        let r = d.feed(&bytes, &mut out);
        assert_eq!(out, vec![Command::GetBpData]);
        assert_eq!(r.frames, 1);
        assert_eq!(r.bad_frames, 1);
        // 3 + 5 + 2 (after the bad ':') + 4 junk.
        assert_eq!(r.skipped_bytes, 14);
        d.reset();
        d.feed(&[0x3A, 0x79], &mut out);
        d.reset();
        d.feed(&[0x03, 0x00, 0x4A], &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn garbage_bad_lengths_and_trailing_junk_are_counted_not_decoded() {
        let mut bytes = vec![0x00, 0x3E, 0x02, 0x3E, 0x44]; // lengths 2 and 0x44 are impossible
        bytes.extend_from_slice(&[0x3E, 0x05, 0x02, 0x01, 0xB1]); // bad checksum
        bytes.extend_from_slice(&DESKTOPFX_BP);
        bytes.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
        let (rs, r) = responses(&bytes);
        assert_eq!(rs, vec![Response::BpData(bp(0))]);
        assert_eq!(r.frames, 1);
        assert_eq!(r.bad_frames, 1);
        // 5 before, 4 after the bad frame's start, 4 of junk.
        assert_eq!(r.skipped_bytes, 13);
        assert_every_split_matches_whole::<SuntechDecoder>(&bytes);
    }

    #[test]
    fn a_frame_hidden_behind_a_false_start_is_still_found() {
        // Constructed: a stray '>' with a long length swallows a real frame; resync finds it.
        let mut bytes = vec![0x3E, 0x30];
        bytes.extend_from_slice(&DESKTOPFX_CUFF);
        bytes.extend_from_slice(&[0u8; 0x30]);
        let (rs, r) = responses(&bytes);
        assert_eq!(rs, vec![Response::CuffPressure(258)]);
        assert_eq!(r.bad_frames, 1);
    }

    #[test]
    fn random_bytes_never_panic_and_responses_among_garbage_are_all_recovered() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let noise: Vec<u8> = (0..200_000).map(|_| rng.byte()).collect();
        let _ = feed_random_chunks::<SuntechDecoder>(&noise, &mut rng, 300);
        let mut cd = CommandDecoder::default();
        cd.feed(&noise, &mut Vec::new());

        let mut stream = Vec::new();
        let mut expected = Vec::new();
        while stream.len() < 200_000 {
            let n = rng.below(80);
            stream.extend((0..n).map(|_| rng.byte()).filter(|b| *b != RESPONSE_START));
            let r = match rng.below(3) {
                0 => Response::CuffPressure(rng.below(300) as u16),
                1 => Response::Ack(ACKS[rng.below(ACKS.len())]),
                _ => Response::BpData(BpData {
                    sys: rng.below(250) as u16,
                    error_code: rng.below(2) as u8 * 87,
                    ..bp(0)
                }),
            };
            stream.extend_from_slice(&r.encode());
            expected.push(r);
        }
        let mut d = SuntechDecoder::default();
        let mut got = Vec::new();
        let mut i = 0;
        while i < stream.len() {
            let n = (1 + rng.below(97)).min(stream.len() - i);
            d.feed_responses(&stream[i..i + n], &mut got);
            i += n;
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn reset_forgets_a_partial_response() {
        let mut d = SuntechDecoder::default();
        let mut out = Vec::new();
        d.feed(&DESKTOPFX_BP[..10], &mut out);
        d.reset();
        let r = d.feed(&DESKTOPFX_BP[10..], &mut out);
        assert!(out.is_empty());
        assert_eq!(r.frames, 0);
    }
}
