//! The process registered as `erl_quorum`: an [`EventServer`] around the
//! sans-IO [`Core`]. It decodes calls into [`Request`]s and other mail into
//! [`PeerMsg`]s and monitor downs, feeds the core, carries out what it asks
//! (replies, monitors, rounds on the worker pools, messages to guards,
//! subscribers and peers), and gives the server loop the core's next
//! deadline. Quorum rounds come back as events; name changes go out when
//! the mailbox is momentarily empty (`handle_idle`).

use super::core::{Core, Identity, MonitorId, MonitorTarget, Output};
use super::protocol::{PeerMsg, PeerMsgError, Reply, Request};
use super::rounds::{Event, Job};
use super::ServicesConfig;
use crate::process::{CallReply, Caller, EventServer, Flow, GenServer, Mail, Process};
use crate::term::Brief;
use crate::term::{atom, tuple, Reference, Term};
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub(super) struct Server {
    core: Core,
    jobs: mpsc::UnboundedSender<Job>,
    /// A worker of its own for session renewals: never behind long waits.
    renewals: mpsc::UnboundedSender<Job>,
    /// The references of the monitors the core asked for, both ways.
    monitors: HashMap<Reference, MonitorId>,
    references: HashMap<MonitorId, Reference>,
    /// Told once a drain (a stop) has handed every shard over.
    drained: Option<tokio::sync::oneshot::Sender<()>>,
    /// Until when the session was valid after the last renewal that
    /// extended it: the margin the next renewal had (metrics).
    session_until: Option<Instant>,
}

impl Server {
    /// The server of `process` (which runs it).
    pub(super) fn new(
        process: &Process,
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
            core,
            jobs,
            renewals,
            monitors: HashMap::new(),
            references: HashMap::new(),
            drained: None,
            session_until: None,
        }
    }

    fn carry_out(&mut self, process: &mut Process) {
        self.carry_out_outputs(process);
        if self.drained.is_some() && self.core.drained() {
            if let Some(tx) = self.drained.take() {
                let _ = tx.send(());
            }
        }
    }

    fn carry_out_outputs(&mut self, process: &mut Process) {
        while let Some(output) = self.core.poll_action() {
            match output {
                Output::Reply(caller, reply) => caller.reply(process, reply.encode()),
                Output::Monitor(id, target) => {
                    let reference = match target {
                        MonitorTarget::Process(pid) => process.monitor(pid),
                        MonitorTarget::Service(node) => {
                            process.monitor(("erl_quorum", node.as_str()))
                        }
                    };
                    self.monitors.insert(reference.clone(), id);
                    self.references.insert(id, reference);
                }
                Output::Demonitor(id) => {
                    if let Some(reference) = self.references.remove(&id) {
                        self.monitors.remove(&reference);
                        process.demonitor(&reference);
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
                    process.send(("rust_quorum", node.as_str()), notice.encode());
                }
                Output::Exit { owner, reason } => process.exit_signal(&owner, reason),
                Output::Subscribers(pids, batch) => {
                    let message = batch.encode();
                    for pid in &pids {
                        process.send(pid, message.clone());
                    }
                }
                Output::Peers(messages) => {
                    for (pid, msg) in messages {
                        process.send(&pid, msg.encode());
                    }
                }
                Output::ToPeer(node, msg) => {
                    process.send(("erl_quorum", node.as_str()), msg.encode())
                }
                Output::Host(host, msg) => process.send(&host, msg.encode()),
                Output::Disconnect(node) => {
                    // Reset, not closed: a grant still in flight must not
                    // reach the node's guard after a heal.
                    process.node().reset_connection(&node);
                }
            }
        }
    }
}

/// The span of one request: its op, the caller's node and the key (brief:
/// keys are unbounded), so that whatever the core logs while handling it
/// names them. At debug level: an enabled span costs 1.6 µs a request
/// (`cargo bench --bench metrics`), 1-3 % of a lock; a disabled one next
/// to nothing, and the core's info and warn lines name their key anyway.
fn request_span(request: &Request, from: &Caller) -> tracing::Span {
    let span = tracing::debug_span!(
        "request",
        op = request.op(),
        caller = %from.pid.node.name,
        key = tracing::field::Empty
    );
    if let (false, Some(key)) = (span.is_disabled(), request.key()) {
        span.record("key", tracing::field::display(Brief(key)));
    }
    span
}

impl Server {
    /// How long the session is valid for, as of the core's last input.
    fn session_valid_ms(&self) -> u64 {
        let status = self.core.status();
        let valid = status.iter().find(|(k, _)| k == "session_valid_ms");
        valid.map_or(0, |(_, v)| u64::try_from(*v).unwrap_or(0))
    }

