//! Viatom / Wellue O2 (O2Ring, Checkme O2, SleepU) over BLE: service
//! 14839AC4-7D7E-415C-9A42-167340CF2339, write characteristic 8B00ACE7-…, notify
//! characteristic 0734594A-…. The host polls READ_SENSORS (command 0x17, about every 2 s) and
//! the response may arrive over several notifications, so this decoder is a stream framer.
//!
//! Facts: ../shared/reference/devices.md §5.2 (MackeyStingray/o2r `o2pkt.py`, `o2state.py`,
//! reverse-engineered; dmattox-sparkcodelabs/O2Monitor `BleProtocolTest.kt`, whose
//! assertions, not comments, are right: devices.md warning 5).
//!
//! Request: `AA cmd ~cmd block(u16 LE) len(u16 LE) data CRC8`. Response:
//! `55 status ~status block(u16 LE) len(u16 LE) payload CRC8`, 8 + len bytes. CRC-8 is
//! polynomial 0x07, init 0, no reflection, no final xor.
//!
//! A response with a 13-byte payload is a READ_SENSORS answer: `[0]` SpO2, `[1]` pulse rate,
//! `[2]` flag, `[7]` battery %, `[8]` charging, `[9]` motion, `[10]` signal strength,
//! `[11]` finger present (o2r), the rest unknown. It gives `spo2`, `pulse_rate` and
//! `battery`. Finger out is bytes 0-2 = 0xFF (o2r captures); O2Monitor treats flag `[2]` =
//! 0xFF alone as sensor off, so that alone raises `no_finger`. SpO2 or PR 0xFF is `no_value`;
//! 0 is `no_value` too (O2Monitor: all-zero is the idle ring). Motion, charging and signal
//! strength have no known scale and are not mapped; `[11]` is not used alone (only o2r
//! names it). Responses with other payload lengths answer other commands: frames, no
//! measurements. A response with a non-zero status is a failed command: a bad frame.

use super::{Decoder, FeedReport};
use crate::model::{Flag, Flags, Invalid, Measurement, Metric};

/// Command READ_SENSORS.
pub const CMD_READ_SENSORS: u8 = 0x17;
/// First byte of a request.
const REQUEST: u8 = 0xAA;
/// First byte of a response.
const RESPONSE: u8 = 0x55;
/// Header bytes before the payload.
const HEADER: usize = 7;
/// READ_SENSORS payload length.
pub const SENSORS_LEN: usize = 13;
/// Longest payload accepted; longer length fields are taken for noise. File blocks read by
/// o2r are far smaller.
pub const MAX_PAYLOAD: usize = 4096;
/// The "no value" byte.
const NONE: u8 = 0xFF;

/// CRC-8, polynomial 0x07, init 0 (CRC-8/SMBUS).
pub fn crc8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |crc, &b| {
        (0..8).fold(crc ^ b, |c, _| {
            if c & 0x80 != 0 {
                (c << 1) ^ 0x07
            } else {
                c << 1
            }
        })
    })
}

/// A request frame: `AA cmd ~cmd block len data CRC`.
pub fn request(cmd: u8, block: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&[REQUEST, cmd, !cmd]);
    out.extend_from_slice(&block.to_le_bytes());
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&data[..usize::from(len)]);
    out.push(crc8(&out));
    out
}

/// The READ_SENSORS request, `AA 17 E8 00 00 00 00 1B`.
pub fn read_sensors_request() -> Vec<u8> {
    request(CMD_READ_SENSORS, 0, &[])
}

/// The measurements of a READ_SENSORS payload.
pub fn sensors(p: &[u8; SENSORS_LEN], out: &mut Vec<Measurement>) {
    let mut flags = Flags::EMPTY;
    flags.set_if(Flag::NoFinger, p[2] == NONE);
    let vital = |metric, b: u8| match b {
        NONE | 0 => Measurement::invalid(metric, Invalid::NoValue, flags),
        b => Measurement::new(metric, f64::from(b), flags),
    };
    out.push(vital(Metric::Spo2, p[0]));
    out.push(vital(Metric::PulseRate, p[1]));
    out.push(Measurement::new(
        Metric::Battery,
        f64::from(p[7]),
        Flags::EMPTY,
    ));
}

