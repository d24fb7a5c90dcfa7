//! [`ClusterWatch`]: a Rust process watching a cluster's membership, the
//! [`View`] core driven by its mailbox.
//!
//! The source of changes is a group monitor: this node's groups hub
//! ([`ClusterWatch::watch`], and [`ClusterWatch::join`] for a Rust process
//! that is a member, through [`Groups`]; no BEAM scope involved), or one
//! that speaks OTP pg's messages (`{Ref, join, Group, Pids}`,
//! `{Ref, leave, Group, Pids}`) to the process: an `eq_pg` or OTP `pg`
//! scope server on a BEAM node ([`ClusterWatch::pg`] takes its monitor with
//! the scope's own server call, `{monitor, Group}`, the call
//! `pg:monitor/2` and `eq_pg:monitor/2` make; OTP 25.1+), or any other
//! ([`ClusterWatch::from_monitor`]). The watcher monitors every member
//! itself, as an eq_cluster member does, so a departure carries the exit
//! reason.
//!
//! A member ([`ClusterWatch::join`]) is in the group as long as its process
//! lives (drop the watch to leave: the BEAM members get `handle_leave` with
//! `normal`). While [`next`](ClusterWatch::next) is awaited it answers
//! eq_cluster's own calls (`{'$eq_cluster', hello}`, which a BEAM joiner
//! sends to the member it names as its seed, and `members`, `cluster`), so
//! it can be a seed.
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
//! // in scope `eq_pg`, through this node's groups hub.
//! let groups = erl_quorum::services::Groups::new(&node)?;
//! let mut watch = ClusterWatch::watch(node.spawn_process(), &groups, "eq_pg",
//!                                     atom("my_member")).await?;
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
use crate::process::{CallError, Caller, Mail, Process, ProcessError};
use crate::services::groups::{GroupEvent, GroupMonitor, Groups, GroupsError};
use crate::term::{
    as_tuple, atom, is_atom, list, list_elements, tuple, Brief, Pid, Reference, Term,
};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

/// The member cap of [`ClusterWatch::watch`], [`ClusterWatch::join`] and [`ClusterWatch::pg`].
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
    /// This node's groups hub refused (not running, bad scope, a bound).
    #[error(transparent)]
    Groups(#[from] GroupsError),
    /// The hub ended the group monitor: it stopped, or this watch fell
    /// 4096 changes behind. Watch again (a fresh snapshot).
    #[error("the groups hub ended the group monitor")]
    MonitorEnded,
}

/// Where the group's changes come from.
enum Source {
    /// pg-shaped messages in the process's mailbox, under `reference`; the
    /// scope server's monitor, if known.
    Mailbox {
        reference: Term,
        scope_monitor: Option<Reference>,
    },
    /// A monitor of this node's groups hub.
    Hub(GroupMonitor),
}

/// What a member answers eq_cluster's calls with.
struct Membership {
    cluster: Term,
    scope: String,
}

/// One input of the watch loop.
enum Input {
    Mail(Mail),
    Group(Option<GroupEvent>),
}

