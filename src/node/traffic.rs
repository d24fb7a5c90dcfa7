//! What went over one connection, counted where it happens (the reader's
//! socket reads and decoded messages, the outbox's frames) and read at
//! scrape time through [`Node::peer_traffic`](super::Node::peer_traffic).
//!
//! Relaxed atomic adds, one per read or frame: no lock and no allocation on
//! the hot path. The counters live as long as the connection; a reconnected
//! peer starts again from zero (Prometheus reads that as a counter reset).

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one connection, shared by its reader and its outbox.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    bytes_in: AtomicU64,
    messages_in: AtomicU64,
    bytes_out: AtomicU64,
    frames_out: AtomicU64,
}

impl Traffic {
    /// The reader got `n` bytes from the socket (TLS: plaintext bytes).
    pub(crate) fn read(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The reader decoded one message (control message, with or without a
    /// payload; ticks are not messages).
    pub(crate) fn message_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    /// The outbox took one frame of `n` bytes for the socket (written at
    /// once or queued; ticks and fragments included).
    pub(crate) fn frame_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        self.frames_out.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> TrafficCounts {
        TrafficCounts {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
        }
    }
}

/// One connection's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Bytes read from the peer since the connection came up.
    pub bytes_in: u64,
    /// Messages decoded from the peer.
    pub messages_in: u64,
    /// Bytes handed to the socket for the peer (written or queued).
    pub bytes_out: u64,
    /// Frames handed to the socket (messages, fragments and ticks).
    pub frames_out: u64,
}

/// A connected peer, as the metrics endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTraffic {
    /// The peer's node name.
    pub node: String,
    /// Hidden (not published: not in the peer's `nodes()`), as a Rust
    /// client or `erl -hidden`.
    pub hidden: bool,
    /// Bytes queued for the peer, not yet written.
    pub queued_bytes: u64,
    /// The counters since the connection came up.
    pub counts: TrafficCounts,
}

/// The node's peer table at one moment: connected peers (with their
/// counters) and how many connections are still being set up (these have
/// no label: their names are not authenticated yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerTable {
    /// Connections up, one per peer, sorted by node name.
    pub up: Vec<PeerTraffic>,
    /// Handshakes under way (either side).
    pub connecting: usize,
}

impl super::peers::Peers {
    /// The table for the metrics endpoint.
    pub(crate) fn traffic(&self) -> PeerTable {
        let mut table = PeerTable::default();
        for (name, peer) in self.lock().iter() {
            match peer {
                super::peers::Peer::Up(h) => table.up.push(PeerTraffic {
                    node: name.name.clone(),
                    hidden: !h.published,
                    queued_bytes: h.outbox.queued() as u64,
                    counts: h.traffic.snapshot(),
                }),
                super::peers::Peer::Connecting { .. } => table.connecting += 1,
            }
        }
        table.up.sort_by(|a, b| a.node.cmp(&b.node));
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_each_side_reports() {
        let t = Traffic::default();
        t.read(100);
        t.read(20);
        t.message_in();
        t.frame_out(7);
        t.frame_out(3);
        assert_eq!(
            t.snapshot(),
            TrafficCounts {
                bytes_in: 120,
                messages_in: 1,
                bytes_out: 10,
                frames_out: 2,
            }
        );
    }
}
