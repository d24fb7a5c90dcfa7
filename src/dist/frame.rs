//! Framing of the connected-state byte stream.
//!
//! After the handshake every frame is a 4-byte big-endian length and a body;
//! a zero length is a tick. We never advertise the atom cache or fragments,
//! so every non-tick body starts with the pass-through byte 112, followed by
//! the control message and an optional payload term.

use thiserror::Error;

/// Pass-through marker that starts every body when no distribution header is used.
pub const PASS_THROUGH: u8 = 112;

/// One complete frame found in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A keep-alive with no content.
    Tick,
    /// The control message and payload bytes, after the pass-through byte.
    Data(&'a [u8]),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame starts with byte {0}, expected the pass-through byte 112 (atom cache and fragments are not negotiated)")]
    NotPassThrough(u8),
}

/// Looks for one complete frame at the start of `input`.
///
/// Returns the frame and the number of bytes it occupies, or `None` when more
/// input is needed. The length is checked against `max_frame` before waiting
/// for the body, so a peer cannot make us buffer an oversized frame.
pub fn parse_frame(
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
    // Check the first body byte as soon as it arrives, not only once the whole body is here.
    if let Some(&first) = input.get(4) {
        if first != PASS_THROUGH {
            return Err(FrameError::NotPassThrough(first));
        }
    }
    let Some(body) = input.get(4..4 + len) else {
        return Ok(None);
    };
    Ok(Some((Frame::Data(&body[1..]), 4 + len)))
}

/// Appends a tick (an empty frame).
pub fn write_tick(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 0, 0]);
}

/// Reserves room for a frame header in `out` and returns its position; call
/// [`finish_frame`] once the body is written.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, PASS_THROUGH]);
    start
}

/// Fills in the length of the frame begun at `start`.
pub fn finish_frame(out: &mut [u8], start: usize) {
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ticks_and_frames_and_waits_for_more() {
        let mut buf = Vec::new();
        write_tick(&mut buf);
        let start = begin_frame(&mut buf);
        buf.extend_from_slice(&[131, 106]);
        finish_frame(&mut buf, start);
        assert_eq!(parse_frame(&buf, 100).unwrap(), Some((Frame::Tick, 4)));
        let rest = &buf[4..];
        assert_eq!(
            parse_frame(rest, 100).unwrap(),
            Some((Frame::Data(&[131, 106]), 7))
        );
        for cut in 0..rest.len() {
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
    fn rejects_frames_without_pass_through() {
        assert_eq!(
            parse_frame(&[0, 0, 0, 9, 68], 100),
            Err(FrameError::NotPassThrough(68))
        );
    }
}
