//! The node's process bookkeeping: mailboxes, registered names, aliases,
//! links and monitors, and what happens when a process or a connection dies.
//!
//! No I/O here: local deliveries go straight into mailbox channels (which
//! never block), and signals for other nodes come back as [`Remote`] values
//! that the node sends after releasing the table's lock.

use super::ids::LocalId;
use super::mailbox::{Mail, Signal};
use crate::term::{atom, tuple, Atom, Pid, Reference, Term};
use erl_dist::message::Message;
use erl_dist::term::PidOrAtom;
use std::collections::{HashMap, HashSet};
use tokio::sync::mpsc::UnboundedSender;

/// Exit signals, deaths and lost connections: what they fire.
mod deaths;

/// A control message for another node, to be sent once the lock is released.
#[derive(Debug)]
pub(crate) struct Remote {
    pub node: Atom,
    pub message: Message,
}

impl Remote {
    /// Whether the message only makes sense on the connection that is up
    /// now, so it must be dropped rather than open one: a link's exit, a
    /// monitor's DOWN or a demonitor concern a relation that a connection
    /// made and that its loss ends (an entry left behind by a race with
    /// that loss must not make us dial a node the peer named). A local
    /// process's own LINK or MONITOR_P, by contrast, connects as the BEAM
    /// does.
    pub(crate) fn needs_existing_connection(&self) -> bool {
        use Message as M;
        matches!(
            self.message,
            M::Exit(_)
                | M::ExitTt(_)
                | M::PayloadExit(_)
                | M::PayloadExitTt(_)
                | M::MonitorPExit(_)
                | M::PayloadMonitorPExit(_)
                | M::DemonitorP(_)
                | M::UnlinkIdAck(_)
        )
    }
}

/// Who watches a process through a monitor.
#[derive(Debug, Clone)]
struct Watcher {
    pid: Pid,
    /// Set when the monitor was taken by registered name: the DOWN then names
    /// `{Name, Node}` instead of the pid.
    by_name: Option<Atom>,
}

/// Where a monitor that a local process holds points.
#[derive(Debug, Clone)]
enum Held {
    Local(LocalId),
    Remote(Atom, PidOrAtom),
}

#[derive(Debug)]
struct Entry {
    pid: Pid,
    mailbox: UnboundedSender<Signal>,
    name: Option<Atom>,
    trap_exit: bool,
    links: HashSet<Pid>,
    monitored_by: HashMap<Reference, Watcher>,
    holds: HashMap<Reference, Held>,
    aliases: Vec<Reference>,
}

/// How an exit signal arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitKind {
    /// EXIT: a linked process died; ignored unless the link still exists.
    Link,
    /// A link whose far end is already gone from our tables (connection loss).
    Unlinked,
    /// EXIT2: `exit(Pid, Reason)`; no link needed, `kill` cannot be trapped.
    Exit2,
}

/// Why a name could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Another process holds the name (Erlang's `badarg` from `register/2`).
    #[error("the name {0} is already registered")]
    NameTaken(String),
    /// A process has one registered name at most.
    #[error("the process is already registered as {0}")]
    AlreadyNamed(String),
    /// The process has exited.
    #[error("the process is not alive")]
    NoProc,
}

#[derive(Debug, Default)]
pub(crate) struct ProcessTable {
    procs: HashMap<LocalId, Entry>,
    names: HashMap<Atom, LocalId>,
    aliases: HashMap<Reference, LocalId>,
    /// Monitors local processes hold on processes of other nodes, by node.
    remote_monitors: HashMap<Atom, HashMap<Reference, (LocalId, PidOrAtom)>>,
    /// Local node name, for `{Name, Node}` DOWN objects.
    node: Option<Atom>,
    /// `monitor_node`: who hears when the connection to a node goes. One
    /// shot, as in Erlang: fired once, then forgotten.
    node_monitors: HashMap<Atom, HashSet<LocalId>>,
}

fn noproc() -> Term {
    atom("noproc")
}

