//! Sending to a peer: frames queued on its connection (dialing first when
//! needed, as Erlang does for a message to a node not yet connected), the
//! outgoing limits applied on the way (a busy connection slows a sender
//! that can wait; past the hard limit the connection is dropped), and the
//! counter of bytes not yet written.

use super::connection::{connection_down, dial};
use super::outbox::{Outbox, Pushed};
use super::peers::Peer;
use super::NodeInner;
use crate::dist::frame::OutFrame;
use crate::term::Atom;
use std::sync::Arc;

/// Queues one encoded frame for `peer`, dialing first when needed. As in
/// Erlang, a message to a node that cannot be reached is dropped. `Some`
/// when the frame found the connection past its busy limit: a sender that can wait
/// awaits [`Busy::wait`].
pub(crate) fn send_frame(node: &Arc<NodeInner>, peer: &Atom, frame: OutFrame) -> Option<Busy> {
    let attempt = {
        let mut peers = node.peers.lock();
        match peers.get_mut(peer) {
            Some(Peer::Up(h)) => {
                // Write outside the table's lock: other peers' senders go on.
                let (outbox, id) = (h.outbox.clone(), h.id);
                drop(peers);
                return pushed(node, peer, id, outbox, frame);
            }
            Some(Peer::Connecting { queue, .. }) => {
                queue.push(frame);
                return None;
            }
            None => {
                let attempt = node.peers.next_attempt();
                peers.insert(
                    peer.clone(),
                    Peer::Connecting {
                        attempt,
                        queue: vec![frame],
                    },
                );
                attempt
            }
        }
    };
    tokio::spawn(dial(node.clone(), peer.clone(), attempt));
    None
}

/// Queues `frame` for `peer` only if its connection is up; else drops it
/// (never dials: see `Remote::needs_existing_connection`).
pub(crate) fn send_frame_if_up(node: &Arc<NodeInner>, peer: &Atom, frame: OutFrame) {
    let (outbox, id) = match node.peers.lock().get(peer) {
        Some(Peer::Up(h)) => (h.outbox.clone(), h.id),
        _ => return,
    };
    let _ = pushed(node, peer, id, outbox, frame);
}

/// Pushes `frame` to connection `id`'s outbox; past the hard limit, drops
/// the connection with one line (the outbox refuses anything after).
fn pushed(
    node: &Arc<NodeInner>,
    peer: &Atom,
    id: u64,
    outbox: Arc<Outbox>,
    frame: OutFrame,
) -> Option<Busy> {
    match outbox.push_frame(frame) {
        Pushed::Sent | Pushed::Closed => None,
        Pushed::Busy => Some(Busy(Arc::downgrade(&outbox))),
        Pushed::Overflow { queued } => {
            tracing::warn!(
                peer = %peer.name,
                queued,
                max_queued = node.config.max_queued_bytes,
                "peer does not read what we send: outgoing queue over its limit; connection dropped"
            );
            connection_down(node, peer, id, "outgoing queue over its limit");
            None
        }
    }
}

/// A connection past its busy limit, for a sender that can wait. Weak: a
/// process that never waits must not keep a dropped connection's socket.
#[derive(Debug)]
pub(crate) struct Busy(std::sync::Weak<Outbox>);

impl Busy {
    /// Waits until the connection's queue drains below its busy limit (or
    /// the connection closes), as the BEAM suspends a sender.
    pub(crate) async fn wait(&self) {
        if let Some(outbox) = self.0.upgrade() {
            outbox.until_not_busy().await;
        }
    }
}

impl NodeInner {
    /// [`NodeInner::send_remote`] for a sender that can wait: `Some` when
    /// the connection is past its busy limit (see [`Busy::wait`]).
    pub(crate) fn send_remote_paced(
        self: &Arc<Self>,
        node: &Atom,
        message: erl_dist::message::Message,
    ) -> Option<Busy> {
        match crate::dist::control::encode(message) {
            Ok(frame) => send_frame(self, node, frame),
            Err(e) => {
                tracing::warn!(peer = %node.name, error = %e, "cannot encode a message; dropped");
                None
            }
        }
    }
}

impl super::Node {
    /// Bytes queued for `node` and not yet written to its socket (large
    /// messages kept for fragments included); `None` when not connected.
    pub fn queued_bytes(&self, node: &str) -> Option<usize> {
        match self.inner.peers.lock().get(&Atom::from(node)) {
            Some(Peer::Up(h)) => Some(h.outbox.queued()),
            _ => None,
        }
    }
}
