//! The process registered as `eq_groups`: an [`EventServer`] around the
//! sans-IO [`HubCore`]. Mail is decoded into [`GroupMsg`]s and monitor
//! downs; Rust joins and leaves come as events from [`super::Groups`]. The
//! view changes go to the shared local table (read by `Groups` with no
//! round trip) and to the Rust monitors.

use super::core::{Action, Dest, HubCore, JoinRefused, MonitorId};
use super::shared::Shared;
use super::wire::{Group, GroupMsg, GroupMsgError};
use crate::process::{CallReply, Caller, EventServer, Flow, GenServer, Mail, Process};
use crate::term::{atom, int, tuple, Brief, Pid, Reference, Term};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The registered name of the hub on every serving node.
pub(crate) const HUB: &str = "eq_groups";

/// What the Rust API asks the hub.
pub(crate) enum HubEvent {
    Join {
        scope: String,
        group: Group,
        pids: Vec<Pid>,
        reply: oneshot::Sender<Result<(), JoinRefused>>,
    },
    Leave {
        scope: String,
        group: Group,
        pids: Vec<Pid>,
        reply: oneshot::Sender<bool>,
    },
}

pub(crate) struct HubServer {
    core: HubCore,
    shared: Arc<Shared>,
    monitors: HashMap<Reference, MonitorId>,
    references: HashMap<MonitorId, Reference>,
}

impl HubServer {
    pub(crate) fn new(core: HubCore, shared: Arc<Shared>) -> HubServer {
        HubServer {
            core,
            shared,
            monitors: HashMap::new(),
            references: HashMap::new(),
        }
    }

    fn carry_out(&mut self, process: &mut Process) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Send(Dest::Pid(pid), msg) => process.send(&pid, msg.encode()),
                Action::Send(Dest::Hub(node), msg) => {
                    process.send((HUB, node.as_str()), msg.encode())
                }
                Action::Monitor(id, target) => {
                    let reference = match target {
                        Dest::Pid(pid) => process.monitor(&pid),
                        Dest::Hub(node) => process.monitor((HUB, node.as_str())),
                    };
                    self.monitors.insert(reference.clone(), id);
                    self.references.insert(id, reference);
                }
                Action::Demonitor(id) => {
                    if let Some(reference) = self.references.remove(&id) {
                        self.monitors.remove(&reference);
                        process.demonitor(&reference);
                    }
                }
                Action::Changed {
                    scope,
                    op,
                    group,
                    pids,
                } => self.shared.apply(&scope, op, &group, &pids),
            }
        }
    }
}

impl GenServer for HubServer {
    /// No calls in the protocol: answered `{error, badarg}`.
    async fn handle_call(&mut self, _request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        CallReply::Reply(tuple(vec![atom("error"), atom("badarg")]))
    }

    async fn handle_info(&mut self, mail: Mail, process: &mut Process) -> Flow {
        match mail {
            Mail::Message(message) => match GroupMsg::decode(&message) {
                Ok(msg) => {
                    if matches!(msg, GroupMsg::Peer { .. }) {
                        self.core.set_connected(process.node().connected_nodes());
                    }
                    self.core.handle_msg(msg, Instant::now());
                    self.carry_out(process);
                }
                Err(e @ GroupMsgError::TooLarge(_)) => {
                    tracing::warn!(error = %e, msg = %Brief(&message), "eq_groups: message refused")
                }
                Err(e) => {
                    tracing::debug!(error = %e, msg = %Brief(&message), "eq_groups: message ignored")
                }
            },
            Mail::Down { reference, .. } => {
                if let Some(id) = self.monitors.remove(&reference) {
                    self.references.remove(&id);
                    self.core.handle_down(id, Instant::now());
                    self.carry_out(process);
                }
            }
            Mail::Exit { .. } | Mail::NodeDown { .. } => {}
        }
        Flow::Continue
    }

    fn terminate(&mut self, reason: &Term) {
        tracing::warn!(reason = %Brief(reason), "eq_groups hub stopped");
        self.shared.stopped();
    }

    /// What `sys:get_state/1` shows: counters.
    fn state_term(&self) -> Term {
        let s = self.core.status();
        let n = |v: usize| int(i64::try_from(v).unwrap_or(i64::MAX));
        tuple(vec![
            atom("eq_groups"),
            tuple(vec![atom("groups"), n(s.groups)]),
            tuple(vec![atom("members"), n(s.members)]),
            tuple(vec![atom("streams"), n(s.streams)]),
            tuple(vec![atom("subscribers"), n(s.subscribers)]),
            tuple(vec![atom("peers_up"), n(s.peers_up)]),
            tuple(vec![atom("own_members"), n(s.own_members)]),
        ])
    }

    fn deadline(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    async fn handle_timeout(&mut self, process: &mut Process) -> Flow {
        self.core.handle_timeout(Instant::now());
        self.carry_out(process);
        Flow::Continue
    }
}

impl EventServer for HubServer {
    type Event = HubEvent;

    async fn handle_event(&mut self, event: HubEvent, process: &mut Process) -> Flow {
        match event {
            HubEvent::Join {
                scope,
                group,
                pids,
                reply,
            } => {
                let result = self.core.local_join(&scope, group, &pids);
                self.carry_out(process);
                let _ = reply.send(result);
            }
            HubEvent::Leave {
                scope,
                group,
                pids,
                reply,
            } => {
                let left = self.core.local_leave(&scope, &group, &pids);
                self.carry_out(process);
                let _ = reply.send(left);
            }
        }
        Flow::Continue
    }
}
