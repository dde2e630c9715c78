//! BerryMed BM1000-family BCI protocol: 5-byte packets at 100 Hz over a transparent BLE UART
//! (notify characteristic 49535343-1E4D-4BD9-BA61-23C647249616). Packets may be split across
//! or merged within notifications, so this decoder, unlike the other BLE decoders, is a
//! stream framer: bytes in pieces of any size.
//!
//! Facts: ../shared/reference/devices.md §5.1 (zh2x/BCI_Protocol "BCI Protocol V1.2"; parsing
//! cross-checked with bgould/berrymed-pulseox-reader `packet.go` and Adafruit's BerryMed
//! library). Doc bytes 1-5:
//!
//! | byte | bits |
//! |---|---|
//! | 1 | b7 = 1 (sync); b6 pulse beep; b5 probe unplugged; b4 no signal; b0-3 signal strength |
//! | 2 | b7 = 0; b0-6 pleth (0 invalid) |
//! | 3 | b7 = 0; b6 PR bit 7; b5 searching; b4 no finger; b0-3 bargraph |
//! | 4 | b7 = 0; PR bits 0-6 (255 invalid) |
//! | 5 | b7 = 0; SpO2 (127 invalid) |
//!
//! Only the first byte has b7 set, so a packet starts at a byte with b7 set followed by four
//! with b7 clear; a byte with b7 set inside a packet starts a new one and the cut packet is a
//! bad frame. Version replies (first byte 0xFF or 0xFE, then ASCII) are framed and skipped.
//!
//! Every packet gives `pleth`, `pulse_rate` and `spo2` (100 Hz each; the hub coalesces per
//! client). Flags: probe unplugged -> `probe_unplugged`, no finger -> `no_finger` (both void
//! the numbers), searching -> `searching`, no signal -> `low_signal`. Signal strength and
//! bargraph are display aids and are not emitted.

use super::framing::{SYNC_BIT, SyncBitFramer};
use super::{Decoder, FeedReport, coded};
use crate::model::{Flag, Flags, Measurement, Metric};

/// Bytes per packet.
pub const PACKET_LEN: usize = 5;
/// Byte 1 b5: probe unplugged.
const PROBE_UNPLUGGED: u8 = 0x20;
/// Byte 1 b4: no signal.
const NO_SIGNAL: u8 = 0x10;
/// Byte 3 b6: bit 7 of the pulse rate.
const PR_BIT7: u8 = 0x40;
/// Byte 3 b5: searching for pulse.
const SEARCHING: u8 = 0x20;
/// Byte 3 b4: no finger.
const NO_FINGER: u8 = 0x10;
/// Invalid pulse rate.
const PR_INVALID: u16 = 255;
/// Invalid SpO2.
const SPO2_INVALID: u8 = 127;

/// The flags of a packet's first and third bytes.
pub fn packet_flags(b1: u8, b3: u8) -> Flags {
    let mut f = Flags::EMPTY;
    f.set_if(Flag::ProbeUnplugged, b1 & PROBE_UNPLUGGED != 0);
    f.set_if(Flag::LowSignal, b1 & NO_SIGNAL != 0);
    f.set_if(Flag::NoFinger, b3 & NO_FINGER != 0);
    f.set_if(Flag::Searching, b3 & SEARCHING != 0);
    f
}

/// Appends `pleth`, `pulse_rate` and `spo2` of one packet in the BCI layout (bytes 2-5;
/// Contec legacy frames share it), each with `flags`: pleth 0, PR 255 and SpO2 127 are no
/// value.
pub(crate) fn vitals(p: [u8; PACKET_LEN], flags: Flags, out: &mut Vec<Measurement>) {
    let [_, pleth, b3, pr_low, spo2] = p;
    let pleth = pleth & 0x7F;
    out.push(coded(Metric::Pleth, pleth.into(), 0, flags));
    let pr = u16::from(pr_low & 0x7F) | (u16::from(b3 & PR_BIT7) << 1);
    out.push(coded(Metric::PulseRate, pr, PR_INVALID, flags));
    out.push(coded(
        Metric::Spo2,
        (spo2 & 0x7F).into(),
        SPO2_INVALID.into(),
        flags,
    ));
}

/// Bytes 1-5 of a BCI-layout packet (Contec legacy frames share it): the sync byte `b1` and
/// byte 3's flag bits `b3_flags` as the family sets them, PR and SpO2 as their values or
/// no-value codes (`None`), and the pleth (its top bits become the bargraph).
pub(crate) fn encode_vitals(
    b1: u8,
    b3_flags: u8,
    spo2: Option<f64>,
    pulse_rate: Option<f64>,
    pleth: u8,
) -> [u8; PACKET_LEN] {
    let pr = pulse_rate.map_or(PR_INVALID, |v| v.round().clamp(0.0, 254.0) as u16);
    let spo2 = spo2.map_or(SPO2_INVALID, |v| v.round().clamp(0.0, 100.0) as u8);
    let b3 = ((pleth >> 3) & 0x0F) | b3_flags | (((pr >> 1) as u8) & PR_BIT7);
    [b1, pleth, b3, (pr & 0x7F) as u8, spo2]
}

