//! The hub's state, sans-IO: messages, monitor downs and `now` in; an
//! outbox of [`Action`]s out. See the module docs of `groups` for the
//! design.
//!
//! Three sources feed the merged view of a hub:
//! - the streams of authorities (a BEAM node's scope server per scope, and
//!   every other hub for its own Rust members), each `sync` then numbered
//!   deltas; a gap or an unknown stream is answered `resync`;
//! - this node's own Rust members (`local_join` / `local_leave`), which it
//!   is the authority for and pushes to the other hubs;
//! - monitor downs: an authority's down (its exit or `noconnection`)
//!   removes every member it reported at once; a local member's down
//!   removes it from every group.
//!
//! Every change of the merged view goes, numbered per scope, to the
//! scope's subscribers and, as [`Action::Changed`], to the local table.

mod bounds;
mod local;

use bounds::{backoff, own_pids};

use super::table::{ScopeTable, Table};
use super::wire::{Group, GroupMsg, Op};
use crate::term::Pid;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) type MonitorId = u64;

/// How long a hub waits before trying a peer hub again (doubled after
/// each failed try, up to [`RETRY_MAX`]).
pub(crate) const RETRY: Duration = Duration::from_millis(500);
/// The longest wait between two tries of a configured peer hub.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(5);

/// Where a message goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Dest {
    Pid(Pid),
    /// The hub registered as `eq_groups` on that node.
    Hub(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Send(Dest, GroupMsg),
    Monitor(MonitorId, Dest),
    Demonitor(MonitorId),
    /// The merged view changed (for the local table and the Rust monitors).
    Changed {
        scope: String,
        op: Op,
        group: Group,
        pids: Vec<Pid>,
    },
}

/// The bounds of one hub. Past them requests are refused, never queued.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub scopes: usize,
    pub groups: usize,
    pub members: usize,
    pub authorities: usize,
    pub subscribers: usize,
    /// Peer hubs (configured ones and those that announced themselves).
    pub peers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            scopes: 1_000,
            groups: 100_000,
            members: 1_000_000,
            authorities: 10_000,
            subscribers: 10_000,
            peers: 256,
        }
    }
}

/// Why a join of Rust processes was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// A pid of another node: join only processes of the hub's node.
    #[error("not a process of this node: {0:?}")]
    NotLocal(Pid),
    /// A bound of the hub (scopes, groups, members) would be passed.
    #[error("the groups hub is full: too many {0}")]
    Full(&'static str),
}

#[derive(Debug, Clone)]
enum Watch {
    Authority(Pid),
    Subscriber(Pid),
    Local(Pid),
    Peer(String),
}

struct Stream {
    seq: u64,
    members: ScopeTable,
    /// False until a sync arrives (a resync was asked).
    synced: bool,
}

struct Peer {
    monitor: Option<MonitorId>,
    retry_at: Option<Instant>,
    /// Configured peers are tried forever (with backoff); announced ones
    /// are forgotten when their hub goes down (they announce again).
    configured: bool,
    /// Downs since the last announcement, for the backoff.
    failures: u32,
}

/// Counters, for `sys:get_state` and tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Status {
    pub groups: usize,
    pub members: usize,
    pub streams: usize,
    pub subscribers: usize,
    pub peers_up: usize,
    pub own_members: usize,
}

pub(crate) struct HubCore {
    me: Pid,
    node: String,
    limits: Limits,
    view: Table,
    streams: HashMap<(Pid, String), Stream>,
    authorities: HashMap<Pid, MonitorId>,
    own: Table,
    own_seq: HashMap<String, u64>,
    /// Local members: their monitor and every (scope, group) joined, once
    /// per join.
    locals: HashMap<Pid, (MonitorId, Vec<(String, Group)>)>,
    /// Per scope, each subscriber and the number of the last update sent
    /// to it. Numbered per subscriber: a change of members of the
    /// subscriber's own node only is not sent to it (its scope server
    /// knew first), which saves one message per local join or leave.
    subscribers: HashMap<String, HashMap<Pid, u64>>,
    subscriber_monitors: HashMap<Pid, MonitorId>,
    peers: HashMap<String, Peer>,
    /// The nodes connected when the last `peer` message came: a peer is
    /// accepted only from one of them (a crafted pid must not make us
    /// dial any node name).
    connected: HashSet<String>,
    watches: HashMap<MonitorId, Watch>,
    next_id: MonitorId,
    outbox: VecDeque<Action>,
}

