//! The receiving half of a connection: frames out of the byte stream,
//! fragments reassembled, distribution headers through the atom cache,
//! control messages decoded within the term limits, and the peer's silence
//! timed.

use super::reassembly::{Reassembled, Reassembly, MAX_PARTIAL_MESSAGES};
use super::{ConnectionConfig, ConnectionError};
use crate::dist::atom_cache::AtomCache;
use crate::dist::atom_cache::AtomCacheError;
use crate::dist::control::{self, ControlError, ControlMessage};
use crate::dist::etf::{self, peek, Limits, TermError};
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

/// How deep a message's payload may nest before the connection is dropped.
/// Payloads deeper than [`Limits::max_depth`] and up to this are checked by
/// the scanner alone (no recursion, O(depth) memory) and dropped, message
/// by message: the BEAM sends terms of any depth, and one such message must
/// not cost the peer its whole connection.
pub(crate) const DEEP_PAYLOAD_DEPTH: usize = 1 << 16;

/// What [`Incoming::poll`] found.
#[derive(Debug)]
pub(crate) enum Polled {
    /// A message, decoded.
    Message(ControlMessage),
    /// A message for the peer, to send back: the error reply to a
    /// `'$gen_call'` whose request nested too deep to decode and was
    /// dropped (see [`too_deep_reply`]).
    Answer(ControlMessage),
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
        loop {
            return match self.poll()? {
                None => Ok(None),
                Some(Polled::Message(m)) => Ok(Some(m)),
                // Answers to the peer are the driver's; tests see `poll`.
                Some(Polled::Answer(_)) => continue,
                Some(Polled::Large { message, .. }) => match message.decode() {
                    Ok(m) => Ok(Some(m)),
                    Err(e) => Err(self.fail(e)),
                },
            };
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
                    match control::decode(body, &self.limits).map_err(ConnectionError::from) {
                        Err(e) if is_too_deep(&e) => {
                            let deep = deep_limits(&self.limits);
                            match control::check_body(body, &deep) {
                                Ok(_) => too_deep_message(body, &self.limits, &self.peer, e),
                                Err(_) => Err(e),
                            }
                        }
                        other => other.map(Decoded::Message),
                    }
                }
                Ok(Some((Frame::WithHeader(body), used))) => {
                    self.start += used;
                    self.expanded.clear();
                    // One walk checks and expands; eetf then decodes.
                    match self
                        .atoms
                        .expand_checked(body, &self.limits, &mut self.expanded)
                    {
                        Ok(checked) => control::decode_checked(checked)
                            .map(Decoded::Message)
                            .map_err(Into::into),
                        Err(e) => match ConnectionError::from(e) {
                            e if is_too_deep(&e) => {
                                self.expanded.clear();
                                let deep = deep_limits(&self.limits);
                                match self.atoms.expand_checked(body, &deep, &mut self.expanded) {
                                    Ok(_) => too_deep_message(
                                        &self.expanded,
                                        &self.limits,
                                        &self.peer,
                                        e,
                                    ),
                                    Err(_) => Err(e),
                                }
                            }
                            e => Err(e),
                        },
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
                                Ok(None) => match decode_reassembled(
                                    &mut self.atoms,
                                    &whole,
                                    &self.limits,
                                    &mut self.expanded,
                                ) {
                                    Err(e) if is_too_deep(&e) => {
                                        self.expanded.clear();
                                        let deep = deep_limits(&self.limits);
                                        match self.atoms.expand_resolved(
                                            &whole.atoms,
                                            &whole.terms,
                                            &deep,
                                            &mut self.expanded,
                                        ) {
                                            Ok(_) => too_deep_message(
                                                &self.expanded,
                                                &self.limits,
                                                &self.peer,
                                                e,
                                            ),
                                            Err(_) => Err(e),
                                        }
                                    }
                                    other => other.map(Decoded::Message),
                                },
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
                Ok(Decoded::Dropped(None)) => continue,
                Ok(Decoded::Dropped(Some(answer))) => Ok(Some(Polled::Answer(answer))),
                Ok(Decoded::Message(message)) => Ok(Some(Polled::Message(message))),
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

/// What one frame came to on the reader.
enum Decoded {
    Message(ControlMessage),
    /// A message dropped for its payload's depth, and the answer to send
    /// its caller if it was a call.
    Dropped(Option<ControlMessage>),
}

/// The connection's limits with [`DEEP_PAYLOAD_DEPTH`].
fn deep_limits(limits: &Limits) -> Limits {
    Limits {
        max_depth: DEEP_PAYLOAD_DEPTH.max(limits.max_depth),
        ..*limits
    }
}

/// Whether `e` refused a term only for its depth.
fn is_too_deep(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::Header(AtomCacheError::TooDeep { .. })
            | ConnectionError::Control(ControlError::Term(TermError::TooDeep { .. }))
    )
}

/// The operations whose payload is a message to a process (`SEND`,
/// `REG_SEND`, `SEND_SENDER`, `ALIAS_SEND` and their `_TT` forms): those
/// alone may be dropped. Any other payload (an exit reason, a spawn's
/// arguments) too deep still fails the connection, since dropping it would
/// lose a signal.
const MESSAGE_OPS: [i32; 8] = [2, 6, 12, 16, 22, 23, 33, 34];

/// A message checked with [`deep_limits`] (`bytes`: control message and
/// payload, expanded, each with its version byte) that `limits` refused
/// for depth: if its control message is within `limits` and it carries a
/// message to a process, it is dropped, and a `'$gen_call'` from a process
/// of the peer is answered with [`too_deep_reply`]. Otherwise `refused`,
/// the error that fails the connection.
fn too_deep_message(
    bytes: &[u8],
    limits: &Limits,
    peer: &str,
    refused: ConnectionError,
) -> Result<Decoded, ConnectionError> {
    let Ok((control, control_len)) = etf::decode_term(bytes, limits) else {
        return Err(refused);
    };
    let op = match &control {
        eetf::Term::Tuple(t) => match t.elements.first() {
            Some(eetf::Term::FixInteger(i)) => i.value,
            _ => return Err(refused),
        },
        _ => return Err(refused),
    };
    if !MESSAGE_OPS.contains(&op) || control_len == bytes.len() {
        return Err(refused);
    }
    let from = peek::gen_call_from(&bytes[control_len..], limits);
    let answer = from
        .as_ref()
        .and_then(|from| too_deep_reply(from, peer, limits));
    // Bounded: the operation and whether it is answered, not the term.
    tracing::warn!(
        peer,
        op,
        answered = answer.is_some(),
        max_depth = limits.max_depth,
        "message nests deeper than the term limit; dropped"
    );
    Ok(Decoded::Dropped(answer))
}

/// `{Tag, {error, {too_deep, MaxDepth}}}` sent to the caller of a
/// `'$gen_call'` with `From` = `{Pid, Tag}` (to the pid, which an alias
/// tag's `receive` matches as well), only if Pid is a process of `peer`:
/// nothing is ever sent to a node the peer names.
pub(crate) fn too_deep_reply(
    from: &eetf::Term,
    peer: &str,
    limits: &Limits,
) -> Option<ControlMessage> {
    use crate::term::{atom, int, tuple};
    let [eetf::Term::Pid(pid), tag] = crate::term::as_tuple(from)? else {
        return None;
    };
    if pid.node.name != peer {
        return None;
    }
    let error = tuple(vec![
        atom("error"),
        tuple(vec![atom("too_deep"), int(limits.max_depth as i64)]),
    ]);
    Some(ControlMessage::send(
        pid.clone(),
        tuple(vec![tag.clone(), error]),
    ))
}