/// A cluster's membership as one Rust process sees it: the current members
/// (no round trip) and one [`MembershipEvent`] per change, with
/// eq_cluster's delivery rules (see [`View`]).
pub struct ClusterWatch {
    process: Process,
    source: Source,
    member: Option<Membership>,
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
        let mut watch =
            Self::from_monitor(process, reference.clone(), snapshot, DEFAULT_MAX_MEMBERS).await;
        watch.source = Source::Mailbox {
            reference,
            scope_monitor: Some(scope_monitor),
        };
        Ok(watch)
    }

    /// Watches cluster `cluster` (the group `{'$eq_cluster', Cluster}`) of
    /// `scope` (eq_cluster's default: `eq_pg`) through this node's groups
    /// hub, which holds the BEAM and Rust members of every node: no round
    /// trip, no BEAM scope needed. `process` (of the hub's node) holds the
    /// monitors of the members.
    pub async fn watch(
        process: Process,
        groups: &Groups,
        scope: &str,
        cluster: Term,
    ) -> Result<ClusterWatch, WatchError> {
        let group = tuple(vec![atom("$eq_cluster"), cluster]);
        let (snapshot, monitor) = groups.monitor(scope, &group)?;
        Ok(Self::start(
            process,
            None,
            Source::Hub(monitor),
            snapshot,
            DEFAULT_MAX_MEMBERS,
        )
        .await)
    }

    /// Makes `process` (of the hub's node) a member of cluster `cluster` in
    /// `scope`: it joins the group `{'$eq_cluster', Cluster}` there, so the
    /// BEAM members get `handle_join` with its pid (and `handle_leave` when
    /// it exits: drop the watch). [`members`](Self::members) starts as the
    /// list eq_cluster's `handle_node_joined` would get (every member this
    /// node's hub knows, itself included); then one event per change. It
    /// answers `{'$eq_cluster', hello | members | cluster}` calls while
    /// [`next`](Self::next) is awaited: a BEAM joiner can name it as its
    /// seed.
    pub async fn join(
        process: Process,
        groups: &Groups,
        scope: &str,
        cluster: Term,
    ) -> Result<ClusterWatch, WatchError> {
        let group = tuple(vec![atom("$eq_cluster"), cluster.clone()]);
        // The monitor first: our own join is then in its events (and
        // ignored), and no member that joins meanwhile is missed.
        let (snapshot, monitor) = groups.monitor(scope, &group)?;
        let me = process.pid().clone();
        groups.join(scope, group, std::slice::from_ref(&me)).await?;
        let member = Membership {
            cluster,
            scope: scope.to_owned(),
        };
        let mut watch = Self::start(
            process,
            Some(me),
            Source::Hub(monitor),
            snapshot,
            DEFAULT_MAX_MEMBERS,
        )
        .await;
        watch.member = Some(member);
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
        let source = Source::Mailbox {
            reference,
            scope_monitor: None,
        };
        Self::start(process, None, source, snapshot, max_members).await
    }

    async fn start(
        process: Process,
        me: Option<Pid>,
        source: Source,
        snapshot: Vec<Pid>,
        max_members: usize,
    ) -> ClusterWatch {
        let me = me.map(MemberPid);
        let (view, actions) = View::new(me, snapshot.into_iter().map(MemberPid), max_members);
        let mut watch = ClusterWatch {
            process,
            source,
            member: None,
            view,
            monitors: HashMap::new(),
            pending: VecDeque::new(),
        };
        watch.apply_with(actions, None).await;
        watch
    }

    /// The watching (or member) process's pid.
    pub fn pid(&self) -> &Pid {
        self.process.pid()
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
            let input = match &mut self.source {
                // Both cancel-safe: nothing is lost to the branch not taken.
                Source::Hub(monitor) => tokio::select! {
                    mail = self.process.recv() => Input::Mail(mail?),
                    event = monitor.next() => Input::Group(event),
                },
                Source::Mailbox { .. } => Input::Mail(self.process.recv().await?),
            };
            let mut grace = None;
            let mail = match input {
                Input::Group(None) => return Err(WatchError::MonitorEnded),
                Input::Group(Some(GroupEvent::Join { pids, .. })) => {
                    let actions = self.view.joined(pids.into_iter().map(MemberPid));
                    self.apply_with(actions, None).await;
                    continue;
                }
                Input::Group(Some(GroupEvent::Leave { pids, .. })) => {
                    let grace = Some(Instant::now() + DOWN_GRACE);
                    let actions = self.view.left(pids.into_iter().map(MemberPid));
                    self.apply_with(actions, grace).await;
                    continue;
                }
                Input::Mail(mail) => mail,
            };
            let actions = match mail {
                Mail::Message(message) => {
                    if self.answer_call(&message) {
                        continue;
                    }
                    match self.group_event(&message) {
                        Some((true, pids)) => self.view.joined(pids),
                        Some((false, pids)) => {
                            grace = Some(Instant::now() + DOWN_GRACE);
                            self.view.left(pids)
                        }
                        None => continue,
                    }
                }
                Mail::Down {
                    reference, reason, ..
                } if self.is_scope_monitor(&reference) => {
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

    fn is_scope_monitor(&self, reference: &Reference) -> bool {
        matches!(&self.source, Source::Mailbox { scope_monitor: Some(m), .. } if m == reference)
    }

    /// A member answers eq_cluster's own calls `{'$eq_cluster', hello}`
    /// (`{ok, Cluster, Scope, Members}`), `members` and `cluster`; true when
    /// `message` was one. Other calls are not ours to answer (dropped).
    fn answer_call(&self, message: &Term) -> bool {
        let Some(member) = &self.member else {
            return false;
        };
        let Some([tag, from, request]) = as_tuple(message) else {
            return false;
        };
        if !is_atom(tag, "$gen_call") {
            return false;
        }
        let Some(caller) = Caller::from_term(from) else {
            return true;
        };
        let members = || list(self.members().into_iter().map(Term::Pid).collect());
        let reply = match as_tuple(request) {
            Some([ours, what]) if is_atom(ours, "$eq_cluster") => {
                let scope = atom(&member.scope);
                if is_atom(what, "hello") {
                    tuple(vec![atom("ok"), member.cluster.clone(), scope, members()])
                } else if is_atom(what, "members") {
                    members()
                } else if is_atom(what, "cluster") {
                    tuple(vec![member.cluster.clone(), scope])
                } else {
                    return true;
                }
            }
            _ => return true,
        };
        caller.reply(&self.process, reply);
        true
    }

    /// `{Ref, join | leave, Group, Pids}` of our monitor: (is_join, pids).
    fn group_event(&self, message: &Term) -> Option<(bool, Vec<MemberPid>)> {
        let Source::Mailbox { reference, .. } = &self.source else {
            return None;
        };
        match as_tuple(message)? {
            [r, kind, _group, pids] if r == reference => {
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
        // Nodes dialled in this batch: each once, however many members it
        // has (an unreachable node would otherwise cost a connect timeout
        // per member).
        let mut dialled: HashSet<String> = HashSet::new();
        for action in actions {
            match action {
                Action::Monitor(MemberPid(pid)) => {
                    // A hidden node is not connected to the members' nodes
                    // by the BEAM's transitive connections: connect first,
                    // or the monitor would fire at once with noconnection.
                    // A node we cannot reach does give that noconnection.
                    let node = self.process.node().clone();
                    if !is_local(&node, &pid)
                        && dialled.insert(pid.node.name.clone())
                        && !node.connected_nodes().contains(&pid.node.name)
                    {
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
