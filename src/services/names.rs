//! The names this node's peers serve, as they reported them: with the names
//! held in this node's own slots, what `whereis_name` answers and what
//! subscribers are sent. Plain data; the server feeds it.
//!
//! Kept compact (every serving node holds every peer's names): names as
//! packed terms, pids and serving nodes with their node names interned.

use crate::term::Canon;
use crate::term::{Packed, Pid, Term};
use std::collections::HashMap;

/// A pid with its node name as an index into [`NameView::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CompactPid {
    node: u32,
    id: u32,
    serial: u32,
    creation: u32,
}

#[derive(Debug)]
struct Known {
    name: Packed,
    pid: CompactPid,
    /// The peer serving node that reported it (a node index).
    peer: u32,
}

/// Name -> pid, with the peer serving node each came from.
#[derive(Debug, Default)]
pub(crate) struct NameView {
    names: HashMap<Canon, Known>,
    nodes: Vec<String>,
    node_index: HashMap<String, u32>,
}

impl NameView {
    fn intern(&mut self, node: &str) -> u32 {
        if let Some(&i) = self.node_index.get(node) {
            return i;
        }
        let i = self.nodes.len() as u32;
        self.nodes.push(node.to_owned());
        self.node_index.insert(node.to_owned(), i);
        i
    }

    fn pid(&self, p: &CompactPid) -> Pid {
        Pid::new(
            self.nodes[p.node as usize].as_str(),
            p.id,
            p.serial,
            p.creation,
        )
    }

    pub(crate) fn whereis(&self, name: &Term) -> Option<Pid> {
        let canon = Canon::of(name).ok()?;
        self.names.get(&canon).map(|k| self.pid(&k.pid))
    }

    /// Which peer serving node registered `name`, if known.
    pub(crate) fn peer(&self, name: &Term) -> Option<&str> {
        let canon = Canon::of(name).ok()?;
        self.names
            .get(&canon)
            .map(|k| self.nodes[k.peer as usize].as_str())
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Records a change; returns whether anything changed. A removal only
    /// removes what the same peer put there.
    pub(crate) fn apply(&mut self, name: &Term, pid: Option<&Pid>, peer: &str) -> bool {
        let Ok(mut canon) = Canon::of(name) else {
            return false;
        };
        let peer = self.intern(peer);
        match pid {
            Some(pid) => {
                let pid = CompactPid {
                    node: self.intern(&pid.node.name),
                    id: pid.id,
                    serial: pid.serial,
                    creation: pid.creation,
                };
                canon.shrink_to_fit();
                let known = Known {
                    name: Packed::new(name),
                    pid,
                    peer,
                };
                self.names.insert(canon, known);
                true
            }
            None => {
                if self.names.get(&canon).is_some_and(|k| k.peer == peer) {
                    self.names.remove(&canon);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Drops every name `peer` put there; returns the names dropped.
    pub(crate) fn forget_peer(&mut self, peer: &str) -> Vec<Term> {
        let peer = self.intern(peer);
        let mut gone = Vec::new();
        self.names.retain(|_, k| {
            let keep = k.peer != peer;
            if !keep {
                gone.push(k.name.term());
            }
            keep
        });
        gone
    }

    /// Every name known, with its pid.
    pub(crate) fn snapshot(&self) -> Vec<(Term, Pid)> {
        self.names
            .values()
            .map(|k| (k.name.term(), self.pid(&k.pid)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, int, tuple};

    #[test]
    fn names_come_back_as_they_went_in() {
        let mut v = NameView::default();
        let peer = "m2@h";
        let pid = Pid::new("beam@h", 7, 1, 42);
        let name = tuple(vec![atom("n"), int(1)]);
        assert!(v.apply(&name, Some(&pid), peer));
        assert_eq!(v.whereis(&name), Some(pid.clone()));
        assert_eq!(v.peer(&name), Some(peer));
        assert_eq!(v.snapshot(), vec![(name.clone(), pid)]);
        // Only the peer that put it there removes it.
        assert!(!v.apply(&name, None, "m3@h"));
        assert_eq!(v.forget_peer(peer), vec![name.clone()]);
        assert!(v.is_empty());
    }
}