fn down_object(watched: &Pid, by_name: &Option<Atom>) -> Term {
    match by_name {
        Some(name) => tuple(vec![name.clone().into(), watched.node.clone().into()]),
        None => watched.clone().into(),
    }
}

impl ProcessTable {
    pub(crate) fn new(node: &str) -> Self {
        Self {
            node: Some(Atom::from(node)),
            ..Self::default()
        }
    }

    fn local_node(&self) -> Atom {
        self.node.clone().unwrap_or_else(|| Atom::from(""))
    }

    pub(crate) fn insert(&mut self, id: LocalId, pid: Pid, mailbox: UnboundedSender<Signal>) {
        self.procs.insert(
            id,
            Entry {
                pid,
                mailbox,
                name: None,
                trap_exit: false,
                links: HashSet::new(),
                monitored_by: HashMap::new(),
                holds: HashMap::new(),
                aliases: Vec::new(),
            },
        );
    }

    pub(crate) fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether local process `id` is alive.
    pub(crate) fn is_alive(&self, id: LocalId) -> bool {
        self.procs.contains_key(&id)
    }

    pub(crate) fn set_trap_exit(&mut self, id: LocalId, on: bool) {
        if let Some(e) = self.procs.get_mut(&id) {
            e.trap_exit = on;
        }
    }

    // ---- names ----------------------------------------------------------

    pub(crate) fn register(&mut self, id: LocalId, name: &str) -> Result<(), RegisterError> {
        let name = Atom::from(name);
        if self.names.contains_key(&name) {
            return Err(RegisterError::NameTaken(name.name));
        }
        let entry = self.procs.get_mut(&id).ok_or(RegisterError::NoProc)?;
        if let Some(existing) = &entry.name {
            return Err(RegisterError::AlreadyNamed(existing.name.clone()));
        }
        entry.name = Some(name.clone());
        self.names.insert(name, id);
        Ok(())
    }

