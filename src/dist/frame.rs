//! Framing of the connected-state byte stream.
//!
//! After the handshake every frame is a 4-byte big-endian length and a body;
//! a zero length is a tick. A body is either the pass-through byte 112
//! followed by the control message and an optional payload (each a term
//! with its 131 version byte), or, once `DIST_HDR_ATOM_CACHE` is negotiated
//! (the BEAM then sends and accepts nothing else), a distribution header
//! (`131 68 ...`) followed by the two terms without version bytes.
//! With `DFLAG_FRAGMENTS` a large message may instead come as fragments:
//! a first one `131 69 SequenceId:64 FragmentId:64` with the atom cache
//! header and the start of the terms, then `131 70 SequenceId:64
//! FragmentId:64` and more bytes ([`Frame::Fragment`]; reassembled by the
//! connection's receiving half).

use thiserror::Error;

/// Pass-through marker that starts every body when no distribution header is used.
pub(crate) const PASS_THROUGH: u8 = 112;

/// The version byte that starts a distribution header (and every term).
pub(crate) const VERSION: u8 = 131;
/// The tag of a distribution header.
pub(crate) const DIST_HEADER: u8 = 68;
/// The tag of the first fragment of a fragmented message.
pub(crate) const DIST_FRAG_HEADER: u8 = 69;
/// The tag of every later fragment.
pub(crate) const DIST_FRAG_CONT: u8 = 70;
/// `131, tag, SequenceId:64, FragmentId:64`: what starts every fragment.
pub(crate) const FRAGMENT_PREFIX: usize = 18;

/// One complete frame found in the input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A keep-alive with no content.
    Tick,
    /// Pass-through: the control message and payload, after the 112.
    PassThrough(&'a [u8]),
    /// The whole body, starting with the distribution header `131 68`.
    WithHeader(&'a [u8]),
    /// The whole body of a fragment, starting with `131 69` or `131 70`.
    Fragment(&'a [u8]),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame starts with {0:?}, expected pass-through (112), a distribution header (131 68) or a fragment (131 69, 131 70)")]
    UnknownBody(Vec<u8>),
}

/// Looks for one complete frame at the start of `input`.
///
/// Returns the frame and the number of bytes it occupies, or `None` when more
/// input is needed. The length is checked against `max_frame` before waiting
/// for the body, so a peer cannot make us buffer an oversized frame.
pub(crate) fn parse_frame(
    input: &[u8],
    max_frame: usize,
) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(header) = input.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 {
        return Ok(Some((Frame::Tick, 4)));
    }
    if len > max_frame {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame,
        });
    }
    // Check how the body starts as soon as it arrives, not only once the
    // whole body is here.
    let start = &input[4..input.len().min(4 + len.min(2))];
    match start {
        [] | [PASS_THROUGH, ..] | [VERSION] => {}
        [VERSION, DIST_HEADER | DIST_FRAG_HEADER | DIST_FRAG_CONT] => {}
        other => return Err(FrameError::UnknownBody(other.to_vec())),
    }
    let Some(body) = input.get(4..4 + len) else {
        return Ok(None);
    };
    let frame = match body {
        [PASS_THROUGH, rest @ ..] => Frame::PassThrough(rest),
        [_, DIST_HEADER, ..] => Frame::WithHeader(body),
        _ => Frame::Fragment(body),
    };
    Ok(Some((frame, 4 + len)))
}

/// A tick: a frame of length zero.
pub(crate) const TICK: [u8; 4] = [0; 4];

#[cfg(test)] // only the tests use it
/// Appends a tick (an empty frame).
pub(crate) fn write_tick(out: &mut Vec<u8>) {
    out.extend_from_slice(&TICK);
}

/// An encoded frame, built in distribution-header form: `131 68 0` (a header
/// with no atom-cache references), then the control message and the payload
/// without version bytes. A connection's outbox gives it its final form:
/// the header with atom cache references for a peer that negotiated the
/// atom cache (`AtomCacheWriter`), or [`OutFrame::into_pass_through`] for a
/// peer that did not, at the cost of moving the (small) control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutFrame {
    bytes: Vec<u8>,
    control_len: usize,
}

/// Length prefix plus `131 68 0`.
const HEADER_FORM_PREFIX: usize = 7;

