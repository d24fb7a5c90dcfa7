//! The host process, `erl_quorum_host`: announces the host to the serving
//! nodes (the `announce` state machine), re-announces when one comes back,
//! hands each `eq_start` to a new keeper, and keeps the declared singletons
//! running (the `ensure` state machine; the checks run on tasks of their
//! own).

use super::announce::Announcer;
use super::ensure::{
    after_whereis, check_period, start_next_node, AfterWhereis, Declared, Ensurer,
};
use super::keeper::{Keepers, Order};
use super::{Services, HOST_NAME};
use crate::node::Node;
use crate::process::{
    start_event_server, CallReply, Caller, EventServer, Flow, GenServer, Mail, Process,
    RegisterError,
};
use crate::services::protocol::{HostKind, HostMsg, Request};
use crate::services::registry::{Registry, StartOptions, StartSpec};
use crate::term::Brief;
use crate::term::{atom, binary, list, tuple, Pid, Reference, Term};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

/// How long an announcement waits for `ok`.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the host's tasks (and its handle) tell the host process.
pub(super) enum Event {
    /// An announcement's answer, from the task that made the call.
    Answered { node: String, ok: bool },
    /// The check of the declared name at this index ended.
    Checked(usize),
    /// [`Host::keep`](super::Host::keep): one more declared singleton.
    Keep(Declared),
}

struct HostServer {
    keepers: Keepers,
    announcer: Announcer,
    /// Monitors on the `erl_quorum` of nodes that know this host.
    watches: HashMap<Reference, String>,
    ensurer: Ensurer,
    events: UnboundedSender<Event>,
}

/// Registers the host process and runs it.
pub(super) fn start(
    node: &Node,
    services: Services,
    serving: Vec<String>,
    declared: Vec<Declared>,
) -> Result<(Pid, UnboundedSender<Event>), RegisterError> {
    let process = node.spawn_process();
    process.register(HOST_NAME)?;
    let host = process.pid().clone();
    let (sender, events) = tokio::sync::mpsc::unbounded_channel();
    let now = Instant::now();
    let mut ensurer = Ensurer::default();
    for d in declared {
        ensurer.declare(d, now);
    }
    let server = HostServer {
        announcer: Announcer::new(&serving, Instant::now()),
        keepers: Keepers {
            node: node.clone(),
            host: host.clone(),
            services,
            serving: Arc::new(serving),
        },
        watches: HashMap::new(),
        ensurer,
        events: sender.clone(),
    };
    Ok((start_event_server(process, server, events), sender))
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
        let answers = self.events.clone();
        tokio::spawn(async move {
            let reply = caller
                .call(("erl_quorum", node.as_str()), request, ANNOUNCE_TIMEOUT)
                .await;
            let ok = matches!(&reply, Ok(t) if crate::term::is_atom(t, "ok"));
            if !ok {
                tracing::debug!(%node, reply = ?reply.as_ref().map(Brief), "erl_quorum_host: announcement not taken; retrying");
            }
            let _ = answers.send(Event::Answered { node, ok });
        });
    }

    /// Checks the declared name at `index` on a task of its own: asks a
    /// serving node (this node first, then the others in turn while they
    /// do not answer) whether the name is held, and if not asks it to start
    /// the name here. Whatever comes of it, the next check is due a period
    /// later (`no_quorum`, `no_host` and the like are retried then).
    fn check(&self, index: usize, declared: Declared) {
        let own = self.keepers.node.name();
        let mut nodes: Vec<String> = self
            .keepers
            .serving
            .iter()
            .filter(|n| n.as_str() == own)
            .cloned()
            .collect();
        nodes.extend(
            self.keepers
                .serving
                .iter()
                .filter(|n| n.as_str() != own)
                .cloned(),
        );
        let mut registry = Registry::new(self.keepers.node.spawn_process());
        let host = self.keepers.host.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let Declared {
                name,
                service,
                restart,
            } = declared;
            for node in &nodes {
                registry = registry.with_server(node);
                let held = registry.whereis(name.clone()).await;
                match after_whereis(&held) {
                    AfterWhereis::Held | AfterWhereis::Done => break,
                    AfterWhereis::NextNode => continue,
                    AfterWhereis::Start => {}
                }
                let options = StartOptions {
                    restart,
                    meta: None,
                    host: Some(host.clone()),
                };
                let reply = registry
                    .start_name(name.clone(), StartSpec::Rust(service.clone()), options)
                    .await;
                if start_next_node(&reply) {
                    continue;
                }
                tracing::info!(name = %Brief(&name), %node, ?reply, "erl_quorum_host: a declared singleton was not held; asked for it");
                break;
            }
            let _ = events.send(Event::Checked(index));
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
                    self.ensurer.nudge(Instant::now());
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
            tuple(vec![atom("keeps"), self.keeps_term()]),
        ])
    }

    fn deadline(&self) -> Option<Instant> {
        match (self.announcer.next_due(), self.ensurer.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn handle_timeout(&mut self, _process: &mut Process) -> Flow {
        let now = Instant::now();
        for node in self.announcer.due(now) {
            self.announce(node);
        }
        for (index, declared) in self.ensurer.due(now) {
            self.check(index, declared);
        }
        Flow::Continue
    }
}

impl EventServer for HostServer {
    type Event = Event;

    async fn handle_event(&mut self, event: Event, process: &mut Process) -> Flow {
        match event {
            Event::Answered { node, ok } => {
                self.announcer.answered(&node, ok, Instant::now());
                if ok {
                    let watch = process.monitor(("erl_quorum", node.as_str()));
                    self.watches.insert(watch, node);
                }
            }
            Event::Checked(index) => self.ensurer.checked(index, Instant::now(), check_period()),
            Event::Keep(declared) => self.ensurer.declare(declared, Instant::now()),
        }
        Flow::Continue
    }
}

impl HostServer {
    fn announced_term(&self) -> Term {
        list(self.announcer.known().into_iter().map(atom).collect())
    }

    /// The declared singletons: `[{Name, Service}]`.
    fn keeps_term(&self) -> Term {
        list(
            self.ensurer
                .declared()
                .map(|d| tuple(vec![d.name.clone(), binary(d.service.clone().into_bytes())]))
                .collect(),
        )
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
