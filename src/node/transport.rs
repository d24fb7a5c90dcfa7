//! The byte stream under a distribution connection, once its handshake is
//! done: plain TCP, or (with the `tls` config) TLS over TCP.
//!
//! The outbox writes through [`WriteHalf`]: a direct, non-blocking
//! [`WriteHalf::try_write`] from the sender's thread where the stream allows
//! it (plain TCP), otherwise the writer task's [`WriteHalf::write`].

use std::io;
use tokio::net::tcp::OwnedWriteHalf;

/// The sending side of a connection's stream.
#[derive(Debug)]
pub(crate) enum WriteHalf {
    Tcp(OwnedWriteHalf),
}

impl WriteHalf {
    /// Writes what the socket takes now, without waiting. `WouldBlock`
    /// means the writer task must write it (the socket is full, or the
    /// stream cannot be written from the caller's thread).
    pub(crate) fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(w) => w.try_write(bytes),
        }
    }

    /// Writer task: writes some of `bytes`, waiting until the stream takes
    /// them; returns how many it took (never 0 for a non-empty `bytes`
    /// unless the stream failed).
    pub(crate) async fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(w) => loop {
                w.writable().await?;
                match w.try_write(bytes) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            },
        }
    }
}