/// The length of the complete response with a good header and CRC at the start of `b`.
fn valid_frame_len(b: &[u8]) -> Option<usize> {
    let h = b.first_chunk::<HEADER>()?;
    let len = usize::from(u16::from_le_bytes([h[5], h[6]]));
    if h[0] != RESPONSE || h[1] ^ h[2] != 0xFF || len > MAX_PAYLOAD {
        return None;
    }
    let frame = b.get(..HEADER + len + 1)?;
    let (body, crc) = frame.split_at(HEADER + len);
    (crc8(body) == crc[0]).then_some(frame.len())
}

/// Stream decoder for `viatom-o2`: responses across notifications.
#[derive(Debug, Default)]
pub struct ViatomDecoder {
    /// Bytes not yet framed (at most one response).
    buf: Vec<u8>,
}

impl Decoder for ViatomDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        let mut report = FeedReport::default();
        self.buf.extend_from_slice(bytes);
        let buf = std::mem::take(&mut self.buf);
        let mut i = 0;
        while let Some(rest) = buf.get(i..) {
            let Some(&first) = rest.first() else { break };
            if first != RESPONSE {
                report.skipped_bytes += 1;
                i += 1;
                continue;
            }
            let Some(h) = rest.first_chunk::<HEADER>() else {
                // A plausible header start: wait, unless what is there already disagrees.
                if rest.get(1..3).is_some_and(|s| s[0] ^ s[1] != 0xFF) {
                    report.skipped_bytes += 1;
                    i += 1;
                    continue;
                }
                break;
            };
            let len = usize::from(u16::from_le_bytes([h[5], h[6]]));
            if h[1] ^ h[2] != 0xFF || len > MAX_PAYLOAD {
                report.skipped_bytes += 1;
                i += 1;
                continue;
            }
            let Some(frame) = rest.get(..HEADER + len + 1) else {
                // Incomplete. A noise byte that looks like a header with a long length must
                // not hold back the responses behind it: if a complete, valid response
                // already follows, this start was noise.
                if (1..rest.len()).any(|j| rest.get(j..).and_then(valid_frame_len).is_some()) {
                    report.skipped_bytes += 1;
                    i += 1;
                    continue;
                }
                break;
            };
            let (body, crc) = frame.split_at(HEADER + len);
            if crc8(body) != crc[0] {
                report.bad_frames += 1;
                i += 1;
                continue;
            }
            i += frame.len();
            if h[1] != 0 {
                report.bad_frames += 1;
                continue;
            }
            report.frames += 1;
            if let Some(p) = body
                .get(HEADER..)
                .and_then(|p| p.first_chunk::<SENSORS_LEN>())
                && len == SENSORS_LEN
            {
                sensors(p, out);
            }
        }
        self.buf = buf;
        self.buf.drain(..i.min(self.buf.len()));
        report
    }

    fn reset(&mut self) {
        self.buf.clear();
    }
}

