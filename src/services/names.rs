//! The names this node's peers serve, as they reported them: with the names
//! held in this node's own slots, what `whereis_name` answers and what
//! subscribers are sent. Plain data; the server feeds it.

use crate::quorum::store::Canon;
use crate::term::{atom, tuple, Pid, Term};
use std::collections::HashMap;

/// Who registered a name: this node, or a peer serving node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Local,
    Peer(String),
}

#[derive(Debug)]
struct Known {
    name: Term,
    pid: Pid,
    origin: Origin,
}

/// Name -> pid, with the serving node each came from.
#[derive(Debug, Default)]
pub struct NameView {
    names: HashMap<Canon, Known>,
}

impl NameView {
    pub fn whereis(&self, name: &Term) -> Option<&Pid> {
        let canon = Canon::of(name).ok()?;
        self.names.get(&canon).map(|k| &k.pid)
    }

    /// Which serving node registered `name`, if known.
    pub fn origin(&self, name: &Term) -> Option<&Origin> {
        let canon = Canon::of(name).ok()?;
        self.names.get(&canon).map(|k| &k.origin)
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
        let Ok(canon) = Canon::of(name) else {
            return false;
        };
        match pid {
            Some(pid) => {
                let known = Known {
                    name: name.clone(),
                    pid: pid.clone(),
                    origin: origin.clone(),
                };
                self.names.insert(canon, known);
                true
            }
            None => {
                if self.names.get(&canon).is_some_and(|k| &k.origin == origin) {
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
        let mut gone = Vec::new();
        self.names.retain(|_, k| {
            let keep = &k.origin != origin;
            if !keep {
                gone.push(k.name.clone());
            }
            keep
        });
        gone
    }

    /// `{Name, Pid}` for every name known.
    pub fn snapshot(&self) -> Vec<Term> {
        self.names
            .values()
            .map(|k| tuple(vec![k.name.clone(), Term::from(k.pid.clone())]))
            .collect()
    }
}

/// `{Name, Pid}` or `{Name, undefined}`, the element of a change list.
pub fn change(name: Term, pid: Option<Pid>) -> Term {
    tuple(vec![name, pid.map_or(atom("undefined"), Term::from)])
}