    /// A renewal's answers were applied at `now`: counts it, with the
    /// margin the session had left if it was extended (none when it opened
    /// the session, or the session had lapsed: `before_ms` is 0 then).
    fn renewal_done(&mut self, now: Instant, before_ms: u64, process: &Process) {
        let after_ms = self.session_valid_ms();
        let extended = after_ms > before_ms;
        let margin_ms = match self.session_until {
            Some(until) if before_ms > 0 && extended => {
                Some(until.saturating_duration_since(now).as_millis() as u64)
            }
            _ => None,
        };
        if extended {
            self.session_until = Some(now + std::time::Duration::from_millis(after_ms));
        }
        process.node().metrics().renewal(extended, margin_ms);
    }
}

impl GenServer for Server {
    async fn handle_call(
        &mut self,
        request: Term,
        from: &Caller,
        process: &mut Process,
    ) -> CallReply {
        match Request::decode(&request) {
            Ok(request) => {
                let span = request_span(&request, from);
                let _in_span = span.enter();
                self.core
                    .handle_request(from.clone(), request, Instant::now());
                self.carry_out(process);
                CallReply::NoReply
            }
            Err(refused) => {
                tracing::debug!(%refused, "erl_quorum: request refused");
                CallReply::Reply(refused.encode())
            }
        }
    }

    /// Casts are no part of the protocol: ignored.
    async fn handle_cast(&mut self, _request: Term, _process: &mut Process) -> Flow {
        tracing::debug!("erl_quorum: cast ignored");
        Flow::Continue
    }

    async fn handle_info(&mut self, mail: Mail, process: &mut Process) -> Flow {
        match mail {
            Mail::Message(message) => match PeerMsg::decode(&message) {
                Ok(msg) => {
                    self.core.handle_peer_msg(msg, Instant::now());
                    self.carry_out(process);
                }
                // (A refused handoff `state` costs its owners their holds:
                // worth a warning; the line names no content.)
                Err(e @ (PeerMsgError::UnsupportedVersion(_) | PeerMsgError::Malformed)) => {
                    tracing::warn!(error = %e, "erl_quorum: peer message refused")
                }
                Err(e) => tracing::debug!(error = %e, "erl_quorum: unexpected message ignored"),
            },
            Mail::Down {
                reference, reason, ..
            } => {
                if let Some(id) = self.monitors.remove(&reference) {
                    self.references.remove(&id);
                    self.core.handle_down(id, &reason, Instant::now());
                    self.carry_out(process);
                }
            }
            Mail::Exit { .. } | Mail::NodeDown { .. } => {}
        }
        Flow::Continue
    }

    fn terminate(&mut self, reason: &Term) {
        tracing::warn!(reason = %Brief(reason), "erl_quorum service stopped");
    }

    /// What `sys:get_state/1` shows: the `status` counters.
    fn state_term(&self) -> Term {
        Reply::Status(self.core.status()).encode()
    }

    fn deadline(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    async fn handle_timeout(&mut self, process: &mut Process) -> Flow {
        self.core.handle_timeout(Instant::now());
        self.carry_out(process);
        Flow::Continue
    }

    /// Name changes wait for a moment with no input: one message for a
    /// burst of registrations.
    fn wants_idle(&self) -> bool {
        self.core.has_unsent()
    }

    async fn handle_idle(&mut self, process: &mut Process) -> Flow {
        self.core.flush_changes();
        self.carry_out(process);
        Flow::Continue
    }
}

impl EventServer for Server {
    /// A quorum job's result.
    type Event = Event;

    async fn handle_event(&mut self, event: Event, process: &mut Process) -> Flow {
        let now = Instant::now();
        if let Event::Drain(tx) = event {
            self.drained = Some(tx);
            self.core.drain(now);
            self.carry_out(process);
            return Flow::Continue;
        }
        // What the core logs about a round names the session it was for.
        let span = match &event {
            Event::ShardTaken { epoch, shard, .. } => {
                tracing::info_span!("round", session = epoch, shard)
            }
            Event::Renewed { epoch, .. } | Event::Repaired { epoch, .. } => {
                tracing::info_span!("round", session = epoch)
            }
            Event::Transferred { shard, .. } => tracing::info_span!("round", shard),
            Event::PeerSnapshot { .. } | Event::Drain(_) => tracing::Span::none(),
        };
        let _in_span = span.enter();
        let renewal = matches!(event, Event::Renewed { .. });
        let before = self.session_valid_ms();
        self.core.handle_round_result(event, now);
        if renewal {
            self.renewal_done(now, before, process);
        }
        self.carry_out(process);
        Flow::Continue
    }
}