/// A READ_SENSORS response for the simulator. `None` vitals are sent as 0xFF; `no_finger`
/// (or any flag that voids values) sends the ring's finger-out form (bytes 0-2 = 0xFF,
/// finger-present 0); battery is clamped to 100 %.
pub fn encode_read_sensors_response(
    spo2: Option<f64>,
    pulse_rate: Option<f64>,
    battery: u8,
    flags: Flags,
) -> Vec<u8> {
    let finger_out = flags.voiding().is_some();
    let byte = |v: Option<f64>, max: f64| v.map_or(NONE, |v| v.round().clamp(1.0, max) as u8);
    let mut p = [0u8; SENSORS_LEN];
    if finger_out {
        p[..3].fill(NONE);
    } else {
        p[0] = byte(spo2, 100.0);
        p[1] = byte(pulse_rate, 254.0);
        p[11] = 1;
    }
    p[7] = battery.min(100);
    let mut out = vec![RESPONSE, 0x00, 0xFF, 0x00, 0x00, SENSORS_LEN as u8, 0x00];
    out.extend_from_slice(&p);
    out.push(crc8(&out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use crate::protocol::testutil::{
        XorShift, assert_every_split_matches_whole, feed_random_chunks, feed_whole,
    };

    /// A response around a payload, with a correct CRC.
    fn response(status: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![RESPONSE, status, !status, 0, 0];
        out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        out.extend_from_slice(payload);
        out.push(crc8(&out));
        out
    }

    fn payload(hex: &str) -> Vec<u8> {
        hex::decode(hex).unwrap()
    }

    #[test]
    fn crc8_matches_the_o2monitor_assertions() {
        // O2Monitor BleProtocolTest.kt assertions (devices.md warning 5: not its comments).
        let table: [(&[u8], u8); 5] = [
            (&[0x00], 0x00),
            (&[0x01], 0x07),
            (&[0xFF], 0xF3),
            (&[0x55, 0x17], 0x28),
            (&[0xAA, 0x17, 0xE8, 0x00, 0x00, 0x00, 0x00], 0x1B),
        ];
        for (bytes, crc) in table {
            assert_eq!(crc8(bytes), crc, "{bytes:02x?}");
        }
        // O2Monitor `buildCommand 0x17 produces exact 8-byte packet`.
        assert_eq!(
            read_sensors_request(),
            [0xAA, 0x17, 0xE8, 0x00, 0x00, 0x00, 0x00, 0x1B]
        );
    }

    #[test]
    fn the_o2r_captures_decode() {
        // o2r `o2state.py` comments: two finger-out captures and one reading.
        let table: [(&str, Value, Value, f64, Flags); 3] = [
            (
                "ffffff00000000600005000000",
                Value::Invalid(Invalid::NoValue),
                Value::Invalid(Invalid::NoValue),
                96.0,
                Flags::EMPTY.with(Flag::NoFinger),
            ),
            (
                "ffffff00000000620100000000",
                Value::Invalid(Invalid::NoValue),
                Value::Invalid(Invalid::NoValue),
                98.0,
                Flags::EMPTY.with(Flag::NoFinger),
            ),
            (
                "624200000000006100920a0100",
                Value::Valid(98.0),
                Value::Valid(66.0),
                97.0,
                Flags::EMPTY,
            ),
        ];
        for (hex, spo2, pr, battery, flags) in table {
            let (ms, r) = feed_whole::<ViatomDecoder>(&response(0, &payload(hex)));
            assert_eq!(r.frames, 1, "{hex}");
            assert_eq!(
                ms,
                vec![
                    Measurement {
                        value: spo2,
                        ..Measurement::invalid(Metric::Spo2, Invalid::NoValue, flags)
                    },
                    Measurement {
                        value: pr,
                        ..Measurement::invalid(Metric::PulseRate, Invalid::NoValue, flags)
                    },
                    Measurement::new(Metric::Battery, battery, Flags::EMPTY),
                ],
                "{hex}"
            );
        }
    }

    #[test]
    fn o2monitor_payloads_decode_with_its_rules() {
        // O2Monitor makePayload(spo2, hr, flag, battery, movement): flag 0xFF = sensor off,
        // all-zero = idle, flag 0 with values = a reading.
        let make = |spo2: u8, hr: u8, flag: u8| {
            let mut p = [0u8; SENSORS_LEN];
            p[..3].copy_from_slice(&[spo2, hr, flag]);
            p[7] = 85;
            p[9] = 3;
            p
        };
        let decode = |p: [u8; SENSORS_LEN]| feed_whole::<ViatomDecoder>(&response(0, &p)).0;
        let ms = decode(make(97, 72, 0x01));
        assert_eq!(ms[0], Measurement::new(Metric::Spo2, 97.0, Flags::EMPTY));
        assert_eq!(
            ms[1],
            Measurement::new(Metric::PulseRate, 72.0, Flags::EMPTY)
        );
        assert_eq!(ms[2], Measurement::new(Metric::Battery, 85.0, Flags::EMPTY));
        let ms = decode(make(97, 72, 0xFF));
        assert_eq!(ms[0].value, Value::Invalid(Invalid::DeviceFlagged));
        assert!(ms[0].flags.contains(Flag::NoFinger));
        let ms = decode(make(0, 0, 0));
        assert_eq!(ms[0].value, Value::Invalid(Invalid::NoValue));
        assert_eq!(ms[1].value, Value::Invalid(Invalid::NoValue));
        let ms = decode(make(95, 68, 0));
        assert_eq!(ms[0].value, Value::Valid(95.0));
        let ms = decode(make(101, 255, 0));
        assert_eq!(ms[0].value, Value::Invalid(Invalid::OutOfRange));
        assert_eq!(ms[1].value, Value::Invalid(Invalid::NoValue));
    }

    #[test]
    fn a_response_split_over_notifications_with_garbage_and_bad_crcs_resyncs() {
        let good = encode_read_sensors_response(Some(97.0), Some(72.0), 80, Flags::EMPTY);
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 0x01;
        let failed = response(1, &[]);
        let ping = response(0, &[]);
        // O2Monitor: garbage prefix `01 02 03 AA`.
        let mut bytes = vec![0x01, 0x02, 0x03, 0xAA];
        bytes.extend_from_slice(&bad_crc);
        bytes.extend_from_slice(&failed);
        bytes.extend_from_slice(&ping);
        bytes.extend_from_slice(&good);
        bytes.extend_from_slice(&[0x55, 0x00]); // a response that has only begun
        let (ms, r) = feed_whole::<ViatomDecoder>(&bytes);
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[0].value, Value::Valid(97.0));
        assert_eq!(r.frames, 2); // the ping and the reading
        assert_eq!(r.bad_frames, 2); // the bad CRC and the failed command
        assert_every_split_matches_whole::<ViatomDecoder>(&bytes);
    }

    #[test]
    fn a_noise_header_with_a_long_length_does_not_hold_back_the_next_response() {
        // Constructed: `55 00 FF 00 00 00 10` claims a 4096-byte payload.
        let good = encode_read_sensors_response(Some(97.0), Some(72.0), 80, Flags::EMPTY);
        let mut bytes = vec![0x55, 0x00, 0xFF, 0x00, 0x00, 0x00, 0x10];
        bytes.extend_from_slice(&good);
        let (ms, r) = feed_whole::<ViatomDecoder>(&bytes);
        assert_eq!(ms.len(), 3);
        assert_eq!(r.frames, 1);
        assert_eq!(r.skipped_bytes, 7);
    }

    #[test]
    fn truncated_responses_wait_and_reset_forgets_them() {
        let good = encode_read_sensors_response(Some(97.0), Some(72.0), 80, Flags::EMPTY);
        for n in 0..good.len() {
            let (ms, r) = feed_whole::<ViatomDecoder>(&good[..n]);
            assert!(ms.is_empty());
            assert_eq!(r.frames + r.bad_frames, 0, "cut to {n}");
        }
        let mut d = ViatomDecoder::default();
        let mut out = Vec::new();
        d.feed(&good[..10], &mut out);
        d.reset();
        d.feed(&good[10..], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn encoded_responses_round_trip() {
        let table: [(Option<f64>, Option<f64>, u8, Flags); 4] = [
            (Some(97.0), Some(72.0), 80, Flags::EMPTY),
            (Some(84.0), Some(140.0), 5, Flags::EMPTY),
            (None, Some(60.0), 100, Flags::EMPTY),
            (
                Some(97.0),
                Some(72.0),
                50,
                Flags::EMPTY.with(Flag::NoFinger),
            ),
        ];
        for (spo2, pr, battery, flags) in table {
            let bytes = encode_read_sensors_response(spo2, pr, battery, flags);
            assert_eq!(bytes.len(), 8 + SENSORS_LEN);
            let (ms, r) = feed_whole::<ViatomDecoder>(&bytes);
            assert_eq!(r.frames, 1);
            let v = |x: Option<f64>| match x {
                _ if !flags.is_empty() => Value::Invalid(Invalid::NoValue),
                None => Value::Invalid(Invalid::NoValue),
                Some(x) => Value::Valid(x),
            };
            assert_eq!(ms[0].value, v(spo2));
            assert_eq!(ms[1].value, v(pr));
            assert_eq!(ms[0].flags, flags);
            assert_eq!(ms[2].value, Value::Valid(f64::from(battery)));
        }
    }

    #[test]
    fn random_bytes_never_panic_and_responses_among_garbage_are_all_recovered() {
        let mut rng = XorShift(0x0217_0217);
        let noise: Vec<u8> = (0..100_000).map(|_| rng.byte()).collect();
        let _ = feed_random_chunks::<ViatomDecoder>(&noise, &mut rng, 20);

        let mut stream = Vec::new();
        let mut expected = Vec::new();
        while stream.len() < 100_000 {
            let n = rng.below(10);
            stream.extend((0..n).map(|_| rng.byte()).filter(|b| *b != RESPONSE));
            let spo2 = 1 + rng.below(100) as u8;
            let pr = 1 + rng.below(200) as u8;
            stream.extend_from_slice(&encode_read_sensors_response(
                Some(f64::from(spo2)),
                Some(f64::from(pr)),
                50,
                Flags::EMPTY,
            ));
            expected.push((f64::from(spo2), f64::from(pr)));
        }
        // BLE notifications of at most 20 bytes (default ATT MTU).
        let (ms, r) = feed_random_chunks::<ViatomDecoder>(&stream, &mut rng, 20);
        let got: Vec<(f64, f64)> = ms
            .chunks_exact(3)
            .map(|c| (c[0].value.number().unwrap(), c[1].value.number().unwrap()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(r.bad_frames, 0);
    }
}
