//! Every term the groups hubs put on the wire, with one decoder and one
//! encoder (`rebar_fixture/PROTOCOL.md`, section "Process groups").
//!
//! Three conversations, all plain messages tagged `eq_groups`:
//! - an authority (a BEAM scope server `eq_pg_scope`, or a hub for its own
//!   Rust members) pushes its members of one scope to a hub: `sync` (all of
//!   them, as of `Seq`) then `join` / `leave` deltas numbered `Seq + 1`, ...;
//!   the hub answers `resync` when it sees a gap or a stream it does not
//!   know, and `refused` when the stream passes a bound;
//! - a subscriber (a BEAM scope server) asks a hub for a scope's members:
//!   `subscribe`, answered by a `snapshot` then numbered `update`s;
//! - a hub tells every hub it pushes to that it exists (`peer`), so that
//!   hubs push their Rust members both ways even when only one of them
//!   lists the other;
//! - nothing else: the hubs learn deaths from monitors, not messages.
//!
//! Decoding never panics and checks the bounds that keep one message small
//! ([`MAX_PIDS`] pids, groups of at most [`MAX_GROUP_BYTES`] canonical
//! bytes, [`MAX_SNAPSHOT_GROUPS`] groups in a sync).

use crate::term::{as_atom, as_int, as_tuple, atom, int, list, list_elements, tuple, Canon};
use crate::term::{is_atom, Pid, Term};

/// Most pids in one join, leave or group of a sync.
pub(crate) const MAX_PIDS: usize = 10_000;
/// Largest group name, in canonical (external format) bytes.
pub(crate) const MAX_GROUP_BYTES: usize = 1024;
/// Most groups in one sync or snapshot.
pub(crate) const MAX_SNAPSHOT_GROUPS: usize = 100_000;
/// Longest scope name (an atom: 255 characters at most anyway).
const MAX_SCOPE_LEN: usize = 255;

/// A group: its term and the canonical bytes that key it (`=:=`).
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub term: Term,
    pub key: Canon,
}

impl PartialEq for Group {
    fn eq(&self, other: &Group) -> bool {
        self.key == other.key
    }
}

impl Group {
    /// `None` for a term too large or too deep to be a group.
    pub(crate) fn new(term: Term) -> Option<Group> {
        let key = Canon::of(&term).ok()?;
        (key.as_bytes().len() <= MAX_GROUP_BYTES).then_some(Group { term, key })
    }
}

