//! The sending side of one connection, shared by every sender and the
//! connection's writer task.
//!
//! A sender writes its frame straight to the socket when nothing is queued
//! and the last direct write is not recent (no task hop: the common case for
//! request/reply traffic). Otherwise, in a burst, or when the socket is
//! full, it appends to the queue and the writer task drains it, so a burst
//! of frames goes out in a few system calls instead of one each. Frames stay
//! in order because nobody writes directly while the writer task owns the
//! queue.
//!
//! Frames get their final wire form here, under the queue's lock, from the
//! sending half of the sans-IO connection ([`Outgoing`]): the atom cache
//! references in a frame's header are only right if frames reach the
//! socket in the order that half wrote them. Its tick clock lives under
//! the same lock, so the writer task's ticks are ordered with frames too.
//!
//! Large messages (to a peer that takes fragments) are not written whole:
//! that half keeps them and the writer task asks it for one fragment at a
//! time, after writing whatever was queued meanwhile. So a tick or a small
//! reply waits for at most one 64 KiB fragment, not for a 50 MiB message.
//!
//! Bounded, as the BEAM bounds a connection's buffer (`+zdbbl`): every
//! byte not yet written counts (the queue, the batch being written, and
//! the large messages kept for fragments). A push that finds the queue
//! past the busy limit is still taken but says [`Pushed::Busy`], and a
//! sender that can wait then awaits [`Outbox::until_not_busy`] (as the
//! BEAM suspends a process that sends to a busy connection; one that
//! found the queue below the limit goes on, so a server that has just
//! sent a 50 MiB reply still answers the next call at once, and that
//! small reply goes out between the large one's fragments); a push that finds the queue at the hard
//! limit closes the connection instead ([`Pushed::Overflow`]): the peer
//! does not read while senders that cannot wait go on, and the queue must
//! not grow without end.

use super::traffic::Traffic;
use super::transport::WriteHalf;
use crate::dist::connection::Outgoing;
use crate::dist::frame::OutFrame;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A frame pushed this soon after the previous direct write is queued for
/// the writer task instead: by then more frames are likely on their way.
const BURST_WINDOW: Duration = Duration::from_micros(50);

/// The error of a write that made no progress for [`OutboxLimits::stall`].
pub(crate) const STALLED: &str = "peer does not read: no write progress for net_ticktime";

#[derive(Debug)]
struct Queue {
    /// The connection's sending half: wire forms and ticks.
    conn: Outgoing,
    pending: Pending,
    closed: bool,
}

impl Queue {
    /// Bytes not yet written: queued, being written, kept for fragments.
    fn queued(&self) -> usize {
        self.pending.bytes.len() + self.pending.in_flight + self.conn.held()
    }
}

/// Bytes waiting for the writer task, and who owns the socket.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Bytes the writer task took from `bytes` and is writing.
    in_flight: usize,
    /// The writer task owns the socket until it finds the queue empty.
    draining: bool,
    last_direct: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    socket: WriteHalf,
    queue: Mutex<Queue>,
    wake: Notify,
    /// Frames pushed so far (ticks included): the reader's pacing compares
    /// it across a read to tell whether we answered.
    pushed: AtomicU64,
    /// The queue's [`Queue::queued`] as of its last change.
    queued: AtomicUsize,
    /// Wakes senders waiting for the queue to drain below `busy_limit`.
    drained: Notify,
    limits: OutboxLimits,
    /// Counts the frames and bytes handed to the socket (metrics).
    traffic: Arc<Traffic>,
}

/// A connection's bounds on bytes not yet written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutboxLimits {
    /// Past it, senders that can wait do.
    pub busy: usize,
    /// A push that finds this many bytes queued closes the connection.
    pub max: usize,
    /// A write that makes no progress this long (the peer has not read for
    /// a whole `net_ticktime`) fails: a live peer always reads, and
    /// senders waiting on a peer that sends ticks but never reads would
    /// otherwise wait forever.
    pub stall: std::time::Duration,
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Pushed {
    /// Written or queued; the queue was below the busy limit.
    Sent,
    /// Queued; the queue was already past the busy limit: a sender that
    /// can wait awaits [`Outbox::until_not_busy`].
    Busy,
    /// Dropped, and the outbox closed: `queued` bytes were waiting already,
    /// at least the hard limit. The caller takes the connection down.
    Overflow { queued: usize },
    /// Dropped: the connection is closing.
    Closed,
}

impl Outbox {
    pub(crate) fn new(
        socket: WriteHalf,
        conn: Outgoing,
        limits: OutboxLimits,
        traffic: Arc<Traffic>,
    ) -> Self {
        let queue = Queue {
            conn,
            pending: Pending::default(),
            closed: false,
        };
        Self {
            socket,
            queue: Mutex::new(queue),
            wake: Notify::new(),
            pushed: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            drained: Notify::new(),
            limits,
            traffic,
        }
    }

