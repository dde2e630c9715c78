//! MLLP framing (HL7 v2.6 ch. 2 appendix C, "Minimal Lower Layer Protocol"): a message is sent
//! as `0x0B` (VT), the message, `0x1C` (FS), `0x0D` (CR). Pure: bytes in, frames out; and the
//! reading of an ACK's MSA segment.

/// Start of block.
pub const SB: u8 = 0x0B;
/// End of block.
pub const EB: u8 = 0x1C;
/// The carriage return after the end of block.
pub const CR: u8 = 0x0D;
/// The longest ACK accepted; an endpoint that sends more without a frame end is broken.
pub const MAX_FRAME: usize = 64 * 1024;

/// A message in an MLLP frame.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(SB);
    out.extend_from_slice(message.as_bytes());
    out.push(EB);
    out.push(CR);
    out
}

/// What went wrong reading frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More than [`MAX_FRAME`] bytes without the end of a frame.
    #[error("MLLP frame longer than {max} bytes, expected 0x1C 0x0D before that")]
    TooLong { max: usize },
}

/// Collects bytes and yields whole frames. Bytes before a start of block are skipped (an
/// endpoint's stray bytes between frames); a frame end without its CR is taken as a frame end.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

impl Deframer {
    /// Adds bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's content, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(start) = self.buf.iter().position(|b| *b == SB) else {
            self.buf.clear();
            return Ok(None);
        };
        if start > 0 {
            self.buf.drain(..start);
        }
        match self.buf.iter().position(|b| *b == EB) {
            Some(end) => {
                let content = self.buf[1..end].to_vec();
                let mut consumed = end + 1;
                if self.buf.get(consumed) == Some(&CR) {
                    consumed += 1;
                }
                self.buf.drain(..consumed);
                Ok(Some(content))
            }
            None if self.buf.len() > MAX_FRAME => {
                self.buf.clear();
                Err(FrameError::TooLong { max: MAX_FRAME })
            }
            None => Ok(None),
        }
    }
}

/// MSA-1, the acknowledgment code (HL7 table 0008).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// AA (original mode) or CA (enhanced mode, commit accept): taken.
    Accept,
    /// AE / CE: the receiver found an error in the message.
    Error,
    /// AR / CR: the receiver rejected it (often: cannot process now).
    Reject,
}

/// An ACK as read from its MSA segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub code: AckCode,
    /// MSA-2: the control id of the message it acknowledges.
    pub control_id: String,
    /// MSA-3 (text message), or ERR-8 / ERR-3 when present: why, for the log.
    pub text: String,
}

/// Why a frame is not a usable ACK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("the reply has no MSA segment, expected an HL7 ACK")]
    NoMsa,
    #[error("MSA-1 is {0:?}, expected AA, AE, AR, CA, CE or CR")]
    BadCode(String),
    #[error("the reply is not UTF-8 text")]
    NotText,
}

/// Reads an ACK message (segments separated by CR; LF tolerated).
pub fn parse_ack(frame: &[u8]) -> Result<Ack, AckError> {
    let text = std::str::from_utf8(frame).map_err(|_| AckError::NotText)?;
    let mut field_sep = '|';
    let mut msa: Option<Vec<&str>> = None;
    let mut err_text = String::new();
    for seg in text.split(['\r', '\n']).filter(|s| !s.is_empty()) {
        if let Some(rest) = seg.strip_prefix("MSH") {
            field_sep = rest.chars().next().unwrap_or('|');
        } else if seg.starts_with("MSA") {
            msa = Some(seg.split(field_sep).collect());
        } else if seg.starts_with("ERR") && err_text.is_empty() {
            let f: Vec<&str> = seg.split(field_sep).collect();
            err_text = f
                .get(8)
                .or(f.get(3))
                .map(|s| s.replace('^', " "))
                .unwrap_or_default();
        }
    }
    let msa = msa.ok_or(AckError::NoMsa)?;
    let code = match msa.get(1).map(|s| s.trim()) {
        Some("AA" | "CA") => AckCode::Accept,
        Some("AE" | "CE") => AckCode::Error,
        Some("AR" | "CR") => AckCode::Reject,
        other => return Err(AckError::BadCode(other.unwrap_or("").to_owned())),
    };
    let mut why = msa.get(3).map(|s| s.to_string()).unwrap_or_default();
    if why.is_empty() {
        why = err_text;
    }
    Ok(Ack {
        code,
        control_id: msa.get(2).map(|s| s.to_string()).unwrap_or_default(),
        text: why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_framed_with_vt_fs_cr() {
        assert_eq!(frame("MSH|^~\\&\r"), b"\x0bMSH|^~\\&\r\x1c\x0d");
    }

    #[test]
    fn frames_are_found_across_reads_and_stray_bytes_are_skipped() {
        let mut d = Deframer::default();
        d.push(b"junk\x0bMSH|a\r");
        assert_eq!(d.next_frame(), Ok(None));
        d.push(b"MSA|AA|1\r\x1c\x0d\x0bMSH|b\r\x1c");
        assert_eq!(d.next_frame(), Ok(Some(b"MSH|a\rMSA|AA|1\r".to_vec())));
        assert_eq!(d.next_frame(), Ok(Some(b"MSH|b\r".to_vec())));
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[0xDE, 0xAD]); // no start of block: dropped
        assert_eq!(d.next_frame(), Ok(None));
    }

    #[test]
    fn an_endless_frame_is_an_error() {
        let mut d = Deframer::default();
        d.push(&[SB]);
        d.push(&vec![b'x'; MAX_FRAME + 1]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLong { max: MAX_FRAME }));
    }

    #[test]
    fn ack_codes_of_both_modes_are_read() {
        // HL7 v2.6 ch. 2.9.2 original mode, and ch. 2.9.3 enhanced mode (commit accept).
        let aa =
            parse_ack(b"MSH|^~\\&|EHR|H|vitalsd|C|20261201||ACK^R01^ACK|A1|P|2.6\rMSA|AA|42\r")
                .unwrap();
        assert_eq!((aa.code, aa.control_id.as_str()), (AckCode::Accept, "42"));
        let ca = parse_ack(b"MSH|^~\\&\rMSA|CA|7").unwrap();
        assert_eq!(ca.code, AckCode::Accept);
        let ae = parse_ack(
            b"MSH|^~\\&\rMSA|AE|43\rERR|||207^Application internal error^HL70357|E||||bad OBX\r",
        )
        .unwrap();
        assert_eq!((ae.code, ae.text.as_str()), (AckCode::Error, "bad OBX"));
        let ar = parse_ack(b"MSH|^~\\&\nMSA|AR|44|busy\n").unwrap();
        assert_eq!((ar.code, ar.text.as_str()), (AckCode::Reject, "busy"));
        assert_eq!(parse_ack(b"MSH|^~\\&\r"), Err(AckError::NoMsa));
        assert_eq!(
            parse_ack(b"MSH|^~\\&\rMSA|OK|1\r"),
            Err(AckError::BadCode("OK".into()))
        );
        assert_eq!(parse_ack(&[0xff, 0xfe]), Err(AckError::NotText));
    }
}
