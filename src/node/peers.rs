//! The table of peer nodes: connections being set up (with the frames
//! queued for them) and connections that are up.

use super::dispatch::refusals::{Refusals, Verdict};
use super::outbox::Outbox;
use crate::dist::frame::OutFrame;
use crate::term::Atom;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::watch;

/// Past this many peers with refusals on record, the records of peers no
/// longer in the table are dropped (so names that come and go cannot grow
/// the map).
const REFUSALS_PRUNE_AT: usize = 64;

/// The sending side of a live connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    /// The attempt that set this connection up; teardown only removes the
    /// entry if it still belongs to the same attempt.
    pub id: u64,
    pub outbox: Arc<Outbox>,
    pub close: watch::Sender<bool>,
    /// The peer is a published (not hidden) node: it is in `nodes()`.
    pub published: bool,
    /// Bytes and messages both ways, for the metrics endpoint.
    pub traffic: Arc<super::traffic::Traffic>,
}

#[derive(Debug)]
pub(crate) enum Peer {
    /// A handshake is under way (ours or the peer's); frames wait here.
    Connecting {
        attempt: u64,
        queue: Vec<OutFrame>,
    },
    Up(ConnHandle),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Absent,
    Connecting,
    Up,
}

#[derive(Debug, Default)]
pub(crate) struct Peers {
    map: Mutex<HashMap<Atom, Peer>>,
    next_attempt: AtomicU64,
    /// What each peer sent that we refused, for rate-limited logging and
    /// for dropping a peer that keeps at it.
    refusals: Mutex<HashMap<Atom, Refusals>>,
}

impl Peers {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<Atom, Peer>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_attempt(&self) -> u64 {
        self.next_attempt.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn state(&self, node: &Atom) -> State {
        match self.lock().get(node) {
            None => State::Absent,
            Some(Peer::Connecting { .. }) => State::Connecting,
            Some(Peer::Up(_)) => State::Up,
        }
    }

    /// Whether `node`'s entry is still the pending attempt `attempt`.
    pub(crate) fn is_attempt(&self, node: &Atom, attempt: u64) -> bool {
        matches!(self.lock().get(node), Some(Peer::Connecting { attempt: a, .. }) if *a == attempt)
    }

    pub(crate) fn connected(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, p)| matches!(p, Peer::Up(_)))
            .map(|(n, _)| n.name.clone())
            .collect()
    }

    /// Connected nodes with whether each is published (not hidden).
    pub(crate) fn connected_kinds(&self) -> Vec<(String, bool)> {
        self.lock()
            .iter()
            .filter_map(|(n, p)| match p {
                Peer::Up(h) => Some((n.name.clone(), h.published)),
                _ => None,
            })
            .collect()
    }

    /// `peer` sent something we refused at `now`: whether to log it, keep
    /// quiet, or drop the connection (its record is then forgotten, so a
    /// new connection starts afresh).
    pub(crate) fn refuse(&self, peer: &Atom, now: Instant) -> Verdict {
        let mut map = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(peer) && map.len() >= REFUSALS_PRUNE_AT {
            // Lock order: refusals, then the table (never the reverse).
            let table = self.lock();
            map.retain(|name, _| table.contains_key(name));
        }
        let verdict = map
            .entry(peer.clone())
            .or_insert_with(|| Refusals::new(now))
            .refuse(now);
        if verdict == Verdict::Drop {
            map.remove(peer);
        }
        verdict
    }

    pub(crate) fn all_names(&self) -> Vec<Atom> {
        self.lock().keys().cloned().collect()
    }

    /// Peers with frames not yet written: queued for a handshake under
    /// way, or in a live connection's outbox (a closed one counts as
    /// written: its bytes can no longer go anywhere).
    pub(crate) fn unflushed(&self) -> usize {
        self.lock()
            .values()
            .filter(|peer| match peer {
                Peer::Connecting { queue, .. } => !queue.is_empty(),
                Peer::Up(conn) => conn.outbox.queued() > 0 && !conn.outbox.is_closed(),
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_waiting_for_a_handshake_are_unflushed() {
        let peers = Peers::default();
        assert_eq!(peers.unflushed(), 0);
        let mut frame = OutFrame::begin();
        frame.end_control();
        peers.lock().insert(
            Atom::from("a@h"),
            Peer::Connecting {
                attempt: 1,
                queue: vec![frame],
            },
        );
        peers.lock().insert(
            Atom::from("b@h"),
            Peer::Connecting {
                attempt: 2,
                queue: Vec::new(),
            },
        );
        assert_eq!(peers.unflushed(), 1);
    }
}
