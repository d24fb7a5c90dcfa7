//! Driving the sans-IO distribution handshake over a connection's stream:
//! its output written, the peer's bytes fed in, its events handed to the
//! caller. Inside TLS the messages carry 4-byte lengths on the wire (as
//! `inet_tls_dist` frames them) and 2-byte ones in the handshake, which
//! was written for TCP.

use super::connection::ConnError;
use super::transport::Stream;
use crate::dist::handshake::{Event, Handshake, PeerInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs a handshake to completion: writes its output, feeds it input,
/// hands events to `on_event`. Leaves unconsumed input in `buf`.
pub(super) async fn drive(
    stream: &mut Stream,
    hs: &mut Handshake,
    buf: &mut Vec<u8>,
    mut on_event: impl FnMut(Event, &mut Handshake) -> Result<(), ConnError>,
) -> Result<PeerInfo, ConnError> {
    let result = drive_inner(stream, hs, buf, &mut on_event).await;
    if result.is_err() {
        // A refusal (`snok`, `snot_allowed`) is queued output: the peer should see it.
        let out = hs.take_output();
        if !out.is_empty() {
            let _ = send(stream, &out).await;
        }
    }
    result
}

/// Writes handshake output. The handshake frames its messages with 2-byte
/// lengths, as on TCP; inside TLS, inet_tls_dist frames them with 4.
async fn send(stream: &mut Stream, out: &[u8]) -> Result<(), ConnError> {
    if out.is_empty() {
        return Ok(());
    }
    if stream.is_tls() {
        let mut framed = Vec::with_capacity(out.len() + 8);
        let mut rest = out;
        while rest.len() >= 2 {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let body = rest
                .get(2..2 + len)
                .ok_or(ConnError::Other("handshake output cut short".into()))?;
            framed.extend_from_slice(&(len as u32).to_be_bytes());
            framed.extend_from_slice(body);
            rest = &rest[2 + len..];
        }
        stream.write_all(&framed).await?;
    } else {
        stream.write_all(out).await?;
    }
    stream.flush().await?;
    Ok(())
}

/// Inside TLS: moves one complete 4-byte-length message from `raw` into
/// `buf` with a 2-byte length, the form the handshake reads. One at a
/// time, so that what follows the last handshake message stays as it came.
fn next_tls_message(raw: &mut Vec<u8>, buf: &mut Vec<u8>) -> Result<bool, ConnError> {
    let Some(head) = raw.get(..4) else {
        return Ok(false);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let len16 = u16::try_from(len)
        .map_err(|_| ConnError::Other(format!("handshake message of {len} bytes")))?;
    if raw.len() < 4 + len {
        return Ok(false);
    }
    buf.extend_from_slice(&len16.to_be_bytes());
    buf.extend_from_slice(&raw[4..4 + len]);
    raw.drain(..4 + len);
    Ok(true)
}

async fn drive_inner(
    stream: &mut Stream,
    hs: &mut Handshake,
    buf: &mut Vec<u8>,
    on_event: &mut impl FnMut(Event, &mut Handshake) -> Result<(), ConnError>,
) -> Result<PeerInfo, ConnError> {
    let tls = stream.is_tls();
    // Inside TLS: what was read and not yet handed to the handshake.
    let mut raw = Vec::new();
    send(stream, &hs.take_output()).await?;
    loop {
        loop {
            let (used, event) = hs.receive(buf)?;
            buf.drain(..used);
            match event {
                Some(Event::Established(info)) => {
                    send(stream, &hs.take_output()).await?;
                    if tls {
                        buf.append(&mut raw);
                    }
                    return Ok(info);
                }
                Some(event) => {
                    on_event(event, hs)?;
                    send(stream, &hs.take_output()).await?;
                }
                None if used == 0 => break,
                None => {}
            }
        }
        send(stream, &hs.take_output()).await?;
        if tls && next_tls_message(&mut raw, buf)? {
            continue;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ConnError::Closed);
        }
        if tls {
            raw.extend_from_slice(&chunk[..n]);
        } else {
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_handshake_messages_are_reframed_one_at_a_time() {
        // Two 4-byte-length messages, then the start of a third.
        let mut raw = vec![0, 0, 0, 2, b'a', b'b', 0, 0, 0, 1, b'c', 0, 0];
        let mut buf = Vec::new();
        assert!(next_tls_message(&mut raw, &mut buf).unwrap());
        assert_eq!(buf, [0, 2, b'a', b'b']);
        // What follows stays as it came until the handshake asks for it.
        assert_eq!(raw, [0, 0, 0, 1, b'c', 0, 0]);
        buf.clear();
        assert!(next_tls_message(&mut raw, &mut buf).unwrap());
        assert_eq!(buf, [0, 1, b'c']);
        buf.clear();
        assert!(!next_tls_message(&mut raw, &mut buf).unwrap());
        assert!(buf.is_empty());
        assert_eq!(raw, [0, 0]);
    }

    #[test]
    fn an_oversized_tls_handshake_message_is_refused_before_its_body() {
        let mut raw = vec![0, 1, 0, 0];
        let mut buf = Vec::new();
        assert!(next_tls_message(&mut raw, &mut buf).is_err());
        assert!(buf.is_empty());
    }
}
