//! Supervised names (singletons) as a sans-IO state machine beside the
//! slots: per name an optional [`Record`] (how its process is started,
//! restarted, its meta, host, keeper and owner), the starts in flight
//! with the callers parked on them, the known hosts, and restart
//! decisions. The slots stay as they are (small, for a million names):
//! a supervised name is held there like any other name, and this
//! component hears of it through the core (a keeper's `started`, the
//! name's release, its owner's exit).
//!
//! What the core must do comes out as [`Action`]s. No clock: `now` comes
//! in; timers go out as [`Action::Deadline`], [`Action::RetryAt`] and
//! [`Action::ResumeAt`], which the core runs on its own timers.
//!
//! Never two instances: a start is ordered only for a name this node
//! serves and nobody holds here, and a restart only after the slot
//! released the name (its owner dead, or its node lost for the session
//! lease plus a margin, by which time the guard has told it). An attempt
//! that is given up (its keeper too slow, its host gone) may still start a
//! child, so the next attempt waits until that cannot be: the keeper
//! answered (a late child is told `no`, and the next attempt waits for its
//! `DOWN`), or its host is gone and the session lease plus a margin passed
//! (`grace`: a node cut off has stopped by then, as an owner's guard would
//! have told it). A keeper that never answers while its host runs holds
//! its name up, as a hung `init` holds up an OTP supervisor.

mod hosts;
mod records;
mod restarts;
mod starts;
#[cfg(test)]
mod tests;

pub(crate) use hosts::Placement;
pub(crate) use restarts::Intensity;

use crate::process::Caller;
use crate::services::protocol::{HostKind, HostMsg, Reply, Request, Restart, Start};
use crate::term::{atom, Canon, Pid, Term};
use hosts::Hosts;
use starts::{Pending, Phase};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// How long a host's keeper has to answer an `eq_start`.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A restart that found no host (or every host failed) tries again after this.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A supervised name held here.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub name: Term,
    pub start: Start,
    pub restart: Restart,
    pub meta: Term,
    /// The host that started it, and the keeper that watches it there.
    pub host: Pid,
    pub keeper: Pid,
    pub owner: Pid,
    pub intensity: Intensity,
    /// How the owner went, once it did (`None` while it runs): read when
    /// the slot releases the name, to decide on a restart.
    pub gone: Option<Gone>,
}

/// How a recorded owner went.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Gone {
    Exited(Term),
    /// Its node's connection was lost (it may still run there).
    NodeLost,
}

/// What the core must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Reply(Caller, Reply),
    /// A request parked on a start that ended: serve it now.
    Serve(Caller, Request),
    /// Send `msg` to the host `host`.
    ToHost(Pid, HostMsg),
    /// Register `pid` under `name` in the slots, answering the keeper.
    Register {
        keeper: Caller,
        name: Term,
        pid: Pid,
    },
    /// Call [`Supervise::deadline`] with `id` at `at`.
    Deadline {
        id: u64,
        at: Instant,
    },
    /// Call [`Supervise::retry`] for `name` at `at`.
    RetryAt {
        name: Term,
        at: Instant,
    },
    /// An exit signal to a supervised name's owner.
    Exit {
        owner: Pid,
        reason: Term,
    },
    MonitorHost(Pid),
    /// Monitor a late child told `no`; report its end with
    /// [`Supervise::child_gone`].
    MonitorChild(Pid),
    /// Call [`Supervise::resume`] with `id` at `at`.
    ResumeAt {
        id: u64,
        at: Instant,
    },
}

/// The answer to a `start_name` for a name that is held.
fn held_reply(record: Option<&Record>, start: &Start, holder: Pid) -> Reply {
    match record {
        Some(r) if r.owner == holder && same_start(&r.start, start) => {
            Reply::AlreadyStarted(holder)
        }
        _ => Reply::Conflict(holder),
    }
}