/// Join or leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Join,
    Leave,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Join => "join",
            Op::Leave => "leave",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GroupMsg {
    /// `{eq_groups, sync, Scope, From, Seq, [{Group, [Pid]}]}`: every
    /// member `From` is the authority for in `Scope`, as of `Seq`.
    Sync {
        scope: String,
        from: Pid,
        seq: u64,
        groups: Vec<(Group, Vec<Pid>)>,
    },
    /// `{eq_groups, join | leave, Scope, From, Seq, Group, [Pid]}`: one
    /// change of `From`'s members, numbered.
    Delta {
        op: Op,
        scope: String,
        from: Pid,
        seq: u64,
        group: Group,
        pids: Vec<Pid>,
    },
    /// `{eq_groups, resync, Scope, Hub}`: send `Hub` a sync of `Scope`.
    Resync { scope: String, hub: Pid },
    /// `{eq_groups, refused, Scope, Hub, Reason}`: `Hub` dropped the
    /// stream (a bound was passed); `Reason` an atom.
    Refused {
        scope: String,
        hub: Pid,
        reason: String,
    },
    /// `{eq_groups, peer, Hub}`: a hub telling another it exists, so that
    /// the other pushes its own members back even when not configured to.
    Peer { hub: Pid },
    /// `{eq_groups, subscribe, Scope, Subscriber}`.
    Subscribe { scope: String, subscriber: Pid },
    /// `{eq_groups, snapshot, Scope, Hub, Seq, [{Group, [Pid]}]}`: every
    /// member of `Scope` the hub knows, as of its update `Seq`.
    Snapshot {
        scope: String,
        hub: Pid,
        seq: u64,
        groups: Vec<(Group, Vec<Pid>)>,
    },
    /// `{eq_groups, update, Scope, Hub, Seq, join | leave, Group, [Pid]}`.
    Update {
        scope: String,
        hub: Pid,
        seq: u64,
        op: Op,
        group: Group,
        pids: Vec<Pid>,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum GroupMsgError {
    #[error("not a groups message")]
    NotGroups,
    #[error("malformed groups message")]
    Malformed,
    #[error("groups message over a bound: {0}")]
    TooLarge(&'static str),
}

type Decoded<T> = Result<T, GroupMsgError>;

fn scope(term: &Term) -> Decoded<String> {
    match as_atom(term) {
        Some(s) if s.len() <= MAX_SCOPE_LEN => Ok(s.to_owned()),
        _ => Err(GroupMsgError::Malformed),
    }
}

fn pid(term: &Term) -> Decoded<Pid> {
    match term {
        Term::Pid(p) => Ok(p.clone()),
        _ => Err(GroupMsgError::Malformed),
    }
}

fn seq(term: &Term) -> Decoded<u64> {
    match term {
        Term::BigInteger(b) => u64::try_from(&b.value).map_err(|_| GroupMsgError::Malformed),
        _ => as_int(term)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or(GroupMsgError::Malformed),
    }
}

fn encode_seq(seq: u64) -> Term {
    match i64::try_from(seq) {
        Ok(v) => int(v),
        Err(_) => Term::from(eetf::BigInteger::from(seq)),
    }
}

fn group(term: &Term) -> Decoded<Group> {
    Group::new(term.clone()).ok_or(GroupMsgError::TooLarge("group"))
}

fn pids(term: &Term) -> Decoded<Vec<Pid>> {
    let elements = list_elements(term).ok_or(GroupMsgError::Malformed)?;
    if elements.len() > MAX_PIDS {
        return Err(GroupMsgError::TooLarge("pids"));
    }
    elements.iter().map(pid).collect()
}

fn groups(term: &Term) -> Decoded<Vec<(Group, Vec<Pid>)>> {
    let elements = list_elements(term).ok_or(GroupMsgError::Malformed)?;
    if elements.len() > MAX_SNAPSHOT_GROUPS {
        return Err(GroupMsgError::TooLarge("groups"));
    }
    elements
        .iter()
        .map(|entry| match as_tuple(entry) {
            Some([g, ps]) => Ok((group(g)?, pids(ps)?)),
            _ => Err(GroupMsgError::Malformed),
        })
        .collect()
}

fn op(term: &Term) -> Decoded<Op> {
    match as_atom(term) {
        Some("join") => Ok(Op::Join),
        Some("leave") => Ok(Op::Leave),
        _ => Err(GroupMsgError::Malformed),
    }
}

fn encode_pids(pids: &[Pid]) -> Term {
    list(pids.iter().cloned().map(Term::from).collect())
}

fn encode_groups(groups: &[(Group, Vec<Pid>)]) -> Term {
    list(
        groups
            .iter()
            .map(|(g, ps)| tuple(vec![g.term.clone(), encode_pids(ps)]))
            .collect(),
    )
}

impl GroupMsg {
    pub(crate) fn decode(term: &Term) -> Result<GroupMsg, GroupMsgError> {
        let Some([tag, kind, rest @ ..]) = as_tuple(term) else {
            return Err(GroupMsgError::NotGroups);
        };
        if !is_atom(tag, "eq_groups") {
            return Err(GroupMsgError::NotGroups);
        }
        let kind = as_atom(kind).ok_or(GroupMsgError::Malformed)?;
        Ok(match (kind, rest) {
            ("sync", [s, from, n, gs]) => GroupMsg::Sync {
                scope: scope(s)?,
                from: pid(from)?,
                seq: seq(n)?,
                groups: groups(gs)?,
            },
            ("join" | "leave", [s, from, n, g, ps]) => GroupMsg::Delta {
                op: if kind == "join" { Op::Join } else { Op::Leave },
                scope: scope(s)?,
                from: pid(from)?,
                seq: seq(n)?,
                group: group(g)?,
                pids: pids(ps)?,
            },
            ("resync", [s, hub]) => GroupMsg::Resync {
                scope: scope(s)?,
                hub: pid(hub)?,
            },
            ("refused", [s, hub, reason]) => GroupMsg::Refused {
                scope: scope(s)?,
                hub: pid(hub)?,
                reason: as_atom(reason).ok_or(GroupMsgError::Malformed)?.to_owned(),
            },
            ("peer", [hub]) => GroupMsg::Peer { hub: pid(hub)? },
            ("subscribe", [s, sub]) => GroupMsg::Subscribe {
                scope: scope(s)?,
                subscriber: pid(sub)?,
            },
            ("snapshot", [s, hub, n, gs]) => GroupMsg::Snapshot {
                scope: scope(s)?,
                hub: pid(hub)?,
                seq: seq(n)?,
                groups: groups(gs)?,
            },
            ("update", [s, hub, n, o, g, ps]) => GroupMsg::Update {
                scope: scope(s)?,
                hub: pid(hub)?,
                seq: seq(n)?,
                op: op(o)?,
                group: group(g)?,
                pids: pids(ps)?,
            },
            _ => return Err(GroupMsgError::Malformed),
        })
    }

    pub(crate) fn encode(&self) -> Term {
        let head = |kind: &str| vec![atom("eq_groups"), atom(kind)];
        let mut t = match self {
            GroupMsg::Sync {
                scope,
                from,
                seq,
                groups,
            } => {
                let mut t = head("sync");
                t.extend([
                    atom(scope),
                    Term::from(from.clone()),
                    encode_seq(*seq),
                    encode_groups(groups),
                ]);
                t
            }
            GroupMsg::Delta {
                op,
                scope,
                from,
                seq,
                group,
                pids,
            } => {
                let mut t = head(op.name());
                t.extend([
                    atom(scope),
                    Term::from(from.clone()),
                    encode_seq(*seq),
                    group.term.clone(),
                    encode_pids(pids),
                ]);
                t
            }
            GroupMsg::Resync { scope, hub } => {
                let mut t = head("resync");
                t.extend([atom(scope), Term::from(hub.clone())]);
                t
            }
            GroupMsg::Refused { scope, hub, reason } => {
                let mut t = head("refused");
                t.extend([atom(scope), Term::from(hub.clone()), atom(reason)]);
                t
            }
            GroupMsg::Peer { hub } => {
                let mut t = head("peer");
                t.push(Term::from(hub.clone()));
                t
            }
            GroupMsg::Subscribe { scope, subscriber } => {
                let mut t = head("subscribe");
                t.extend([atom(scope), Term::from(subscriber.clone())]);
                t
            }
            GroupMsg::Snapshot {
                scope,
                hub,
                seq,
                groups,
            } => {
                let mut t = head("snapshot");
                t.extend([
                    atom(scope),
                    Term::from(hub.clone()),
                    encode_seq(*seq),
                    encode_groups(groups),
                ]);
                t
            }
            GroupMsg::Update {
                scope,
                hub,
                seq,
                op,
                group,
                pids,
            } => {
                let mut t = head("update");
                t.extend([
                    atom(scope),
                    Term::from(hub.clone()),
                    encode_seq(*seq),
                    atom(op.name()),
                    group.term.clone(),
                    encode_pids(pids),
                ]);
                t
            }
        };
        t.shrink_to_fit();
        tuple(t)
    }
}
