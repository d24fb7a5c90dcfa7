//! The host process, `erl_quorum_host`: announces the host to the serving
//! nodes (the `announce` state machine), re-announces when one comes back,
//! and hands each `eq_start` to a new keeper.

use super::announce::Announcer;
use super::keeper::{Keepers, Order};
use super::{Services, HOST_NAME};
use crate::node::Node;
use crate::process::{
    start_event_server, CallReply, Caller, EventServer, Flow, GenServer, Mail, Process,
    RegisterError,
};
use crate::services::protocol::{HostKind, HostMsg, Request};
use crate::term::{atom, binary, list, tuple, Pid, Reference, Term};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

/// How long an announcement waits for `ok`.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);

/// An announcement's answer, from the task that made the call.
pub(super) struct Answered {
    node: String,
    ok: bool,
}

struct HostServer {
    keepers: Keepers,
    announcer: Announcer,
    /// Monitors on the `erl_quorum` of nodes that know this host.
    watches: HashMap<Reference, String>,
    answers: UnboundedSender<Answered>,
}

/// Registers the host process and runs it.
pub(super) fn start(
    node: &Node,
    services: Services,
    serving: Vec<String>,
) -> Result<Pid, RegisterError> {
    let process = node.spawn_process();
    process.register(HOST_NAME)?;
    let host = process.pid().clone();
    let (answers, events) = tokio::sync::mpsc::unbounded_channel();
    let server = HostServer {
        announcer: Announcer::new(&serving, Instant::now()),
        keepers: Keepers {
            node: node.clone(),
            host: host.clone(),
            services,
            serving: Arc::new(serving),
        },
        watches: HashMap::new(),
        answers,
    };
    Ok(start_event_server(process, server, events))
}

impl HostServer {
    /// Calls `{host, Pid, rust}` on `node`'s `erl_quorum` from a process of
    /// its own, so a slow or unreachable node holds up nothing here.
    fn announce(&self, node: String) {
        let mut caller = self.keepers.node.spawn_process();
        let request = Request::Host {
            pid: self.keepers.host.clone(),
            kind: HostKind::Rust,
        }
        .encode();
        let answers = self.answers.clone();
        tokio::spawn(async move {
            let reply = caller
                .call(("erl_quorum", node.as_str()), request, ANNOUNCE_TIMEOUT)
                .await;
            let ok = matches!(&reply, Ok(t) if crate::term::is_atom(t, "ok"));
            if !ok {
                tracing::debug!(%node, ?reply, "erl_quorum_host: announcement not taken; retrying");
            }
            let _ = answers.send(Answered { node, ok });
        });
    }
}

impl GenServer for HostServer {
    /// `services`: the services provided, as binaries; `announced_to`:
    /// the serving nodes that took the announcement and are watched.
    async fn handle_call(&mut self, request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        if crate::term::is_atom(&request, "services") {
            return CallReply::Reply(self.services_term());
        }
        if crate::term::is_atom(&request, "announced_to") {
            return CallReply::Reply(self.announced_term());
        }
        CallReply::Reply(tuple(vec![
            atom("error"),
            tuple(vec![atom("unknown_request"), request]),
        ]))
    }

    async fn handle_info(&mut self, mail: Mail, _process: &mut Process) -> Flow {
        match mail {
            Mail::Message(message) => match HostMsg::decode(&message) {
                Ok(HostMsg::Start {
                    node,
                    id,
                    name,
                    start,
                    restart,
                }) => self.keepers.spawn(Order {
                    node,
                    id,
                    name,
                    start,
                    restart: restart.into(),
                }),
                Err(_) => tracing::debug!("erl_quorum_host: unexpected message ignored"),
            },
            Mail::Down { reference, .. } => {
                if let Some(node) = self.watches.remove(&reference) {
                    tracing::info!(%node, "erl_quorum_host: a serving node went down; announcing again when it is back");
                    self.announcer.down(&node, Instant::now());
                }
            }
            _ => {}
        }
        Flow::Continue
    }

    fn state_term(&self) -> Term {
        list(vec![
            tuple(vec![atom("services"), self.services_term()]),
            tuple(vec![atom("announced_to"), self.announced_term()]),
        ])
    }

    fn deadline(&self) -> Option<Instant> {
        self.announcer.next_due()
    }

    async fn handle_timeout(&mut self, _process: &mut Process) -> Flow {
        for node in self.announcer.due(Instant::now()) {
            self.announce(node);
        }
        Flow::Continue
    }
}

impl EventServer for HostServer {
    type Event = Answered;

    async fn handle_event(&mut self, answered: Answered, process: &mut Process) -> Flow {
        let Answered { node, ok } = answered;
        self.announcer.answered(&node, ok, Instant::now());
        if ok {
            let watch = process.monitor(("erl_quorum", node.as_str()));
            self.watches.insert(watch, node);
        }
        Flow::Continue
    }
}

impl HostServer {
    fn announced_term(&self) -> Term {
        list(self.announcer.known().into_iter().map(atom).collect())
    }

    fn services_term(&self) -> Term {
        list(
            self.keepers
                .services
                .names()
                .into_iter()
                .map(|s| binary(s.into_bytes()))
                .collect(),
        )
    }
}
