//! The handle a Rust process uses: send, receive, names, links, monitors,
//! aliases and calls.

use super::ids::{key_of, LocalId};
use super::mailbox::{Mail, Signal};
use super::table::{ExitKind, RegisterError};
use crate::node::Node;
use crate::term::{atom, is_atom, tuple, Atom, ImproperList, Pid, Reference, Term};
use erl_dist::message::Message;
use erl_dist::term::PidOrAtom;
use std::collections::VecDeque;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// Where a message, monitor or call goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Dest {
    Pid(Pid),
    /// A name registered on this node.
    Name(String),
    /// `{Name, Node}`: a name registered on any node (this one included).
    RemoteName {
        name: String,
        node: String,
    },
}

impl From<Pid> for Dest {
    fn from(p: Pid) -> Self {
        Dest::Pid(p)
    }
}
impl From<&Pid> for Dest {
    fn from(p: &Pid) -> Self {
        Dest::Pid(p.clone())
    }
}
impl From<&str> for Dest {
    fn from(name: &str) -> Self {
        Dest::Name(name.to_owned())
    }
}
impl From<(&str, &str)> for Dest {
    fn from((name, node): (&str, &str)) -> Self {
        Dest::RemoteName {
            name: name.to_owned(),
            node: node.to_owned(),
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ProcessError {
    /// The process was killed by an exit signal (or has already exited).
    #[error("process exited with reason {0:?}")]
    Exited(Term),
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CallError {
    #[error("no reply within the timeout")]
    Timeout,
    #[error("no such process")]
    NoProc,
    #[error("no connection to the server's node")]
    NoConnection,
    #[error("the server exited with reason {0:?}")]
    Exit(Term),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

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

/// A Rust process: a pid and a mailbox. Dropping it ends the process with
/// reason `normal`, firing its links and monitors.
pub struct Process {
    node: Node,
    id: LocalId,
    pid: Pid,
    rx: UnboundedReceiver<Signal>,
    /// Mail skipped by a selective receive, oldest first.
    saved: VecDeque<Mail>,
    exited: Option<Term>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").field("pid", &self.pid).finish()
    }
}

impl Process {
    pub(crate) fn new(node: Node, id: LocalId, pid: Pid, rx: UnboundedReceiver<Signal>) -> Self {
        Self {
            node,
            id,
            pid,
            rx,
            saved: VecDeque::new(),
            exited: None,
        }
    }

    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Sends `message`, as `!` does: never fails, never blocks; a message to
    /// a dead process or an unreachable node is dropped.
    pub fn send(&self, to: impl Into<Dest>, message: Term) {
        let inner = &self.node.inner;
        match to.into() {
            Dest::Pid(pid) => match inner.local_id(&pid) {
                Some(id) => {
                    inner.table().deliver(id, Mail::Message(message));
                }
                None if inner.is_local(&pid.node) => {} // an old incarnation's pid
                None => inner.send_remote(&pid.node.clone(), Message::send(pid, message)),
            },
            Dest::Name(name) => {
                inner
                    .table()
                    .deliver_to_name(&Atom::from(name), Mail::Message(message));
            }
            Dest::RemoteName { name, node } => {
                let node = Atom::from(node);
                if inner.is_local(&node) {
                    inner
                        .table()
                        .deliver_to_name(&Atom::from(name), Mail::Message(message));
                } else {
                    inner.send_remote(
                        &node,
                        Message::reg_send(self.pid.clone(), Atom::from(name), message),
                    );
                }
            }
        }
    }

    /// Sends `message` to the process that owns `alias`.
    pub fn send_alias(&self, alias: &Reference, message: Term) {
        let inner = &self.node.inner;
        if inner.is_local(&alias.node) {
            inner
                .table()
                .deliver_to_alias(alias, Mail::Message(message));
        } else {
            inner.send_remote(
                &alias.node.clone(),
                Message::alias_send(self.pid.clone(), alias.clone(), message),
            );
        }
    }

    /// The next mail, waiting as long as it takes.
    pub async fn recv(&mut self) -> Result<Mail, ProcessError> {
        match self.recv_match(None, |_| true).await? {
            Some(mail) => Ok(mail),
            None => unreachable!("no deadline"),
        }
    }

    /// The next mail, or `None` after `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Mail>, ProcessError> {
        self.recv_match(Some(Instant::now() + timeout), |_| true)
            .await
    }

    /// Selective receive: the oldest mail for which `matches` is true,
    /// leaving the rest in order. `None` once `deadline` passes.
    pub async fn recv_match(
        &mut self,
        deadline: Option<Instant>,
        mut matches: impl FnMut(&Mail) -> bool,
    ) -> Result<Option<Mail>, ProcessError> {
        if let Some(reason) = &self.exited {
            return Err(ProcessError::Exited(reason.clone()));
        }
        if let Some(pos) = self.saved.iter().position(&mut matches) {
            return Ok(self.saved.remove(pos));
        }
        loop {
            let signal = match deadline {
                Some(d) => match tokio::time::timeout_at(d, self.rx.recv()).await {
                    Ok(s) => s,
                    Err(_) => return Ok(None),
                },
                None => self.rx.recv().await,
            };
            match signal {
                Some(Signal::Mail(mail)) if matches(&mail) => return Ok(Some(mail)),
                Some(Signal::Mail(mail)) => self.saved.push_back(mail),
                Some(Signal::Killed(reason)) => {
                    self.exited = Some(reason.clone());
                    return Err(ProcessError::Exited(reason));
                }
                None => {
                    let reason = self.exited.get_or_insert_with(|| atom("noproc")).clone();
                    return Err(ProcessError::Exited(reason));
                }
            }
        }
    }

    /// Registers this process under `name` on its node.
    pub fn register(&self, name: &str) -> Result<(), RegisterError> {
        self.node.inner.table().register(self.id, name)
    }

    /// Removes this process's registered name, if it has `name`.
    pub fn unregister(&self, name: &str) -> bool {
        let mut table = self.node.inner.table();
        match table.whereis(&Atom::from(name)) {
            Some((id, _)) if id == self.id => table.unregister(name),
            _ => false,
        }
    }

    /// With `true`, exit signals from links arrive as [`Mail::Exit`]
    /// instead of ending this process (Erlang's `trap_exit` flag).
    pub fn trap_exit(&self, on: bool) {
        self.node.inner.table().set_trap_exit(self.id, on);
    }

    /// Links this process to `other` (on any node).
    pub fn link(&self, other: &Pid) {
        let inner = &self.node.inner;
        let mut out = Vec::new();
        if inner.is_local(&other.node) {
            inner
                .table()
                .link_local(self.id, key_of(other), other, &mut out);
        } else if inner.table().link_to_remote(self.id, other.clone()) {
            out.push(crate::process::table::Remote {
                node: other.node.clone(),
                message: Message::link(self.pid.clone(), other.clone()),
            });
        }
        inner.send_remotes(out);
    }

    /// Removes a link to `other`.
    pub fn unlink(&self, other: &Pid) {
        let inner = &self.node.inner;
        if inner.is_local(&other.node) {
            inner.table().unlink(self.id, other, Some(key_of(other)));
        } else if inner.table().unlink(self.id, other, None) {
            // The new link protocol: the peer acknowledges with UNLINK_ID_ACK.
            let id = crate::term::int(rand::random::<u32>() as i64 + 1);
            inner.send_remote(
                &other.node.clone(),
                Message::unlink_id(id, self.pid.clone(), other.clone()),
            );
        }
    }

    /// Sends exit signal `reason` to `other`, as `exit(Pid, Reason)` does.
    pub fn exit_signal(&self, other: &Pid, reason: Term) {
        let inner = &self.node.inner;
        if inner.is_local(&other.node) {
            let mut out = Vec::new();
            if let Some(id) = inner.local_id(other) {
                inner
                    .table()
                    .exit_signal(id, self.pid.clone(), reason, ExitKind::Exit2, &mut out);
            }
            inner.send_remotes(out);
        } else {
            inner.send_remote(
                &other.node.clone(),
                Message::exit2(self.pid.clone(), other.clone(), reason),
            );
        }
    }

    /// Monitors `target`; a [`Mail::Down`] with the returned reference
    /// arrives when it ends (at once with `noproc` if it does not exist, with
    /// `noconnection` if its node becomes unreachable).
    pub fn monitor(&self, target: impl Into<Dest>) -> Reference {
        let reference = self.node.make_ref();
        self.monitor_with(target.into(), reference.clone());
        reference
    }

    fn monitor_with(&self, target: Dest, reference: Reference) {
        let inner = &self.node.inner;
        let (remote_node, remote_target) = match target {
            Dest::Pid(pid) if inner.is_local(&pid.node) => {
                let id = inner.local_id(&pid);
                inner
                    .table()
                    .monitor_local(self.id, id, Some(pid), None, reference);
                return;
            }
            Dest::Pid(pid) => (pid.node.clone(), PidOrAtom::Pid(pid)),
            Dest::Name(name) => return self.monitor_local_name(&name, reference),
            Dest::RemoteName { name, node } => {
                let node = Atom::from(node);
                if inner.is_local(&node) {
                    return self.monitor_local_name(&name, reference);
                }
                (node, PidOrAtom::Atom(Atom::from(name)))
            }
        };
        if inner.table().monitor_remote(
            self.id,
            remote_node.clone(),
            remote_target.clone(),
            reference.clone(),
        ) {
            inner.send_remote(
                &remote_node,
                Message::monitor_p(self.pid.clone(), remote_target, reference),
            );
        }
    }

    fn monitor_local_name(&self, name: &str, reference: Reference) {
        let name = Atom::from(name);
        let mut table = self.node.inner.table();
        let target = table.whereis(&name);
        table.monitor_local(
            self.id,
            target.as_ref().map(|(id, _)| *id),
            target.map(|(_, pid)| pid),
            Some(name),
            reference,
        );
    }

    /// Drops a monitor and any DOWN for it that has already arrived.
    pub fn demonitor(&mut self, reference: &Reference) {
        let inner = &self.node.inner;
        let remote = inner.table().demonitor(self.id, reference);
        if let Some(r) = remote {
            inner.send_remote(&r.node, r.message);
        }
        self.drain_channel();
        self.saved
            .retain(|m| !matches!(m, Mail::Down { reference: r, .. } if r == reference));
    }

    /// A new alias: messages sent to it (see [`Process::send_alias`]) reach
    /// this process until [`Process::unalias`].
    pub fn alias(&self) -> Reference {
        let reference = self.node.make_ref();
        self.node
            .inner
            .table()
            .add_alias(self.id, reference.clone());
        reference
    }

    pub fn unalias(&self, alias: &Reference) {
        self.node.inner.table().remove_alias(alias);
    }

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
        let pending: Vec<PendingCall> = nodes
            .iter()
            .map(|node| self.start_call((name, *node).into(), request.clone()))
            .collect();
        self.await_calls(pending, timeout, enough).await
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
        // A nodedown left from before is stale: the next send reconnects.
        self.drain_channel();
        self.saved
            .retain(|m| !matches!(m, Mail::NodeDown { node } if nodes.contains(&node.as_str())));
        let pending: Vec<PendingCall> = nodes
            .iter()
            .map(|node| {
                self.monitor_node(node);
                self.start_unmonitored_call(name, node, request.clone())
            })
            .collect();
        self.await_calls(pending, timeout, enough).await
    }

    async fn await_calls(
        &mut self,
        pending: Vec<PendingCall>,
        timeout: Duration,
        mut enough: impl FnMut(&[Option<Result<Term, CallError>>]) -> bool,
    ) -> Result<Vec<Option<Result<Term, CallError>>>, ProcessError> {
        let deadline = Instant::now() + timeout;
        let mut results: Vec<Option<Result<Term, CallError>>> = vec![None; pending.len()];
        while results.iter().any(Option::is_none) && !enough(&results) {
            let mail = self
                .recv_match(Some(deadline), |m| {
                    pending
                        .iter()
                        .zip(&results)
                        .any(|(p, r)| r.is_none() && p.answers(m))
                })
                .await?;
            let Some(mail) = mail else { break };
            // A nodedown answers every call to that node; anything else one.
            for i in 0..pending.len() {
                if results[i].is_none() && pending[i].answers(&mail) {
                    results[i] = Some(self.finish_call(&pending[i], Some(mail.clone())));
                    if !matches!(mail, Mail::NodeDown { .. }) {
                        break;
                    }
                }
            }
        }
        for (result, call) in results.iter().zip(&pending) {
            if result.is_none() {
                let _ = self.finish_call(call, None);
            }
        }
        Ok(results)
    }

    /// `monitor_node(Node, true)`: a [`Mail::NodeDown`] arrives when the
    /// connection to `node` goes or cannot be made. One shot, as in Erlang.
    pub fn monitor_node(&self, node: &str) {
        let node = Atom::from(node);
        if !self.node.inner.is_local(&node) {
            self.node.inner.table().monitor_node(self.id, node);
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

    /// Moves whatever the channel holds into the saved queue, in order.
    fn drain_channel(&mut self) {
        while let Ok(signal) = self.rx.try_recv() {
            match signal {
                Signal::Mail(mail) => self.saved.push_back(mail),
                Signal::Killed(reason) => self.exited = Some(reason),
            }
        }
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

    /// `gen_server:cast(Dest, Message)`.
    pub fn cast(&self, to: impl Into<Dest>, message: Term) {
        self.send(to, tuple(vec![atom("$gen_cast"), message]));
    }

    /// Ends this process with `reason`: links get the exit signal and
    /// monitors fire with it.
    pub fn exit(mut self, reason: Term) {
        self.terminate(reason);
    }

    fn terminate(&mut self, reason: Term) {
        if self.exited.is_some() {
            return;
        }
        self.exited = Some(reason.clone());
        let inner = &self.node.inner;
        let mut out = Vec::new();
        inner.table().terminate(self.id, reason, &mut out);
        inner.send_remotes(out);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.terminate(atom("normal"));
    }
}
