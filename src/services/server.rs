//! The process registered as `erl_quorum`: the tokio driver around the
//! sans-IO [`Core`]. It decodes mail into [`Request`]s and [`PeerMsg`]s,
//! feeds the core, carries out what it asks (replies, monitors, rounds on
//! the worker pools, messages to guards, subscribers and peers) and sleeps
//! until the core's next deadline.
//!
//! Its entry points are those of an event-driven `GenServer`
//! (`handle_call`, `handle_info`, `handle_event`, `deadline` /
//! `handle_timeout`, `wants_idle` / `handle_idle`); [`Server::run`] is the
//! loop that calls them until the crate's `GenServer` runs it.

use super::core::{Core, Identity, MonitorId, MonitorTarget, Output};
use super::protocol::{PeerMsg, PeerMsgError, Request};
use super::rounds::{Event, Job};
use super::ServicesConfig;
use crate::process::{Caller, Mail, Process, ProcessError};
use crate::term::{as_tuple, atom, is_atom, tuple, Reference, Term};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub(super) struct Server {
    process: Process,
    core: Core,
    jobs: mpsc::UnboundedSender<Job>,
    /// A worker of its own for session renewals: never behind long waits.
    renewals: mpsc::UnboundedSender<Job>,
    /// The references of the monitors the core asked for, both ways.
    monitors: HashMap<Reference, MonitorId>,
    references: HashMap<MonitorId, Reference>,
}

impl Server {
    pub fn new(
        process: Process,
        config: ServicesConfig,
        jobs: mpsc::UnboundedSender<Job>,
        renewals: mpsc::UnboundedSender<Job>,
    ) -> Server {
        let node = process.node().clone();
        let me = Identity {
            node: node.name().to_owned(),
            pid: process.pid().clone(),
        };
        let namer = Box::new(move || {
            tuple(vec![
                atom("erl_quorum_session"),
                atom(node.name()),
                Term::from(node.make_ref()),
            ])
        });
        let seed = rand::random();
        let core = Core::new(config, me, namer, seed, Instant::now());
        Server {
            process,
            core,
            jobs,
            renewals,
            monitors: HashMap::new(),
            references: HashMap::new(),
        }
    }

    pub async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        loop {
            let deadline = self
                .deadline()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let idle = self.wants_idle();
            tokio::select! {
                biased;
                mail = self.process.recv() => match mail {
                    Ok(mail) => self.handle_info(mail),
                    Err(ProcessError::Exited(reason)) => {
                        tracing::warn!(%reason, "erl_quorum service stopped");
                        return;
                    }
                },
                Some(event) = events.recv() => self.handle_event(event),
                _ = tokio::time::sleep_until(deadline) => self.handle_timeout(),
                // Only when nothing else is ready: a burst of registrations
                // goes out as one message per subscriber.
                _ = std::future::ready(()), if idle => self.handle_idle(),
            }
        }
    }

    /// A `gen_server:call` request.
    pub fn handle_call(&mut self, caller: Caller, request: &Term) {
        match Request::decode(request) {
            Ok(request) => self.core.handle_request(caller, request, Instant::now()),
            Err(refused) => {
                tracing::debug!(%refused, "erl_quorum: request refused");
                caller.reply(&self.process, refused.encode());
            }
        }
        self.carry_out();
    }

    pub fn handle_info(&mut self, mail: Mail) {
        match mail {
            Mail::Message(message) => match as_tuple(&message) {
                Some([kind, from, request]) if is_atom(kind, "$gen_call") => {
                    match Caller::from_term(from) {
                        Some(caller) => self.handle_call(caller, request),
                        None => tracing::warn!("erl_quorum: call with a malformed From"),
                    }
                }
                _ => match PeerMsg::decode(&message) {
                    Ok(msg) => {
                        self.core.handle_peer_msg(msg, Instant::now());
                        self.carry_out();
                    }
                    Err(e @ PeerMsgError::UnsupportedVersion(_)) => {
                        tracing::warn!(error = %e, "erl_quorum: peer message refused")
                    }
                    Err(e) => tracing::debug!(error = %e, "erl_quorum: unexpected message ignored"),
                },
            },
            Mail::Down {
                reference, reason, ..
            } => {
                if let Some(id) = self.monitors.remove(&reference) {
                    self.references.remove(&id);
                    let lost = is_atom(&reason, "noconnection");
                    self.core.handle_down(id, lost, Instant::now());
                    self.carry_out();
                }
            }
            Mail::Exit { .. } | Mail::NodeDown { .. } => {}
        }
    }

    /// A quorum job's result.
    pub fn handle_event(&mut self, event: Event) {
        self.core.handle_round_result(event, Instant::now());
        self.carry_out();
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    pub fn handle_timeout(&mut self) {
        self.core.handle_timeout(Instant::now());
        self.carry_out();
    }

    /// Name changes wait for a moment with no input.
    pub fn wants_idle(&self) -> bool {
        self.core.has_unsent()
    }

    pub fn handle_idle(&mut self) {
        self.core.flush_changes();
        self.carry_out();
    }

    fn carry_out(&mut self) {
        while let Some(output) = self.core.poll_action() {
            match output {
                Output::Reply(caller, reply) => caller.reply(&self.process, reply.encode()),
                Output::Monitor(id, target) => {
                    let reference = match target {
                        MonitorTarget::Process(pid) => self.process.monitor(pid),
                        MonitorTarget::Service(node) => {
                            self.process.monitor(("erl_quorum", node.as_str()))
                        }
                    };
                    self.monitors.insert(reference.clone(), id);
                    self.references.insert(id, reference);
                }
                Output::Demonitor(id) => {
                    if let Some(reference) = self.references.remove(&id) {
                        self.monitors.remove(&reference);
                        self.process.demonitor(&reference);
                    }
                }
                Output::Run(job @ Job::Renew { .. }) => {
                    let _ = self.renewals.send(job);
                }
                Output::Run(job) => {
                    let _ = self.jobs.send(job);
                }
                Output::Guard(notice) => {
                    let node = notice.owner.node.name.clone();
                    self.process
                        .send(("rust_quorum", node.as_str()), notice.encode());
                }
                Output::Exit { owner, reason } => self.process.exit_signal(&owner, reason),
                Output::Subscribers(pids, batch) => {
                    let message = batch.encode();
                    for pid in &pids {
                        self.process.send(pid, message.clone());
                    }
                }
                Output::Peers(messages) => {
                    for (pid, msg) in messages {
                        self.process.send(&pid, msg.encode());
                    }
                }
            }
        }
    }
}