impl HubCore {
    /// The hub `me` on `node`, pushing its members to the hubs of `peers`
    /// (this node's name is skipped), first at `now`.
    pub(crate) fn new(
        me: Pid,
        node: &str,
        peers: &[String],
        limits: Limits,
        now: Instant,
    ) -> HubCore {
        let peers = peers
            .iter()
            .filter(|p| p.as_str() != node)
            .map(|p| {
                let peer = Peer {
                    monitor: None,
                    retry_at: Some(now),
                    configured: true,
                    failures: 0,
                };
                (p.clone(), peer)
            })
            .collect();
        HubCore {
            me,
            node: node.to_owned(),
            limits,
            view: Table::default(),
            streams: HashMap::new(),
            authorities: HashMap::new(),
            own: Table::default(),
            own_seq: HashMap::new(),
            locals: HashMap::new(),
            subscribers: HashMap::new(),
            subscriber_monitors: HashMap::new(),
            peers,
            connected: HashSet::new(),
            watches: HashMap::new(),
            next_id: 0,
            outbox: VecDeque::new(),
        }
    }

    /// The nodes connected now (the driver sets them before a `peer`).
    pub(crate) fn set_connected(&mut self, nodes: impl IntoIterator<Item = String>) {
        self.connected = nodes.into_iter().collect();
    }

    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.peers.values().filter_map(|p| p.retry_at).min()
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            groups: self.view.group_count(),
            members: self.view.member_count(),
            streams: self.streams.len(),
            subscribers: self.subscriber_monitors.len(),
            peers_up: self.peers.values().filter(|p| p.monitor.is_some()).count(),
            own_members: self.own.member_count(),
        }
    }

    fn watch(&mut self, watch: Watch, target: Dest) -> MonitorId {
        self.next_id += 1;
        let id = self.next_id;
        self.watches.insert(id, watch);
        self.outbox.push_back(Action::Monitor(id, target));
        id
    }

    fn unwatch(&mut self, id: MonitorId) {
        if self.watches.remove(&id).is_some() {
            self.outbox.push_back(Action::Demonitor(id));
        }
    }

    pub(crate) fn handle_msg(&mut self, msg: GroupMsg, now: Instant) {
        match msg {
            GroupMsg::Sync {
                scope,
                from,
                seq,
                groups,
            } => self.on_sync(scope, from, seq, &groups),
            GroupMsg::Delta {
                op,
                scope,
                from,
                seq,
                group,
                pids,
            } => self.on_delta(op, scope, from, seq, group, pids),
            GroupMsg::Resync { scope, hub } => {
                let sync = self.own_sync(&scope);
                self.outbox.push_back(Action::Send(Dest::Pid(hub), sync));
            }
            GroupMsg::Refused { scope, hub, reason } => {
                tracing::warn!(%scope, ?hub, %reason, "eq_groups: a peer hub refused our members");
            }
            GroupMsg::Subscribe { scope, subscriber } => self.on_subscribe(scope, subscriber),
            GroupMsg::Peer { hub } => self.on_peer(&hub, now),
            GroupMsg::Snapshot { .. } | GroupMsg::Update { .. } => {
                tracing::debug!("eq_groups: subscriber message sent to a hub, ignored");
            }
        }
    }

    fn ensure_authority(&mut self, from: &Pid) -> bool {
        if self.authorities.contains_key(from) {
            return true;
        }
        if self.authorities.len() >= self.limits.authorities {
            return false;
        }
        let id = self.watch(Watch::Authority(from.clone()), Dest::Pid(from.clone()));
        self.authorities.insert(from.clone(), id);
        true
    }

    fn refuse(&mut self, scope: String, from: Pid, reason: &str) {
        tracing::warn!(%scope, ?from, %reason, "eq_groups: stream refused");
        if let Some(stream) = self.streams.remove(&(from.clone(), scope.clone())) {
            self.drop_members(&scope, &stream.members);
        }
        let msg = GroupMsg::Refused {
            scope,
            hub: self.me.clone(),
            reason: reason.to_owned(),
        };
        self.outbox.push_back(Action::Send(Dest::Pid(from), msg));
    }

    /// Whether adding `groups` new groups and `members` members (and maybe
    /// a scope) keeps the view within bounds; else the bound passed.
    fn over(&self, scope: &str, groups: usize, members: usize) -> Option<&'static str> {
        if self.view.scope(scope).is_none() && self.view.scopes().count() >= self.limits.scopes {
            return Some("scopes");
        }
        if self.view.group_count() + groups > self.limits.groups {
            return Some("groups");
        }
        if self.view.member_count() + members > self.limits.members {
            return Some("members");
        }
        None
    }

    fn on_sync(&mut self, scope: String, from: Pid, seq: u64, groups: &[(Group, Vec<Pid>)]) {
        if from == self.me {
            return;
        }
        let key = (from.clone(), scope.clone());
        if !self.streams.contains_key(&key) && self.stream_full(&from) {
            self.refuse(scope, from, "scopes");
            return;
        }
        if !self.ensure_authority(&from) {
            tracing::warn!(?from, "eq_groups: too many authorities, sync ignored");
            return;
        }
        let next = ScopeTable::from_groups(&own_pids(&from, groups));
        let old = self
            .streams
            .remove(&key)
            .map(|s| s.members)
            .unwrap_or_default();
        let added = next.member_count().saturating_sub(old.member_count());
        let new_groups = next.group_count().saturating_sub(old.group_count());
        if let Some(bound) = self.over(&scope, new_groups, added) {
            self.drop_members(&scope, &old);
            self.refuse(scope, from, bound);
            return;
        }
        let (leaves, joins) = old.diff(&next);
        for (group, pids) in leaves {
            self.view_leave(&scope, &group, &pids);
        }
        for (group, pids) in joins {
            self.view_join(&scope, &group, &pids);
        }
        let stream = Stream {
            seq,
            members: next,
            synced: true,
        };
        self.streams.insert(key, stream);
    }

    fn on_delta(
        &mut self,
        op: Op,
        scope: String,
        from: Pid,
        seq: u64,
        group: Group,
        pids: Vec<Pid>,
    ) {
        if from == self.me {
            return;
        }
        let key = (from.clone(), scope.clone());
        let ask = match self.streams.get(&key) {
            None => {
                if self.stream_full(&from) {
                    self.refuse(scope, from, "scopes");
                    return;
                }
                if !self.ensure_authority(&from) {
                    return;
                }
                let stream = Stream {
                    seq: 0,
                    members: ScopeTable::default(),
                    synced: false,
                };
                self.streams.insert(key.clone(), stream);
                true
            }
            Some(s) if !s.synced => false, // a resync is on its way
            Some(s) if seq <= s.seq => return, // seen already
            Some(s) if seq != s.seq + 1 => true,
            Some(_) => {
                self.apply_delta(op, key, seq, group, pids);
                return;
            }
        };
        if ask {
            if let Some(s) = self.streams.get_mut(&key) {
                s.synced = false;
            }
            let msg = GroupMsg::Resync {
                scope,
                hub: self.me.clone(),
            };
            self.outbox.push_back(Action::Send(Dest::Pid(from), msg));
        }
    }

    fn apply_delta(&mut self, op: Op, key: (Pid, String), seq: u64, group: Group, pids: Vec<Pid>) {
        let scope = key.1.clone();
        let before = pids.len();
        let pids: Vec<Pid> = pids.into_iter().filter(|p| p.node == key.0.node).collect();
        if pids.len() != before {
            tracing::warn!(from = ?key.0, dropped = before - pids.len(), "eq_groups: pids of another node in a delta, dropped");
        }
        match op {
            Op::Join => {
                let new_group = usize::from(self.view.members(&scope, &group.key).is_empty());
                if let Some(bound) = self.over(&scope, new_group, pids.len()) {
                    self.refuse(key.1, key.0, bound);
                    return;
                }
                if let Some(stream) = self.streams.get_mut(&key) {
                    stream.seq = seq;
                    stream.members.join(&group, &pids);
                }
                self.view_join(&scope, &group, &pids);
            }
            Op::Leave => {
                let removed = match self.streams.get_mut(&key) {
                    Some(stream) => {
                        stream.seq = seq;
                        stream.members.leave(&group.key, &pids)
                    }
                    None => Vec::new(),
                };
                self.view_leave(&scope, &group, &removed);
            }
        }
    }

    fn on_subscribe(&mut self, scope: String, subscriber: Pid) {
        if !self.subscriber_monitors.contains_key(&subscriber) {
            if self.subscriber_monitors.len() >= self.limits.subscribers {
                tracing::warn!("eq_groups: too many subscribers, subscribe refused");
                self.refuse_subscriber(scope, subscriber, "subscribers");
                return;
            }
            let id = self.watch(
                Watch::Subscriber(subscriber.clone()),
                Dest::Pid(subscriber.clone()),
            );
            self.subscriber_monitors.insert(subscriber.clone(), id);
        }
        let known = self
            .subscribers
            .get(&scope)
            .is_some_and(|s| s.contains_key(&subscriber));
        if !known && self.subscribed_scopes(&subscriber) >= self.limits.scopes {
            tracing::warn!(
                ?subscriber,
                "eq_groups: a subscriber has too many scopes, subscribe refused"
            );
            self.refuse_subscriber(scope, subscriber, "subscriber_scopes");
            return;
        }
        self.subscribers
            .entry(scope.clone())
            .or_default()
            .insert(subscriber.clone(), 0);
        let mut groups = self
            .view
            .scope(&scope)
            .map(ScopeTable::snapshot)
            .unwrap_or_default();
        for (_, pids) in &mut groups {
            pids.retain(|p| p.node != subscriber.node);
        }
        groups.retain(|(_, pids)| !pids.is_empty());
        let snapshot = GroupMsg::Snapshot {
            seq: 0,
            groups,
            scope,
            hub: self.me.clone(),
        };
        self.outbox
            .push_back(Action::Send(Dest::Pid(subscriber), snapshot));
    }

    pub(crate) fn handle_down(&mut self, id: MonitorId, now: Instant) {
        let Some(watch) = self.watches.remove(&id) else {
            return;
        };
        match watch {
            Watch::Authority(pid) => {
                self.authorities.remove(&pid);
                let keys: Vec<(Pid, String)> = self
                    .streams
                    .keys()
                    .filter(|(p, _)| *p == pid)
                    .cloned()
                    .collect();
                for key in keys {
                    if let Some(stream) = self.streams.remove(&key) {
                        self.drop_members(&key.1, &stream.members);
                    }
                }
            }
            Watch::Subscriber(pid) => {
                self.subscriber_monitors.remove(&pid);
                for subs in self.subscribers.values_mut() {
                    subs.remove(&pid);
                }
                self.subscribers.retain(|_, s| !s.is_empty());
            }
            Watch::Local(pid) => {
                if let Some((_, joins)) = self.locals.remove(&pid) {
                    for (scope, group) in joins {
                        self.own_leave(&scope, &group, std::slice::from_ref(&pid));
                    }
                }
            }
            Watch::Peer(node) => {
                let forget = match self.peers.get_mut(&node) {
                    Some(peer) if peer.configured => {
                        peer.monitor = None;
                        peer.retry_at = Some(now + backoff(peer.failures));
                        peer.failures = peer.failures.saturating_add(1);
                        false
                    }
                    Some(_) => true,
                    None => false,
                };
                if forget {
                    // It announces itself again when it comes back.
                    self.peers.remove(&node);
                }
            }
        }
    }

    fn drop_members(&mut self, scope: &str, members: &ScopeTable) {
        for (group, pids) in members.snapshot() {
            self.view_leave(scope, &group, &pids);
        }
    }

    fn publish(&mut self, scope: &str, op: Op, group: &Group, pids: Vec<Pid>) {
        if let Some(subs) = self.subscribers.get_mut(scope) {
            for (sub, seq) in subs.iter_mut() {
                let theirs: Vec<Pid> = pids
                    .iter()
                    .filter(|p| p.node != sub.node)
                    .cloned()
                    .collect();
                if theirs.is_empty() {
                    continue;
                }
                *seq += 1;
                let msg = GroupMsg::Update {
                    scope: scope.to_owned(),
                    hub: self.me.clone(),
                    seq: *seq,
                    op,
                    group: group.clone(),
                    pids: theirs,
                };
                self.outbox
                    .push_back(Action::Send(Dest::Pid(sub.clone()), msg));
            }
        }
        self.outbox.push_back(Action::Changed {
            scope: scope.to_owned(),
            op,
            group: group.clone(),
            pids,
        });
    }

    fn view_join(&mut self, scope: &str, group: &Group, pids: &[Pid]) {
        if pids.is_empty() {
            return;
        }
        self.view.join(scope, group, pids);
        self.publish(scope, Op::Join, group, pids.to_vec());
    }

    fn view_leave(&mut self, scope: &str, group: &Group, pids: &[Pid]) {
        let removed = self.view.leave(scope, &group.key, pids);
        if !removed.is_empty() {
            self.publish(scope, Op::Leave, group, removed);
        }
    }

    /// Members of a group in the merged view.
    #[cfg(test)]
    pub(crate) fn members(&self, scope: &str, key: &crate::term::Canon) -> &[Pid] {
        self.view.members(scope, key)
    }
}
