//! One member of an election group, sans-IO: inputs (the lock granted, the
//! guard's validity deadline, member messages, monitors firing, calls) with
//! `now` in; actions (messages to send, replies, monitors, "queue for the
//! lock", "ask who holds it", "ask the guard") out. The same protocol as
//! `rebar_fixture/src/eq_leader.erl`, so Rust and BEAM members share a group.
//!
//! The rule that keeps two leaders apart: a leader acts (answers a leader
//! call, handles a cast, broadcasts, syncs a joiner) only while `now` is
//! before its term's validity deadline, which the guard keeps from the
//! serving node's keepalives and which ends before anyone else can be
//! granted the lock. Past it the member surrenders without acting, however
//! much input waits (a process frozen past its lease).

pub use super::callbacks::{Callbacks, Elected, Info, LeaderReply};
use super::wire::{From, Msg, Role, Token};
use crate::term::{Pid, Term};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// How often a leader asks the guard for its deadline.
pub const REFRESH: Duration = Duration::from_millis(250);
const FIND_MIN: Duration = Duration::from_millis(50);
const FIND_MAX: Duration = Duration::from_millis(1000);
const JOIN_WAIT: Duration = Duration::from_millis(2000);
/// Calls and casts kept while no leader is known (the oldest are dropped).
pub const MAX_PENDING: usize = 1000;
/// Candidates plus workers a member keeps: joins past it are ignored, and
/// a sync or member list longer than it is refused (peer input).
pub const MAX_MEMBERS: usize = 10_000;

/// Who waits for a leader call's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// A BEAM (or Rust) process that called through the wire.
    Remote(From),
    /// A caller of this member's own API.
    Local(u64),
}

/// What a member is told (with `now`).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The lock is this member's (its locker was answered).
    Locked(Token),
    /// The guard's answer to `QueryValidity(n)`: the hold's deadline, or
    /// None (it knows none). Answers to an earlier term's query are ignored.
    Validity(u64, Option<Instant>),
    /// The guard's `{lock_lost, Key}`.
    Lost,
    /// A member message of this group.
    Wire(Msg),
    /// The holder of the group's lock, as the serving nodes say.
    Found(Option<Pid>),
    /// A monitored process ended.
    Down(Pid),
    /// A leader call made through this member.
    LeaderCall {
        /// Who waits for the answer.
        caller: Caller,
        /// The request.
        request: Term,
    },
    /// A leader cast made through this member.
    LeaderCast(Term),
    /// A broadcast (acted on only while leading).
    Broadcast(Term),
    /// Time passed (the driver ticks at least every `REFRESH`).
    Tick,
}

/// What a member asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a member message (`Msg::encode` with the group).
    Send(Pid, Msg),
    /// Answer a leader call.
    Reply(Caller, Term),
    /// Monitor a process; its end comes back as `Input::Down`.
    Monitor(Pid),
    /// Stop monitoring it.
    Demonitor(Pid),
    /// Queue this member for the group's lock (one locker at a time).
    StartLocker,
    /// Ask the serving nodes who holds the lock; answer with `Found`.
    Find,
    /// Ask the guard for the hold's deadline; answer with `Validity(n, ..)`.
    QueryValidity(u64),
}

#[derive(Debug, Clone)]
enum Pending {
    Call(Caller, Term),
    Cast(Term),
}

/// One member of an election group.
#[derive(Debug)]
pub struct Member {
    info: Info,
    role: Role,
    valid_until: Option<Instant>,
    /// When the last term of this member ended (or will: its deadline).
    term_end: Option<Instant>,
    monitored: HashSet<Pid>,
    locker: bool,
    finding: bool,
    find_at: Option<Instant>,
    find_backoff: Duration,
    joining: Option<(Pid, Instant)>,
    next_refresh: Option<Instant>,
    /// The number of this term's validity queries (bumped when a term is
    /// won or ends): a late answer must not confirm a later term.
    query: u64,
    pending: VecDeque<Pending>,
    out: Vec<Action>,
}

impl Member {
    /// A new member; its first actions (queue for the lock, find the leader).
    pub fn new(group: Term, me: Pid, role: Role) -> (Member, Vec<Action>) {
        let mut m = Member {
            info: Info {
                group,
                me: me.clone(),
                leader: None,
                token: None,
                candidates: Vec::new(),
                workers: Vec::new(),
            },
            role,
            valid_until: None,
            term_end: None,
            monitored: HashSet::new(),
            locker: false,
            finding: false,
            find_at: None,
            find_backoff: FIND_MIN,
            joining: None,
            next_refresh: None,
            query: 0,
            pending: VecDeque::new(),
            out: Vec::new(),
        };
        m.add_member(me, role);
        if role == Role::Candidate {
            m.locker = true;
            m.out.push(Action::StartLocker);
        }
        m.finding = true;
        m.out.push(Action::Find);
        let out = std::mem::take(&mut m.out);
        (m, out)
    }

