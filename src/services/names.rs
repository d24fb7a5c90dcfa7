//! The names this node's peers serve, as they reported them: with the names
//! held in this node's own slots, what `whereis_name` answers and what
//! subscribers are sent. Plain data; the server feeds it.
//!
//! Kept compact (every serving node holds every peer's names): names as
//! packed terms, pids and serving nodes with their node names interned.

use crate::quorum::store::Canon;
use crate::term::{atom, tuple, Packed, Pid, Term};
use std::collections::HashMap;

/// Who registered a name: this node, or a peer serving node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Local,
    Peer(String),
}

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
    /// `u32::MAX`: this node; otherwise the peer's node index.
    origin: u32,
}

const LOCAL: u32 = u32::MAX;

/// Name -> pid, with the serving node each came from.
#[derive(Debug, Default)]
pub struct NameView {
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

    fn origin_index(&mut self, origin: &Origin) -> u32 {
        match origin {
            Origin::Local => LOCAL,
            Origin::Peer(node) => self.intern(node),
        }
    }

    fn pid(&self, p: &CompactPid) -> Pid {
        Pid::new(
            self.nodes[p.node as usize].as_str(),
            p.id,
            p.serial,
            p.creation,
        )
    }

    pub fn whereis(&self, name: &Term) -> Option<Pid> {
        let canon = Canon::of(name).ok()?;
        self.names.get(&canon).map(|k| self.pid(&k.pid))
    }

    /// Which serving node registered `name`, if known.
    pub fn origin(&self, name: &Term) -> Option<Origin> {
        let canon = Canon::of(name).ok()?;
        self.names.get(&canon).map(|k| match k.origin {
            LOCAL => Origin::Local,
            i => Origin::Peer(self.nodes[i as usize].clone()),
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Records a change; returns whether anything changed. A removal only
    /// removes what the same origin put there.
    pub fn apply(&mut self, name: &Term, pid: Option<&Pid>, origin: &Origin) -> bool {
        let Ok(mut canon) = Canon::of(name) else {
            return false;
        };
        let origin = self.origin_index(origin);
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
                    origin,
                };
                self.names.insert(canon, known);
                true
            }
            None => {
                if self.names.get(&canon).is_some_and(|k| k.origin == origin) {
                    self.names.remove(&canon);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Drops every name `origin` put there; returns the names dropped.
    pub fn forget_origin(&mut self, origin: &Origin) -> Vec<Term> {
        let origin = self.origin_index(origin);
        let mut gone = Vec::new();
        self.names.retain(|_, k| {
            let keep = k.origin != origin;
            if !keep {
                gone.push(k.name.term());
            }
            keep
        });
        gone
    }

    /// `{Name, Pid}` for every name known.
    pub fn snapshot(&self) -> Vec<Term> {
        self.names
            .values()
            .map(|k| tuple(vec![k.name.term(), Term::from(self.pid(&k.pid))]))
            .collect()
    }
}

/// `{Name, Pid}` or `{Name, undefined}`, the element of a change list.
pub fn change(name: Term, pid: Option<Pid>) -> Term {
    tuple(vec![name, pid.map_or(atom("undefined"), Term::from)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::int;

    #[test]
    fn names_come_back_as_they_went_in() {
        let mut v = NameView::default();
        let peer = Origin::Peer("m2@h".into());
        let pid = Pid::new("beam@h", 7, 1, 42);
        let name = tuple(vec![atom("n"), int(1)]);
        assert!(v.apply(&name, Some(&pid), &peer));
        assert_eq!(v.whereis(&name), Some(pid.clone()));
        assert_eq!(v.origin(&name), Some(peer.clone()));
        assert_eq!(
            v.snapshot(),
            vec![tuple(vec![name.clone(), Term::from(pid)])]
        );
        // Only the origin that put it there removes it.
        assert!(!v.apply(&name, None, &Origin::Peer("m3@h".into())));
        assert_eq!(v.forget_origin(&peer), vec![name.clone()]);
        assert!(v.is_empty());
    }
}
