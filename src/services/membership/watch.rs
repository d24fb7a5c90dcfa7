//! [`ClusterWatch`]: a Rust process watching a cluster's membership, the
//! [`View`] core driven by its mailbox.
//!
//! The source of changes is a group monitor that speaks OTP pg's messages
//! (`{Ref, join, Group, Pids}`, `{Ref, leave, Group, Pids}`): an OTP `pg`
//! scope on a BEAM node ([`ClusterWatch::pg`] takes its monitor with pg's
//! own server call, `{monitor, Group}`, the call `pg:monitor/2` makes;
//! OTP 25.1+), or any other source that sends those messages to the
//! process ([`ClusterWatch::from_monitor`], e.g. eq_pg's). The watcher
//! monitors every member itself, as an eq_cluster member does, so a
//! departure carries the exit reason.
//!
//! Bounded: at most `max_members` members (the rest counted, see
//! [`ClusterWatch::overflowed`]); every other message the process receives
//! is dropped, so the mailbox cannot grow behind the watch.
//!
//! ```rust,no_run
//! use erl_quorum::services::membership::{ClusterWatch, MembershipEvent};
//! use erl_quorum::term::atom;
//! use std::time::Duration;
//! # async fn example(node: erl_quorum::Node) -> Result<(), Box<dyn std::error::Error>> {
//! // Cluster `my_member` (eq_cluster names it after the module by default)
//! // in the pg scope `pg` of a BEAM node.
//! let mut watch = ClusterWatch::pg(node.spawn_process(), "pg", "a@127.0.0.1",
//!                                  atom("my_member"), Duration::from_secs(5)).await?;
//! println!("members: {:?}", watch.members());
//! loop {
//!     match watch.next().await? {
//!         MembershipEvent::Joined { pid, members } => println!("{pid:?} joined: {}", members.len()),
//!         MembershipEvent::Left { pid, info, .. } => println!("{pid:?} left: {info:?}"),
//!     }
//! }
//! # }
//! ```

use super::view::{Action, LeaveInfo, View};
use crate::process::{CallError, Mail, Process, ProcessError};
use crate::term::{as_tuple, atom, is_atom, list_elements, tuple, Brief, Pid, Reference, Term};
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

/// The member cap [`ClusterWatch::pg`] uses.
pub const DEFAULT_MAX_MEMBERS: usize = 10_000;
/// How long a group leave waits for the leaver's DOWN, for its reason (as
/// eq_cluster does): once per leave message.
const DOWN_GRACE: Duration = Duration::from_millis(100);

/// A pid with a total order (node name, then number, serial, creation), so
/// member lists come sorted. `eetf::Pid` has none.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemberPid(pub Pid);

impl Ord for MemberPid {
    fn cmp(&self, other: &Self) -> Ordering {
        let key = |p: &Pid| (p.node.name.clone(), p.id, p.serial, p.creation);
        key(&self.0).cmp(&key(&other.0))
    }
}

impl PartialOrd for MemberPid {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One change of the cluster, as eq_cluster's callbacks get it.
#[derive(Clone, Debug, PartialEq)]
pub enum MembershipEvent {
    /// `handle_join`: `pid` joined; `members` (sorted) holds it.
    Joined {
        /// The member that joined.
        pid: Pid,
        /// The members after the change.
        members: Vec<Pid>,
    },
    /// `handle_leave`: `pid` left; `members` (sorted) lacks it.
    Left {
        /// The member that left.
        pid: Pid,
        /// The members after the change.
        members: Vec<Pid>,
        /// Its exit reason (`noconnection`: its node was lost), or `Left`.
        info: LeaveInfo<Term>,
    },
}

/// Why a watch could not start or goes on no more.
#[derive(Debug, Error)]
pub enum WatchError {
    /// The group monitor could not be taken.
    #[error("taking the group monitor failed: {0}")]
    Monitor(#[from] CallError),
    /// The scope answered something that is not `{Ref, Pids}`.
    #[error("the scope answered {0} to the monitor call")]
    BadAnswer(String),
    /// The scope server went down: no more changes would come.
    #[error("the group scope went down: {0}")]
    ScopeDown(String),
    /// The watching process was killed.
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// A cluster's membership as one Rust process sees it: the current members
/// (no round trip) and one [`MembershipEvent`] per change, with
/// eq_cluster's delivery rules (see [`View`]).
pub struct ClusterWatch {
    process: Process,
    reference: Term,
    scope_monitor: Option<Reference>,
    view: View<MemberPid, Term>,
    monitors: HashMap<Pid, Reference>,
    pending: VecDeque<MembershipEvent>,
}

impl ClusterWatch {
    /// Watches cluster `cluster` (the group `{'$eq_cluster', Cluster}`) in
    /// the OTP pg scope `scope` on `node`. The scope is monitored too: if it
    /// goes, [`next`](Self::next) returns [`WatchError::ScopeDown`].
    pub async fn pg(
        mut process: Process,
        scope: &str,
        node: &str,
        cluster: Term,
        timeout: Duration,
    ) -> Result<ClusterWatch, WatchError> {
        let group = tuple(vec![atom("$eq_cluster"), cluster]);
        let server = (scope, node);
        let scope_monitor = process.monitor(server);
        let answer = process
            .call(server, tuple(vec![atom("monitor"), group]), timeout)
            .await?;
        let (reference, snapshot) = match as_tuple(&answer) {
            Some([r @ Term::Reference(_), pids]) => (r.clone(), pids_of(pids)),
            _ => return Err(WatchError::BadAnswer(Brief(&answer).to_string())),
        };
        let mut watch = Self::from_monitor(process, reference, snapshot, DEFAULT_MAX_MEMBERS).await;
        watch.scope_monitor = Some(scope_monitor);
        Ok(watch)
    }

    /// A watch over a group monitor `process` already holds: `reference`
    /// and `snapshot` are what the monitor call returned; its messages
    /// arrive in `process`'s mailbox from now on.
    pub async fn from_monitor(
        process: Process,
        reference: Term,
        snapshot: Vec<Pid>,
        max_members: usize,
    ) -> ClusterWatch {
        let (view, actions) = View::new(None, snapshot.into_iter().map(MemberPid), max_members);
        let mut watch = ClusterWatch {
            process,
            reference,
            scope_monitor: None,
            view,
            monitors: HashMap::new(),
            pending: VecDeque::new(),
        };
        watch.apply_with(actions, None).await;
        watch
    }

    /// The current members, sorted.
    pub fn members(&self) -> Vec<Pid> {
        self.view.members().into_iter().map(|m| m.0).collect()
    }

    /// Joins dropped because the view held `max_members` already.
    pub fn overflowed(&self) -> u64 {
        self.view.overflowed()
    }

    /// The next change. Cancel-safe between changes: a change is taken off
    /// the queue only when returned.
    pub async fn next(&mut self) -> Result<MembershipEvent, WatchError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let mail = self.process.recv().await?;
            let mut grace = None;
            let actions = match mail {
                Mail::Message(message) => match self.group_event(&message) {
                    Some((true, pids)) => self.view.joined(pids),
                    Some((false, pids)) => {
                        grace = Some(Instant::now() + DOWN_GRACE);
                        self.view.left(pids)
                    }
                    None => continue,
                },
                Mail::Down {
                    reference, reason, ..
                } if Some(&reference) == self.scope_monitor.as_ref() => {
                    return Err(WatchError::ScopeDown(Brief(&reason).to_string()));
                }
                Mail::Down {
                    object: Term::Pid(pid),
                    reference,
                    reason,
                } if self.monitors.get(&pid) == Some(&reference) => {
                    self.monitors.remove(&pid);
                    self.view.down(MemberPid(pid), reason)
                }
                _ => continue,
            };
            self.apply_with(actions, grace).await;
        }
    }

