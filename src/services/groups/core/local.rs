//! The hub as the authority for its own node's Rust processes, and its
//! links to the peer hubs it pushes them to.

use super::{Action, Dest, HubCore, JoinRefused, Peer, Watch};
use crate::services::groups::table::ScopeTable;
use crate::services::groups::wire::{Group, GroupMsg, Op};
use crate::term::Pid;
use tokio::time::Instant;

impl HubCore {
    /// Peers due for a new try: monitor their hub and send our members.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.retry_at.is_some_and(|t| t <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for node in due {
            let id = self.watch(Watch::Peer(node.clone()), Dest::Hub(node.clone()));
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.monitor = Some(id);
                peer.retry_at = None;
            }
            let hello = GroupMsg::Peer {
                hub: self.me.clone(),
            };
            self.outbox
                .push_back(Action::Send(Dest::Hub(node.clone()), hello));
            let scopes: Vec<String> = self.own.scopes().map(|(s, _)| s.clone()).collect();
            for scope in scopes {
                let sync = self.own_sync(&scope);
                self.outbox
                    .push_back(Action::Send(Dest::Hub(node.clone()), sync));
            }
        }
    }

    pub(super) fn own_sync(&self, scope: &str) -> GroupMsg {
        GroupMsg::Sync {
            scope: scope.to_owned(),
            from: self.me.clone(),
            seq: self.own_seq.get(scope).copied().unwrap_or(0),
            groups: self
                .own
                .scope(scope)
                .map(ScopeTable::snapshot)
                .unwrap_or_default(),
        }
    }

    /// A hub announced itself: push our members to it too (at once if it
    /// is new or we were waiting to try it again).
    pub(super) fn on_peer(&mut self, hub: &Pid, now: Instant) {
        let node = hub.node.name.clone();
        if node == self.node {
            return;
        }
        if !self.connected.contains(&node) {
            tracing::warn!(peer = ?hub, "eq_groups: a peer on a node not connected, ignored");
            return;
        }
        let full = self.peers.len() >= self.limits.peers;
        match self.peers.get_mut(&node) {
            Some(peer) if peer.monitor.is_none() => {
                peer.retry_at = Some(now);
                peer.failures = 0;
            }
            Some(_) => {}
            None if full => {
                tracing::warn!(%node, "eq_groups: too many peer hubs, announcement ignored");
            }
            None => {
                let peer = Peer {
                    monitor: None,
                    retry_at: Some(now),
                    configured: false,
                    failures: 0,
                };
                self.peers.insert(node, peer);
            }
        }
    }

    /// Rust processes of this node join `group` of `scope` (each once more).
    pub(crate) fn local_join(
        &mut self,
        scope: &str,
        group: Group,
        pids: &[Pid],
    ) -> Result<(), JoinRefused> {
        if let Some(p) = pids.iter().find(|p| p.node.name != self.node) {
            return Err(JoinRefused::NotLocal(p.clone()));
        }
        if pids.is_empty() {
            return Ok(());
        }
        let new_group = usize::from(self.view.members(scope, &group.key).is_empty());
        if let Some(bound) = self.over(scope, new_group, pids.len()) {
            return Err(JoinRefused::Full(bound));
        }
        for pid in pids {
            if !self.locals.contains_key(pid) {
                let id = self.watch(Watch::Local(pid.clone()), Dest::Pid(pid.clone()));
                self.locals.insert(pid.clone(), (id, Vec::new()));
            }
            if let Some((_, joins)) = self.locals.get_mut(pid) {
                joins.push((scope.to_owned(), group.clone()));
            }
        }
        self.own.join(scope, &group, pids);
        self.view_join(scope, &group, pids);
        self.push_own(Op::Join, scope, &group, pids.to_vec());
        Ok(())
    }

    /// Rust processes leave `group` (one join each): `true` when any was
    /// a member (`ok`), `false` for `not_joined`.
    pub(crate) fn local_leave(&mut self, scope: &str, group: &Group, pids: &[Pid]) -> bool {
        let mut any = false;
        for pid in pids {
            let Some((id, joins)) = self.locals.get_mut(pid) else {
                continue;
            };
            let Some(i) = joins.iter().position(|(s, g)| s == scope && g == group) else {
                continue;
            };
            joins.remove(i);
            any = true;
            if joins.is_empty() {
                let id = *id;
                self.locals.remove(pid);
                self.unwatch(id);
            }
            self.own_leave(scope, group, std::slice::from_ref(pid));
        }
        any
    }

    pub(super) fn own_leave(&mut self, scope: &str, group: &Group, pids: &[Pid]) {
        let removed = self.own.leave(scope, &group.key, pids);
        if removed.is_empty() {
            return;
        }
        self.view_leave(scope, group, &removed);
        self.push_own(Op::Leave, scope, group, removed);
    }

    fn push_own(&mut self, op: Op, scope: &str, group: &Group, pids: Vec<Pid>) {
        let seq = self.own_seq.entry(scope.to_owned()).or_insert(0);
        *seq += 1;
        let seq = *seq;
        let up: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.monitor.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        for node in up {
            let msg = GroupMsg::Delta {
                op,
                scope: scope.to_owned(),
                from: self.me.clone(),
                seq,
                group: group.clone(),
                pids: pids.clone(),
            };
            self.outbox.push_back(Action::Send(Dest::Hub(node), msg));
        }
    }
}
