//! The hosts this node knows, by kind, and the order in which a start
//! tries them.

use crate::services::protocol::HostKind;
use crate::term::Pid;
use std::collections::VecDeque;

/// Where a start should (not) go.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Placement {
    /// Try this host first (a caller's `host` option, if known).
    pub first: Option<Pid>,
    /// Then hosts on this node (the node of an owner that exited).
    pub prefer_node: Option<String>,
    /// Never hosts on this node (the node of an owner that was lost: it
    /// may still run there, cut off).
    pub avoid_node: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Hosts {
    /// In announcement order (a handful per cluster: a list is enough).
    known: Vec<(Pid, HostKind)>,
    /// Rotates the order among equals, so starts spread over the hosts.
    turn: usize,
}

impl Hosts {
    /// `false` when `pid` was known already (then it is not monitored again).
    pub(crate) fn add(&mut self, pid: Pid, kind: HostKind) -> bool {
        if self.known.iter().any(|(p, _)| *p == pid) {
            return false;
        }
        self.known.push((pid, kind));
        true
    }

    pub(crate) fn remove(&mut self, pid: &Pid) -> bool {
        let before = self.known.len();
        self.known.retain(|(p, _)| p != pid);
        self.known.len() != before
    }

    pub(crate) fn len(&self) -> usize {
        self.known.len()
    }

    /// The hosts of `kind` to try, in order: `first`, then those on
    /// `prefer_node`, then the rest (rotated), none on `avoid_node`.
    pub(crate) fn order(&mut self, kind: HostKind, placement: &Placement) -> VecDeque<Pid> {
        let avoid = |p: &Pid| placement.avoid_node.as_deref() == Some(p.node.name.as_str());
        let mut of_kind: Vec<Pid> = self
            .known
            .iter()
            .filter(|(p, k)| *k == kind && !avoid(p))
            .map(|(p, _)| p.clone())
            .collect();
        if !of_kind.is_empty() {
            let n = of_kind.len();
            of_kind.rotate_left(self.turn % n);
            self.turn = self.turn.wrapping_add(1);
        }
        let on_preferred = |p: &Pid| placement.prefer_node.as_deref() == Some(p.node.name.as_str());
        let mut order: VecDeque<Pid> = VecDeque::new();
        if let Some(first) = placement.first.as_ref().filter(|p| of_kind.contains(p)) {
            order.push_back(first.clone());
        }
        for p in of_kind.iter().filter(|p| on_preferred(p)) {
            if !order.contains(p) {
                order.push_back(p.clone());
            }
        }
        for p in of_kind {
            if !order.contains(&p) {
                order.push_back(p);
            }
        }
        order
    }
}
