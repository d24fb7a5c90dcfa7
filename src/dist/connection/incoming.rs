//! The receiving half of a connection: frames out of the byte stream,
//! fragments reassembled, distribution headers through the atom cache,
//! control messages decoded within the term limits, and the peer's silence
//! timed.

use super::reassembly::{Reassembled, Reassembly, MAX_PARTIAL_MESSAGES};
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
/// A reassembled message of at least this many bytes is decoded by the
/// driver away from the reader ([`Polled::Large`]), so the messages behind
/// it from other senders are not held up by its decoding.
pub(crate) const LARGE_MESSAGE_BYTES: usize = 1 << 20;
/// Partial messages may hold this many times the frame limit together:
/// a few large messages at once, never an unbounded number.
const HELD_PER_FRAME_LIMIT: usize = 2;

/// What [`Incoming::poll`] found.
#[derive(Debug)]
pub(crate) enum Polled {
    /// A message, decoded.
    Message(ControlMessage),
    /// A large reassembled message from `sender`, checked only as far as
    /// its control message: [`LargeMessage::decode`] does the rest.
    Large {
        sender: eetf::Pid,
        message: LargeMessage,
    },
}

/// A large message's bytes and what decoding them needs, for another
/// thread; its atom cache references were resolved when it arrived.
#[derive(Debug)]
pub(crate) struct LargeMessage {
    whole: Reassembled,
    limits: Limits,
    max_output: usize,
}

impl LargeMessage {
    /// Checks, expands and decodes the message, as the reader would have.
    pub(crate) fn decode(self) -> Result<ControlMessage, ConnectionError> {
        let mut atoms = AtomCache::new().with_max_output(self.max_output);
        decode_reassembled(&mut atoms, &self.whole, &self.limits, &mut Vec::new())
    }
}

/// A reference can stand for an atom 500 times its size; never expand a
/// message past twice the frame limit.
fn expansion_limit(max_frame: usize) -> usize {
    max_frame.saturating_mul(2)
}

/// A reassembled message checked, expanded into `out` and decoded. Its
/// references were resolved when it arrived, so any cache with the
/// connection's output bound serves.
fn decode_reassembled(
    atoms: &mut AtomCache,
    whole: &Reassembled,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<ControlMessage, ConnectionError> {
    out.clear();
    let checked = atoms.expand_resolved(&whole.atoms, &whole.terms, limits, out)?;
    Ok(control::decode_checked(checked)?)
}

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
            atoms: AtomCache::new().with_max_output(expansion_limit(config.max_frame_bytes)),
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
    #[cfg(test)] // the driver uses `poll`; the in-memory tests this
    pub(crate) fn poll_message(&mut self) -> Result<Option<ControlMessage>, ConnectionError> {
        match self.poll()? {
            None => Ok(None),
            Some(Polled::Message(m)) => Ok(Some(m)),
            Some(Polled::Large { message, .. }) => match message.decode() {
                Ok(m) => Ok(Some(m)),
                Err(e) => Err(self.fail(e)),
            },
        }
    }

    /// Like [`Incoming::poll_message`], but a large reassembled message
    /// whose sender its control message names comes out undecoded, for
    /// the driver to decode elsewhere; an error decoding it is then handed
    /// back through [`Incoming::fail_large`].
    pub(crate) fn poll(&mut self) -> Result<Option<Polled>, ConnectionError> {
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
                            // A large message that names its sender goes to
                            // the driver undecoded; the rest is decoded here.
                            let sender = if whole.terms.len() >= LARGE_MESSAGE_BYTES {
                                self.sender_of_large(&whole)
                            } else {
                                Ok(None)
                            };
                            match sender {
                                Ok(Some(sender)) => {
                                    let message = LargeMessage {
                                        whole,
                                        limits: self.limits,
                                        max_output: expansion_limit(self.max_frame),
                                    };
                                    return Ok(Some(Polled::Large { sender, message }));
                                }
                                Ok(None) => decode_reassembled(
                                    &mut self.atoms,
                                    &whole,
                                    &self.limits,
                                    &mut self.expanded,
                                ),
                                Err(e) => Err(e),
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
            // A message we never asked for (a SPAWN_REPLY) goes on too: the
            // node's dispatch refuses it within the peer's refusal budget.
            return match decoded {
                Ok(message) => Ok(Some(Polled::Message(message))),
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

    /// A large message's decoding failed (see [`Incoming::poll`]): the
    /// connection fails as if the reader had decoded it.
    pub(crate) fn fail_large(&mut self, e: ConnectionError) -> ConnectionError {
        self.fail(e)
    }

    /// The sender named by a large message's control message (checked
    /// and expanded alone: a few dozen bytes), or `None` when it names
    /// none (a `SEND`) or not in second place (a `SPAWN_REQUEST`): such a
    /// message is decoded here, in order.
    fn sender_of_large(
        &mut self,
        whole: &Reassembled,
    ) -> Result<Option<eetf::Pid>, ConnectionError> {
        self.expanded.clear();
        let checked = self.atoms.expand_resolved_control(
            &whole.atoms,
            &whole.terms,
            &self.limits,
            &mut self.expanded,
        )?;
        let control = control::decode_control_term(checked)?;
        // The sender's place in every control message that names one
        // (`{Op, From, ...}`); a `SEND` has the empty atom there. The rule
        // agrees with `sender_of`, which the driver applies to the rest.
        Ok(match control {
            eetf::Term::Tuple(t) => match t.elements.into_iter().nth(1) {
                Some(eetf::Term::Pid(p)) => Some(p),
                _ => None,
            },
            _ => None,
        })
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
