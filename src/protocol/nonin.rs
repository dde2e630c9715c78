//! Nonin serial data format #2 (OEM III, Xpod, 9560, 3150): 5-byte frames
//! `01 STATUS PLETH FLOAT CHK`, 25 frames per packet, 75 frames per second; format #7 (the same
//! packets with 16-bit pleth frames, [`NoninFormat7Decoder`]) and format #8 (4 bytes once a
//! second, [`NoninFormat8Decoder`]).
//!
//! Facts: ../shared/reference/devices.md §6.2 (Nonin 9560 OEM specification; masks and checksum
//! cross-checked with pez-globo/pufferfish-software's Nonin driver and its tests).
//! The FLOAT byte's meaning depends on the frame's position in its packet, so heart rate and
//! SpO2 are emitted only when the position is known for certain: a SYNC frame that comes exactly
//! 25 frames after the previous one (so line noise that happens to look like a SYNC frame cannot
//! make the decoder read the wrong bytes as SpO2), then frames 1, 2 and 3 in a row. A lost byte
//! loses the position; the first packet after it yields pleth only (1/3 s without vitals).

use super::framing::SyncBitFramer;
use super::{Decoder, FeedReport, coded};
use crate::model::{Flag, Flags, Measurement, Metric};

/// Bytes per frame.
pub const FRAME_LEN: usize = 5;
/// Frames per packet.
pub const FRAMES_PER_PACKET: usize = 25;
/// Bytes per packet.
pub const PACKET_LEN: usize = FRAME_LEN * FRAMES_PER_PACKET;

/// Every frame starts with this byte.
const START: u8 = 0x01;
/// STATUS b7: always set.
const STATUS_B7: u8 = 0x80;
/// STATUS b6 SNSD: sensor disconnected.
const SNSD: u8 = 0x40;
/// STATUS b5 ARTF: artifact.
const ARTF: u8 = 0x20;
/// STATUS b4 OOT: out of track.
const OOT: u8 = 0x10;
/// STATUS b3 SNSA: sensor alarm (finger removed, unusable data).
const SNSA: u8 = 0x08;
/// STATUS b2 RPRF: red perfusion.
const RPRF: u8 = 0x04;
/// STATUS b1 GPRF: green perfusion.
const GPRF: u8 = 0x02;
/// STATUS b0 SYNC: set only on frame 1 of a packet.
const SYNC: u8 = 0x01;
/// STAT2 (FLOAT of frame 8) b0: low battery.
const STAT2_LOW_BAT: u8 = 0x01;
/// "Missing" heart rate.
const HR_MISSING: u16 = 511;
/// "Missing" SpO2.
const SPO2_MISSING: u8 = 127;

/// The flags a STATUS byte carries (SYNC and b7 are framing, not conditions).
pub fn status_flags(status: u8) -> Flags {
    let mut f = Flags::EMPTY;
    f.set_if(Flag::ProbeUnplugged, status & SNSD != 0);
    f.set_if(Flag::Artifact, status & ARTF != 0);
    f.set_if(Flag::Searching, status & OOT != 0);
    f.set_if(Flag::NoFinger, status & SNSA != 0);
    f.set_if(Flag::LowPerfusion, status & (RPRF | GPRF) == RPRF);
    f
}

/// The frame checksum: (b1 + b2 + b3 + b4) mod 256.
fn checksum(frame: &[u8]) -> u8 {
    frame
        .iter()
        .take(FRAME_LEN - 1)
        .fold(0u8, |a, b| a.wrapping_add(*b))
}

/// Stream decoder for `nonin-format2`. Emits `pleth` for every valid frame, and `pulse_rate`
/// and `spo2` once per packet (at frame 3) when the packet's position is known.
#[derive(Debug, Default)]
pub struct NoninFormat2Decoder {
    /// Bytes not yet framed (at most one frame's worth between calls).
    buf: Vec<u8>,
    /// 1-based index of the last frame decoded in the current packet, `None` when the
    /// position is unknown (start, after lost bytes, or after a packet longer than 25 frames).
    frame_idx: Option<usize>,
    /// HR MSB from frame 1 of the current packet.
    hr_msb: u8,
    /// HR from frames 1+2 of the current packet.
    hr: u16,
    /// Union of the conditions of the current packet's frames so far.
    packet_flags: Flags,
    /// Low battery from the last STAT2 seen; carried until the next one.
    low_battery: bool,
    /// The current packet's SYNC came exactly 25 frames after the previous SYNC.
    confirmed: bool,
    /// Format #7 framing: `STATUS PLETH_MSB PLETH_LSB FLOAT CHK`, no 0x01 lead byte.
    format7: bool,
}

