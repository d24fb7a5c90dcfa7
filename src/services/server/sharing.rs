//! Sharing names: what peer serving nodes report is applied to the name
//! view, and changes (this node's own and its peers') go out to
//! subscribers in batches.

use super::{Dest, Server, Watched};
use crate::services::names::change;
use crate::term::{as_tuple, atom, list, list_elements, tuple, Term};

impl Server {
    pub(super) fn peer_snapshot(&mut self, peer: String, names: Option<Term>) {
        self.peers_asking.remove(&peer);
        match names {
            Some(names) => {
                if self.peers_up.contains(&peer) {
                    return;
                }
                let mut changes: Vec<Term> = self
                    .names
                    .forget_peer(&peer)
                    .into_iter()
                    .map(|n| change(n, None))
                    .collect();
                for pair in list_elements(&names).unwrap_or_default() {
                    if let Some([name, Term::Pid(pid)]) = as_tuple(&pair) {
                        self.names.apply(name, Some(pid), &peer);
                        changes.push(change(name.clone(), Some(pid.clone())));
                    }
                }
                self.peers_up.insert(peer.clone());
                self.watch(Dest::Peer(peer.clone()), Watched::Peer(peer));
                self.publish(changes, false);
            }
            // A lost peer's grace period is over (unless it came back).
            None if !self.peers_up.contains(&peer) => {
                let changes = self
                    .names
                    .forget_peer(&peer)
                    .into_iter()
                    .map(|n| change(n, None))
                    .collect();
                self.publish(changes, false);
            }
            None => {}
        }
    }

    pub(super) fn peer_changes(&mut self, from: &Term, changes: &Term) {
        let Some(peer) = crate::term::as_atom(from).map(str::to_owned) else {
            return;
        };
        if !self.config.peers.contains(&peer) || peer == self.process.node().name() {
            tracing::warn!(%peer, "erl_quorum: name changes from a node that is not a peer ignored");
            return;
        }
        let mut applied = Vec::new();
        for pair in list_elements(changes).unwrap_or_default() {
            let changed = match as_tuple(&pair) {
                // What this node holds itself, it knows better.
                Some([name, Term::Pid(_)]) if self.slots.whereis_name(name).is_some() => false,
                Some([name, Term::Pid(pid)]) => self.names.apply(name, Some(pid), &peer),
                Some([name, _undefined]) => {
                    let removed = self.names.apply(name, None, &peer);
                    removed && self.slots.whereis_name(name).is_none()
                }
                _ => false,
            };
            if changed {
                applied.push(pair.clone());
            }
        }
        self.publish(applied, false);
    }

    /// Queues name changes for subscribers, and for peers when they are
    /// ours; [`Server::flush_changes`] sends them.
    pub(super) fn publish(&mut self, changes: Vec<Term>, own: bool) {
        if own {
            self.unsent_to_peers.extend(changes.iter().cloned());
        }
        self.unsent.extend(changes);
        // Under a load that never lets the mailbox empty, still send.
        if self.unsent.len() >= 256 {
            self.flush_changes();
        }
    }

    pub(super) fn flush_changes(&mut self) {
        let me = atom(self.process.node().name());
        if !self.unsent.is_empty() {
            let batch = list(std::mem::take(&mut self.unsent));
            let message = tuple(vec![atom("rust_registry"), me.clone(), batch]);
            for pid in &self.subscribers {
                self.process.send(pid, message.clone());
            }
        }
        if !self.unsent_to_peers.is_empty() {
            let batch = list(std::mem::take(&mut self.unsent_to_peers));
            let message = tuple(vec![atom("rust_registry_peer"), me, batch]);
            for pid in &self.peer_subscribers {
                self.process.send(pid, message.clone());
            }
        }
    }
}
