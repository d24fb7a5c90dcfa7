//! One established distribution connection, sans-IO: what happens between
//! the handshake and the socket closing.
//!
//! Modelled on quinn-proto's `Connection` and on [`super::handshake`]: no
//! sockets, no clocks. The driver hands in the bytes it read and the time
//! (`now`), and takes out decoded control messages (with their payloads),
//! the bytes to write, and the deadlines at which to call back. This module
//! owns framing, both atom caches, ticks, the term limits and the error
//! policy (what closes the connection and what is logged).
//!
//! A connection is two independent halves, because the two directions
//! share no state (each has its own atom cache) and are driven from
//! different places:
//!
//! - [`Incoming`]: the bytes the peer sends. The reader task owns it.
//! - [`Outgoing`]: the bytes we send. Any process may send to the peer, so
//!   the driver keeps it behind the lock that orders the socket's writes:
//!   a frame's atom cache references are only right if frames reach the
//!   socket in the order this half wrote them.
//!
//! [`Connection`] holds both and offers the whole API in one place (the
//! driver [`Connection::split`]s it).
//!
//! Ticks: the peer is dead after `net_ticktime` without a byte from it
//! ([`Incoming::poll_timeout`]); we send a tick after `net_ticktime / 4`
//! without writing anything ([`Outgoing::poll_timeout`]), so a BEAM peer
//! with the same `net_ticktime` never sees us silent for long.
//!
//! Error policy: anything the peer sends that we cannot take (a bad frame
//! header, an oversized frame, a bad distribution header or term, a control
//! message `erl_dist` refuses) and a silence of `net_ticktime` close the
//! connection, with one warning naming the peer; error texts are bounded,
//! never the peer's input echoed in full. The driver then closes the socket
//! and fails what was tied to the peer. Once an [`Incoming`] has returned
//! an error it returns [`ConnectionError::Closed`].

use super::atom_cache::AtomCacheError;
use super::control::ControlError;
#[cfg(test)]
use super::control::ControlMessage;
use super::etf::Limits;
use super::flags;
use super::frame::FrameError;
#[cfg(test)]
use super::frame::OutFrame;
use super::handshake::PeerInfo;
pub(crate) use reassembly::FragmentError;
use std::time::{Duration, Instant};
use thiserror::Error;

mod fragmenter;
mod incoming;
mod outgoing;
mod reassembly;
mod sender_order;

pub(crate) use incoming::{Incoming, Polled};
pub(crate) use outgoing::Outgoing;
pub(crate) use sender_order::{sender_of, SenderOrder};

/// The settings of a connection (the node's, usually).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionConfig {
    /// Silence after which the peer is dead; we tick every quarter of it.
    pub net_ticktime: Duration,
    /// Largest frame accepted, checked from its length before its body.
    pub max_frame_bytes: usize,
    /// Bounds on every term received.
    pub term_limits: Limits,
}

/// Why a connection closed.
#[derive(Debug, Error)]
pub(crate) enum ConnectionError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("bad distribution header: {0}")]
    Header(#[from] AtomCacheError),
    #[error("bad fragment: {0}")]
    Fragment(#[from] FragmentError),
    #[error("bad control message: {0}")]
    Control(#[from] ControlError),
    #[error("net_tick_timeout: nothing received for {silent:?}")]
    TickTimeout { silent: Duration },
    #[error("connection already closed after an error")]
    Closed,
}

/// Both halves of one connection.
#[derive(Debug)]
pub(crate) struct Connection {
    incoming: Incoming,
    outgoing: Outgoing,
}

impl Connection {
    /// A connection to `peer` just after the handshake, at `now`.
    /// `leftover`: bytes read past the handshake (the start of the stream).
    /// `our_flags`: the flags we advertised; the atom cache is used when
    /// both sides set `DIST_HDR_ATOM_CACHE`, and large messages go in
    /// fragments when both also set `FRAGMENTS`.
    pub(crate) fn new(
        peer: &PeerInfo,
        our_flags: u64,
        config: &ConnectionConfig,
        leftover: Vec<u8>,
        now: Instant,
    ) -> Self {
        let both = peer.flags & our_flags;
        let atom_cache = both & flags::DIST_HDR_ATOM_CACHE != 0;
        let fragments = both & flags::FRAGMENTS != 0;
        Connection {
            incoming: Incoming::new(&peer.name, config, leftover, now),
            outgoing: Outgoing::new(atom_cache, fragments, config.net_ticktime, now),
        }
    }

    /// The halves, for a driver that runs the directions apart.
    pub(crate) fn split(self) -> (Incoming, Outgoing) {
        (self.incoming, self.outgoing)
    }

    #[cfg(test)] // the in-memory tests drive these; the node uses the halves
    /// Bytes received at `now`.
    pub(crate) fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.incoming.handle_input(bytes, now);
    }

    #[cfg(test)] // the in-memory tests drive these; the node uses the halves
    /// The next control message received, if a whole one is in; see
    /// [`Incoming::poll_message`].
    pub(crate) fn poll_message(&mut self) -> Result<Option<ControlMessage>, ConnectionError> {
        self.incoming.poll_message()
    }

    #[cfg(test)] // the in-memory tests drive these; the node uses the halves
    /// The wire form of `frame`; see [`Outgoing::send`].
    pub(crate) fn send(&mut self, frame: OutFrame, now: Instant) -> &[u8] {
        self.outgoing.send(frame, now)
    }

    #[cfg(test)] // the in-memory tests drive these; the node uses the halves
    /// The next fragment; see [`Outgoing::next_fragment`].
    pub(crate) fn next_fragment(&mut self, now: Instant) -> Option<&[u8]> {
        self.outgoing.next_fragment(now)
    }

    #[cfg(test)] // the in-memory tests drive these; the node uses the halves
    /// When to call [`Connection::handle_timeout`] next.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.incoming
            .poll_timeout()
            .min(self.outgoing.poll_timeout())
    }

    #[cfg(test)] // the in-memory tests drive these; the node uses the halves
    /// Time passed: the tick to write, if one is due, or the error that
    /// closes the connection when the peer has been silent too long.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
    ) -> Result<Option<&[u8]>, ConnectionError> {
        self.incoming.handle_timeout(now)?;
        Ok(self.outgoing.handle_timeout(now))
    }
}

#[cfg(test)]
mod fragment_tests;
#[cfg(test)]
mod tests;