impl NoninFormat2Decoder {
    /// Handles one valid frame (`pleth` 8-bit in format #2, 16-bit in format #7).
    fn frame(&mut self, status: u8, pleth: u16, float: u8, out: &mut Vec<Measurement>) {
        let idx = if status & SYNC != 0 {
            self.packet_flags = Flags::EMPTY;
            self.confirmed = self.frame_idx == Some(FRAMES_PER_PACKET);
            Some(1)
        } else {
            self.frame_idx
                .map(|i| i + 1)
                .filter(|i| *i <= FRAMES_PER_PACKET)
        };
        self.frame_idx = idx;
        if idx == Some(8) {
            self.low_battery = float & STAT2_LOW_BAT != 0;
        }
        let mut flags = status_flags(status);
        flags.set_if(Flag::LowBattery, self.low_battery);
        self.packet_flags = self.packet_flags.union(flags);
        out.push(Measurement::new(Metric::Pleth, f64::from(pleth), flags));
        match idx {
            Some(1) => self.hr_msb = float,
            Some(2) => {
                self.hr = (u16::from(self.hr_msb & 0x03) << 7) | u16::from(float & 0x7F);
            }
            Some(3) if self.confirmed => {
                let flags = self.packet_flags;
                out.push(coded(Metric::PulseRate, self.hr, HR_MISSING, flags));
                out.push(coded(
                    Metric::Spo2,
                    (float & 0x7F).into(),
                    SPO2_MISSING.into(),
                    flags,
                ));
            }
            _ => {}
        }
    }
}

impl Decoder for NoninFormat2Decoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        let mut report = FeedReport::default();
        self.buf.extend_from_slice(bytes);
        let buf = std::mem::take(&mut self.buf);
        let mut i = 0;
        while let Some(rest) = buf.get(i..) {
            let Some(&first) = rest.first() else { break };
            // Format #7 has no lead byte: a frame starts at a STATUS (b7 set).
            let lead_ok = if self.format7 {
                first & STATUS_B7 != 0
            } else {
                first == START
            };
            if !lead_ok {
                report.skipped_bytes += 1;
                self.frame_idx = None;
                i += 1;
                continue;
            }
            if !self.format7 && rest.get(1).is_some_and(|s| s & STATUS_B7 == 0) {
                report.skipped_bytes += 1;
                self.frame_idx = None;
                i += 1;
                continue;
            }
            let Some(frame) = rest.first_chunk::<FRAME_LEN>() else {
                break;
            };
            if checksum(frame) != frame[FRAME_LEN - 1] {
                report.bad_frames += 1;
                self.frame_idx = None;
                i += 1;
                continue;
            }
            report.frames += 1;
            let [b0, b1, b2, b3, _] = *frame;
            if self.format7 {
                self.frame(b0, u16::from_be_bytes([b1, b2]), b3, out);
            } else {
                self.frame(b1, u16::from(b2), b3, out);
            }
            i += FRAME_LEN;
        }
        self.buf = buf;
        self.buf.drain(..i.min(self.buf.len()));
        report
    }

    fn reset(&mut self) {
        *self = NoninFormat2Decoder {
            format7: self.format7,
            ..NoninFormat2Decoder::default()
        };
    }
}

/// Stream decoder for `nonin-format7`: format #2's packet of 25 frames and FLOAT bytes, with
/// frames `STATUS PLETH_MSB PLETH_LSB FLOAT CHK` (16-bit pleth, STATUS b7 set, no lead byte,
/// CHK = sum of the first four bytes mod 256; devices.md §6.2, Nonin 9560 OEM specification).
/// Emits 16-bit `pleth` for every valid frame, `pulse_rate` and `spo2` once per packet, with
/// the same position rules as format #2.
#[derive(Debug)]
pub struct NoninFormat7Decoder(NoninFormat2Decoder);

impl Default for NoninFormat7Decoder {
    fn default() -> Self {
        NoninFormat7Decoder(NoninFormat2Decoder {
            format7: true,
            ..NoninFormat2Decoder::default()
        })
    }
}

impl Decoder for NoninFormat7Decoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        self.0.feed(bytes, out)
    }

    fn reset(&mut self) {
        self.0.reset();
    }
}

/// Bytes per format #8 frame.
pub const FORMAT8_LEN: usize = 4;
/// Format #8 byte 1 b4: low perfusion (LPRF).
const F8_LPRF: u8 = 0x10;
/// Format #8 byte 1 b2: artifact (ARTF).
const F8_ARTF: u8 = 0x04;
/// Format #8 byte 1 b5: out of track (OOT).
const F8_OOT: u8 = 0x20;
/// Format #8 byte 4 b3: sensor alarm / fault (SNSA, SNSF on the 3150).
const F8_SNSA: u8 = 0x08;
/// Format #8 byte 4 b0: low battery.
const F8_LOW_BAT: u8 = 0x01;

/// The flags of a format #8 frame's status (byte 1) and byte 4.
pub fn format8_flags(status: u8, b4: u8) -> Flags {
    let mut f = Flags::EMPTY;
    f.set_if(Flag::ProbeUnplugged, status & SNSD != 0);
    f.set_if(Flag::Searching, status & F8_OOT != 0);
    f.set_if(Flag::LowPerfusion, status & F8_LPRF != 0);
    f.set_if(Flag::Artifact, status & F8_ARTF != 0);
    f.set_if(Flag::NoFinger, b4 & F8_SNSA != 0);
    f.set_if(Flag::LowBattery, b4 & F8_LOW_BAT != 0);
    f
}