/// Stream decoder for `berrymed-bci`.
#[derive(Debug, Default)]
pub struct BciDecoder {
    framer: SyncBitFramer<PACKET_LEN>,
}

impl Decoder for BciDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        self.framer.feed(bytes, |p| {
            // 0xFF / 0xFE: a software / hardware version reply, not a reading.
            if p[0] != 0xFF && p[0] != 0xFE {
                vitals(p, packet_flags(p[0], p[2]), out);
            }
        })
    }

    fn reset(&mut self) {
        self.framer.reset();
    }
}

/// One BCI packet for the simulator. `None` vitals are sent as the invalid codes; `pleth`
/// (0 = invalid) is clamped to 0..=127. `flags` set the bits for `probe_unplugged`,
/// `no_finger`, `searching` and `low_signal` (no signal); signal strength is 0 under
/// `low_signal` and 8 otherwise, and the bargraph follows the pleth.
pub fn encode_bci(
    spo2: Option<f64>,
    pulse_rate: Option<f64>,
    pleth: u8,
    flags: Flags,
) -> [u8; PACKET_LEN] {
    let pleth = pleth.min(0x7F);
    let low = flags.contains(Flag::LowSignal);
    let mut b1 = SYNC_BIT | if low { 0 } else { 8 };
    b1 |= if low { NO_SIGNAL } else { 0 };
    b1 |= if flags.contains(Flag::ProbeUnplugged) {
        PROBE_UNPLUGGED
    } else {
        0
    };
    let mut b3 = if flags.contains(Flag::NoFinger) {
        NO_FINGER
    } else {
        0
    };
    b3 |= if flags.contains(Flag::Searching) {
        SEARCHING
    } else {
        0
    };
    encode_vitals(b1, b3, spo2, pulse_rate, pleth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Invalid;

    /// A packet, its pleth, pulse rate and SpO2, its flags, and what it shows.
    type Case = ([u8; 5], Value, Value, Value, Flags, &'static str);
    use crate::model::Value;
    use crate::protocol::testutil::{
        XorShift, assert_every_split_matches_whole, feed_random_chunks, feed_whole,
    };

    fn values(ms: &[Measurement]) -> Vec<(Metric, Value)> {
        ms.iter().map(|m| (m.metric, m.value)).collect()
    }

    #[test]
    fn packets_decode_as_bgould_and_adafruit_read_them() {
        // Constructed packets, expected values by bgould `packet.go` (PR = byte4 & 127 |
        // (byte3 & 0x40) << 1, SpO2 = byte5) and the BCI V1.2 bit table.
        let table: [Case; 6] = [
            (
                [0x88, 0x32, 0x06, 0x48, 0x61],
                Value::Valid(50.0),
                Value::Valid(72.0),
                Value::Valid(97.0),
                Flags::EMPTY,
                "ordinary",
            ),
            (
                [0xC8, 0x10, 0x42, 0x3D, 0x60],
                Value::Valid(16.0),
                Value::Valid(189.0),
                Value::Valid(96.0),
                Flags::EMPTY,
                "Contec-style trap: PR bit 7 in byte 3 -> 189, not 61",
            ),
            (
                [0x80, 0x00, 0x40, 0x7F, 0x7F],
                Value::Invalid(Invalid::NoValue),
                Value::Invalid(Invalid::NoValue),
                Value::Invalid(Invalid::NoValue),
                Flags::EMPTY,
                "invalid codes: pleth 0, PR 255, SpO2 127",
            ),
            (
                [0x80, 0x01, 0x10, 0x48, 0x61],
                Value::Invalid(Invalid::DeviceFlagged),
                Value::Invalid(Invalid::DeviceFlagged),
                Value::Invalid(Invalid::DeviceFlagged),
                Flags::EMPTY.with(Flag::NoFinger),
                "no finger voids held numbers",
            ),
            (
                [0xB0, 0x01, 0x60, 0x7F, 0x7F],
                Value::Invalid(Invalid::DeviceFlagged),
                Value::Invalid(Invalid::NoValue),
                Value::Invalid(Invalid::NoValue),
                Flags::EMPTY
                    .with(Flag::ProbeUnplugged)
                    .with(Flag::LowSignal)
                    .with(Flag::Searching),
                "probe unplugged, no signal, searching",
            ),
            (
                [0x88, 0x32, 0x06, 0x48, 0x65],
                Value::Valid(50.0),
                Value::Valid(72.0),
                Value::Invalid(Invalid::OutOfRange),
                Flags::EMPTY,
                "SpO2 101",
            ),
        ];
        for (p, pleth, pr, spo2, flags, what) in table {
            let (ms, r) = feed_whole::<BciDecoder>(&p);
            assert_eq!(r.frames, 1, "{what}");
            assert_eq!(
                values(&ms),
                vec![
                    (Metric::Pleth, pleth),
                    (Metric::PulseRate, pr),
                    (Metric::Spo2, spo2)
                ],
                "{what}"
            );
            assert!(ms.iter().all(|m| m.flags == flags), "{what}");
        }
    }

    #[test]
    fn packets_split_and_merged_across_notifications_resync() {
        let a = encode_bci(Some(97.0), Some(72.0), 50, Flags::EMPTY);
        let b = encode_bci(
            Some(96.0),
            Some(189.0),
            20,
            Flags::EMPTY.with(Flag::Searching),
        );
        // Joined mid-packet (3 data bytes skipped), a packet cut short by a new sync byte
        // (bad frame), two good packets, trailing partial packet.
        let mut bytes = a[2..].to_vec();
        bytes.extend_from_slice(&a[..3]);
        bytes.extend_from_slice(&a);
        bytes.extend_from_slice(&b);
        bytes.extend_from_slice(&b[..2]);
        let (ms, r) = feed_whole::<BciDecoder>(&bytes);
        assert_eq!(
            r,
            FeedReport {
                frames: 2,
                skipped_bytes: 3,
                bad_frames: 1,
            }
        );
        assert_eq!(ms.len(), 6);
        assert_eq!(ms[4].value, Value::Valid(189.0));
        assert_every_split_matches_whole::<BciDecoder>(&bytes);
    }

    #[test]
    fn version_replies_are_framed_but_give_no_readings() {
        let mut bytes = vec![0xFF, b'V', b'1', b'.', b'2'];
        bytes.extend_from_slice(&[0xFE, b'H', b'0', b'1', b'0']);
        let (ms, r) = feed_whole::<BciDecoder>(&bytes);
        assert!(ms.is_empty());
        assert_eq!(r.frames, 2);
    }

    #[test]
    fn encoded_packets_round_trip_for_every_flag() {
        let flag_sets = [
            Flags::EMPTY,
            Flags::EMPTY.with(Flag::Searching),
            Flags::EMPTY.with(Flag::LowSignal),
            Flags::EMPTY.with(Flag::NoFinger),
            Flags::EMPTY.with(Flag::ProbeUnplugged),
        ];
        for flags in flag_sets {
            for (spo2, pr) in [
                (Some(97.0), Some(72.0)),
                (Some(85.0), Some(254.0)),
                (None, None),
            ] {
                let (ms, r) = feed_whole::<BciDecoder>(&encode_bci(spo2, pr, 64, flags));
                assert_eq!(r.frames, 1);
                let want = |metric, v: Option<f64>| match v {
                    None => Measurement::invalid(metric, Invalid::NoValue, flags),
                    Some(v) => Measurement::new(metric, v, flags),
                };
                assert_eq!(
                    ms,
                    vec![
                        Measurement::new(Metric::Pleth, 64.0, flags),
                        want(Metric::PulseRate, pr),
                        want(Metric::Spo2, spo2),
                    ]
                );
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_and_packets_among_garbage_are_all_recovered() {
        let mut rng = XorShift(0xBE44_73ED);
        let noise: Vec<u8> = (0..100_000).map(|_| rng.byte()).collect();
        let _ = feed_random_chunks::<BciDecoder>(&noise, &mut rng, 40);

        let mut stream = Vec::new();
        let mut expected = Vec::new();
        while stream.len() < 100_000 {
            // Garbage without sync bytes, as a noisy UART that kept its framing bit.
            let n = rng.below(12);
            stream.extend((0..n).map(|_| rng.byte() & 0x7F));
            let pr = rng.below(255) as f64;
            let spo2 = rng.below(101) as f64;
            stream.extend_from_slice(&encode_bci(
                Some(spo2),
                Some(pr),
                1 + rng.below(127) as u8,
                Flags::EMPTY,
            ));
            expected.push((pr, spo2));
        }
        let (ms, r) = feed_random_chunks::<BciDecoder>(&stream, &mut rng, 20);
        let got: Vec<(f64, f64)> = ms
            .chunks_exact(3)
            .map(|c| (c[1].value.number().unwrap(), c[2].value.number().unwrap()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(r.bad_frames, 0);
    }

    #[test]
    fn reset_forgets_a_partial_packet() {
        let p = encode_bci(Some(97.0), Some(72.0), 50, Flags::EMPTY);
        let mut d = BciDecoder::default();
        let mut out = Vec::new();
        d.feed(&p[..3], &mut out);
        d.reset();
        let r = d.feed(&p[3..], &mut out);
        assert!(out.is_empty());
        assert_eq!(r.skipped_bytes, 2);
    }
}
