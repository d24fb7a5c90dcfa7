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
//! in; timers go out as [`Action::Deadline`] / [`Action::RetryAt`].
//!
//! Never two instances: a start is ordered only for a name this node
//! serves and nobody holds here, and a restart only after the slot
//! released the name (its owner dead, or its node lost for the session
//! lease plus a margin, by which time the guard has told it).

mod hosts;
mod restarts;
#[cfg(test)]
mod tests;

pub(crate) use hosts::Placement;
pub(crate) use restarts::Intensity;

use crate::process::Caller;
use crate::services::protocol::{HostKind, HostMsg, Reply, Request, Restart, Start};
use crate::term::{atom, Canon, Pid, Term};
use hosts::Hosts;
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
    /// How the owner went, once it did: `Some(reason)` for an exit,
    /// `None` while it runs; see [`Gone`].
    pub gone: Option<Gone>,
}

/// How a recorded owner went.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Gone {
    Exited(Term),
    /// Its node's connection was lost (it may still run there).
    NodeLost,
}

/// What a start in flight is doing.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// `eq_start` sent to `host`; its keeper answers `started` or
    /// `start_failed` for the pending's current id.
    Starting { host: Pid },
    /// The keeper said `started`; `pid` is being registered for it.
    Registering { keeper: Caller, host: Pid, pid: Pid },
    /// No host left; tried again at the next [`Action::RetryAt`].
    Waiting,
}

/// A start in flight for one name.
#[derive(Debug)]
struct Pending {
    /// The id of the current attempt (a new one per host tried, so a late
    /// answer from an earlier attempt is told `no`).
    id: u64,
    name: Term,
    start: Start,
    restart: Restart,
    meta: Term,
    phase: Phase,
    /// Hosts still to try, in order.
    to_try: VecDeque<Pid>,
    placement: Placement,
    /// The `start_name` that asked for it (none for a restart).
    trigger: Option<Caller>,
    /// Requests for the name that came while it was in flight.
    parked: Vec<(Caller, Request)>,
    intensity: Intensity,
    /// A restart keeps trying (every [`RETRY_AFTER`]) when no host is left;
    /// a caller's start fails instead.
    is_restart: bool,
    /// Whether this round sent any `eq_start` (a round that found no host
    /// at all does not count as a restart: nothing was started).
    attempted: bool,
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
    actions: Vec<Action>,
}