/// Stream decoder for `nonin-format8`: 4-byte frames once a second (devices.md §6.2, Nonin 9560
/// OEM specification; 3150 bits per drphrozen/javautilityclasses `Format8.java`, with its
/// `getHeartRate` `&` read as the `|` it must be). Byte 1: b7 = 1, b6 SNSD, b5 OOT, b4 LPRF,
/// b3 MPRF, b2 ARTF, b1-0 HR bits 8-7; byte 2: HR bits 6-0 (b7 = 0); byte 3: SpO2 (b7 = 0);
/// byte 4: b5 SmartPoint, b3 SNSA / sensor fault, b0 low battery (b7 = 0). HR 511 and SpO2 127
/// are no value. There is no checksum: a frame is a byte with b7 set and the three with b7
/// clear after it; a byte with b7 set inside a frame cuts it (a bad frame).
#[derive(Debug, Default)]
pub struct NoninFormat8Decoder {
    framer: SyncBitFramer<FORMAT8_LEN>,
}

impl Decoder for NoninFormat8Decoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        self.framer.feed(bytes, |[status, hr_low, spo2, b4]| {
            let flags = format8_flags(status, b4);
            let hr = (u16::from(status & 0x03) << 7) | u16::from(hr_low & 0x7F);
            out.push(coded(Metric::PulseRate, hr, HR_MISSING, flags));
            out.push(coded(
                Metric::Spo2,
                (spo2 & 0x7F).into(),
                SPO2_MISSING.into(),
                flags,
            ));
        })
    }

    fn reset(&mut self) {
        self.framer.reset();
    }
}

/// One format #8 frame for the simulator: `None` vitals as the missing codes; `status` holds
/// byte 1's condition bits (b6-b2), `b4` byte 4's bits.
pub fn encode_format8(hr: Option<u16>, spo2: Option<u8>, status: u8, b4: u8) -> [u8; 4] {
    let hr = hr.map_or(HR_MISSING, |v| v.min(HR_MISSING));
    let spo2 = spo2.map_or(SPO2_MISSING, |v| v.min(SPO2_MISSING));
    [
        STATUS_B7 | (status & 0x7C) | ((hr >> 7) & 0x03) as u8,
        (hr & 0x7F) as u8,
        spo2 & 0x7F,
        b4 & 0x7F,
    ]
}

/// One format #2 packet as the oximeter sends it; the simulator's encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoninPacket {
    /// The 25 pleth samples, one per frame.
    pub pleth: [u8; FRAMES_PER_PACKET],
    /// Heart rate /min (0..=510); `None` sends "missing" (511).
    pub hr: Option<u16>,
    /// SpO2 % (0..=100); `None` sends "missing" (127).
    pub spo2: Option<u8>,
    /// STATUS bits 6..1 (SNSD, ARTF, OOT, SNSA, RPRF, GPRF), applied to every frame; b7 and
    /// SYNC are set by the encoder.
    pub status: u8,
    /// STAT2 low-battery bit.
    pub low_battery: bool,
}

impl NoninPacket {
    /// The packet in format #7 (125 bytes): the same STATUS and FLOAT bytes as
    /// [`NoninPacket::encode`], each 8-bit pleth sample sent as the MSB of a 16-bit one.
    pub fn encode_format7(&self) -> [u8; PACKET_LEN] {
        let mut out = self.encode();
        for frame in out.chunks_exact_mut(FRAME_LEN) {
            let [_, status, pleth, float, _] = [frame[0], frame[1], frame[2], frame[3], frame[4]];
            frame.copy_from_slice(&[status, pleth, 0, float, 0]);
            frame[FRAME_LEN - 1] = checksum(frame);
        }
        out
    }

    /// The packet's 125 bytes. FLOAT bytes carry HR (frames 1-2, repeated in the E-HR, HR-D
    /// and E-HR-D slots), SpO2 (frame 3, repeated in the SpO2-D/Fast/B-B/E-SpO2 slots) and
    /// STAT2 (frame 8); every other FLOAT byte is 0.
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let hr = self.hr.map_or(HR_MISSING, |v| v.min(HR_MISSING));
        let spo2 = self.spo2.map_or(SPO2_MISSING, |v| v.min(SPO2_MISSING));
        let (msb, lsb) = (((hr >> 7) & 0x03) as u8, (hr & 0x7F) as u8);
        let mut out = [0u8; PACKET_LEN];
        for (i, (frame, pleth)) in out.chunks_exact_mut(FRAME_LEN).zip(self.pleth).enumerate() {
            let n = i + 1;
            let status = STATUS_B7 | (self.status & 0x7E) | if n == 1 { SYNC } else { 0 };
            let float = match n {
                1 | 14 | 20 | 22 => msb,
                2 | 15 | 21 | 23 => lsb,
                3 | 9 | 10 | 11 | 16 | 17 => spo2,
                8 => u8::from(self.low_battery),
                _ => 0,
            };
            frame.copy_from_slice(&[START, status, pleth, float, 0]);
            frame[FRAME_LEN - 1] = checksum(frame);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Invalid, Value};
    use crate::protocol::testutil::{
        XorShift, assert_every_split_matches_whole, feed_random_chunks, feed_whole,
    };

