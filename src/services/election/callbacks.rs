//! What a Rust member implements (locks_leader's callbacks) and what the
//! callbacks see of the election.

use super::wire::Token;
use crate::term::{Pid, Term};

/// What the callbacks see of the election (locks_leader's `Info`).
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// The election group.
    pub group: Term,
    /// This member.
    pub me: Pid,
    /// The leader this member follows (itself while leading).
    pub leader: Option<Pid>,
    /// The fencing token of the current term.
    pub token: Token,
    /// The candidates the leader knows (as its last sync said).
    pub candidates: Vec<Pid>,
    /// The workers (members that never lead).
    pub workers: Vec<Pid>,
}

/// What `elected` returns: the sync for every member, or for the joiner only.
#[derive(Debug, Clone, PartialEq)]
pub enum Elected {
    /// Sent to every member.
    All(Term),
    /// Sent to the joiner only.
    Reply(Term),
}

/// A leader call's answer, and what to broadcast with it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderReply {
    /// The caller's answer.
    pub reply: Term,
    /// Sent to every member's `from_leader`.
    pub broadcast: Option<Term>,
}

/// locks_leader's callbacks, as a Rust member implements them.
pub trait Callbacks {
    /// This member leads (`joiner` None), or a member joined its term.
    fn elected(&mut self, info: &Info, joiner: Option<&Pid>) -> Elected;
    /// Another member leads (`sync` its sync), or this member's term ended
    /// (`sync` None: it must stop acting as leader now).
    fn surrendered(&mut self, sync: Option<&Term>, info: &Info);
    /// A leader call (only while leading, within the term).
    fn handle_leader_call(&mut self, request: &Term, info: &Info) -> LeaderReply;
    /// A leader cast; returns what to broadcast, if anything.
    fn handle_leader_cast(&mut self, msg: &Term, info: &Info) -> Option<Term>;
    /// A broadcast of the leader this member follows.
    #[allow(clippy::wrong_self_convention)] // locks_leader's name
    fn from_leader(&mut self, msg: &Term, info: &Info);
    /// A member the leader knew is gone. Returns what to broadcast.
    fn handle_down(&mut self, member: &Pid, info: &Info) -> Option<Term>;
}
