//! The core's side of supervised names: routes `start_name` and
//! `whereis_meta`, serves hosts and keepers, and carries out what the
//! supervision component asks (see [`crate::services::supervise`]).

use super::timers::Timer;
use super::watches::{MonitorTarget, Watched};
use super::{Core, Output};
use crate::process::Caller;
use crate::services::protocol::HostMsg;
use crate::services::protocol::{Reply, Request};
use crate::services::slots::{shard_of_key, Kind};
use crate::services::supervise::Action;
use crate::term::{Pid, Term};
use std::time::Duration;

/// How soon a restart held back (see [`Core::may_start`]) is tried
/// again: soon while this node may take the shard, slowly while another
/// node holds it (each try sends for the shard).
const HELD_BACK_RETRY: Duration = Duration::from_millis(100);
const HELD_BACK_FOREIGN_RETRY: Duration = Duration::from_secs(1);

impl Core {
    /// Whether an `eq_start` for `name` may go out now: only while this
    /// node could grant the name at once (its shard held under the current
    /// session, with the margin every grant needs). A child started
    /// otherwise would run unregistered while this node's session may be
    /// lapsing, and the node that takes the shard next would start another
    /// one. When the session could grant, the shard is sent for, unless
    /// another node was just seen holding it (then requests for it are
    /// redirected there; the view goes stale and is asked again).
    fn may_start(&mut self, name: &Term) -> bool {
        let Some(shard) = shard_of_key(Kind::Name, name) else {
            return true;
        };
        let epoch = self.lease.session.epoch;
        if !self.may_grant() {
            return false;
        }
        if self.routing.shards.held(shard, epoch) {
            return true;
        }
        if !self.routing.shards.foreign_fresh(shard, self.now)
            && self.routing.shards.want(shard, epoch, self.now)
        {
            self.take_shard(shard);
        }
        false
    }

    /// Whether another node was just seen holding `name`'s shard.
    fn shard_elsewhere(&self, name: &Term) -> bool {
        shard_of_key(Kind::Name, name)
            .is_some_and(|shard| self.routing.shards.foreign_fresh(shard, self.now))
    }

    fn held_back_retry(&self, name: &Term) -> Duration {
        match shard_of_key(Kind::Name, name) {
            Some(shard) if self.routing.shards.foreign(shard) => HELD_BACK_FOREIGN_RETRY,
            _ => HELD_BACK_RETRY,
        }
    }

    /// `{start_name, ...}`, routed by the name's shard like a registration.
    pub(super) fn start_name(&mut self, caller: Caller, request: Request) {
        let Request::StartName { ref name, .. } = request else {
            return;
        };
        let name = name.clone();
        if let Some((caller, request)) = self.route(caller, request, Kind::Name, &name) {
            let holder = self.slots.whereis_name(&name);
            self.supervise.start_name(caller, request, holder, self.now);
        }
    }

    /// `{register_name, Name, Pid[, Meta]}` this node serves: waits while
    /// a start for the name is in flight.
    pub(super) fn register_here(&mut self, caller: Caller, request: Request) {
        let Some((caller, request)) = self.supervise.park(caller, request) else {
            return;
        };
        if let Request::RegisterName { name, pid, meta } = request {
            if let Some(meta) = meta {
                self.supervise.set_meta(&name, pid.clone(), meta);
            }
            self.slots.register(caller, name, pid);
        }
    }

    /// `{whereis_meta, Name}`, routed by shard (the serving node keeps meta).
    pub(super) fn whereis_meta(&mut self, caller: Caller, request: Request) {
        let Request::WhereisMeta { ref name } = request else {
            return;
        };
        let name = name.clone();
        if let Some((caller, _)) = self.route(caller, request, Kind::Name, &name) {
            let found = self.slots.whereis_name(&name).map(|pid| {
                let meta = self.supervise.meta(&name, &pid);
                (pid, meta)
            });
            self.outputs
                .push_back(Output::Reply(caller, Reply::WhereisMeta(found)));
        }
    }

    /// Carries out what the supervision component asked for.
    pub(super) fn drain_supervise(&mut self) {
        loop {
            let actions = self.supervise.take_actions();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                match action {
                    Action::Reply(caller, reply) => {
                        self.outputs.push_back(Output::Reply(caller, reply))
                    }
                    Action::Serve(caller, request) => self.serve(caller, request),
                    Action::ToHost(host, HostMsg::Start { id, name, .. })
                        if !self.may_start(&name) =>
                    {
                        let elsewhere = self.shard_elsewhere(&name);
                        let now = self.now;
                        if let Some(name) = self.supervise.hold_back(id, host, elsewhere, now) {
                            let at = self.now + self.held_back_retry(&name);
                            self.timers.at(at, Timer::StartRetry(name));
                        }
                    }
                    Action::ToHost(host, msg) => {
                        let HostMsg::Start { id, .. } = &msg;
                        self.supervise.went_out(*id);
                        self.outputs.push_back(Output::Host(host, msg))
                    }
                    Action::Register { keeper, name, pid } => {
                        self.slots.register(keeper, name, pid)
                    }
                    Action::Deadline { id, at } => self.timers.at(at, Timer::StartDeadline(id)),
                    Action::RetryAt { name, at } => self.timers.at(at, Timer::StartRetry(name)),
                    Action::Exit { owner, reason } => {
                        self.outputs.push_back(Output::Exit { owner, reason })
                    }
                    Action::MonitorHost(pid) => {
                        let id = self.watches.watch(Watched::Host(pid.clone()));
                        self.outputs
                            .push_back(Output::Monitor(id, MonitorTarget::Process(pid)));
                    }
                    Action::MonitorChild(pid) => {
                        let id = self.watches.watch(Watched::LateChild(pid.clone()));
                        self.outputs
                            .push_back(Output::Monitor(id, MonitorTarget::Process(pid)));
                    }
                    Action::ResumeAt { id, at } => self.timers.at(at, Timer::StartResume(id)),
                }
            }
        }
    }

    /// The slots answered `caller`: if it is a keeper registering its
    /// child, the start it belongs to ends.
    pub(super) fn note_keeper_reply(&mut self, caller: &Caller, reply: &Reply) {
        if self.supervise.pending_count() == 0 {
            return;
        }
        let Some(name) = self.supervise.registering_name(caller) else {
            return;
        };
        let granted = *reply == Reply::Yes;
        let holder = if granted {
            None
        } else {
            self.slots.whereis_name(&name)
        };
        self.supervise.registered(caller, granted, holder);
    }

    /// A name this node held was released.
    pub(super) fn name_released(&mut self, name: &Term) {
        self.supervise.released(name, self.now);
    }

    /// A monitored owner exited (`reason`), or its connection was lost.
    pub(super) fn owner_went(&mut self, pid: &Pid, reason: &Term, connection_lost: bool) {
        let reason = (!connection_lost).then(|| reason.clone());
        self.supervise
            .registering_child_down(pid, reason.clone(), self.now);
        self.supervise.owner_down(pid, reason);
    }
}
