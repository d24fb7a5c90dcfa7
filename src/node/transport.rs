//! The byte stream under a distribution connection: plain TCP, or (with
//! the node's TLS config) TLS over TCP.
//!
//! The outbox writes through [`WriteHalf`]: a direct, non-blocking
//! [`WriteHalf::try_write`] from the sender's thread where the stream allows
//! it (plain TCP), otherwise the writer task's [`WriteHalf::write`]. A TLS
//! stream is only written by the writer task: its records are built under
//! a lock the sender's thread must not wait for.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// TLS over a TCP connection, accepted or dialed.
pub(crate) type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// A connection's stream during the distribution handshake.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Splits the stream for the connection's reader and writer tasks.
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (
                    ReadHalf::Tls(Box::new(r)),
                    WriteHalf::Tls(tokio::sync::Mutex::new(w)),
                )
            }
        }
    }

    /// True for TLS: the handshake's messages then have 4-byte lengths.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The receiving side of a connection's stream (see `socket_read`).
pub(crate) enum ReadHalf {
    Tcp(OwnedReadHalf),
    Tls(Box<tokio::io::ReadHalf<TlsStream>>),
}

/// The sending side of a connection's stream.
pub(crate) enum WriteHalf {
    Tcp(OwnedWriteHalf),
    /// Only the writer task writes it; the lock serialises its calls.
    Tls(tokio::sync::Mutex<tokio::io::WriteHalf<TlsStream>>),
}

impl std::fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteHalf::Tcp(w) => f.debug_tuple("Tcp").field(w).finish(),
            WriteHalf::Tls(_) => f.write_str("Tls"),
        }
    }
}

impl WriteHalf {
    /// Makes the close that follows a reset (`SO_LINGER` 0): whatever is
    /// still unsent or unacknowledged is discarded instead of retransmitted,
    /// so none of it reaches the peer after a partition heals. TLS streams
    /// are split by tokio and their socket is out of reach: they close
    /// normally.
    pub(crate) fn reset_on_close(&self) {
        if let WriteHalf::Tcp(w) = self {
            let _ = w.as_ref().set_zero_linger();
        }
    }

    /// Writes what the socket takes now, without waiting. `WouldBlock`
    /// means the writer task must write it (the socket is full, or the
    /// stream cannot be written from the caller's thread).
    pub(crate) fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(w) => w.try_write(bytes),
            WriteHalf::Tls(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Writer task: writes some of `bytes`, waiting until the stream takes
    /// them; returns how many it took (never 0 for a non-empty `bytes`
    /// unless the stream failed). TLS records are flushed to the socket
    /// before it returns.
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
            WriteHalf::Tls(w) => {
                let mut w = w.lock().await;
                let n = w.write(bytes).await?;
                if n == 0 && !bytes.is_empty() {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                w.flush().await?;
                Ok(n)
            }
        }
    }
}
