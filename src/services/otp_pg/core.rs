//! A scope peer of OTP `pg`, sans-IO: API calls, pg messages, monitor
//! `DOWN`s, the set of connected nodes and the time go in; messages,
//! monitors and demonitors come out of [`Core::take_actions`] in the order
//! they must happen, and [`Core::deadline`] says when to call
//! [`Core::tick`].
//!
//! What it keeps: this node's members (pids joined through the Rust API,
//! each monitored), and per peer scope process the members its `sync`,
//! `join` and `leave` messages announced. Why it starts discovery itself:
//! a BEAM `pg` discovers the nodes `nodes()` lists and those
//! `net_kernel:monitor_nodes/1` reports, and neither ever shows a hidden
//! node, so no BEAM scope ever sends this node a `discover` first. The core
//! therefore sends `discover` to each node it follows (configured, or every
//! connected node when it follows connections) that has no known peer,
//! again after a connection comes back and after a peer goes down, with a
//! backoff from [`FIRST_RETRY`] to [`MAX_RETRY`].
//!
//! Order matters to a BEAM `pg`: a `leave` for a group its table does not
//! hold for us crashes it (`maps:get/2` in `leave_remote/3`). So `join`
//! and `leave` go only to peers that were sent a `sync` (we send one in
//! answer to every `discover`), after it on the same connection, and the
//! driver executes actions strictly in the order the core queued them.

use super::members::{bounded_groups, canon_of, remove_one, Group};
use super::wire::PgMessage;
use crate::term::{Canon, Pid, Term};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

/// Most peer scope processes followed at once.
pub const MAX_PEERS: usize = 64;
/// Most groups one peer may have members in, as we record it.
pub const MAX_PEER_GROUPS: usize = 10_000;
/// Most memberships (pid, group) one peer may hold, as we record it.
pub const MAX_PEER_MEMBERS: usize = 50_000;
/// Largest group term (canonical bytes) accepted, from peers and the API.
pub const MAX_GROUP_BYTES: usize = 4096;
/// First wait before discovering a node again.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest wait between two discovers of a node without a peer.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// Why a join or leave through the Rust API was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OtpPgError {
    /// Only processes of this node can join (as `pg:join` insists).
    #[error("not a process of this node")]
    NotLocal,
    /// The group term is over [`MAX_GROUP_BYTES`] or nests too deeply.
    #[error("group term too large (at most {MAX_GROUP_BYTES} bytes)")]
    GroupTooLarge,
    /// The scope process is no longer running.
    #[error("the pg scope process has stopped")]
    Stopped,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    Pid(Pid),
    /// The process registered under the scope's name on `node`.
    Scope(String),
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Send { to: Target, message: PgMessage },
    Monitor(Pid),
    Demonitor(Pid),
}

#[derive(Debug)]
struct Peer {
    /// A `sync` went to it: `join` and `leave` may follow.
    synced: bool,
    groups: HashMap<Canon, Group>,
    /// Memberships held, counted against [`MAX_PEER_MEMBERS`].
    members: usize,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    at: Instant,
    backoff: Duration,
}

/// The state of one scope on this node.
#[derive(Debug)]
pub(crate) struct Core {
    me: Pid,
    node: String,
    configured: HashSet<String>,
    follow_connections: bool,
    connected: HashSet<String>,
    /// This node's members and the groups each joined (with repeats, as
    /// pg counts a pid joined twice twice).
    local: HashMap<Pid, Vec<Canon>>,
    local_groups: BTreeMap<Canon, Group>,
    peers: HashMap<Pid, Peer>,
    retries: HashMap<String, Retry>,
    outbox: Vec<Action>,
    /// `get_members` answers, shared until the next change (which clears
    /// them all: changes are rare next to reads).
    cache: HashMap<Canon, Arc<[Pid]>>,
    generation: u64,
}

/// Most groups whose members are cached at once.
const MAX_CACHED: usize = 4096;

