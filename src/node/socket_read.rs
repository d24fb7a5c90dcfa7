//! Reading a connection's socket: waiting for readiness, polling it for a
//! moment after a short exchange, or letting a one-way stream gather (see
//! `read_pacing`). A TLS stream is read plainly (see `read_tls`).

use super::cpu_pressure;
use super::outbox::Outbox;
use super::read_pacing::ReadPacing;
use std::time::Instant;
use tokio::io::Interest;
use tokio::net::tcp::OwnedReadHalf;

/// A read of at most this much that leaves the buffer room to spare ends
/// the burst (see `read_some`).
const SHORT_READ: usize = 4 << 10;

/// Reads what the socket holds into `buf`'s spare capacity.
///
/// Right after a short exchange on this connection (see [`ReadPacing`]) and
/// while the machine has a core to spare, it polls the socket itself
/// instead of sleeping in epoll: the peer's answer is then read within a
/// few microseconds instead of after the 20-30 µs a wakeup costs.
///
/// Otherwise it waits for readiness. Woken in a one-way stream, it first
/// sleeps a moment so that it reads a batch rather than the one segment
/// that woke it. That sleep blocks this worker thread (tokio's timers count
/// milliseconds), so the worker's other tasks wait as long, and the OS's
/// timer slack (50 µs by default on Linux) comes on top of it.
///
/// A small read that comes back short has drained the socket, so its
/// readiness is cleared at once: the next wait goes straight to epoll
/// instead of through one more read that would only return EAGAIN. A large
/// read means a stream of messages: the next read will likely find more, so
/// readiness is kept. No data is missed: data arriving after the short read
/// raises a new edge, and tokio keeps readiness that arrived meanwhile
/// (reads while polling bypass it, which at worst costs one spurious
/// wakeup).
pub(super) async fn read_some(
    read: &OwnedReadHalf,
    buf: &mut Vec<u8>,
    pacing: &mut ReadPacing,
    outbox: &Outbox,
) -> std::io::Result<usize> {
    loop {
        if pacing.spin(Instant::now(), outbox.pushed()) && cpu_pressure::spare_core() {
            match spin_read(read, buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Let this runtime's other tasks run (its driver is
                    // polled without sleeping while a task is yielding),
                    // and other threads have this core if they want it.
                    std::thread::yield_now();
                    tokio::task::yield_now().await;
                    continue;
                }
                other => return other,
            }
        }
        let mut slept = false;
        std::future::poll_fn(|cx| {
            let ready = read.as_ref().poll_read_ready(cx);
            slept |= ready.is_pending();
            ready
        })
        .await?;
        if slept {
            if let Some(wait) = pacing.coalesce(Instant::now(), outbox.pushed()) {
                std::thread::sleep(wait);
            }
        }
        let spare = buf.capacity() - buf.len();
        let mut short = None;
        let result = read.as_ref().try_io(Interest::READABLE, || {
            let n = read.try_read_buf(buf)?;
            if n < spare && n <= SHORT_READ {
                short = Some(n);
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (result, short) {
            (_, Some(n)) => return Ok(n),
            (Ok(n), None) => return Ok(n),
            (Err(e), None) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            (Err(e), None) => return Err(e),
        }
    }
}

/// One non-blocking `recv` straight on the socket, past tokio's readiness
/// (which only the driver's next poll would set). Polling serves short
/// exchanges, so a small stack buffer is enough; a longer message takes
/// more reads.
fn spin_read(read: &OwnedReadHalf, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::io::Read;
    let mut chunk = [0u8; SHORT_READ];
    let n = (&*socket2::SockRef::from(read.as_ref())).read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Reads what a TLS stream has decrypted into `buf`, waiting for it.
/// No polling or batching: the TCP socket under it is rustls's, so its
/// records are read as they come.
pub(super) async fn read_tls(
    read: &mut tokio::io::ReadHalf<super::transport::TlsStream>,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    if buf.capacity() == buf.len() {
        buf.reserve(SHORT_READ);
    }
    read.read_buf(buf).await
}
