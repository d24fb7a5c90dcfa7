//! Members of groups, as `pg` keeps them: per scope, per group, a list of
//! pids in which one pid appears once per join (newest first), a leave
//! removing one occurrence. Used for the merged view of a hub, for each
//! authority's stream, and for the Rust readers' local table.

use super::wire::Group;
use crate::term::{Canon, Pid, Term};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub group: Term,
    pub pids: Vec<Pid>,
}

/// Groups with pids: a sync's or a snapshot's content, or changes.
pub(crate) type GroupPids = Vec<(Group, Vec<Pid>)>;

/// The groups of one scope.
#[derive(Debug, Default, Clone)]
pub(crate) struct ScopeTable {
    groups: HashMap<Canon, Entry>,
    members: usize,
}

impl ScopeTable {
    /// Adds `pids` (each once more) to `group`, in front as `pg` does.
    pub(crate) fn join(&mut self, group: &Group, pids: &[Pid]) {
        if pids.is_empty() {
            return;
        }
        let entry = self
            .groups
            .entry(group.key.clone())
            .or_insert_with(|| Entry {
                group: group.term.clone(),
                pids: Vec::new(),
            });
        let mut joined = pids.to_vec();
        joined.append(&mut entry.pids);
        entry.pids = joined;
        self.members += pids.len();
    }

    /// Removes one occurrence of each of `pids` from `group` (`All -- Pids`);
    /// returns the pids that were there. An emptied group goes.
    pub(crate) fn leave(&mut self, key: &Canon, pids: &[Pid]) -> Vec<Pid> {
        let Some(entry) = self.groups.get_mut(key) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for pid in pids {
            if let Some(i) = entry.pids.iter().position(|p| p == pid) {
                entry.pids.remove(i);
                removed.push(pid.clone());
            }
        }
        self.members -= removed.len();
        if entry.pids.is_empty() {
            self.groups.remove(key);
        }
        removed
    }

    pub(crate) fn members_of(&self, key: &Canon) -> &[Pid] {
        self.groups.get(key).map_or(&[], |e| e.pids.as_slice())
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Canon, &Entry)> {
        self.groups.iter()
    }

    /// Every group with its members, for a sync or a snapshot.
    pub(crate) fn snapshot(&self) -> Vec<(Group, Vec<Pid>)> {
        self.groups
            .iter()
            .map(|(key, e)| {
                let group = Group {
                    term: e.group.clone(),
                    key: key.clone(),
                };
                (group, e.pids.clone())
            })
            .collect()
    }

    pub(crate) fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub(crate) fn member_count(&self) -> usize {
        self.members
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The changes that turn `self` into `next`: leaves then joins, each
    /// `(group, pids)`, as multisets (a pid joined twice in `next` and once
    /// here is one join).
    pub(crate) fn diff(&self, next: &ScopeTable) -> (GroupPids, GroupPids) {
        let mut leaves = Vec::new();
        let mut joins = Vec::new();
        for (key, old) in &self.groups {
            let new = next.groups.get(key).map_or(&[][..], |e| e.pids.as_slice());
            let gone = minus(&old.pids, new);
            if !gone.is_empty() {
                leaves.push((group_of(key, old), gone));
            }
        }
        for (key, new) in &next.groups {
            let old = self.groups.get(key).map_or(&[][..], |e| e.pids.as_slice());
            let came = minus(&new.pids, old);
            if !came.is_empty() {
                joins.push((group_of(key, new), came));
            }
        }
        (leaves, joins)
    }

    /// A table holding `groups`.
    pub(crate) fn from_groups(groups: &[(Group, Vec<Pid>)]) -> ScopeTable {
        let mut table = ScopeTable::default();
        for (group, pids) in groups {
            table.join(group, pids);
        }
        table
    }
}

fn group_of(key: &Canon, entry: &Entry) -> Group {
    Group {
        term: entry.group.clone(),
        key: key.clone(),
    }
}

/// `a -- b` on multisets, keeping `a`'s order.
fn minus(a: &[Pid], b: &[Pid]) -> Vec<Pid> {
    let mut left = b.to_vec();
    let mut out = Vec::new();
    for pid in a {
        match left.iter().position(|p| p == pid) {
            Some(i) => {
                left.swap_remove(i);
            }
            None => out.push(pid.clone()),
        }
    }
    out
}

/// Every scope.
#[derive(Debug, Default, Clone)]
pub(crate) struct Table {
    scopes: HashMap<String, ScopeTable>,
}

impl Table {
    pub(crate) fn scope(&self, scope: &str) -> Option<&ScopeTable> {
        self.scopes.get(scope)
    }

    pub(crate) fn scope_mut(&mut self, scope: &str) -> &mut ScopeTable {
        self.scopes.entry(scope.to_owned()).or_default()
    }

    pub(crate) fn scopes(&self) -> impl Iterator<Item = (&String, &ScopeTable)> {
        self.scopes.iter()
    }

    pub(crate) fn join(&mut self, scope: &str, group: &Group, pids: &[Pid]) {
        self.scope_mut(scope).join(group, pids);
    }

    pub(crate) fn leave(&mut self, scope: &str, key: &Canon, pids: &[Pid]) -> Vec<Pid> {
        let Some(table) = self.scopes.get_mut(scope) else {
            return Vec::new();
        };
        let removed = table.leave(key, pids);
        if table.is_empty() {
            self.scopes.remove(scope);
        }
        removed
    }

    pub(crate) fn members(&self, scope: &str, key: &Canon) -> &[Pid] {
        self.scopes.get(scope).map_or(&[], |t| t.members_of(key))
    }

    pub(crate) fn member_count(&self) -> usize {
        self.scopes.values().map(ScopeTable::member_count).sum()
    }

    pub(crate) fn group_count(&self) -> usize {
        self.scopes.values().map(ScopeTable::group_count).sum()
    }
}