/// Starts are equal when `=:=` holds for their specs.
pub(crate) fn same_start(a: &Start, b: &Start) -> bool {
    match (a, b) {
        (Start::Beam(x), Start::Beam(y)) => match (Canon::of(x), Canon::of(y)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
        (Start::Rust(x), Start::Rust(y)) => x == y,
        _ => false,
    }
}

/// A name's key in this component's maps (`=:=` equal names share one).
pub(crate) fn name_key(name: &Term) -> Option<Canon> {
    Canon::of(name).ok()
}

#[derive(Debug)]
pub(crate) struct Supervise {
    /// This node's name (in `eq_start`).
    node: String,
    /// How long after losing a node its processes have surely stopped
    /// (the session lease plus the release margin).
    grace: Duration,
    records: HashMap<Canon, Record>,
    /// Owner -> the recorded names it holds (to find them on its exit).
    by_owner: HashMap<Pid, Vec<Canon>>,
    pending: HashMap<Canon, Pending>,
    /// Current attempt id -> its pending's name.
    by_id: HashMap<u64, Canon>,
    /// Meta of plainly registered names: name -> (the pid it was given
    /// for, Meta). Good only while that pid holds the name.
    metas: HashMap<Canon, (Pid, Term)>,
    hosts: Hosts,
    next_id: u64,
    /// Keepers told `no` while the slots still hold their registration:
    /// the slots' own answer, when it comes, is not sent (a caller gets
    /// one reply).
    answered_keepers: Vec<Caller>,
    actions: Vec<Action>,
}

impl Supervise {
    pub(crate) fn new(node: String, grace: Duration) -> Supervise {
        Supervise {
            node,
            grace,
            records: HashMap::new(),
            by_owner: HashMap::new(),
            pending: HashMap::new(),
            by_id: HashMap::new(),
            metas: HashMap::new(),
            hosts: Hosts::default(),
            next_id: 0,
            answered_keepers: Vec::new(),
            actions: Vec::new(),
        }
    }

    pub(crate) fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub(crate) fn supervised(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn host_count(&self) -> usize {
        self.hosts.len()
    }

    pub(crate) fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// `{host, Pid, Kind}`: answered `ok`; a new host is monitored.
    pub(crate) fn host(&mut self, caller: Caller, pid: Pid, kind: HostKind) {
        if self.hosts.add(pid.clone(), kind) {
            tracing::info!(host = %pid, kind = kind.as_str(), "erl_quorum: a host announced itself");
            self.actions.push(Action::MonitorHost(pid));
        }
        self.actions.push(Action::Reply(caller, Reply::Ok));
    }

    /// A host went: starts sent to it go to the next host once its
    /// keepers surely stopped (`grace` from now; they may run on, cut off).
    pub(crate) fn host_down(&mut self, pid: &Pid, now: Instant) {
        if !self.hosts.remove(pid) {
            return;
        }
        let at = now + self.grace;
        for pending in self.pending.values_mut() {
            let on_it = match &pending.phase {
                Phase::Starting { host } | Phase::Abandoned { host } => host == pid,
                _ => false,
            };
            if on_it {
                pending.phase = Phase::Abandoned { host: pid.clone() };
                let id = pending.id;
                self.actions.push(Action::ResumeAt { id, at });
            }
        }
    }

    /// `{start_name, ...}` for a name this node serves. `holder`: who holds
    /// it here now, if anyone.
    pub(crate) fn start_name(
        &mut self,
        caller: Caller,
        request: Request,
        holder: Option<Pid>,
        now: Instant,
    ) {
        let Request::StartName { name, .. } = &request else {
            return;
        };
        let Some(key) = name_key(name) else {
            let refused = crate::services::protocol::BadRequest::Badarg(request.encode());
            self.actions
                .push(Action::Reply(caller, Reply::Refused(refused)));
            return;
        };
        if let Some(pending) = self.pending.get_mut(&key) {
            pending.parked.push((caller, request));
            return;
        }
        let Request::StartName {
            name,
            start,
            restart,
            meta,
            host,
        } = request
        else {
            return;
        };
        if let Some(holder) = holder {
            let reply = held_reply(self.records.get(&key), &start, holder);
            self.actions.push(Action::Reply(caller, reply));
            return;
        }
        let placement = Placement {
            first: host,
            ..Placement::default()
        };
        let to_try = self.hosts.order(start.kind(), &placement);
        if to_try.is_empty() {
            self.actions.push(Action::Reply(caller, Reply::NoHost));
            return;
        }
        let pending = Pending {
            id: 0,
            name,
            start,
            restart,
            meta,
            phase: Phase::Waiting,
            to_try,
            placement,
            trigger: Some(caller),
            parked: Vec::new(),
            intensity: Intensity::default(),
            is_restart: false,
            attempted: false,
            held_since: None,
        };
        self.pending.insert(key.clone(), pending);
        self.next_host(key, atom("no_host"), now);
    }

    /// Parks a `register_name` for a name with a start in flight; gives it
    /// back when there is none.
    pub(crate) fn park(&mut self, caller: Caller, request: Request) -> Option<(Caller, Request)> {
        let Request::RegisterName { name, .. } = &request else {
            return Some((caller, request));
        };
        match name_key(name).and_then(|k| self.pending.get_mut(&k)) {
            Some(pending) => {
                pending.parked.push((caller, request));
                None
            }
            None => Some((caller, request)),
        }
    }
}
