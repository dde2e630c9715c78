//! Byte-stream framing shared by the stream decoders: finding frames in bytes that arrive in
//! pieces of any size, may start mid-frame and may carry garbage. Pure, no I/O; a family's
//! decoder keeps only what is its own (which rule marks a frame's start, its length, its
//! checksum) and decodes the frames this hands it.
//!
//! [`SyncBitFramer`] serves the families whose frame is a byte with b7 set followed by bytes
//! with b7 clear: Contec legacy ([`super::contec`]), BerryMed BCI ([`super::berrymed`]) and Nonin
//! format #8 ([`super::nonin`]).

use super::FeedReport;

/// b7: set in the first byte of a sync-bit frame only.
pub const SYNC_BIT: u8 = 0x80;

/// Frames of `N` bytes whose first byte alone has b7 set. A byte with b7 set always starts a
/// new frame: a frame it cuts is a bad frame. Bytes with b7 clear outside a frame (before the
/// first sync byte, or after a whole frame) are skipped. A frame is handed on as soon as its
/// `N`th byte arrives; the framer holds at most `N - 1` bytes between calls.
#[derive(Debug, Clone)]
pub struct SyncBitFramer<const N: usize> {
    /// The frame being assembled: `partial[..len]`, a sync byte and what followed it.
    partial: [u8; N],
    /// Bytes of `partial` in use (always below `N` between bytes).
    len: usize,
}

impl<const N: usize> Default for SyncBitFramer<N> {
    fn default() -> Self {
        SyncBitFramer {
            partial: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> SyncBitFramer<N> {
    /// Feeds `bytes` and calls `frame` with every frame they complete, in order. The report
    /// counts the frames handed on, the bytes skipped and the frames cut.
    pub fn feed(&mut self, bytes: &[u8], mut frame: impl FnMut([u8; N])) -> FeedReport {
        let mut report = FeedReport::default();
        for &b in bytes {
            if b & SYNC_BIT != 0 {
                if self.len != 0 {
                    report.bad_frames += 1;
                }
                self.partial[0] = b;
                self.len = 1;
                continue;
            }
            if self.len == 0 {
                report.skipped_bytes += 1;
                continue;
            }
            self.partial[self.len] = b;
            self.len += 1;
            if self.len == N {
                self.len = 0;
                report.frames += 1;
                frame(self.partial);
            }
        }
        report
    }

    /// Forgets a partial frame, as after a reconnect.
    pub fn reset(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames<const N: usize>(
        f: &mut SyncBitFramer<N>,
        bytes: &[u8],
    ) -> (Vec<[u8; N]>, FeedReport) {
        let mut got = Vec::new();
        let report = f.feed(bytes, |p| got.push(p));
        (got, report)
    }

    #[test]
    fn a_frame_is_a_sync_byte_and_the_clear_bytes_after_it() {
        let mut f = SyncBitFramer::<3>::default();
        let (got, report) = frames(&mut f, &[0x01, 0x81, 0x02, 0x03, 0x04, 0x85, 0x06]);
        assert_eq!(got, [[0x81, 0x02, 0x03]]);
        assert_eq!(
            report,
            FeedReport {
                frames: 1,
                skipped_bytes: 2, // 0x01 before the first sync, 0x04 after a whole frame
                bad_frames: 0,
            }
        );
        // 0x85 0x06 wait for their third byte across calls.
        let (got, report) = frames(&mut f, &[0x07]);
        assert_eq!(got, [[0x85, 0x06, 0x07]]);
        assert_eq!(report.frames, 1);
    }

    #[test]
    fn a_sync_byte_inside_a_frame_cuts_it_and_starts_the_next() {
        let mut f = SyncBitFramer::<3>::default();
        let (got, report) = frames(&mut f, &[0x81, 0x02, 0x83, 0x04, 0x05]);
        assert_eq!(got, [[0x83, 0x04, 0x05]]);
        assert_eq!(report.bad_frames, 1);
        assert_eq!(report.frames, 1);
    }

    #[test]
    fn reset_forgets_a_partial_frame() {
        let mut f = SyncBitFramer::<3>::default();
        let _ = frames(&mut f, &[0x81, 0x02]);
        f.reset();
        let (got, report) = frames(&mut f, &[0x03, 0x84, 0x05, 0x06]);
        assert_eq!(got, [[0x84, 0x05, 0x06]]);
        assert_eq!(report.skipped_bytes, 1);
        assert_eq!(report.bad_frames, 0);
    }
}