    pub(crate) fn unregister(&mut self, name: &str) -> bool {
        match self.names.remove(&Atom::from(name)) {
            Some(id) => {
                if let Some(e) = self.procs.get_mut(&id) {
                    e.name = None;
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn whereis(&self, name: &Atom) -> Option<(LocalId, Pid)> {
        let id = *self.names.get(name)?;
        Some((id, self.procs.get(&id)?.pid.clone()))
    }

    /// The name process `id` is registered under.
    pub(crate) fn name_of(&self, id: LocalId) -> Option<Atom> {
        self.procs.get(&id)?.name.clone()
    }

    pub(crate) fn registered(&self) -> Vec<String> {
        self.names.keys().map(|a| a.name.clone()).collect()
    }

    // ---- delivery -------------------------------------------------------

    /// Puts `mail` into the mailbox of `id`; false if there is no such process.
    pub(crate) fn deliver(&self, id: LocalId, mail: Mail) -> bool {
        match self.procs.get(&id) {
            Some(e) => e.mailbox.send(Signal::Mail(mail)).is_ok(),
            None => false,
        }
    }

    pub(crate) fn deliver_to_name(&self, name: &Atom, mail: Mail) -> bool {
        match self.names.get(name) {
            Some(&id) => self.deliver(id, mail),
            None => false,
        }
    }

    pub(crate) fn add_alias(&mut self, id: LocalId, alias: Reference) {
        if let Some(e) = self.procs.get_mut(&id) {
            e.aliases.push(alias.clone());
            self.aliases.insert(alias, id);
        }
    }

    pub(crate) fn remove_alias(&mut self, alias: &Reference) {
        if let Some(id) = self.aliases.remove(alias) {
            if let Some(e) = self.procs.get_mut(&id) {
                e.aliases.retain(|a| a != alias);
            }
        }
    }

    pub(crate) fn deliver_to_alias(&self, alias: &Reference, mail: Mail) -> bool {
        match self.aliases.get(alias) {
            Some(&id) => self.deliver(id, mail),
            None => false,
        }
    }

    // ---- links ----------------------------------------------------------

    /// Links local process `a` to local process `b`. If `b` is gone, `a`
    /// gets an exit signal with reason `noproc`, as in Erlang.
    pub(crate) fn link_local(
        &mut self,
        a: LocalId,
        b: LocalId,
        b_pid: &Pid,
        out: &mut Vec<Remote>,
    ) {
        let Some(a_pid) = self.procs.get(&a).map(|e| e.pid.clone()) else {
            return;
        };
        if a == b {
            return;
        }
        self.procs
            .get_mut(&a)
            .expect("checked")
            .links
            .insert(b_pid.clone());
        match self.procs.get_mut(&b) {
            Some(e) => {
                e.links.insert(a_pid);
            }
            None => self.exit_signal(a, b_pid.clone(), noproc(), ExitKind::Link, out),
        }
    }

    /// A local process links to a process on another node; the caller sends LINK.
    pub(crate) fn link_to_remote(&mut self, a: LocalId, remote: Pid) -> bool {
        match self.procs.get_mut(&a) {
            Some(e) => {
                e.links.insert(remote);
                true
            }
            None => false,
        }
    }

    /// LINK from another node. A dead target answers with EXIT `noproc`.
    pub(crate) fn link_from_remote(
        &mut self,
        target: Option<LocalId>,
        from: Pid,
        to: Pid,
        out: &mut Vec<Remote>,
    ) {
        match target.and_then(|id| self.procs.get_mut(&id)) {
            Some(e) => {
                e.links.insert(from);
            }
            None => out.push(Remote {
                node: from.node.clone(),
                message: Message::exit(to, from, noproc()),
            }),
        }
    }

    /// Removes the link between local `a` and `other` on a's side (and on
    /// other's side too when it is local). Returns whether a link existed.
    pub(crate) fn unlink(&mut self, a: LocalId, other: &Pid, other_local: Option<LocalId>) -> bool {
        let a_pid = self.procs.get(&a).map(|e| e.pid.clone());
        let existed = self
            .procs
            .get_mut(&a)
            .is_some_and(|e| e.links.remove(other));
        if let (Some(b), Some(a_pid)) = (other_local, a_pid) {
            if let Some(e) = self.procs.get_mut(&b) {
                e.links.remove(&a_pid);
            }
        }
        existed
    }

    // ---- monitors -------------------------------------------------------

    /// A local process monitors a local process (by id, or by name when
    /// `by_name` is set). A missing target fires DOWN `noproc` at once.
    pub(crate) fn monitor_local(
        &mut self,
        watcher: LocalId,
        target: Option<LocalId>,
        target_pid: Option<Pid>,
        by_name: Option<Atom>,
        reference: Reference,
    ) {
        let Some(watcher_pid) = self.procs.get(&watcher).map(|e| e.pid.clone()) else {
            return;
        };
        match target.filter(|t| self.procs.contains_key(t)) {
            Some(t) => {
                self.procs
                    .get_mut(&t)
                    .expect("checked")
                    .monitored_by
                    .insert(
                        reference.clone(),
                        Watcher {
                            pid: watcher_pid,
                            by_name,
                        },
                    );
                self.procs
                    .get_mut(&watcher)
                    .expect("checked")
                    .holds
                    .insert(reference, Held::Local(t));
            }
            None => {
                let object = match (&by_name, target_pid) {
                    (Some(name), _) => tuple(vec![name.clone().into(), self.local_node().into()]),
                    (None, Some(pid)) => pid.into(),
                    (None, None) => atom("undefined"),
                };
                self.deliver(
                    watcher,
                    Mail::Down {
                        reference,
                        object,
                        reason: noproc(),
                    },
                );
            }
        }
    }

    /// A local process monitors a process on `node`; the caller sends MONITOR_P.
    pub(crate) fn monitor_remote(
        &mut self,
        watcher: LocalId,
        node: Atom,
        target: PidOrAtom,
        reference: Reference,
    ) -> bool {
        let Some(e) = self.procs.get_mut(&watcher) else {
            return false;
        };
        e.holds.insert(
            reference.clone(),
            Held::Remote(node.clone(), target.clone()),
        );
        self.remote_monitors
            .entry(node)
            .or_default()
            .insert(reference, (watcher, target));
        true
    }

    /// MONITOR_P from another node. A missing target answers MONITOR_P_EXIT `noproc`.
    pub(crate) fn monitor_from_remote(
        &mut self,
        watcher: Pid,
        target: &PidOrAtom,
        target_id: Option<LocalId>,
        reference: Reference,
        out: &mut Vec<Remote>,
    ) {
        let by_name = match target {
            PidOrAtom::Atom(a) => Some(a.clone()),
            PidOrAtom::Pid(_) => None,
        };
        match target_id.and_then(|id| self.procs.get_mut(&id)) {
            Some(e) => {
                e.monitored_by.insert(
                    reference,
                    Watcher {
                        pid: watcher,
                        by_name,
                    },
                );
            }
            None => out.push(Remote {
                node: watcher.node.clone(),
                message: Message::monitor_p_exit(target.clone(), watcher, reference, noproc()),
            }),
        }
    }

    /// DEMONITOR_P from another node.
    pub(crate) fn demonitor_from_remote(
        &mut self,
        target_id: Option<LocalId>,
        reference: &Reference,
    ) {
        if let Some(e) = target_id.and_then(|id| self.procs.get_mut(&id)) {
            e.monitored_by.remove(reference);
        }
    }

    /// A local process drops a monitor it holds. Returns the DEMONITOR_P to
    /// send when the target is remote.
    pub(crate) fn demonitor(&mut self, watcher: LocalId, reference: &Reference) -> Option<Remote> {
        let held = self.procs.get_mut(&watcher)?.holds.remove(reference)?;
        self.drop_held(watcher, reference, held)
    }

    fn drop_held(&mut self, watcher: LocalId, reference: &Reference, held: Held) -> Option<Remote> {
        match held {
            Held::Local(t) => {
                if let Some(e) = self.procs.get_mut(&t) {
                    e.monitored_by.remove(reference);
                }
                None
            }
            Held::Remote(node, target) => {
                if let Some(m) = self.remote_monitors.get_mut(&node) {
                    m.remove(reference);
                }
                let from_pid = self.procs.get(&watcher).map(|e| e.pid.clone())?;
                Some(Remote {
                    node,
                    message: Message::demonitor_p(from_pid, target, reference.clone()),
                })
            }
        }
    }

    /// MONITOR_P_EXIT from another node: the watched process went away.
    pub(crate) fn remote_monitor_fired(
        &mut self,
        node: &Atom,
        reference: &Reference,
        reason: Term,
    ) {
        let Some((watcher, target)) = self
            .remote_monitors
            .get_mut(node)
            .and_then(|m| m.remove(reference))
        else {
            return;
        };
        self.remote_monitor_down(node, reference.clone(), watcher, target, reason);
    }

    /// A monitor `watcher` held on `target` at `node` (taken out of
    /// `remote_monitors` by the caller) fired: it no longer holds it, and
    /// gets the DOWN, naming the target as it was monitored (a pid, or
    /// `{Name, Node}`).
    fn remote_monitor_down(
        &mut self,
        node: &Atom,
        reference: Reference,
        watcher: LocalId,
        target: PidOrAtom,
        reason: Term,
    ) {
        if let Some(e) = self.procs.get_mut(&watcher) {
            e.holds.remove(&reference);
        }
        let object = match target {
            PidOrAtom::Pid(p) => p.into(),
            PidOrAtom::Atom(name) => tuple(vec![name.into(), node.clone().into()]),
        };
        self.deliver(
            watcher,
            Mail::Down {
                reference,
                object,
                reason,
            },
        );
    }

    /// `monitor_node(Node, true)`: `watcher` gets [`Mail::NodeDown`] when
    /// the connection to `node` goes or cannot be made.
    pub(crate) fn monitor_node(&mut self, watcher: LocalId, node: Atom) {
        if self.procs.contains_key(&watcher) {
            self.node_monitors.entry(node).or_default().insert(watcher);
        }
    }
}