    /// What the callbacks see.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// Whether this member may act as leader at `now`.
    pub fn leading(&self, now: Instant) -> bool {
        self.info.leader.as_ref() == Some(&self.info.me)
            && self.valid_until.is_some_and(|v| now < v)
    }

    /// When this member's last term ended (or will end).
    pub fn term_end(&self) -> Option<Instant> {
        self.term_end
    }

    fn is_me_leader(&self) -> bool {
        self.info.leader.as_ref() == Some(&self.info.me)
    }

    /// One input at `now`; the actions it takes.
    pub fn handle(&mut self, input: Input, now: Instant, cb: &mut impl Callbacks) -> Vec<Action> {
        match input {
            Input::Locked(token) => self.won(token, now, cb),
            Input::Validity(n, v) => {
                if self.is_me_leader() && n == self.query {
                    self.valid_until = v;
                    if self.leading(now) {
                        self.term_end = v;
                        if self.next_refresh.is_none() {
                            // The term's first answer: now it may act.
                            self.start_term(now, cb);
                        }
                    } else {
                        self.lost(now, cb);
                    }
                }
            }
            Input::Lost => {
                if self.is_me_leader() {
                    self.lost(now, cb);
                }
            }
            Input::Wire(msg) => self.wire(msg, now, cb),
            Input::Found(holder) => self.found(holder, now),
            Input::Down(pid) => self.down(pid, now, cb),
            Input::LeaderCall { caller, request } => self.leader_call(caller, request, now, cb),
            Input::LeaderCast(msg) => self.leader_cast(msg, now, cb),
            Input::Broadcast(msg) => {
                if self.check_leading(now, cb) {
                    self.broadcast(msg);
                }
            }
            Input::Tick => self.tick(now, cb),
        }
        std::mem::take(&mut self.out)
    }

    fn tick(&mut self, now: Instant, cb: &mut impl Callbacks) {
        if self.is_me_leader() {
            if !self.check_leading(now, cb) {
                return;
            }
            if self.next_refresh.is_some_and(|t| now >= t) {
                self.next_refresh = Some(now + REFRESH);
                self.out.push(Action::QueryValidity(self.query));
            }
        }
        if let Some((pid, until)) = self.joining.clone() {
            if now >= until {
                self.joining = None;
                self.unmonitor_if_unused(&pid);
                self.schedule_find(now);
            }
        }
        if self.find_at.is_some_and(|t| now >= t) && !self.finding {
            self.find_at = None;
            self.finding = true;
            self.out.push(Action::Find);
        }
    }

    /// The locker was granted: ask the guard for the deadline before acting.
    fn won(&mut self, token: Token, _now: Instant, _cb: &mut impl Callbacks) {
        self.locker = false;
        if let Some(old) = self.info.leader.take() {
            self.unmonitor_if_unused(&old);
        }
        self.info.leader = Some(self.info.me.clone());
        self.info.token = token;
        self.valid_until = None;
        self.next_refresh = None;
        self.query += 1;
        self.out.push(Action::QueryValidity(self.query));
    }

    fn start_term(&mut self, now: Instant, cb: &mut impl Callbacks) {
        self.next_refresh = Some(now + REFRESH);
        self.joining = None;
        let others = self.others();
        for p in &others {
            self.monitor(p.clone());
        }
        match cb.elected(&self.info, None) {
            Elected::All(sync) | Elected::Reply(sync) => self.send_sync(sync, None),
        }
        self.drain(now, cb);
    }

    fn lost(&mut self, now: Instant, cb: &mut impl Callbacks) {
        // Granted but never confirmed by the guard: no term to surrender.
        let started = self.next_refresh.is_some();
        self.end_term(now);
        if started {
            cb.surrendered(None, &self.info);
        }
        self.schedule_find(now);
    }

    fn end_term(&mut self, now: Instant) {
        self.info.leader = None;
        self.term_end = Some(self.term_end.map_or(now, |e| e.min(now)));
        self.valid_until = None;
        self.next_refresh = None;
        self.query += 1;
        for p in std::mem::take(&mut self.monitored) {
            self.out.push(Action::Demonitor(p));
        }
        if !self.locker && self.role == Role::Candidate {
            self.locker = true;
            self.out.push(Action::StartLocker);
        }
    }