    /// pufferfish-software `Core/Test/Pufferfish/Driver/Serial/Nonin/TestPacketReceiver.cpp`,
    /// "A Valid First Packet": HR 72, SpO2 97, revision 0x30, pleth 1 in every frame.
    const PUFFERFISH_PACKET: [u8; PACKET_LEN] = [
        0x01, 0x81, 0x01, 0x00, 0x83, // HR MSB
        0x01, 0x80, 0x01, 0x48, 0xCA, // HR LSB
        0x01, 0x80, 0x01, 0x61, 0xE3, // SpO2
        0x01, 0x80, 0x01, 0x30, 0xB2, // REV
        0x01, 0x80, 0x01, 0x00, 0x82, // reserved
        0x01, 0x80, 0x01, 0x00, 0x82, // reserved
        0x01, 0x80, 0x01, 0x00, 0x82, // reserved
        0x01, 0x80, 0x01, 0x00, 0x82, // reserved (STAT2 in the 9560 doc)
        0x01, 0x80, 0x01, 0x61, 0xE3, // SpO2-D
        0x01, 0x80, 0x01, 0x61, 0xE3, // SpO2 Fast
        0x01, 0x80, 0x01, 0x61, 0xE3, // SpO2 B-B
        0x01, 0x80, 0x01, 0x00, 0x82, // reserved
        0x01, 0x80, 0x01, 0x00, 0x82, // reserved
        0x01, 0x80, 0x01, 0x00, 0x82, // E-HR MSB
        0x01, 0x80, 0x01, 0x48, 0xCA, // E-HR LSB
        0x01, 0x80, 0x01, 0x61, 0xE3, // E-SpO2
        0x01, 0x80, 0x01, 0x61, 0xE3, // E-SpO2-D
        0x01, 0x80, 0x01, 0x00, 0x82, // reserved
        0x01, 0x80, 0x01, 0x00, 0x82, // reserved
        0x01, 0x80, 0x01, 0x00, 0x82, // HR-D MSB
        0x01, 0x80, 0x01, 0x48, 0xCA, // HR-D LSB
        0x01, 0x80, 0x01, 0x00, 0x82, // E-HR-D MSB
        0x01, 0x80, 0x01, 0x48, 0xCA, // E-HR-D LSB
        0x01, 0x80, 0x01, 0x00, 0x82, // reserved
        0x01, 0x80, 0x01, 0x00, 0x82, // reserved
    ];

    /// A decoder that has just seen a whole packet in order, so the next SYNC is confirmed:
    /// what a packet's content decodes to, apart from the first-packet rule.
    #[derive(Debug)]
    struct Primed(NoninFormat2Decoder);

    impl Default for Primed {
        fn default() -> Primed {
            Primed(NoninFormat2Decoder {
                frame_idx: Some(FRAMES_PER_PACKET),
                ..NoninFormat2Decoder::default()
            })
        }
    }

