//! The core's side of supervised names: routes `start_name` and
//! `whereis_meta`, serves hosts and keepers, and carries out what the
//! supervision component asks (see [`crate::services::supervise`]).

use super::timers::Timer;
use super::watches::{MonitorTarget, Watched};
use super::{Core, Output};
use crate::process::Caller;
use crate::services::protocol::{Reply, Request};
use crate::services::slots::Kind;
use crate::services::supervise::Action;
use crate::term::{Pid, Term};

impl Core {
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
                    Action::ToHost(host, msg) => self.outputs.push_back(Output::Host(host, msg)),
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
