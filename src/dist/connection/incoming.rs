//! The receiving half of a connection: frames out of the byte stream,
//! fragments reassembled, distribution headers through the atom cache,
//! control messages decoded within the term limits, and the peer's silence
//! timed.

use super::reassembly::{Reassembly, MAX_PARTIAL_MESSAGES};
use super::{ConnectionConfig, ConnectionError};
use crate::dist::atom_cache::AtomCache;
use crate::dist::control::{self, ControlMessage};
use crate::dist::etf::Limits;
use crate::dist::frame::{self, Frame};
use std::time::{Duration, Instant};

/// The driver reads into at least half this much spare room, and the
/// buffer keeps this much capacity when it empties after a large frame.
const READ_CHUNK: usize = 64 << 10;
/// Expanded frames keep their scratch space up to this size.
const EXPANDED_KEEP: usize = 4 * READ_CHUNK;
/// Partial messages may hold this many times the frame limit together:
/// a few large messages at once, never an unbounded number.
const HELD_PER_FRAME_LIMIT: usize = 2;

/// What the peer sends us, from bytes to control messages.
pub(crate) struct Incoming {
    /// The peer's node name, for log lines.
    peer: String,
    /// Bytes received; those before `start` are handled.
    buf: Vec<u8>,
    start: usize,
    max_frame: usize,
    limits: Limits,
    atoms: AtomCache,
    /// Messages whose fragments are still coming.
    fragments: Reassembly,
    /// Scratch space: a frame with its atom references expanded.
    expanded: Vec<u8>,
    net_ticktime: Duration,
    last_input: Instant,
    failed: bool,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("peer", &self.peer)
            .field("buffered", &(self.buf.len() - self.start))
            .field("last_input", &self.last_input)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    pub(super) fn new(
        peer: &str,
        config: &ConnectionConfig,
        leftover: Vec<u8>,
        now: Instant,
    ) -> Self {
        Incoming {
            peer: peer.to_owned(),
            buf: leftover,
            start: 0,
            max_frame: config.max_frame_bytes,
            limits: config.term_limits,
            // A reference can stand for an atom 500 times its size; never
            // expand a frame past twice the frame limit.
            atoms: AtomCache::new().with_max_output(config.max_frame_bytes.saturating_mul(2)),
            // A reassembled message is held to the frame limit.
            fragments: Reassembly::new(
                config.max_frame_bytes,
                config.max_frame_bytes.saturating_mul(HELD_PER_FRAME_LIMIT),
                MAX_PARTIAL_MESSAGES,
            ),
            expanded: Vec::new(),
            net_ticktime: config.net_ticktime,
            last_input: now,
            failed: false,
        }
    }

    #[cfg(test)] // only the tests use it
    /// Bytes received at `now` (copied in; a driver that reads straight
    /// into [`Incoming::read_buffer`] saves the copy).
    pub(crate) fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.read_buffer().extend_from_slice(bytes);
        self.handle_read(now);
    }

    /// Where the driver appends what it reads from the socket, with at
    /// least half of [`READ_CHUNK`] spare; call [`Incoming::handle_read`]
    /// after appending. Bytes already in it must stay as they are.
    pub(crate) fn read_buffer(&mut self) -> &mut Vec<u8> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        // One large frame must not leave its buffer behind.
        if self.buf.capacity() > 4 * READ_CHUNK && self.buf.len() < READ_CHUNK {
            self.buf.shrink_to(READ_CHUNK);
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }

    /// Bytes were appended to [`Incoming::read_buffer`] at `now`.
    pub(crate) fn handle_read(&mut self, now: Instant) {
        self.last_input = self.last_input.max(now);
    }

    /// The next control message, if a whole frame holding one is in (ticks
    /// are taken in passing). `Ok(None)`: more input is needed. An error
    /// closes the connection (logged here, once).
    pub(crate) fn poll_message(&mut self) -> Result<Option<ControlMessage>, ConnectionError> {
        if self.failed {
            return Err(ConnectionError::Closed);
        }
        loop {
            let parsed = frame::parse_frame(&self.buf[self.start..], self.max_frame);
            let decoded = match parsed {
                Ok(None) => return Ok(None),
                Ok(Some((Frame::Tick, used))) => {
                    self.start += used;
                    continue;
                }
                Ok(Some((Frame::PassThrough(body), used))) => {
                    self.start += used;
                    control::decode(body, &self.limits).map_err(ConnectionError::from)
                }
                Ok(Some((Frame::WithHeader(body), used))) => {
                    self.start += used;
                    self.expanded.clear();
                    // One walk checks and expands; eetf then decodes.
                    match self
                        .atoms
                        .expand_checked(body, &self.limits, &mut self.expanded)
                    {
                        Ok(checked) => control::decode_checked(checked).map_err(Into::into),
                        Err(e) => Err(e.into()),
                    }
                }
                Ok(Some((Frame::Fragment(body), used))) => {
                    self.start += used;
                    match self.fragments.handle(body, &mut self.atoms) {
                        Ok(None) => continue,
                        Ok(Some(whole)) => {
                            self.expanded.clear();
                            match self.atoms.expand_resolved(
                                &whole.atoms,
                                &whole.terms,
                                &self.limits,
                                &mut self.expanded,
                            ) {
                                Ok(checked) => control::decode_checked(checked).map_err(Into::into),
                                Err(e) => Err(e.into()),
                            }
                        }
                        Err(e) => Err(e.into()),
                    }
                }
                Err(e) => Err(e.into()),
            };
            if self.expanded.capacity() > EXPANDED_KEEP {
                self.expanded = Vec::new();
            }
            return match decoded {
                Ok(message) => match never_negotiated(&message) {
                    Some(op) => {
                        // Bounded: the operation, not the message.
                        tracing::warn!(peer = %self.peer, op, "control message for a feature we never advertised; ignored");
                        continue;
                    }
                    None => Ok(Some(message)),
                },
                Err(e) => Err(self.fail(e)),
            };
        }
    }

    /// When the peer is dead unless something arrives first.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.last_input + self.net_ticktime
    }

    /// Time passed: an error, which closes the connection, if nothing came
    /// from the peer for `net_ticktime`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnectionError> {
        if self.failed {
            return Err(ConnectionError::Closed);
        }
        let silent = now.saturating_duration_since(self.last_input);
        if silent >= self.net_ticktime {
            return Err(self.fail(ConnectionError::TickTimeout { silent }));
        }
        Ok(())
    }

    /// The error policy: log once, then refuse everything.
    fn fail(&mut self, e: ConnectionError) -> ConnectionError {
        self.failed = true;
        match &e {
            ConnectionError::TickTimeout { .. } => {
                tracing::warn!(peer = %self.peer, "no ticks within net_ticktime; disconnecting")
            }
            _ => tracing::warn!(peer = %self.peer, error = %e, "bad input; disconnecting"),
        }
        e
    }
}

/// The operation name of a message a conforming peer never sends us: we
/// never send a `SPAWN_REQUEST`, so no `SPAWN_REPLY` can answer one. They
/// are dropped here, so they are never logged whole.
fn never_negotiated(message: &ControlMessage) -> Option<&'static str> {
    use ControlMessage as M;
    match message {
        M::SpawnReply(_) => Some("SPAWN_REPLY"),
        M::SpawnReplyTt(_) => Some("SPAWN_REPLY_TT"),
        _ => None,
    }
}
