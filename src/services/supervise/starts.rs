//! Starts in flight: sending `eq_start` to one host after another, the
//! keepers' answers, deadlines, abandoned attempts, and what the callers
//! parked on a start are told when it ends.

use super::*;
use crate::term::Brief;

/// What a start in flight is doing.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
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
    /// The serving node could not order the start yet (see
    /// [`Supervise::hold_back`]); tried again at the next
    /// [`Action::RetryAt`], with the same host first.
    HeldBack,
}

/// A start in flight for one name.
#[derive(Debug)]
pub(super) struct Pending {
    /// The id of the current attempt (a new one per host tried, so a late
    /// answer from an earlier attempt is told `no`).
    pub(super) id: u64,
    pub(super) name: Term,
    pub(super) start: Start,
    pub(super) restart: Restart,
    pub(super) meta: Term,
    pub(super) phase: Phase,
    /// Hosts still to try, in order.
    pub(super) to_try: VecDeque<Pid>,
    pub(super) placement: Placement,
    /// The `start_name` that asked for it (none for a restart).
    pub(super) trigger: Option<Caller>,
    /// Requests for the name that came while it was in flight.
    pub(super) parked: Vec<(Caller, Request)>,
    pub(super) intensity: Intensity,
    /// A restart keeps trying (every [`RETRY_AFTER`]) when no host is left;
    /// a caller's start fails instead.
    pub(super) is_restart: bool,
    /// Whether this round sent any `eq_start` (a round that found no host
    /// at all does not count as a restart: nothing was started).
    pub(super) attempted: bool,
    /// Since when its start has been held back (see
    /// [`Supervise::hold_back`]); cleared once an `eq_start` went out.
    pub(super) held_since: Option<Instant>,
}

/// How long a caller's start may be held back before its callers are told
/// `no_quorum` (a restart has no caller: it waits as long as it takes).
const HELD_BACK_MAX: Duration = Duration::from_secs(5);

impl Supervise {
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

    /// Sends the next attempt of `key`'s start, or, with no host left,
    /// fails it (`reason`: the last failure) or, for a restart, waits.
    pub(super) fn next_host(&mut self, key: Canon, reason: Term, now: Instant) {
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
    pub(super) fn end(&mut self, key: Canon, reply_to: impl Fn(&Start) -> Reply) {
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
            tracing::info!(name = %Brief(name), reason = %Brief(&reason), "erl_quorum: a supervised name failed to start");
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

    /// Takes back attempt `id`, whose `eq_start` to `host` the serving
    /// node did not send: it could not grant the name now. The host comes
    /// first again at the next [`Supervise::retry`] (at the returned name's
    /// [`Action::RetryAt`], which the caller schedules; nothing was started,
    /// so nothing counts as a restart). When another node holds the name's
    /// shard (`elsewhere`), or the start has been held back for
    /// [`HELD_BACK_MAX`], a caller's start ends instead: its callers get
    /// `no_quorum` and ask again (and are redirected). A restart keeps
    /// waiting (nobody else knows its record).
    pub(crate) fn hold_back(
        &mut self,
        id: u64,
        host: Pid,
        elsewhere: bool,
        now: Instant,
    ) -> Option<Term> {
        let key = self.by_id.remove(&id)?;
        let pending = self.pending.get_mut(&key)?;
        let since = *pending.held_since.get_or_insert(now);
        let too_long = now.duration_since(since) >= HELD_BACK_MAX;
        if (elsewhere || too_long) && !pending.is_restart {
            self.end(key, |_| Reply::NoQuorum);
            return None;
        }
        pending.to_try.push_front(host);
        pending.phase = Phase::HeldBack;
        Some(pending.name.clone())
    }

    /// Attempt `id`'s `eq_start` went out: it is no longer held back.
    pub(crate) fn went_out(&mut self, id: u64) {
        if let Some(pending) = self.by_id.get(&id).and_then(|k| self.pending.get_mut(k)) {
            pending.held_since = None;
        }
    }

    /// A restart that found no host, or a start held back, tries again.
    pub(crate) fn retry(&mut self, name: &Term, now: Instant) {
        let Some(key) = name_key(name) else { return };
        let Some(pending) = self.pending.get_mut(&key) else {
            return;
        };
        if pending.phase == Phase::HeldBack {
            self.next_host(key, atom("no_host"), now);
            return;
        }
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

    /// The key of the start in flight whose phase `is` picks (starts in
    /// flight are few: a scan).
    fn pending_key(&self, is: impl Fn(&Phase) -> bool) -> Option<Canon> {
        self.pending
            .iter()
            .find(|(_, p)| is(&p.phase))
            .map(|(k, _)| k.clone())
    }

    /// The slots answered a keeper's registration: `granted` means its
    /// child holds the name now (recorded; callers told), else `holder`
    /// (if any) got there first and the callers are told that.
    pub(crate) fn registered(&mut self, keeper: &Caller, granted: bool, holder: Option<Pid>) {
        let Some(key) = self.pending_key(
            |phase| matches!(phase, Phase::Registering { keeper: k, .. } if k == keeper),
        ) else {
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
            .pending_key(|phase| matches!(phase, Phase::Registering { pid: c, .. } if c == pid))
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
