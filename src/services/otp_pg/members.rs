//! Member lists as the scope keeps them: a group's term and pids, the
//! canonical key of a group term (bounded), and a peer's `sync` cut to the
//! per-peer bounds.

use super::core::{MAX_GROUP_BYTES, MAX_PEER_GROUPS, MAX_PEER_MEMBERS};
use crate::term::{Canon, Pid, Term};
use std::collections::HashMap;

/// A group's term (as first seen) and its members, repeats kept.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) term: Term,
    pub(crate) pids: Vec<Pid>,
}

/// The key of a group term; `None` when over [`MAX_GROUP_BYTES`] or too deep.
pub(crate) fn canon_of(group: &Term) -> Option<Canon> {
    Canon::of(group)
        .ok()
        .filter(|c| c.as_bytes().len() <= MAX_GROUP_BYTES)
}

/// Drops one occurrence of `pid`; true when it was there.
pub(crate) fn remove_one(pids: &mut Vec<Pid>, pid: &Pid) -> bool {
    match pids.iter().position(|p| p == pid) {
        Some(i) => {
            pids.swap_remove(i);
            true
        }
        None => false,
    }
}

/// A peer's sync as we keep it: entries naming pids of other nodes or
/// group terms too large dropped, and the whole cut to the per-peer bounds.
/// Returns the groups, their membership count and how many entries were
/// dropped. Repeated groups: the last wins (`maps:from_list/1`).
pub(crate) fn bounded_groups(
    peer: &Pid,
    groups: Vec<(Term, Vec<Pid>)>,
) -> (HashMap<Canon, Group>, usize, usize) {
    let mut kept: HashMap<Canon, Group> = HashMap::new();
    let mut dropped = 0;
    for (term, pids) in groups {
        let canon = canon_of(&term);
        match canon {
            Some(c) if !pids.is_empty() && pids.iter().all(|p| p.node == peer.node) => {
                if kept.len() >= MAX_PEER_GROUPS && !kept.contains_key(&c) {
                    dropped += 1;
                    continue;
                }
                kept.insert(c, Group { term, pids });
            }
            _ if pids.is_empty() => {}
            _ => dropped += 1,
        }
    }
    let mut members = 0;
    kept.retain(|_, g| {
        members += g.pids.len();
        if members > MAX_PEER_MEMBERS {
            members -= g.pids.len();
            dropped += 1;
            false
        } else {
            true
        }
    });
    (kept, members, dropped)
}