impl Core {
    /// A scope process `me` on `node`, following the `configured` nodes
    /// (discovered at once) and, if `follow_connections`, every node this
    /// node connects to.
    pub(crate) fn new(
        me: Pid,
        configured: impl IntoIterator<Item = String>,
        follow_connections: bool,
        now: Instant,
    ) -> Core {
        let node = me.node.name.clone();
        let configured: HashSet<String> = configured.into_iter().filter(|n| *n != node).collect();
        let retries = configured
            .iter()
            .map(|n| {
                let retry = Retry {
                    at: now,
                    backoff: FIRST_RETRY,
                };
                (n.clone(), retry)
            })
            .collect();
        Core {
            me,
            node,
            configured,
            follow_connections,
            connected: HashSet::new(),
            local: HashMap::new(),
            local_groups: BTreeMap::new(),
            peers: HashMap::new(),
            retries,
            outbox: Vec::new(),
            cache: HashMap::new(),
            generation: 0,
        }
    }

    pub(crate) fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.outbox)
    }

    // ---- the Rust API --------------------------------------------------

    /// `pg:join(Scope, Group, Pid)`.
    pub(crate) fn join(&mut self, group: Term, pid: Pid) -> Result<(), OtpPgError> {
        if pid.node.name != self.node {
            return Err(OtpPgError::NotLocal);
        }
        let canon = canon_of(&group).ok_or(OtpPgError::GroupTooLarge)?;
        let groups = self.local.entry(pid.clone()).or_default();
        if groups.is_empty() {
            self.outbox.push(Action::Monitor(pid.clone()));
        }
        groups.push(canon.clone());
        self.local_groups
            .entry(canon)
            .or_insert_with(|| Group {
                term: group.clone(),
                pids: Vec::new(),
            })
            .pids
            .push(pid.clone());
        self.broadcast(PgMessage::Join {
            peer: self.me.clone(),
            group,
            pids: vec![pid],
        });
        self.changed();
        Ok(())
    }

    /// `pg:leave(Scope, Group, Pid)`: `Ok(false)` is pg's `not_joined`.
    pub(crate) fn leave(&mut self, group: Term, pid: &Pid) -> Result<bool, OtpPgError> {
        if pid.node.name != self.node {
            return Err(OtpPgError::NotLocal);
        }
        let canon = canon_of(&group).ok_or(OtpPgError::GroupTooLarge)?;
        let Some(groups) = self.local.get_mut(pid) else {
            return Ok(false);
        };
        let Some(i) = groups.iter().position(|g| *g == canon) else {
            return Ok(false);
        };
        groups.swap_remove(i);
        if groups.is_empty() {
            self.local.remove(pid);
            self.outbox.push(Action::Demonitor(pid.clone()));
        }
        self.drop_local_member(&canon, pid);
        self.broadcast(PgMessage::Leave {
            peer: self.me.clone(),
            pids: vec![pid.clone()],
            groups: vec![group],
        });
        self.changed();
        Ok(true)
    }

    fn drop_local_member(&mut self, canon: &Canon, pid: &Pid) {
        if let Some(g) = self.local_groups.get_mut(canon) {
            remove_one(&mut g.pids, pid);
            if g.pids.is_empty() {
                self.local_groups.remove(canon);
            }
        }
    }

    /// Sends `message` to every peer that has had our `sync`.
    fn broadcast(&mut self, message: PgMessage) {
        let mut synced: Vec<&Pid> = self
            .peers
            .iter()
            .filter(|(_, p)| p.synced)
            .map(|(pid, _)| pid)
            .collect();
        synced.sort_by(|a, b| (&a.node.name, a.id).cmp(&(&b.node.name, b.id)));
        for pid in synced {
            self.outbox.push(Action::Send {
                to: Target::Pid(pid.clone()),
                message: message.clone(),
            });
        }
    }

    // ---- reads -----------------------------------------------------------

    /// Every member of `group`: this node's and the peers'.
    pub(crate) fn get_members(&mut self, group: &Term) -> Arc<[Pid]> {
        let Some(canon) = canon_of(group) else {
            return Arc::from([]);
        };
        if let Some(members) = self.cache.get(&canon) {
            return members.clone();
        }
        let mut out = self.get_local_members_canon(&canon);
        for peer in self.peers.values() {
            if let Some(g) = peer.groups.get(&canon) {
                out.extend(g.pids.iter().cloned());
            }
        }
        let members: Arc<[Pid]> = out.into();
        if !members.is_empty() {
            if self.cache.len() >= MAX_CACHED {
                self.cache.clear();
            }
            self.cache.insert(canon, members.clone());
        }
        members
    }

    pub(crate) fn get_local_members(&self, group: &Term) -> Vec<Pid> {
        canon_of(group)
            .map(|c| self.get_local_members_canon(&c))
            .unwrap_or_default()
    }

    fn get_local_members_canon(&self, canon: &Canon) -> Vec<Pid> {
        self.local_groups
            .get(canon)
            .map(|g| g.pids.clone())
            .unwrap_or_default()
    }

    /// Every group with a member, here or at a peer.
    pub(crate) fn which_groups(&self) -> Vec<Term> {
        let mut all: BTreeMap<&Canon, &Term> = self
            .local_groups
            .iter()
            .map(|(c, g)| (c, &g.term))
            .collect();
        for peer in self.peers.values() {
            for (c, g) in &peer.groups {
                all.entry(c).or_insert(&g.term);
            }
        }
        all.into_values().cloned().collect()
    }

    pub(crate) fn which_local_groups(&self) -> Vec<Term> {
        self.local_groups.values().map(|g| g.term.clone()).collect()
    }

    /// The peer scope processes known now.
    pub(crate) fn peers(&self) -> Vec<Pid> {
        self.peers.keys().cloned().collect()
    }

    // ---- the network ---------------------------------------------------

    /// A message from a peer scope process.
    pub(crate) fn on_message(&mut self, message: PgMessage) {
        let peer = message.peer().clone();
        if peer.node.name == self.node {
            tracing::warn!(
                kind = message.kind(),
                "pg scope: a message naming a pid of this node as its peer; ignored"
            );
            return;
        }
        match message {
            PgMessage::Discover { .. } => {
                if !self.peers.contains_key(&peer) {
                    if !self.admit(&peer) {
                        return;
                    }
                    // As pg does: ask the newcomer for its members too.
                    self.outbox.push(Action::Send {
                        to: Target::Pid(peer.clone()),
                        message: PgMessage::Discover {
                            peer: self.me.clone(),
                        },
                    });
                }
                let groups = self
                    .local_groups
                    .values()
                    .map(|g| (g.term.clone(), g.pids.clone()))
                    .collect();
                self.outbox.push(Action::Send {
                    to: Target::Pid(peer.clone()),
                    message: PgMessage::Sync {
                        peer: self.me.clone(),
                        groups,
                    },
                });
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.synced = true;
                }
            }
            PgMessage::Sync { groups, .. } => {
                if !self.peers.contains_key(&peer) && !self.admit(&peer) {
                    return;
                }
                let (kept, members, dropped) = bounded_groups(&peer, groups);
                if dropped > 0 {
                    tracing::warn!(
                        peer = ?peer,
                        dropped,
                        "pg scope: a sync's entries over the bounds or naming pids of other nodes; those ignored"
                    );
                }
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.groups = kept;
                    p.members = members;
                }
                self.changed();
            }
            PgMessage::Join { group, pids, .. } => self.peer_join(&peer, group, pids),
            PgMessage::Leave { pids, groups, .. } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                let mut removed = false;
                for group in groups {
                    let Some(canon) = canon_of(&group) else {
                        continue;
                    };
                    let Some(g) = p.groups.get_mut(&canon) else {
                        continue; // pg would crash here; we don't
                    };
                    for pid in &pids {
                        if remove_one(&mut g.pids, pid) {
                            p.members -= 1;
                            removed = true;
                        }
                    }
                    if g.pids.is_empty() {
                        p.groups.remove(&canon);
                    }
                }
                if removed {
                    self.changed();
                }
            }
        }
    }

    fn peer_join(&mut self, peer: &Pid, group: Term, pids: Vec<Pid>) {
        let Some(p) = self.peers.get_mut(peer) else {
            return; // not (or no longer) a peer: pg ignores it too
        };
        if pids.is_empty() {
            return; // no member: no group either
        }
        let canon = canon_of(&group);
        let foreign = pids.iter().any(|pid| pid.node != peer.node);
        let new_group = canon.as_ref().is_some_and(|c| !p.groups.contains_key(c));
        let over = p.members + pids.len() > MAX_PEER_MEMBERS
            || (new_group && p.groups.len() >= MAX_PEER_GROUPS);
        let Some(canon) = canon.filter(|_| !foreign && !over) else {
            tracing::warn!(peer = ?peer, pids = pids.len(), "pg scope: a join over the bounds, with a group too large or naming pids of other nodes; ignored");
            return;
        };
        p.members += pids.len();
        p.groups
            .entry(canon)
            .or_insert_with(|| Group {
                term: group,
                pids: Vec::new(),
            })
            .pids
            .extend(pids);
        self.changed();
    }

    /// Takes `peer` on (monitored), unless over the bounds or on a node we
    /// are not connected to: a message naming a peer elsewhere must not
    /// make us dial it.
    fn admit(&mut self, peer: &Pid) -> bool {
        if !self.connected.contains(&peer.node.name) {
            tracing::warn!(peer = ?peer, "pg scope: a peer on a node not connected; ignored");
            return false;
        }
        if self.peers.len() >= MAX_PEERS {
            tracing::warn!(
                max = MAX_PEERS,
                "pg scope: too many peers; a new one ignored"
            );
            return false;
        }
        self.peers.insert(
            peer.clone(),
            Peer {
                synced: false,
                groups: HashMap::new(),
                members: 0,
            },
        );
        self.retries.remove(&peer.node.name);
        self.outbox.push(Action::Monitor(peer.clone()));
        true
    }

    /// A monitor fired: a member of this node exited (it leaves every
    /// group), or a peer scope process or its node is gone (its members
    /// are forgotten, and its node discovered again).
    pub(crate) fn down(&mut self, pid: &Pid, now: Instant) {
        if let Some(groups) = self.local.remove(pid) {
            self.changed();
            let mut terms = Vec::with_capacity(groups.len());
            for canon in &groups {
                if let Some(g) = self.local_groups.get(canon) {
                    terms.push(g.term.clone());
                }
                self.drop_local_member(canon, pid);
            }
            self.broadcast(PgMessage::Leave {
                peer: self.me.clone(),
                pids: vec![pid.clone()],
                groups: terms,
            });
        } else if self.peers.remove(pid).is_some() {
            self.changed();
            let node = pid.node.name.clone();
            if self.follows(&node) && !self.has_peer_on(&node) {
                self.retries.insert(
                    node,
                    Retry {
                        at: now + FIRST_RETRY,
                        backoff: FIRST_RETRY,
                    },
                );
            }
        }
    }

    /// The nodes connected now: a node newly up is discovered at once.
    pub(crate) fn connections(&mut self, nodes: impl IntoIterator<Item = String>, now: Instant) {
        let now_up: HashSet<String> = nodes.into_iter().collect();
        let newly: Vec<String> = now_up
            .iter()
            .filter(|n| !self.connected.contains(*n))
            .cloned()
            .collect();
        self.connected = now_up;
        for node in newly {
            if self.follows(&node) && !self.has_peer_on(&node) {
                self.retries.insert(
                    node,
                    Retry {
                        at: now,
                        backoff: FIRST_RETRY,
                    },
                );
            }
        }
    }

    fn follows(&self, node: &str) -> bool {
        node != self.node
            && (self.configured.contains(node)
                || (self.follow_connections && self.connected.contains(node)))
    }

    fn has_peer_on(&self, node: &str) -> bool {
        self.peers.keys().any(|p| p.node.name == node)
    }

    /// The scope process has ended: nothing is known any more (as a BEAM
    /// scope's table goes with its process).
    pub(crate) fn stopped(&mut self) {
        self.local.clear();
        self.local_groups.clear();
        self.peers.clear();
        self.retries.clear();
        self.outbox.clear();
        self.changed();
    }

    /// The membership changed: cached answers go, watchers are told.
    fn changed(&mut self) {
        self.cache.clear();
        self.generation += 1;
    }

    /// How many membership changes so far (what [`Core::changed`] counts).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// When [`Core::tick`] has work.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.retries.values().map(|r| r.at).min()
    }

    /// Sends the discovers due.
    pub(crate) fn tick(&mut self, now: Instant) {
        let due: Vec<String> = self
            .retries
            .iter()
            .filter(|(_, r)| r.at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for node in due {
            if !self.follows(&node) || self.has_peer_on(&node) {
                self.retries.remove(&node);
                continue;
            }
            if let Some(r) = self.retries.get_mut(&node) {
                r.at = now + r.backoff;
                r.backoff = (r.backoff * 2).min(MAX_RETRY);
            }
            self.outbox.push(Action::Send {
                to: Target::Scope(node),
                message: PgMessage::Discover {
                    peer: self.me.clone(),
                },
            });
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
