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
//! lease plus a margin, by which time the guard has told it). An attempt
//! that is given up (its keeper too slow, its host gone) may still start a
//! child, so the next attempt waits until that cannot be: the keeper
//! answered (a late child is told `no`, and the next attempt waits for its
//! `DOWN`), or its host is gone and the session lease plus a margin passed
//! (`grace`: a node cut off has stopped by then, as an owner's guard would
//! have told it). A keeper that never answers while its host runs holds
//! its name up, as a hung `init` holds up an OTP supervisor.

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
    /// Given up (deadline passed, or its host went) while the keeper may
    /// still start a child: the next attempt waits for the keeper's answer
    /// or, once its host is gone, for [`Action::ResumeAt`].
    Abandoned { host: Pid },
    /// A late child was told `no`: the next attempt waits for its end.
    Draining { child: Pid },
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

    /// Attempt `id`, given up, may be followed now (see [`Phase::Abandoned`]).
    pub(crate) fn resume(&mut self, id: u64, now: Instant) {
        let Some(key) = self.by_id.get(&id).cloned() else {
            return;
        };
        let pending = self.pending.get(&key).expect("by_id follows pending");
        if !matches!(
            pending.phase,
            Phase::Abandoned { .. } | Phase::Draining { .. }
        ) {
            return;
        }
        if pending.is_restart || pending.trigger.is_some() {
            self.next_host(key, atom("noproc"), now);
        } else {
            // Its callers were answered at the deadline; what came since
            // is served afresh.
            self.end(key, |_| Reply::NoQuorum);
        }
    }

    /// The late child `pid` (told `no`) is gone (`connection_lost`: only
    /// its node's connection: then `grace` from now).
    pub(crate) fn child_gone(&mut self, pid: &Pid, connection_lost: bool, now: Instant) {
        let Some(id) = self
            .pending
            .values()
            .find(|p| matches!(&p.phase, Phase::Draining { child } if child == pid))
            .map(|p| p.id)
        else {
            return;
        };
        if connection_lost {
            let at = now + self.grace;
            self.actions.push(Action::ResumeAt { id, at });
        } else {
            self.resume(id, now);
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
        // After an abandoned attempt every caller waiting now came after
        // the deadline's answers: served afresh.
        let afresh = matches!(
            pending.phase,
            Phase::Abandoned { .. } | Phase::Draining { .. }
        );
        for (caller, request) in pending.parked {
            match request {
                Request::StartName { ref start, .. } if !afresh => {
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
        if let Phase::Abandoned { .. } = pending.phase {
            // Too late: killed by its keeper; the next attempt waits for it.
            pending.phase = Phase::Draining { child: pid.clone() };
            self.actions.push(Action::Reply(keeper, Reply::No));
            self.actions.push(Action::MonitorChild(pid));
            return;
        }
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
        let phase = self.pending.get(&key).map(|p| &p.phase);
        if let Some(Phase::Abandoned { .. }) = phase {
            self.resume(id, now);
            return;
        }
        if let Some(Phase::Starting { .. }) = phase {
            let name = &self.pending[&key].name;
            tracing::info!(%name, %reason, "erl_quorum: a supervised name failed to start");
            self.next_host(key, reason, now);
        }
    }

    /// Attempt `id`'s keeper did not answer in time: its callers get
    /// `{start_failed, timeout}`, and the attempt is abandoned (a late
    /// `started` is told `no`; see [`Phase::Abandoned`]).
    pub(crate) fn deadline(&mut self, id: u64) {
        let Some(key) = self.by_id.get(&id).cloned() else {
            return;
        };
        let pending = self.pending.get_mut(&key).expect("by_id follows pending");
        let Phase::Starting { host } = &pending.phase else {
            return;
        };
        tracing::warn!(name = %pending.name, "erl_quorum: a keeper did not answer in time");
        pending.phase = Phase::Abandoned { host: host.clone() };
        // Its callers are told now; what comes later waits for the keeper.
        let timeout = Reply::StartFailed(atom("timeout"));
        if let Some(caller) = pending.trigger.take() {
            self.actions.push(Action::Reply(caller, timeout.clone()));
        }
        for (caller, request) in std::mem::take(&mut pending.parked) {
            match request {
                Request::StartName { .. } => {
                    self.actions.push(Action::Reply(caller, timeout.clone()))
                }
                request => self.actions.push(Action::Serve(caller, request)),
            }
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

    /// Whether the slots' reply to `caller` is to be dropped (see
    /// `answered_keepers`).
    pub(crate) fn swallow_reply(&mut self, caller: &Caller) -> bool {
        let Some(i) = self.answered_keepers.iter().position(|c| c == caller) else {
            return false;
        };
        self.answered_keepers.swap_remove(i);
        true
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

    /// A child whose registration is in flight went (`reason`; `None`:
    /// its node's connection was lost, it may run on): its keeper is told
    /// `no` (the slots answer no dead owner), and the start goes on as
    /// after a failed start, once the child surely stopped.
    pub(crate) fn registering_child_down(&mut self, pid: &Pid, reason: Option<Term>, now: Instant) {
        let Some(key) = self
            .pending
            .iter()
            .find(|(_, p)| matches!(&p.phase, Phase::Registering { pid: c, .. } if c == pid))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let pending = self.pending.get_mut(&key).expect("found");
        let Phase::Registering { keeper, .. } = pending.phase.clone() else {
            return;
        };
        self.actions.push(Action::Reply(keeper, Reply::No));
        match reason {
            Some(reason) => self.next_host(key, reason, now),
            None => {
                pending.phase = Phase::Draining { child: pid.clone() };
                let (id, at) = (pending.id, now + self.grace);
                self.actions.push(Action::ResumeAt { id, at });
            }
        }
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

    /// The session was lost: every hold is gone, so are the records, and
    /// every caller waiting on a start is answered `no_quorum`. A start in
    /// flight is abandoned, not forgotten: its keeper may still start a
    /// child, so the next start of its name waits as after a deadline; a
    /// child being registered is given up (its keeper told `no`).
    pub(crate) fn session_lost(&mut self) {
        self.records.clear();
        self.by_owner.clear();
        self.metas.clear();
        for pending in self.pending.values_mut() {
            match pending.phase.clone() {
                Phase::Starting { host } => pending.phase = Phase::Abandoned { host },
                // Not yet registered, so no guard tells it: its keeper is
                // told `no` now, while the old session still holds the
                // shard, and the next attempt waits for the child's end.
                Phase::Registering { keeper, pid, .. } => {
                    self.actions.push(Action::Reply(keeper.clone(), Reply::No));
                    self.actions.push(Action::MonitorChild(pid.clone()));
                    self.answered_keepers.push(keeper);
                    pending.phase = Phase::Draining { child: pid };
                }
                _ => {}
            }
            if let Some(caller) = pending.trigger.take() {
                self.actions.push(Action::Reply(caller, Reply::NoQuorum));
            }
            for (caller, request) in std::mem::take(&mut pending.parked) {
                match request {
                    Request::StartName { .. } => {
                        self.actions.push(Action::Reply(caller, Reply::NoQuorum))
                    }
                    request => self.actions.push(Action::Serve(caller, request)),
                }
            }
        }
    }
}

fn is_no_host(reason: &Term) -> bool {
    crate::term::is_atom(reason, "no_host")
}
