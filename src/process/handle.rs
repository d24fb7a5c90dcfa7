//! The handle a Rust process uses: send, receive, names, links, monitors,
//! aliases and calls.

use crate::node::{Busy, Node};
use crate::proc_table::ids::{key_of, LocalId};
use crate::proc_table::mailbox::{Mail, Signal};
use crate::proc_table::table::{ExitKind, RegisterError, Remote};
use crate::term::{atom, tuple, Atom, Pid, Reference, Term};
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
    /// A process, local or remote.
    Pid(Pid),
    /// A name registered on this node.
    Name(String),
    /// `{Name, Node}`: a name registered on any node (this one included).
    RemoteName {
        /// The registered name.
        name: String,
        /// The full node name, `name@host`.
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

/// Why a blocking [`Process`] operation (receive, call) cannot go on.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ProcessError {
    /// The process was killed by an exit signal (or has already exited).
    #[error("process exited with reason {}", crate::term::Brief(.0))]
    Exited(Term),
}

/// Why a [`Process::call`] got no reply; the exits `gen_server:call/3`
/// raises, as values.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CallError {
    /// No reply within the timeout (`{timeout, _}`); a late reply is dropped.
    #[error("no reply within the timeout")]
    Timeout,
    /// The server does not exist, or the name is not registered (`{noproc, _}`).
    #[error("no such process")]
    NoProc,
    /// The server's node is not connected or went down (`{nodedown, Node}`).
    #[error("no connection to the server's node")]
    NoConnection,
    /// The server exited before replying, with this reason.
    #[error("the server exited with reason {}", crate::term::Brief(.0))]
    Exit(Term),
    /// The calling process itself was killed while waiting.
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// A Rust process: a pid and a mailbox. Dropping it ends the process with
/// reason `normal`, firing its links and monitors.
pub struct Process {
    pub(super) node: Node,
    pub(super) id: LocalId,
    pub(super) pid: Pid,
    rx: UnboundedReceiver<Signal>,
    /// Mail skipped by a selective receive, oldest first.
    pub(super) saved: VecDeque<Mail>,
    exited: Option<Term>,
    /// A connection this process sent to past its busy limit: its next
    /// receive waits for it to drain first (as the BEAM suspends a sender).
    busy: std::sync::Mutex<Option<Busy>>,
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
            busy: std::sync::Mutex::new(None),
        }
    }

    /// This process's pid (`self()`).
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// The node this process runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Sends `message`, as `!` does: never fails, never blocks; a message to
    /// a dead process or an unreachable node is dropped. When the message
    /// finds the connection to its node past its busy limit
    /// ([`crate::NodeConfig::busy_limit_bytes`]), this process's next
    /// receive (or [`Process::send_paced`]) first waits until that queue
    /// drains: a peer that does not read slows its senders (as the BEAM
    /// suspends them) instead of filling memory.
    pub fn send(&self, to: impl Into<Dest>, message: Term) {
        let inner = &self.node.inner;
        match to.into() {
            Dest::Pid(pid) => match inner.local_id(&pid) {
                Some(id) => {
                    inner.table().deliver(id, Mail::Message(message));
                }
                None if inner.is_local(&pid.node) => {} // an old incarnation's pid
                None => {
                    let busy =
                        inner.send_remote_paced(&pid.node.clone(), Message::send(pid, message));
                    self.note_busy(busy);
                }
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
                    let busy = inner.send_remote_paced(
                        &node,
                        Message::reg_send(self.pid.clone(), Atom::from(name), message),
                    );
                    self.note_busy(busy);
                }
            }
        }
    }

    /// [`Process::send`], then waits until the connection the message left
    /// on (if any) is below its busy limit: for a sender of many messages
    /// to a peer that may read slowly.
    pub async fn send_paced(&mut self, to: impl Into<Dest>, message: Term) {
        self.send(to, message);
        if let Some(busy) = self.take_busy() {
            busy.wait().await;
        }
    }

    fn note_busy(&self, busy: Option<Busy>) {
        if busy.is_some() {
            *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = busy;
        }
    }

    fn take_busy(&mut self) -> Option<Busy> {
        self.busy
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Waits for a connection this process sent to past its busy limit to
    /// drain, keeping mail that arrives meanwhile; `Ok(false)` when
    /// `deadline` passes first.
    async fn wait_not_busy(&mut self, deadline: Option<Instant>) -> Result<bool, ProcessError> {
        let Some(busy) = self.take_busy() else {
            return Ok(true);
        };
        let drained = busy.wait();
        tokio::pin!(drained);
        loop {
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut drained => return Ok(true),
                signal = self.rx.recv() => match signal {
                    Some(Signal::Mail(mail)) => self.saved.push_back(mail),
                    Some(Signal::Killed(reason)) => return Err(self.ended(Some(reason))),
                    None => return Err(self.ended(None)),
                },
                _ = expired => return Ok(false),
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
            let busy = inner.send_remote_paced(
                &alias.node.clone(),
                Message::alias_send(self.pid.clone(), alias.clone(), message),
            );
            self.note_busy(busy);
        }
    }

    /// This process ended: killed with `reason`, or (`None`) its mailbox
    /// closed, with the reason it was killed with if known, else `noproc`.
    fn ended(&mut self, reason: Option<Term>) -> ProcessError {
        let reason = match reason {
            Some(r) => self.exited.insert(r).clone(),
            None => self.exited.get_or_insert_with(|| atom("noproc")).clone(),
        };
        ProcessError::Exited(reason)
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
        if !self.wait_not_busy(deadline).await? {
            return Ok(None);
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
                Some(Signal::Killed(reason)) => return Err(self.ended(Some(reason))),
                None => return Err(self.ended(None)),
            }
        }
    }

    /// Registers this process under `name` on its node.
    pub fn register(&self, name: &str) -> Result<(), RegisterError> {
        self.node.inner.table().register(self.id, name)
    }

    /// The name this process is registered under, if any.
    pub(crate) fn registered_name(&self) -> Option<String> {
        self.node.inner.table().name_of(self.id).map(|a| a.name)
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
            out.push(Remote {
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

    pub(super) fn monitor_with(&self, target: Dest, reference: Reference) {
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

    /// `erlang:unalias/1`: messages sent to `alias` are dropped from now on.
    pub fn unalias(&self, alias: &Reference) {
        self.node.inner.table().remove_alias(alias);
    }

    /// `monitor_node(Node, true)`: a [`Mail::NodeDown`] arrives when the
    /// connection to `node` goes or cannot be made. One shot, as in Erlang.
    pub fn monitor_node(&self, node: &str) {
        let node = Atom::from(node);
        if !self.node.inner.is_local(&node) {
            self.node.inner.table().monitor_node(self.id, node);
        }
    }

    /// Moves whatever the channel holds into the saved queue, in order.
    pub(super) fn drain_channel(&mut self) {
        while let Ok(signal) = self.rx.try_recv() {
            match signal {
                Signal::Mail(mail) => self.saved.push_back(mail),
                Signal::Killed(reason) => self.exited = Some(reason),
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
