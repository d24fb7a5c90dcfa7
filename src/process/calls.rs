//! Calls from a Rust process: `gen_server:call`, `multi_call`, and the
//! quorum calls the locker client and the services make (node-monitored,
//! stopping as soon as the answers settle the question, optionally staged).

use super::handle::{CallError, Dest, Process, ProcessError};
use crate::proc_table::Mail;
use crate::term::{atom, is_atom, tuple, ImproperList, Reference, Term};
use std::time::Duration;
use tokio::time::Instant;

/// A call in flight: its monitor reference (also the alias) and its tag;
/// for a call watched through a node monitor instead, the server's node.
struct PendingCall {
    mref: Reference,
    tag: Term,
    node: Option<String>,
}

impl PendingCall {
    /// Whether `mail` is this call's reply, its server's DOWN, or the loss
    /// of its server's node.
    fn answers(&self, mail: &Mail) -> bool {
        match mail {
            Mail::Message(Term::Tuple(t)) => t.elements.len() == 2 && t.elements[0] == self.tag,
            Mail::Down { reference, .. } => *reference == self.mref,
            Mail::NodeDown { node } => self.node.as_deref() == Some(node.as_str()),
            _ => false,
        }
    }
}

/// How a call notices that its server is gone.
#[derive(Debug, Clone, Copy)]
enum Watch {
    /// A monitor on the server (`noproc` at once for a missing name).
    Monitor,
    /// A node monitor on the server's node (no control messages per call).
    NodeMonitor,
}

/// What a staged quorum call got: an answer per node, `None` for a node
/// not called or not answered in time.
#[derive(Debug)]
pub struct Staged {
    /// One entry per node, in the order of the node list.
    pub results: Vec<Option<Result<Term, CallError>>>,
    /// Whether every node was called, not only the first ones.
    pub widened: bool,
}

impl Process {
    /// `gen_server:call(Dest, Request, Timeout)`: sends the request and waits
    /// for the reply. Replies that arrive after the timeout are dropped, as
    /// in OTP (the call tag is an alias that is removed on return).
    pub async fn call(
        &mut self,
        to: impl Into<Dest>,
        request: Term,
        timeout: Duration,
    ) -> Result<Term, CallError> {
        let deadline = Instant::now() + timeout;
        let pending = self.start_call(to.into(), request);
        let result = self
            .recv_match(Some(deadline), |m| pending.answers(m))
            .await?;
        self.finish_call(&pending, result)
    }