impl OutFrame {
    /// Starts a frame; write the control term (without version byte) to
    /// [`OutFrame::buf`], call [`OutFrame::end_control`], then the payload.
    pub(crate) fn begin() -> OutFrame {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&[0, 0, 0, 0, VERSION, DIST_HEADER, 0]);
        OutFrame {
            bytes,
            control_len: 0,
        }
    }

    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    pub(crate) fn end_control(&mut self) {
        self.control_len = self.bytes.len() - HEADER_FORM_PREFIX;
    }

    /// Fills in the length; the frame is then complete.
    pub(crate) fn finish(&mut self) {
        let len = (self.bytes.len() - 4) as u32;
        self.bytes[..4].copy_from_slice(&len.to_be_bytes());
    }

    /// The control message and the payload, without version bytes: what
    /// follows the distribution header.
    pub(crate) fn terms(&self) -> &[u8] {
        &self.bytes[HEADER_FORM_PREFIX..]
    }

    /// The control message alone, without version byte.
    pub(crate) fn control(&self) -> &[u8] {
        &self.bytes[HEADER_FORM_PREFIX..HEADER_FORM_PREFIX + self.control_len]
    }

    #[cfg(test)] // only the tests use it
    /// The frame for a peer that negotiated the atom cache, with a header
    /// that references no atoms (see [`AtomCacheWriter`] for one that does).
    ///
    /// [`AtomCacheWriter`]: crate::dist::atom_cache::AtomCacheWriter
    pub(crate) fn into_header_form(self) -> Vec<u8> {
        self.bytes
    }

    /// The same frame in pass-through form: `112 131 Control [131 Payload]`.
    /// With a payload both forms have the same length, so only the (small)
    /// control message moves; without one, the frame is a byte shorter.
    pub(crate) fn into_pass_through(mut self) -> Vec<u8> {
        let c = self.control_len;
        let has_payload = self.bytes.len() > HEADER_FORM_PREFIX + c;
        self.bytes
            .copy_within(HEADER_FORM_PREFIX..HEADER_FORM_PREFIX + c, 6);
        self.bytes[4] = PASS_THROUGH;
        self.bytes[5] = VERSION;
        if has_payload {
            self.bytes[6 + c] = VERSION;
        } else {
            self.bytes.truncate(6 + c);
            self.finish();
        }
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OutFrame {
        let mut f = OutFrame::begin();
        f.buf().extend_from_slice(&[104, 0]); // {}
        f.end_control();
        f.buf().push(106); // []
        f.finish();
        f
    }

    #[test]
    fn pass_through_form_without_a_payload_is_a_byte_shorter() {
        let mut f = OutFrame::begin();
        f.buf().extend_from_slice(&[104, 0]);
        f.end_control();
        f.finish();
        assert_eq!(
            f.clone().into_header_form(),
            [0, 0, 0, 5, 131, 68, 0, 104, 0]
        );
        assert_eq!(f.into_pass_through(), [0, 0, 0, 4, 112, 131, 104, 0]);
    }

    #[test]
    fn parses_ticks_and_both_body_forms_and_waits_for_more() {
        let mut buf = Vec::new();
        write_tick(&mut buf);
        buf.extend(sample().into_pass_through());
        buf.extend(sample().into_header_form());
        assert_eq!(parse_frame(&buf, 100).unwrap(), Some((Frame::Tick, 4)));
        let rest = &buf[4..];
        assert_eq!(
            parse_frame(rest, 100).unwrap(),
            Some((Frame::PassThrough(&[131, 104, 0, 131, 106]), 10))
        );
        assert_eq!(
            parse_frame(&rest[10..], 100).unwrap(),
            Some((Frame::WithHeader(&[131, 68, 0, 104, 0, 106]), 10))
        );
        for cut in 0..10 {
            assert_eq!(
                parse_frame(&rest[..cut], 100).unwrap(),
                None,
                "prefix {cut}"
            );
        }
    }

    #[test]
    fn rejects_oversized_frames_before_the_body_arrives() {
        let header = 1_000_000u32.to_be_bytes();
        assert_eq!(
            parse_frame(&header, 1000),
            Err(FrameError::TooLarge {
                len: 1_000_000,
                max: 1000
            })
        );
    }

    #[test]
    fn rejects_unknown_bodies_early() {
        assert!(parse_frame(&[0, 0, 0, 9, 68], 100).is_err());
        assert!(parse_frame(&[0, 0, 0, 9, 131, 71], 100).is_err());
        assert!(parse_frame(&[0, 0, 0, 9, 131, 69], 100).unwrap().is_none());
    }

    #[test]
    fn parses_fragments_whole() {
        let buf = [0, 0, 0, 3, 131, 70, 1, 0, 0, 0, 3, 131, 69, 2];
        assert_eq!(
            parse_frame(&buf, 100).unwrap(),
            Some((Frame::Fragment(&[131, 70, 1]), 7))
        );
        assert_eq!(
            parse_frame(&buf[7..], 100).unwrap(),
            Some((Frame::Fragment(&[131, 69, 2]), 7))
        );
    }
}