    /// The socket's close will be a reset (see `WriteHalf::reset_on_close`).
    pub(crate) fn reset_on_close(&self) {
        self.socket.reset_on_close();
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one frame in the form the connection negotiated, never blocking.
    pub(crate) fn push_frame(&self, frame: OutFrame) -> Pushed {
        self.pushing(|q, now| {
            let bytes = q.conn.send(frame, now);
            if bytes.is_empty() {
                // Kept for fragments: the writer task takes the socket.
                return !std::mem::replace(&mut q.pending.draining, true);
            }
            self.send(&mut q.pending, bytes, now)
        })
    }

    /// Writer task: sends a tick if the connection has been quiet long
    /// enough; returns when to ask again.
    pub(crate) fn tick_if_idle(&self, now: Instant) -> Instant {
        let mut q = self.lock();
        if q.closed {
            return q.conn.poll_timeout();
        }
        if let Some(tick) = q.conn.handle_timeout(now) {
            self.pushed.fetch_add(1, Ordering::Relaxed);
            let q = &mut *q;
            if self.send(&mut q.pending, tick, now) {
                self.wake.notify_one();
            }
        }
        q.conn.poll_timeout()
    }

    /// Counts a push and runs `send` on the open queue below the hard
    /// limit; wakes the writer task, outside the lock, when `send` says so.
    fn pushing(&self, send: impl FnOnce(&mut Queue, Instant) -> bool) -> Pushed {
        self.pushed.fetch_add(1, Ordering::Relaxed);
        // Read the clock before taking the lock, to hold it shorter.
        let now = Instant::now();
        let mut q = self.lock();
        if q.closed {
            return Pushed::Closed;
        }
        let before = q.queued();
        if before >= self.limits.max {
            q.closed = true;
            drop(q);
            self.wake.notify_one();
            self.drained.notify_waiters();
            return Pushed::Overflow { queued: before };
        }
        let wake = send(&mut q, now);
        let queued = q.queued();
        self.queued.store(queued, Ordering::Relaxed);
        drop(q);
        if wake {
            self.wake.notify_one();
        }
        if before > self.limits.busy {
            Pushed::Busy
        } else {
            Pushed::Sent
        }
    }

    /// Bytes not yet written to the socket (large messages kept for
    /// fragments included), as of the last push or write.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Waits until the queue is at or below the busy limit, or closed.
    pub(crate) async fn until_not_busy(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.queued() <= self.limits.busy || self.is_closed() {
                return;
            }
            drained.await;
        }
    }

    /// Writes `frame` to the socket now if it is ours, else queues it;
    /// true if the writer task must be woken to drain the queue.
    fn send(&self, q: &mut Pending, frame: &[u8], now: Instant) -> bool {
        self.traffic.frame_out(frame.len());
        let in_burst = q
            .last_direct
            .is_some_and(|t| now.saturating_duration_since(t) < BURST_WINDOW);
        if !q.draining && !in_burst {
            q.last_direct = Some(now);
            let written = match self.socket.try_write(frame) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                // Let the writer task hit the error and close the connection.
                Err(_) => 0,
            };
            if written == frame.len() {
                return false;
            }
            q.bytes.extend_from_slice(&frame[written..]);
        } else {
            q.bytes.extend_from_slice(frame);
        }
        if q.draining {
            return false;
        }
        q.draining = true;
        true
    }

    /// How many frames have been pushed so far.
    pub(crate) fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    /// Writer task: waits until there is something to drain.
    pub(crate) async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Writer task: writes everything queued, and the fragments of large
    /// messages one at a time with what was queued meanwhile before each,
    /// then hands the socket back to direct senders. `buf` is scratch space
    /// kept across calls.
    pub(crate) async fn drain(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        loop {
            {
                let mut q = self.lock();
                let q = &mut *q;
                q.pending.in_flight = 0;
                let done = if !q.pending.bytes.is_empty() {
                    std::mem::swap(buf, &mut q.pending.bytes);
                    false
                } else if let Some(fragment) = q.conn.next_fragment(Instant::now()) {
                    self.traffic.frame_out(fragment.len());
                    buf.extend_from_slice(fragment);
                    false
                } else {
                    true
                };
                q.pending.in_flight = buf.len();
                q.pending.draining = !done;
                let queued = q.queued();
                self.queued.store(queued, Ordering::Relaxed);
                if queued <= self.limits.busy {
                    self.drained.notify_waiters();
                }
                if done {
                    return Ok(());
                }
            }
            let mut rest = &buf[..];
            while !rest.is_empty() {
                let n = tokio::time::timeout(self.limits.stall, self.socket.write(rest))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, STALLED))??;
                rest = &rest[n..];
            }
            buf.clear();
        }
    }

    /// Stops accepting frames; the writer task then shuts the socket.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
        self.drained.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}