    /// `{Ref, join | leave, Group, Pids}` of our monitor: (is_join, pids).
    fn group_event(&self, message: &Term) -> Option<(bool, Vec<MemberPid>)> {
        match as_tuple(message)? {
            [r, kind, _group, pids] if *r == self.reference => {
                let join = if is_atom(kind, "join") {
                    true
                } else if is_atom(kind, "leave") {
                    false
                } else {
                    return None;
                };
                Some((join, pids_of(pids).into_iter().map(MemberPid).collect()))
            }
            _ => None,
        }
    }

    /// Carries out the view's actions. `grace`: for a group leave, until
    /// when a member's DOWN may still be waited for before its monitor is
    /// dropped (the DOWN's reason then replaces `LeaveInfo::Left`).
    async fn apply_with(&mut self, actions: Vec<Action<MemberPid, Term>>, grace: Option<Instant>) {
        let mut reasons: HashMap<Pid, Term> = HashMap::new();
        for action in actions {
            match action {
                Action::Monitor(MemberPid(pid)) => {
                    // A hidden node is not connected to the members' nodes
                    // by the BEAM's transitive connections: connect first,
                    // or the monitor would fire at once with noconnection.
                    // A node we cannot reach does give that noconnection.
                    let node = self.process.node().clone();
                    if !node.connected_nodes().contains(&pid.node.name) && !is_local(&node, &pid) {
                        let _ = node.connect(&pid.node.name).await;
                    }
                    let reference = self.process.monitor(pid.clone());
                    self.monitors.insert(pid, reference);
                }
                Action::Demonitor(MemberPid(pid)) => {
                    if let Some(reference) = self.monitors.remove(&pid) {
                        if let Some(reason) = self.await_down(&reference, grace).await {
                            reasons.insert(pid, reason);
                        }
                        self.process.demonitor(&reference);
                    }
                }
                Action::Joined { pid, members } => {
                    self.pending.push_back(MembershipEvent::Joined {
                        pid: pid.0,
                        members: members.into_iter().map(|m| m.0).collect(),
                    })
                }
                Action::Left { pid, members, info } => {
                    let info = match reasons.remove(&pid.0) {
                        Some(reason) => LeaveInfo::Exit(reason),
                        None => info,
                    };
                    self.pending.push_back(MembershipEvent::Left {
                        pid: pid.0,
                        members: members.into_iter().map(|m| m.0).collect(),
                        info,
                    })
                }
            }
        }
    }
}

impl ClusterWatch {
    /// The DOWN of `reference` if it comes by `grace` (none without one).
    async fn await_down(&mut self, reference: &Reference, grace: Option<Instant>) -> Option<Term> {
        let deadline = grace?;
        let is_it = |m: &Mail| matches!(m, Mail::Down { reference: r, .. } if r == reference);
        match self.process.recv_match(Some(deadline), is_it).await {
            Ok(Some(Mail::Down { reason, .. })) => Some(reason),
            _ => None,
        }
    }
}

fn is_local(node: &crate::Node, pid: &Pid) -> bool {
    node.name() == pid.node.name
}

fn pids_of(term: &Term) -> Vec<Pid> {
    list_elements(term)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| match t {
            Term::Pid(p) => Some(p),
            _ => None,
        })
        .collect()
}