    /// Leading now? A leader past its deadline surrenders here.
    fn check_leading(&mut self, now: Instant, cb: &mut impl Callbacks) -> bool {
        if self.leading(now) {
            return true;
        }
        // A leader still waiting for its first deadline is not lost yet.
        if self.is_me_leader() && self.valid_until.is_some() {
            self.lost(now, cb);
        }
        false
    }

    fn leader_call(
        &mut self,
        caller: Caller,
        request: Term,
        now: Instant,
        cb: &mut impl Callbacks,
    ) {
        if self.check_leading(now, cb) {
            let r = cb.handle_leader_call(&request, &self.info);
            self.out.push(Action::Reply(caller, r.reply));
            if let Some(b) = r.broadcast {
                self.broadcast(b);
            }
        } else {
            self.forward_or_queue(Pending::Call(caller, request));
        }
    }

    fn leader_cast(&mut self, msg: Term, now: Instant, cb: &mut impl Callbacks) {
        if self.check_leading(now, cb) {
            if let Some(b) = cb.handle_leader_cast(&msg, &self.info) {
                self.broadcast(b);
            }
        } else {
            self.forward_or_queue(Pending::Cast(msg));
        }
    }

    fn forward_or_queue(&mut self, p: Pending) {
        match (&self.info.leader, p) {
            (Some(l), Pending::Call(Caller::Remote(from), request)) if *l != self.info.me => {
                self.out
                    .push(Action::Send(l.clone(), Msg::LeaderCall { from, request }));
            }
            (Some(l), Pending::Cast(msg)) if *l != self.info.me => {
                self.out
                    .push(Action::Send(l.clone(), Msg::LeaderCast { msg }));
            }
            (_, p) => {
                // A local caller waits here until a leader answers: the
                // driver forwards it (it needs a reply address).
                if self.pending.len() >= MAX_PENDING {
                    self.pending.pop_front();
                }
                self.pending.push_back(p);
            }
        }
    }

    /// Calls of this member's own API waiting for a leader; the driver
    /// sends them on (`take_local_pending`) once one is known.
    pub fn take_pending(&mut self) -> Vec<(Option<u64>, Term)> {
        if self.info.leader.is_none() || self.is_me_leader() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut keep = VecDeque::new();
        for p in std::mem::take(&mut self.pending) {
            match p {
                Pending::Call(Caller::Local(id), req) => out.push((Some(id), req)),
                Pending::Cast(msg) => out.push((None, msg)),
                other => keep.push_back(other),
            }
        }
        self.pending = keep;
        out
    }

    fn drain(&mut self, now: Instant, cb: &mut impl Callbacks) {
        let pending: Vec<Pending> = std::mem::take(&mut self.pending).into();
        for p in pending {
            match p {
                Pending::Call(c, r) => self.leader_call(c, r, now, cb),
                Pending::Cast(m) => self.leader_cast(m, now, cb),
            }
        }
    }

    fn broadcast(&mut self, msg: Term) {
        let m = Msg::FromLeader {
            leader: self.info.me.clone(),
            token: self.info.token,
            msg,
        };
        for p in self.others() {
            self.out.push(Action::Send(p, m.clone()));
        }
    }

    fn send_sync(&mut self, sync: Term, to: Option<Pid>) {
        let m = Msg::Sync {
            leader: self.info.me.clone(),
            token: self.info.token,
            sync,
            candidates: self.info.candidates.clone(),
            workers: self.info.workers.clone(),
        };
        let targets = match to {
            Some(p) => vec![p],
            None => self.others(),
        };
        for p in targets {
            self.out.push(Action::Send(p, m.clone()));
        }
    }

    fn send_members(&mut self, except: Option<&Pid>) {
        let m = Msg::Members {
            leader: self.info.me.clone(),
            token: self.info.token,
            candidates: self.info.candidates.clone(),
            workers: self.info.workers.clone(),
        };
        for p in self.others() {
            if Some(&p) != except {
                self.out.push(Action::Send(p, m.clone()));
            }
        }
    }

    fn others(&self) -> Vec<Pid> {
        self.info
            .candidates
            .iter()
            .chain(&self.info.workers)
            .filter(|p| **p != self.info.me)
            .cloned()
            .collect()
    }

    /// False when the group is full (`MAX_MEMBERS`) and `pid` is new.
    fn add_member(&mut self, pid: Pid, role: Role) -> bool {
        let full = self.info.candidates.len() + self.info.workers.len() >= MAX_MEMBERS;
        let list = match role {
            Role::Candidate => &mut self.info.candidates,
            Role::Worker => &mut self.info.workers,
        };
        if list.contains(&pid) {
            return true;
        }
        if full {
            return false;
        }
        list.push(pid);
        true
    }

