//! Sharing names: what peer serving nodes report goes into the name view,
//! and changes (this node's own and its peers') go out to subscribers and
//! peers in batches.

use super::watches::{MonitorTarget, Watched};
use super::{Core, Output};
use crate::services::names::NameView;
use crate::services::protocol::{NameChange, NamesChanged, PeerMsg};
use crate::term::{Pid, Term};
use std::collections::{HashMap, HashSet};

/// A batch goes out at this many changes even when the mailbox never
/// empties.
const BATCH_MAX: usize = 256;

#[derive(Debug, Default)]
pub(super) struct Sharing {
    /// The names peers serve.
    pub names: NameView,
    subscribers: HashSet<Pid>,
    /// Peer servers following our names, with the protocol version each
    /// subscribed with (their batches go out in it).
    peer_subscribers: HashMap<Pid, u32>,
    /// Peers whose names we follow (subscribed and monitored).
    peers_up: HashSet<String>,
    /// Peers with a subscription job in flight.
    peers_asking: HashSet<String>,
    /// Changes not yet sent to subscribers / to peer subscribers.
    unsent: Vec<NameChange>,
    unsent_to_peers: Vec<NameChange>,
    /// The request being handled came forwarded by a peer, which answers
    /// its caller's next `whereis_name` from its view of our names: the
    /// changes it causes go out before its reply (see `Core::settle`).
    changes_first: bool,
}

impl Sharing {
    pub(super) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty() || !self.unsent_to_peers.is_empty()
    }

    pub(super) fn set_changes_first(&mut self) {
        self.changes_first = true;
    }

    pub(super) fn take_changes_first(&mut self) -> bool {
        std::mem::take(&mut self.changes_first)
    }

    /// `true` when `pid` is new (monitor it).
    pub(super) fn subscribe(&mut self, pid: Pid) -> bool {
        self.subscribers.insert(pid)
    }

    pub(super) fn subscribe_peer(&mut self, pid: Pid, version: u32) {
        self.peer_subscribers.insert(pid, version);
    }

    pub(super) fn subscriber_gone(&mut self, pid: &Pid) {
        self.subscribers.remove(pid);
    }

    pub(super) fn peer_subscriber_gone(&mut self, pid: &Pid) {
        self.peer_subscribers.remove(pid);
    }

    pub(super) fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// The peers subscribed to and not lost since, in name order.
    pub(super) fn live_peers(&self) -> Vec<String> {
        let mut peers: Vec<String> = self.peers_up.iter().cloned().collect();
        peers.sort();
        peers
    }

    pub(super) fn peer_down(&mut self, node: &str) {
        self.peers_up.remove(node);
    }

    /// The peers to subscribe to now (not followed, not being asked).
    pub(super) fn peers_to_ask(&mut self, peers: &[String], me: &str) -> Vec<String> {
        peers
            .iter()
            .filter(|p| *p != me && !self.peers_up.contains(*p))
            .filter(|p| self.peers_asking.insert((*p).clone()))
            .cloned()
            .collect()
    }

    /// The batches waiting, as messages to send.
    pub(super) fn flush(&mut self, node: &str) -> (Option<Output>, Option<Output>) {
        let mut to_subscribers = None;
        if self.subscribers.is_empty() {
            self.unsent.clear();
        }
        if self.peer_subscribers.is_empty() {
            self.unsent_to_peers.clear();
        }
        if !self.unsent.is_empty() {
            let batch = NamesChanged {
                node: node.to_owned(),
                changes: std::mem::take(&mut self.unsent),
            };
            let pids = self.subscribers.iter().cloned().collect();
            to_subscribers = Some(Output::Subscribers(pids, batch));
        }
        let mut to_peers = None;
        if !self.unsent_to_peers.is_empty() {
            let changes = std::mem::take(&mut self.unsent_to_peers);
            let mut messages: Vec<(Pid, PeerMsg)> = self
                .peer_subscribers
                .iter()
                .map(|(pid, &version)| {
                    let msg = PeerMsg::Changes {
                        from: node.to_owned(),
                        version,
                        changes: changes.clone(),
                    };
                    (pid.clone(), msg)
                })
                .collect();
            messages.sort_by(|(a, _), (b, _)| (&a.node.name, a.id).cmp(&(&b.node.name, b.id)));
            to_peers = Some(Output::Peers(messages));
        }
        (to_subscribers, to_peers)
    }
}

impl Core {
    /// A subscription to `peer` ended: its names (`None`: it could not be
    /// reached, or its grace period after it went is over).
    pub(super) fn peer_snapshot(&mut self, peer: String, names: Option<Vec<(Term, Pid)>>) {
        let sharing = &mut self.sharing;
        sharing.peers_asking.remove(&peer);
        if sharing.peers_up.contains(&peer) {
            return;
        }
        // A name this node holds (handed over by that peer) stays.
        let slots = &self.slots;
        let mut changes: Vec<NameChange> = sharing
            .names
            .forget_peer(&peer)
            .into_iter()
            .filter(|n| slots.whereis_name(n).is_none())
            .map(|n| NameChange::new(n, None))
            .collect();
        if let Some(names) = names {
            for (name, pid) in names {
                sharing.names.apply(&name, Some(&pid), &peer);
                changes.push(NameChange::new(name, Some(pid)));
            }
            sharing.peers_up.insert(peer.clone());
            let id = self.watches.watch(Watched::Peer(peer.clone()));
            let target = MonitorTarget::Service(peer);
            self.outputs.push_back(Output::Monitor(id, target));
        }
        self.publish(changes, false);
    }

    pub(super) fn peer_changes(&mut self, msg: PeerMsg) {
        let (from, changes) = match msg {
            PeerMsg::Changes { from, changes, .. } => (from, changes),
            PeerMsg::Handoff(msg) => return self.handoff_msg(msg),
        };
        if !self.config.peers.contains(&from) || from == self.me.node {
            tracing::warn!(peer = %from, "erl_quorum: name changes from a node that is not a peer ignored");
            return;
        }
        let mut applied = Vec::new();
        for change in changes {
            // What this node holds itself, it knows better.
            let ours = self.slots.whereis_name(&change.name).is_some();
            let names = &mut self.sharing.names;
            let changed = match &change.pid {
                Some(_) if ours => false,
                Some(pid) => names.apply(&change.name, Some(pid), &from),
                None => names.apply(&change.name, None, &from) && !ours,
            };
            if changed {
                applied.push(change);
            }
        }
        self.publish(applied, false);
    }

    /// Queues name changes for subscribers, and for peers when they are
    /// ours; [`Core::flush_changes`] sends them.
    pub(super) fn publish(&mut self, changes: Vec<NameChange>, own: bool) {
        if changes.is_empty() {
            return;
        }
        if own {
            self.sharing.unsent_to_peers.extend(changes.iter().cloned());
        }
        self.sharing.unsent.extend(changes);
        // Under a load that never lets the mailbox empty, still send.
        if self.sharing.unsent.len() >= BATCH_MAX {
            self.flush_changes();
        }
    }
}