    impl Decoder for Primed {
        fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
            self.0.feed(bytes, out)
        }
        fn reset(&mut self) {
            self.0.reset();
        }
    }

    #[test]
    fn the_first_packet_after_joining_gives_pleth_only_and_the_second_gives_vitals() {
        // Line noise can look like a SYNC frame; only a SYNC 25 frames after the previous one
        // fixes the position.
        let (ms, _) = feed_whole::<NoninFormat2Decoder>(&PUFFERFISH_PACKET);
        assert!(vitals(&ms).is_empty());
        assert_eq!(ms.len(), 25);
        let two = [PUFFERFISH_PACKET, PUFFERFISH_PACKET].concat();
        let (ms, _) = feed_whole::<NoninFormat2Decoder>(&two);
        assert_eq!(
            vitals(&ms),
            vec![
                Measurement::new(Metric::PulseRate, 72.0, Flags::EMPTY),
                Measurement::new(Metric::Spo2, 97.0, Flags::EMPTY),
            ]
        );
    }

    #[test]
    fn a_fake_sync_frame_in_noise_never_yields_vitals_from_misplaced_bytes() {
        // Constructed: a valid-looking SYNC frame, then real frames 10.. of a packet whose
        // bytes would read as HR/SpO2 if the fake SYNC were trusted.
        let mut bytes = vec![0x01, 0x81, 0x00, 0x00, 0x82];
        bytes.extend_from_slice(&PUFFERFISH_PACKET[9 * FRAME_LEN..]);
        let (ms, _) = feed_whole::<NoninFormat2Decoder>(&bytes);
        assert!(vitals(&ms).is_empty(), "{:?}", vitals(&ms));
    }

    fn vitals(ms: &[Measurement]) -> Vec<Measurement> {
        ms.iter()
            .filter(|m| m.metric != Metric::Pleth)
            .copied()
            .collect()
    }

    fn packet(hr: Option<u16>, spo2: Option<u8>, status: u8, low_battery: bool) -> NoninPacket {
        let mut pleth = [0u8; FRAMES_PER_PACKET];
        for (i, p) in pleth.iter_mut().enumerate() {
            *p = (i * 10) as u8;
        }
        NoninPacket {
            pleth,
            hr,
            spo2,
            status,
            low_battery,
        }
    }

    #[test]
    fn the_pufferfish_packet_gives_hr_72_spo2_97_and_25_pleth_samples() {
        let (ms, r) = feed_whole::<Primed>(&PUFFERFISH_PACKET);
        assert_eq!(
            r,
            FeedReport {
                frames: 25,
                ..Default::default()
            }
        );
        assert_eq!(ms.iter().filter(|m| m.metric == Metric::Pleth).count(), 25);
        assert!(
            ms.iter()
                .filter(|m| m.metric == Metric::Pleth)
                .all(|m| m.value == Value::Valid(1.0))
        );
        assert_eq!(
            vitals(&ms),
            vec![
                Measurement::new(Metric::PulseRate, 72.0, Flags::EMPTY),
                Measurement::new(Metric::Spo2, 97.0, Flags::EMPTY),
            ]
        );
    }

    #[test]
    fn status_bits_map_to_flags_as_pufferfish_masks_them() {
        // Status bytes from pufferfish TestPacketReceiver.cpp "read_status_byte"; expected
        // flags per devices.md §6.2.
        let table: [(u8, Flags); 8] = [
            (0x80, Flags::EMPTY),
            (0x82, Flags::EMPTY),                            // green perfusion
            (0x86, Flags::EMPTY),                            // yellow perfusion
            (0x84, Flags::EMPTY.with(Flag::LowPerfusion)),   // red perfusion only
            (0x88, Flags::EMPTY.with(Flag::NoFinger)),       // SNSA
            (0x90, Flags::EMPTY.with(Flag::Searching)),      // OOT
            (0xA0, Flags::EMPTY.with(Flag::Artifact)),       // ARTF
            (0xC0, Flags::EMPTY.with(Flag::ProbeUnplugged)), // SNSD
        ];
        for (status, flags) in table {
            assert_eq!(status_flags(status), flags, "{status:#x}");
        }
        // Every condition bit at once, plus SYNC (masked).
        assert_eq!(
            status_flags(0xFD),
            Flags::EMPTY
                .with(Flag::ProbeUnplugged)
                .with(Flag::Artifact)
                .with(Flag::Searching)
                .with(Flag::NoFinger)
                .with(Flag::LowPerfusion)
        );
    }

    #[test]
    fn missing_hr_and_spo2_encodings_are_no_value() {
        // Constructed: 511 and 127 are "missing" (devices.md §6.2).
        let bytes = packet(None, None, 0, false).encode();
        let (ms, _) = feed_whole::<Primed>(&bytes);
        assert_eq!(
            vitals(&ms),
            vec![
                Measurement::invalid(Metric::PulseRate, Invalid::NoValue, Flags::EMPTY),
                Measurement::invalid(Metric::Spo2, Invalid::NoValue, Flags::EMPTY),
            ]
        );
    }

    #[test]
    fn reserved_float_bits_are_masked_and_spo2_over_100_is_out_of_range() {
        // Constructed: HR MSB 0xFE (only b0..1 count) and LSB 0x80|0x05 give (2<<7)|5 = 261.
        let mut bytes = packet(Some(72), Some(97), 0, false).encode();
        let set = |bytes: &mut [u8; PACKET_LEN], frame: usize, float: u8| {
            let f = &mut bytes[frame * FRAME_LEN..(frame + 1) * FRAME_LEN];
            f[3] = float;
            f[4] = checksum(f);
        };
        set(&mut bytes, 0, 0xFE);
        set(&mut bytes, 1, 0x85);
        set(&mut bytes, 2, 0x80 | 101);
        let (ms, _) = feed_whole::<Primed>(&bytes);
        assert_eq!(
            vitals(&ms),
            vec![
                Measurement::new(Metric::PulseRate, 261.0, Flags::EMPTY),
                Measurement::invalid(Metric::Spo2, Invalid::OutOfRange, Flags::EMPTY),
            ]
        );
    }

    #[test]
    fn a_finger_out_packet_voids_numbers_and_keeps_the_reason() {
        // Constructed: SNSA with "-D"-style held numbers must not be shown.
        let bytes = packet(Some(80), Some(95), SNSA, false).encode();
        let (ms, _) = feed_whole::<Primed>(&bytes);
        for m in &ms {
            assert_eq!(m.value, Value::Invalid(Invalid::DeviceFlagged));
            assert!(m.flags.contains(Flag::NoFinger));
        }
    }

    #[test]
    fn vitals_carry_the_union_of_frames_1_to_3_statuses() {
        // Constructed: ARTF only on frame 2, OOT only on frame 5 (after the vitals).
        let mut bytes = packet(Some(60), Some(99), 0, false).encode();
        for (frame, bit) in [(1usize, ARTF), (4, OOT)] {
            let f = &mut bytes[frame * FRAME_LEN..(frame + 1) * FRAME_LEN];
            f[1] |= bit;
            f[4] = checksum(f);
        }
        let (ms, _) = feed_whole::<Primed>(&bytes);
        for m in vitals(&ms) {
            assert_eq!(m.flags, Flags::EMPTY.with(Flag::Artifact));
        }
    }

    #[test]
    fn low_battery_from_stat2_is_carried_until_the_next_frame_8() {
        // Constructed: packet 1 low battery, packet 2 not.
        let mut bytes = packet(Some(60), Some(99), 0, true).encode().to_vec();
        bytes.extend_from_slice(&packet(Some(61), Some(98), 0, false).encode());
        let (ms, _) = feed_whole::<Primed>(&bytes);
        let pleth: Vec<bool> = ms
            .iter()
            .filter(|m| m.metric == Metric::Pleth)
            .map(|m| m.flags.contains(Flag::LowBattery))
            .collect();
        // Frames 8..=25 of packet 1 and 1..=7 of packet 2 carry it.
        let want: Vec<bool> = (1..=50).map(|n| (8..=32).contains(&n)).collect();
        assert_eq!(pleth, want);
        let v = vitals(&ms);
        assert!(!v[0].flags.contains(Flag::LowBattery));
        assert!(v[2].flags.contains(Flag::LowBattery));
        assert!(v[3].flags.contains(Flag::LowBattery));
    }

    #[test]
    fn a_stream_joined_mid_packet_waits_for_sync_before_reporting_vitals() {
        let p = packet(Some(70), Some(96), 0, false).encode();
        let mut bytes = p[37..].to_vec(); // mid-frame 8
        bytes.extend_from_slice(&p);
        bytes.extend_from_slice(&packet(Some(72), Some(95), 0, false).encode());
        let (ms, r) = feed_whole::<NoninFormat2Decoder>(&bytes);
        // 3 bytes of frame 8 skipped, then frames 9..25 (position unknown), a full packet whose
        // SYNC is not yet confirmed, and a full packet that is.
        assert_eq!(r.skipped_bytes, 3);
        assert_eq!(r.frames, 17 + 25 + 25);
        assert_eq!(
            vitals(&ms),
            vec![
                Measurement::new(Metric::PulseRate, 72.0, Flags::EMPTY),
                Measurement::new(Metric::Spo2, 95.0, Flags::EMPTY),
            ]
        );
    }

    #[test]
    fn a_lost_frame_before_frame_3_suppresses_that_packets_vitals() {
        // Constructed: frame 2 corrupted; its HR LSB must not be guessed.
        let mut bytes = packet(Some(70), Some(96), 0, false).encode().to_vec();
        bytes[8] ^= 0x10; // frame 2 FLOAT
        bytes.extend_from_slice(&packet(Some(71), Some(95), 0, false).encode());
        bytes.extend_from_slice(&packet(Some(73), Some(94), 0, false).encode());
        let (ms, r) = feed_whole::<Primed>(&bytes);
        assert_eq!(r.bad_frames, 1);
        assert_eq!(r.frames, 74);
        // The packet after the loss re-finds the position; the one after that confirms it.
        assert_eq!(
            vitals(&ms),
            vec![
                Measurement::new(Metric::PulseRate, 73.0, Flags::EMPTY),
                Measurement::new(Metric::Spo2, 94.0, Flags::EMPTY),
            ]
        );
    }

    #[test]
    fn a_packet_longer_than_25_frames_loses_the_position() {
        // Constructed: 26 frames with no SYNC after the first: the 26th is out of place, and
        // a following packet without SYNC on frame 1 gives no vitals.
        let p = packet(Some(70), Some(96), 0, false).encode();
        let mut bytes = p.to_vec();
        bytes.extend_from_slice(&p[5..10]);
        let mut no_sync = p;
        no_sync[1] &= !SYNC;
        no_sync[4] = checksum(&no_sync[..5]);
        bytes.extend_from_slice(&no_sync);
        let (ms, r) = feed_whole::<Primed>(&bytes);
        assert_eq!(r.frames, 51);
        assert_eq!(vitals(&ms).len(), 2);
    }

    #[test]
    fn garbage_bad_checksums_and_trailing_junk_are_counted_not_decoded() {
        let p = packet(Some(70), Some(96), 0, false).encode();
        let mut bytes = vec![0x01, 0x7F, 0x00, 0x00, 0x7F]; // b7 clear: not a frame
        bytes.extend_from_slice(&[0x01, 0x80, 0x00, 0x00, 0x00]); // bad checksum
        bytes.extend_from_slice(&p);
        bytes.extend_from_slice(&p);
        bytes.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
        let (ms, r) = feed_whole::<Primed>(&bytes);
        assert_eq!(r.frames, 50);
        assert_eq!(r.bad_frames, 1);
        // 5 bytes of the first, 4 after the bad header, 4 of junk.
        assert_eq!(r.skipped_bytes, 13);
        assert_eq!(vitals(&ms).len(), 2);
        assert_every_split_matches_whole::<Primed>(&bytes);
    }

    #[test]
    fn encoded_packets_round_trip_for_every_status_bit() {
        for bit in [0, SNSD, ARTF, OOT, SNSA, RPRF, GPRF, RPRF | GPRF] {
            for low_battery in [false, true] {
                let p = packet(Some(123), Some(88), bit, low_battery);
                let mut bytes = p.encode().to_vec();
                bytes.extend_from_slice(&p.encode());
                let (ms, r) = feed_whole::<Primed>(&bytes);
                assert_eq!(
                    r,
                    FeedReport {
                        frames: 50,
                        ..Default::default()
                    }
                );
                let flags = status_flags(bit);
                let v = vitals(&ms);
                // Second packet: low battery is known from the first packet's frame 8.
                let flags2 = if low_battery {
                    flags.with(Flag::LowBattery)
                } else {
                    flags
                };
                assert_eq!(v[2], Measurement::new(Metric::PulseRate, 123.0, flags2));
                assert_eq!(v[3], Measurement::new(Metric::Spo2, 88.0, flags2));
                let pleth: Vec<Option<f64>> = ms
                    .iter()
                    .filter(|m| m.metric == Metric::Pleth)
                    .take(25)
                    .map(|m| m.value.number())
                    .collect();
                let want: Vec<Option<f64>> = p
                    .pleth
                    .iter()
                    .map(|v| flags.voiding().is_none().then_some(f64::from(*v)))
                    .collect();
                assert_eq!(pleth, want);
            }
        }
    }

    #[test]
    fn the_encoder_sets_b7_sync_and_checksums() {
        let bytes = packet(Some(72), Some(97), 0, false).encode();
        for (i, f) in bytes.chunks_exact(FRAME_LEN).enumerate() {
            assert_eq!(f[0], START);
            assert_eq!(f[1] & STATUS_B7, STATUS_B7);
            assert_eq!(f[1] & SYNC != 0, i == 0);
            assert_eq!(checksum(f), f[4]);
        }
        // HR 72 = MSB 0, LSB 0x48; SpO2 0x61, pleth 1: frames 1-3 of the pufferfish packet.
        let mut p = packet(Some(72), Some(97), 0, false);
        p.pleth = [1; FRAMES_PER_PACKET];
        assert_eq!(&p.encode()[..15], &PUFFERFISH_PACKET[..15]);
    }

    #[test]
    fn random_bytes_never_panic_and_packets_among_garbage_are_all_recovered() {
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        let noise: Vec<u8> = (0..200_000).map(|_| rng.byte()).collect();
        let _ = feed_random_chunks::<Primed>(&noise, &mut rng, 300);

        let mut stream = Vec::new();
        let mut expected = Vec::new();
        // Garbage bursts between pairs of packets: the first of a pair re-finds the position,
        // the second (25 frames later) confirms it and yields vitals.
        while stream.len() < 200_000 {
            let n = 1 + rng.below(40);
            stream.extend(
                (0..n)
                    .map(|_| rng.byte())
                    .map(|b| if b == START { 0 } else { b }),
            );
            stream.extend_from_slice(&packet(Some(60), Some(90), 0, false).encode());
            let hr = rng.below(300) as u16;
            let spo2 = rng.below(101) as u8;
            stream.extend_from_slice(&packet(Some(hr), Some(spo2), 0, false).encode());
            expected.push((f64::from(hr), f64::from(spo2)));
        }
        let (ms, r) = feed_random_chunks::<Primed>(&stream, &mut rng, 257);
        let v = vitals(&ms);
        let got: Vec<(f64, f64)> = v
            .chunks_exact(2)
            .map(|p| (p[0].value.number().unwrap(), p[1].value.number().unwrap()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(r.frames as usize, expected.len() * 2 * FRAMES_PER_PACKET);
        assert_eq!(r.bad_frames, 0);
    }

    #[test]
    fn reset_forgets_position_and_partial_frames() {
        let p = packet(Some(70), Some(96), 0, false).encode();
        let mut d = NoninFormat2Decoder::default();
        let mut out = Vec::new();
        d.feed(&p[..12], &mut out);
        d.reset();
        let r = d.feed(&p[12..], &mut out);
        assert_eq!(vitals(&out).len(), 0);
        assert_eq!(r.skipped_bytes, 3);
    }

    #[test]
    fn format7_packets_decode_like_format2_with_16_bit_pleth() {
        // The pufferfish format #2 packet re-framed as format #7 (9560 spec: same STATUS and
        // FLOAT bytes, no lead byte, 16-bit pleth, CHK over the first four bytes).
        let mut two = PUFFERFISH_PACKET.to_vec();
        two.extend_from_slice(&PUFFERFISH_PACKET);
        let mut seven = Vec::new();
        for f in two.chunks_exact(FRAME_LEN) {
            let frame = [f[1], 0x01, 0x02, f[3]];
            seven.extend_from_slice(&frame);
            seven.push(frame.iter().fold(0u8, |a, b| a.wrapping_add(*b)));
        }
        let (ms, r) = feed_whole::<NoninFormat7Decoder>(&seven);
        assert_eq!(
            r,
            FeedReport {
                frames: 50,
                ..FeedReport::default()
            }
        );
        assert_eq!(
            vitals(&ms),
            [
                Measurement::new(Metric::PulseRate, 72.0, Flags::EMPTY),
                Measurement::new(Metric::Spo2, 97.0, Flags::EMPTY),
            ]
        );
        // Pleth 0x0102 = 258: more than 8 bits.
        assert!(
            ms.iter()
                .filter(|m| m.metric == Metric::Pleth)
                .all(|m| m.value == Value::Valid(258.0))
        );
        assert_every_split_matches_whole::<NoninFormat7Decoder>(&seven[..60]);
    }

    #[test]
    fn format7_encoded_packets_round_trip_and_bad_checksums_are_counted() {
        let p = packet(Some(142), Some(88), 0x0A, true); // SNSA + GPRF, low battery
        let mut bytes = p.encode_format7().to_vec();
        bytes.extend_from_slice(&p.encode_format7());
        let (ms, r) = feed_whole::<NoninFormat7Decoder>(&bytes);
        assert_eq!(r.frames, 50);
        let flags = status_flags(0x8A).with(Flag::LowBattery);
        assert_eq!(
            vitals(&ms),
            [
                Measurement::new(Metric::PulseRate, 142.0, flags),
                Measurement::new(Metric::Spo2, 88.0, flags),
            ]
        );
        let mut bad = p.encode_format7();
        bad[4] ^= 0x01; // frame 1's checksum
        let (_, r) = feed_whole::<NoninFormat7Decoder>(&bad);
        assert!(r.bad_frames >= 1, "{r:?}");
        let mut rng = XorShift(0x7777);
        let noise: Vec<u8> = (0..50_000).map(|_| rng.byte()).collect();
        let _ = feed_random_chunks::<NoninFormat7Decoder>(&noise, &mut rng, 40);
    }

    #[test]
    fn format8_frames_decode_as_the_9560_spec_lays_them_out() {
        // Constructed from the 9560 OEM specification's format #8 table (devices.md §6.2);
        // HR bits 8-7 in byte 1 b1-0 (drphrozen's `&` read as `|`).
        let no = Value::Invalid(Invalid::NoValue);
        let flagged = Value::Invalid(Invalid::DeviceFlagged);
        let table: [([u8; 4], [Value; 2], Flags, &str); 6] = [
            (
                [0x80, 0x48, 0x61, 0x00],
                [Value::Valid(72.0), Value::Valid(97.0)],
                Flags::EMPTY,
                "HR 72, SpO2 97",
            ),
            (
                [0x81, 0x0E, 0x5A, 0x00],
                [Value::Valid(142.0), Value::Valid(90.0)],
                Flags::EMPTY,
                "HR 142 needs HR7 from byte 1",
            ),
            (
                [0x83, 0x7F, 0x7F, 0x00],
                [no, no],
                Flags::EMPTY,
                "HR 511 and SpO2 127 are missing",
            ),
            (
                [0x80, 0x48, 0x61, 0x08],
                [flagged, flagged],
                Flags::EMPTY.with(Flag::NoFinger),
                "byte 4 b3 SNSA: finger out voids the numbers",
            ),
            (
                [0xC0, 0x48, 0x61, 0x00],
                [flagged, flagged],
                Flags::EMPTY.with(Flag::ProbeUnplugged),
                "byte 1 b6 SNSD (3150): sensor disconnected",
            ),
            (
                [0xB4, 0x48, 0x61, 0x21],
                [Value::Valid(72.0), Value::Valid(97.0)],
                Flags::EMPTY
                    .with(Flag::Searching)
                    .with(Flag::LowPerfusion)
                    .with(Flag::Artifact)
                    .with(Flag::LowBattery),
                "OOT, LPRF, ARTF; byte 4 SmartPoint (no flag) and low battery",
            ),
        ];
        for (bytes, want, flags, what) in table {
            let (ms, r) = feed_whole::<NoninFormat8Decoder>(&bytes);
            assert_eq!(r.frames, 1, "{what}");
            let got: Vec<(Metric, Value)> = ms.iter().map(|m| (m.metric, m.value)).collect();
            assert_eq!(
                got,
                [(Metric::PulseRate, want[0]), (Metric::Spo2, want[1])],
                "{what}"
            );
            assert!(ms.iter().all(|m| m.flags == flags), "{what}");
        }
    }

    #[test]
    fn format8_cut_frames_and_garbage_are_counted_and_encoding_round_trips() {
        let good = encode_format8(Some(72), Some(97), 0, 0);
        assert_eq!(good, [0x80, 0x48, 0x61, 0x00]);
        let mut bytes = vec![0x12, 0x34]; // joined mid-frame
        bytes.extend_from_slice(&good[..2]); // cut
        bytes.extend_from_slice(&good);
        bytes.extend_from_slice(&encode_format8(None, None, 0x20, 0x01));
        let (ms, r) = feed_whole::<NoninFormat8Decoder>(&bytes);
        assert_eq!(
            r,
            FeedReport {
                frames: 2,
                skipped_bytes: 2,
                bad_frames: 1
            }
        );
        assert_eq!(ms.len(), 4);
        assert_eq!(ms[0].value, Value::Valid(72.0));
        assert_eq!(ms[2].value, Value::Invalid(Invalid::NoValue));
        assert_eq!(
            ms[2].flags,
            Flags::EMPTY.with(Flag::Searching).with(Flag::LowBattery)
        );
        assert_every_split_matches_whole::<NoninFormat8Decoder>(&bytes);
        let mut rng = XorShift(0x8888);
        let noise: Vec<u8> = (0..50_000).map(|_| rng.byte()).collect();
        let _ = feed_random_chunks::<NoninFormat8Decoder>(&noise, &mut rng, 40);
    }
}