impl Supervise {
    pub(crate) fn new(node: String) -> Supervise {
        Supervise {
            node,
            records: HashMap::new(),
            by_owner: HashMap::new(),
            pending: HashMap::new(),
            by_id: HashMap::new(),
            metas: HashMap::new(),
            hosts: Hosts::default(),
            next_id: 0,
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

    /// A host went: starts sent to it go to the next host.
    pub(crate) fn host_down(&mut self, pid: &Pid, now: Instant) {
        if !self.hosts.remove(pid) {
            return;
        }
        let waiting_on: Vec<Canon> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(&p.phase, Phase::Starting { host } if host == pid))
            .map(|(k, _)| k.clone())
            .collect();
        for key in waiting_on {
            self.next_host(key, atom("noproc"), now);
        }
    }

    /// `{start_name, ...}` for a name this node serves. `holder`: who holds
    /// it here now, if anyone.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_name(
        &mut self,
        caller: Caller,
        request: Request,
        holder: Option<Pid>,
        now: Instant,
    ) {
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
        let Some(key) = name_key(&name) else {
            let request = Request::StartName {
                name,
                start,
                restart,
                meta,
                host,
            };
            let refused = crate::services::protocol::BadRequest::Badarg(request.encode());
            self.actions
                .push(Action::Reply(caller, Reply::Refused(refused)));
            return;
        };
        if let Some(pending) = self.pending.get_mut(&key) {
            let request = Request::StartName {
                name,
                start,
                restart,
                meta,
                host,
            };
            pending.parked.push((caller, request));
            return;
        }
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

    /// Sends the next attempt of `key`'s start, or, with no host left,
    /// fails it (`reason`: the last failure) or, for a restart, waits.
    fn next_host(&mut self, key: Canon, reason: Term, now: Instant) {
        let Some(pending) = self.pending.get_mut(&key) else {
            return;
        };
        self.by_id.remove(&pending.id);
        let Some(host) = pending.to_try.pop_front() else {
            if pending.is_restart {
                pending.phase = Phase::Waiting;
                let name = pending.name.clone();
                tracing::warn!(name = %name, "erl_quorum: no host could restart a supervised name; retrying");
                self.actions.push(Action::RetryAt {
                    name,
                    at: now + RETRY_AFTER,
                });
            } else {
                let reply = if self.hosts.len() == 0 || is_no_host(&reason) {
                    Reply::NoHost
                } else {
                    Reply::StartFailed(reason)
                };
                self.end(key, |_| reply.clone());
            }
            return;
        };
        self.next_id += 1;
        let id = self.next_id;
        pending.id = id;
        pending.attempted = true;
        pending.phase = Phase::Starting { host: host.clone() };
        self.by_id.insert(id, key);
        let msg = HostMsg::Start {
            node: self.node.clone(),
            id,
            name: pending.name.clone(),
            start: pending.start.clone(),
            restart: pending.restart,
        };
        self.actions.push(Action::ToHost(host, msg));
        self.actions.push(Action::Deadline {
            id,
            at: now + START_TIMEOUT,
        });
    }

    /// Ends `key`'s start: its trigger and parked `start_name`s get
    /// `reply_to(start)`, parked registrations are served again.
    fn end(&mut self, key: Canon, reply_to: impl Fn(&Start) -> Reply) {
        let Some(pending) = self.pending.remove(&key) else {
            return;
        };
        self.by_id.remove(&pending.id);
        if let Some(caller) = pending.trigger {
            self.actions
                .push(Action::Reply(caller, reply_to(&pending.start)));
        }
        for (caller, request) in pending.parked {
            match request {
                Request::StartName { ref start, .. } => {
                    let reply = reply_to(start);
                    self.actions.push(Action::Reply(caller, reply));
                }
                request => self.actions.push(Action::Serve(caller, request)),
            }
        }
    }

    /// `{started, Id, Pid}` from a keeper.
    pub(crate) fn started(&mut self, keeper: Caller, id: u64, pid: Pid) {
        let Some(key) = self.by_id.get(&id).cloned() else {
            self.actions.push(Action::Reply(keeper, Reply::No));
            return;
        };
        let pending = self.pending.get_mut(&key).expect("by_id follows pending");
        let Phase::Starting { host } = &pending.phase else {
            self.actions.push(Action::Reply(keeper, Reply::No));
            return;
        };
        pending.phase = Phase::Registering {
            keeper: keeper.clone(),
            host: host.clone(),
            pid: pid.clone(),
        };
        let name = pending.name.clone();
        self.actions.push(Action::Register { keeper, name, pid });
    }

    /// `{start_failed, Id, Reason}` from a keeper: answered `ok`; the next
    /// host is tried.
    pub(crate) fn start_failed(&mut self, keeper: Caller, id: u64, reason: Term, now: Instant) {
        self.actions.push(Action::Reply(keeper, Reply::Ok));
        let Some(key) = self.by_id.get(&id).cloned() else {
            return;
        };
        let starting = self
            .pending
            .get(&key)
            .is_some_and(|p| matches!(p.phase, Phase::Starting { .. }));
        if starting {
            let name = &self.pending[&key].name;
            tracing::info!(%name, %reason, "erl_quorum: a supervised name failed to start");
            self.next_host(key, reason, now);
        }
    }

    /// Attempt `id`'s keeper did not answer in time: a caller's start fails
    /// with `timeout`; a restart goes to the next host. A late `started`
    /// is told `no`.
    pub(crate) fn deadline(&mut self, id: u64, now: Instant) {
        let Some(key) = self.by_id.get(&id).cloned() else {
            return;
        };
        let pending = self.pending.get(&key).expect("by_id follows pending");
        if !matches!(pending.phase, Phase::Starting { .. }) {
            return;
        }
        if pending.is_restart {
            self.next_host(key, atom("timeout"), now);
        } else {
            self.end(key, |_| Reply::StartFailed(atom("timeout")));
        }
    }

    /// A restart that found no host tries again.
    pub(crate) fn retry(&mut self, name: &Term, now: Instant) {
        let Some(key) = name_key(name) else { return };
        let Some(pending) = self.pending.get_mut(&key) else {
            return;
        };
        if pending.phase != Phase::Waiting {
            return;
        }
        if pending.attempted && !pending.intensity.allow(now) {
            tracing::error!(%name, "erl_quorum: a supervised name restarted too often; giving up");
            self.end(key, |_| Reply::NoHost);
            return;
        }
        pending.attempted = false;
        pending.to_try = self.hosts.order(pending.start.kind(), &pending.placement);
        self.next_host(key, atom("no_host"), now);
    }

    /// The name `caller` registers its child under, if it is a keeper
    /// whose registration is in flight.
    pub(crate) fn registering_name(&self, caller: &Caller) -> Option<Term> {
        self.pending
            .values()
            .find(|p| matches!(&p.phase, Phase::Registering { keeper, .. } if keeper == caller))
            .map(|p| p.name.clone())
    }

    /// The slots answered a keeper's registration: `granted` means its
    /// child holds the name now (recorded; callers told), else `holder`
    /// (if any) got there first and the callers are told that.
    pub(crate) fn registered(&mut self, keeper: &Caller, granted: bool, holder: Option<Pid>) {
        let Some(key) = self
            .pending
            .iter()
            .find(|(_, p)| matches!(&p.phase, Phase::Registering { keeper: k, .. } if k == keeper))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let pending = &self.pending[&key];
        let Phase::Registering { host, pid, .. } = pending.phase.clone() else {
            return;
        };
        if !granted {
            tracing::info!(name = %pending.name, "erl_quorum: a started child could not take its name");
            self.end(key, |_| match &holder {
                Some(h) => Reply::Conflict(h.clone()),
                None => Reply::NoQuorum,
            });
            return;
        }
        let record = Record {
            name: pending.name.clone(),
            start: pending.start.clone(),
            restart: pending.restart,
            meta: pending.meta.clone(),
            host,
            keeper: keeper.pid.clone(),
            owner: pid.clone(),
            intensity: pending.intensity.clone(),
            gone: None,
        };
        let trigger = pending.trigger.clone();
        self.by_owner
            .entry(pid.clone())
            .or_default()
            .push(key.clone());
        self.records.insert(key.clone(), record);
        let started = pid.clone();
        if let Some(caller) = trigger {
            self.actions
                .push(Action::Reply(caller, Reply::Started(started)));
        }
        let pending = self.pending.get_mut(&key).expect("present");
        pending.trigger = None;
        let recorded = self.records[&key].start.clone();
        self.end(key, |start| {
            if same_start(start, &recorded) {
                Reply::AlreadyStarted(pid.clone())
            } else {
                Reply::Conflict(pid.clone())
            }
        });
    }

    /// A monitored owner went (`None`: its node's connection was lost).
    pub(crate) fn owner_down(&mut self, pid: &Pid, reason: Option<Term>) {
        let Some(keys) = self.by_owner.get(pid) else {
            return;
        };
        let gone = reason.map_or(Gone::NodeLost, Gone::Exited);
        for key in keys {
            if let Some(record) = self.records.get_mut(key) {
                record.gone = Some(gone.clone());
            }
        }
    }

    fn drop_record(&mut self, key: &Canon) -> Option<Record> {
        let record = self.records.remove(key)?;
        if let Some(keys) = self.by_owner.get_mut(&record.owner) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_owner.remove(&record.owner);
            }
        }
        Some(record)
    }

    /// The slot released `name` (its `NameChanged` to `undefined`). A
    /// recorded name whose owner went is restarted as its Restart says;
    /// released for any other reason (session lost), it is forgotten.
    pub(crate) fn released(&mut self, name: &Term, now: Instant) {
        let Some(key) = name_key(name) else { return };
        self.metas.remove(&key);
        let Some(mut record) = self.drop_record(&key) else {
            return;
        };
        let (reason, placement) = match record.gone.take() {
            Some(Gone::Exited(reason)) => {
                let node = record.owner.node.name.clone();
                let placement = Placement {
                    first: Some(record.host.clone()).filter(|h| h.node.name == node),
                    prefer_node: Some(node),
                    avoid_node: None,
                };
                (Some(reason), placement)
            }
            Some(Gone::NodeLost) => {
                let placement = Placement {
                    avoid_node: Some(record.owner.node.name.clone()),
                    ..Placement::default()
                };
                (None, placement)
            }
            None => return,
        };
        if !record.restart.restarts_after(reason.as_ref()) {
            return;
        }
        if !record.intensity.allow(now) {
            tracing::error!(%name, "erl_quorum: a supervised name restarted too often; giving up");
            return;
        }
        tracing::info!(%name, keeper = %record.keeper, "erl_quorum: restarting a supervised name");
        let to_try = self.hosts.order(record.start.kind(), &placement);
        let pending = Pending {
            id: 0,
            name: record.name,
            start: record.start,
            restart: record.restart,
            meta: record.meta,
            phase: Phase::Waiting,
            to_try,
            placement,
            trigger: None,
            parked: Vec::new(),
            intensity: record.intensity,
            is_restart: true,
            attempted: false,
        };
        self.pending.insert(key.clone(), pending);
        self.next_host(key, atom("no_host"), now);
    }

    /// `unregister_name` of a name held here: its record goes (no restart)
    /// and its owner gets exit signal `shutdown`; a start in flight is
    /// abandoned and what waited on it is served again.
    pub(crate) fn unregister(&mut self, name: &Term) {
        let Some(key) = name_key(name) else { return };
        self.metas.remove(&key);
        if let Some(record) = self.drop_record(&key) {
            self.actions.push(Action::Exit {
                owner: record.owner,
                reason: atom("shutdown"),
            });
        }
        if let Some(mut pending) = self.pending.remove(&key) {
            self.by_id.remove(&pending.id);
            if let Some(caller) = pending.trigger.take() {
                self.actions.push(Action::Reply(caller, Reply::NoQuorum));
            }
            for (caller, request) in pending.parked {
                self.actions.push(Action::Serve(caller, request));
            }
        }
    }

    /// `{register_name, Name, Pid, Meta}`: Meta is kept for the name while
    /// `pid` holds it.
    pub(crate) fn set_meta(&mut self, name: &Term, pid: Pid, meta: Term) {
        if let Some(key) = name_key(name) {
            self.metas.insert(key, (pid, meta));
        }
    }

    /// The meta of `name`, held by `holder`.
    pub(crate) fn meta(&self, name: &Term, holder: &Pid) -> Term {
        let Some(key) = name_key(name) else {
            return atom("undefined");
        };
        if let Some(record) = self.records.get(&key).filter(|r| r.owner == *holder) {
            return record.meta.clone();
        }
        match self.metas.get(&key) {
            Some((pid, meta)) if pid == holder => meta.clone(),
            _ => atom("undefined"),
        }
    }

    /// The session was lost: every hold is gone, so are the records;
    /// starts in flight are abandoned (callers: `no_quorum`; a keeper's
    /// late `started` is told `no`).
    pub(crate) fn session_lost(&mut self) {
        self.records.clear();
        self.by_owner.clear();
        self.metas.clear();
        self.by_id.clear();
        let keys: Vec<Canon> = self.pending.keys().cloned().collect();
        for key in keys {
            self.end(key, |_| Reply::NoQuorum);
        }
    }
}

fn is_no_host(reason: &Term) -> bool {
    crate::term::is_atom(reason, "no_host")
}