    fn monitor(&mut self, pid: Pid) {
        if pid != self.info.me && self.monitored.insert(pid.clone()) {
            self.out.push(Action::Monitor(pid));
        }
    }

    fn unmonitor_if_unused(&mut self, pid: &Pid) {
        if self.monitored.remove(pid) {
            self.out.push(Action::Demonitor(pid.clone()));
        }
    }

    fn wire(&mut self, msg: Msg, now: Instant, cb: &mut impl Callbacks) {
        match msg {
            Msg::Join { member, role } => {
                if !self.add_member(member.clone(), role) {
                    tracing::warn!(member = ?member, "election: group full, join ignored");
                    return;
                }
                if self.check_leading(now, cb) {
                    self.monitor(member.clone());
                    match cb.elected(&self.info, Some(&member)) {
                        Elected::All(sync) => self.send_sync(sync, None),
                        Elected::Reply(sync) => {
                            self.send_sync(sync, Some(member.clone()));
                            self.send_members(Some(&member));
                        }
                    }
                }
            }
            Msg::Sync {
                leader,
                token,
                sync,
                candidates,
                workers,
            } if leader != self.info.me && candidates.len() + workers.len() < MAX_MEMBERS => {
                if self.is_me_leader() {
                    let newer = matches!((token, self.info.token), (Some(t), Some(c)) if t > c);
                    if self.leading(now) && !newer {
                        return; // a stale sync of an earlier term
                    }
                    self.end_term(now);
                } else if let (Some(t), Some(c)) = (token, self.info.token) {
                    if t < c {
                        return;
                    }
                }
                self.follow(leader, token);
                self.info.candidates = candidates;
                self.info.workers = workers;
                let role = self.role;
                self.add_member(self.info.me.clone(), role);
                cb.surrendered(Some(&sync), &self.info);
                self.drain(now, cb);
            }
            Msg::Members {
                leader,
                candidates,
                workers,
                ..
            } if Some(&leader) == self.info.leader.as_ref()
                && leader != self.info.me
                && candidates.len() + workers.len() <= MAX_MEMBERS =>
            {
                self.info.candidates = candidates;
                self.info.workers = workers;
            }
            Msg::FromLeader { leader, msg, .. }
                if Some(&leader) == self.info.leader.as_ref() && leader != self.info.me =>
            {
                cb.from_leader(&msg, &self.info);
            }
            Msg::LeaderCall { from, request } => {
                self.leader_call(Caller::Remote(from), request, now, cb)
            }
            Msg::LeaderCast { msg } => self.leader_cast(msg, now, cb),
            _ => {}
        }
    }

    fn follow(&mut self, leader: Pid, token: Token) {
        if self.info.leader.as_ref() != Some(&leader) {
            if let Some(old) = self.info.leader.take() {
                self.unmonitor_if_unused(&old);
            }
            if let Some((j, _)) = self.joining.take() {
                if j != leader {
                    self.unmonitor_if_unused(&j);
                }
            }
            self.monitor(leader.clone());
            self.info.leader = Some(leader);
        }
        self.info.token = token;
        self.find_backoff = FIND_MIN;
        self.find_at = None;
    }

    fn found(&mut self, holder: Option<Pid>, now: Instant) {
        self.finding = false;
        if self.info.leader.is_some() || self.joining.is_some() {
            return;
        }
        match holder {
            Some(h) if h != self.info.me => {
                self.out.push(Action::Send(
                    h.clone(),
                    Msg::Join {
                        member: self.info.me.clone(),
                        role: self.role,
                    },
                ));
                self.monitor(h.clone());
                self.joining = Some((h, now + JOIN_WAIT));
            }
            _ => self.schedule_find(now),
        }
    }

    fn schedule_find(&mut self, now: Instant) {
        if self.find_at.is_none() && !self.finding {
            self.find_at = Some(now + self.find_backoff);
            self.find_backoff = (self.find_backoff * 2).min(FIND_MAX);
        }
    }

    fn down(&mut self, pid: Pid, now: Instant, cb: &mut impl Callbacks) {
        self.monitored.remove(&pid);
        self.info.candidates.retain(|p| *p != pid);
        self.info.workers.retain(|p| *p != pid);
        if self.info.leader.as_ref() == Some(&pid) {
            self.info.leader = None;
            self.schedule_find(now);
        } else if self.joining.as_ref().is_some_and(|(j, _)| *j == pid) {
            self.joining = None;
            self.schedule_find(now);
        } else if self.check_leading(now, cb) {
            self.send_members(None);
            if let Some(b) = cb.handle_down(&pid, &self.info) {
                self.broadcast(b);
            }
        }
    }
}