    /// `gen_server:multi_call`: calls `name` on every node of `nodes` at
    /// once and waits up to `timeout` for all of them. Results come back in
    /// the order of `nodes`.
    pub async fn multi_call(
        &mut self,
        nodes: &[&str],
        name: &str,
        request: Term,
        timeout: Duration,
    ) -> Result<Vec<Result<Term, CallError>>, ProcessError> {
        let results = self
            .multi_call_until(nodes, name, request, timeout, |_| false)
            .await?;
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(CallError::Timeout)))
            .collect())
    }

    /// [`multi_call`](Self::multi_call) that stops waiting as soon as
    /// `enough` says the answers so far settle the question (a quorum call
    /// needs W answers, not all). Calls still unanswered then are abandoned
    /// (`None`): their aliases go, so their late replies are dropped.
    pub async fn multi_call_until(
        &mut self,
        nodes: &[&str],
        name: &str,
        request: Term,
        timeout: Duration,
        enough: impl FnMut(&[Option<Result<Term, CallError>>]) -> bool,
    ) -> Result<Vec<Option<Result<Term, CallError>>>, ProcessError> {
        let all = nodes.len();
        let staged = self
            .run_calls(
                nodes,
                all,
                name,
                request,
                timeout,
                timeout,
                Watch::Monitor,
                enough,
            )
            .await?;
        Ok(staged.results)
    }

    /// [`multi_call_until`](Self::multi_call_until) for a hot path: instead
    /// of a monitor per call (two more control messages each), it watches
    /// the servers' nodes with [`Process::monitor_node`], so a lost node
    /// still answers `NoConnection` at once. The price: a node that is up
    /// but has no process `name` is only noticed at the timeout.
    pub async fn quorum_call(
        &mut self,
        nodes: &[&str],
        name: &str,
        request: Term,
        timeout: Duration,
        enough: impl FnMut(&[Option<Result<Term, CallError>>]) -> bool,
    ) -> Result<Vec<Option<Result<Term, CallError>>>, ProcessError> {
        let all = nodes.len();
        let staged = self
            .quorum_call_staged(nodes, all, name, request, timeout, timeout, enough)
            .await?;
        Ok(staged.results)
    }

    /// [`quorum_call`](Self::quorum_call) that calls only the first `first`
    /// nodes at once, and the rest when those cannot settle it: each of
    /// them has answered and `enough` is still false, or `hedge_after` has
    /// passed. A round that needs W answers from N nodes then wakes W of
    /// them, not N, while every node answers as it should; on a 2-core
    /// machine running the masters, the idle CPU is the difference.
    /// `enough` sees uncalled nodes as unanswered (`None`).
    #[allow(clippy::too_many_arguments)]
    pub async fn quorum_call_staged(
        &mut self,
        nodes: &[&str],
        first: usize,
        name: &str,
        request: Term,
        timeout: Duration,
        hedge_after: Duration,
        enough: impl FnMut(&[Option<Result<Term, CallError>>]) -> bool,
    ) -> Result<Staged, ProcessError> {
        // A nodedown left from before is stale: the next send reconnects.
        self.drain_channel();
        self.saved
            .retain(|m| !matches!(m, Mail::NodeDown { node } if nodes.contains(&node.as_str())));
        let watch = Watch::NodeMonitor;
        self.run_calls(
            nodes,
            first,
            name,
            request,
            timeout,
            hedge_after,
            watch,
            enough,
        )
        .await
    }

    /// Calls `name` on `nodes[..first]`, then on the rest when those cannot
    /// settle it (see [`quorum_call_staged`](Self::quorum_call_staged)), and
    /// waits until `enough`, every call answered, or `timeout`. Calls still
    /// unanswered then are abandoned: their aliases go, so their late
    /// replies are dropped.
    #[allow(clippy::too_many_arguments)]
    async fn run_calls(
        &mut self,
        nodes: &[&str],
        first: usize,
        name: &str,
        request: Term,
        timeout: Duration,
        hedge_after: Duration,
        watch: Watch,
        mut enough: impl FnMut(&[Option<Result<Term, CallError>>]) -> bool,
    ) -> Result<Staged, ProcessError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let first = first.clamp(1, nodes.len().max(1));
        let mut hedge_at = (first < nodes.len()).then(|| start + hedge_after);
        let mut pending: Vec<Option<PendingCall>> = Vec::with_capacity(nodes.len());
        for node in &nodes[..first.min(nodes.len())] {
            pending.push(Some(self.start_watched_call(
                watch,
                name,
                node,
                request.clone(),
            )));
        }
        pending.resize_with(nodes.len(), || None);
        let mut results: Vec<Option<Result<Term, CallError>>> = vec![None; nodes.len()];
        loop {
            if enough(&results) {
                break;
            }
            let waiting = pending
                .iter()
                .zip(&results)
                .any(|(p, r)| p.is_some() && r.is_none());
            if let Some(at) = hedge_at {
                if !waiting || Instant::now() >= at {
                    for (slot, node) in pending.iter_mut().zip(nodes) {
                        if slot.is_none() {
                            *slot =
                                Some(self.start_watched_call(watch, name, node, request.clone()));
                        }
                    }
                    hedge_at = None;
                    continue;
                }
            }
            if !waiting {
                break;
            }
            let until = hedge_at.map_or(deadline, |h| h.min(deadline));
            let mail = self
                .recv_match(Some(until), |m| {
                    pending
                        .iter()
                        .zip(&results)
                        .any(|(p, r)| r.is_none() && p.as_ref().is_some_and(|p| p.answers(m)))
                })
                .await?;
            let Some(mail) = mail else {
                if Instant::now() >= deadline {
                    break;
                }
                continue;
            };
            // A nodedown answers every call to that node; anything else one.
            for i in 0..pending.len() {
                let Some(call) = &pending[i] else { continue };
                if results[i].is_none() && call.answers(&mail) {
                    results[i] = Some(self.finish_call(call, Some(mail.clone())));
                    if !matches!(mail, Mail::NodeDown { .. }) {
                        break;
                    }
                }
            }
        }
        let widened = pending.iter().all(Option::is_some);
        for (result, call) in results.iter().zip(&pending) {
            if let (None, Some(call)) = (result, call) {
                let _ = self.finish_call(call, None);
            }
        }
        Ok(Staged { results, widened })
    }

    /// Starts a call to `{name, node}`, watched as `watch` says.
    fn start_watched_call(
        &mut self,
        watch: Watch,
        name: &str,
        node: &str,
        request: Term,
    ) -> PendingCall {
        match watch {
            Watch::Monitor => self.start_call((name, node).into(), request),
            Watch::NodeMonitor => {
                self.monitor_node(node);
                self.start_unmonitored_call(name, node, request)
            }
        }
    }

    fn start_unmonitored_call(&mut self, name: &str, node: &str, request: Term) -> PendingCall {
        let mref = self.node.make_ref();
        self.send_call((name, node).into(), mref, request, Some(node.to_owned()))
    }

    /// Makes `mref` an alias, sends `{'$gen_call', {Self, [alias | Mref]},
    /// Request}` (the tag OTP 24+ uses) and returns the call to wait for.
    fn send_call(
        &mut self,
        to: Dest,
        mref: Reference,
        request: Term,
        node: Option<String>,
    ) -> PendingCall {
        self.node.inner.table().add_alias(self.id, mref.clone());
        let tag = Term::from(ImproperList::from((
            vec![atom("alias")],
            Term::from(mref.clone()),
        )));
        let from = tuple(vec![self.pid.clone().into(), tag.clone()]);
        self.send(to, tuple(vec![atom("$gen_call"), from, request]));
        PendingCall { mref, tag, node }
    }

    /// Monitors the server, makes the monitor reference an alias (as OTP
    /// 24+ does, so late replies are dropped) and sends the request.
    fn start_call(&mut self, to: Dest, request: Term) -> PendingCall {
        let mref = self.node.make_ref();
        self.monitor_with(to.clone(), mref.clone());
        self.send_call(to, mref, request, None)
    }

    /// Turns the reply or DOWN (or `None` on timeout) into the call's result
    /// and drops the alias and monitor.
    fn finish_call(&mut self, call: &PendingCall, answer: Option<Mail>) -> Result<Term, CallError> {
        self.unalias(&call.mref);
        match answer {
            Some(Mail::Message(Term::Tuple(mut t))) => {
                self.demonitor(&call.mref);
                Ok(t.elements.pop().expect("2-tuple"))
            }
            Some(Mail::NodeDown { .. }) => Err(CallError::NoConnection),
            Some(Mail::Down { reason, .. }) => Err(if is_atom(&reason, "noproc") {
                CallError::NoProc
            } else if is_atom(&reason, "noconnection") {
                CallError::NoConnection
            } else {
                CallError::Exit(reason)
            }),
            Some(_) => unreachable!("only replies and DOWNs answer a call"),
            None => {
                self.demonitor(&call.mref);
                // A reply that arrived before the alias went would otherwise
                // sit in the saved queue for good.
                self.saved.retain(|m| !call.answers(m));
                Err(CallError::Timeout)
            }
        }
    }
}
