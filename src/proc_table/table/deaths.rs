//! What an exit signal, a death or a lost connection does to the table:
//! which processes die or hear of it, which monitors fire, and which
//! signals go to other nodes.

use super::{down_object, ExitKind, Held, ProcessTable, Remote};
use crate::proc_table::ids::{key_of, LocalId};
use crate::proc_table::mailbox::{Mail, Signal};
use crate::term::{atom, is_atom, Atom, Pid, Term};
use erl_dist::message::Message;
use erl_dist::term::PidOrAtom;

impl ProcessTable {
    /// An exit signal reaches local process `to` from `from`.
    pub(crate) fn exit_signal(
        &mut self,
        to: LocalId,
        from: Pid,
        reason: Term,
        kind: ExitKind,
        out: &mut Vec<Remote>,
    ) {
        let mut work = vec![(to, from, reason, kind)];
        while let Some((to, from, reason, kind)) = work.pop() {
            let Some(e) = self.procs.get_mut(&to) else {
                continue;
            };
            if kind == ExitKind::Link && !e.links.remove(&from) {
                // Not linked (any more): a late EXIT after an unlink is ignored.
                continue;
            }
            let kill = kind == ExitKind::Exit2 && is_atom(&reason, "kill");
            if kill {
                self.terminate_into(to, atom("killed"), &mut work, out);
            } else if e.trap_exit {
                let _ = e.mailbox.send(Signal::Mail(Mail::Exit { from, reason }));
            } else if !is_atom(&reason, "normal") || from == e.pid {
                self.terminate_into(to, reason, &mut work, out);
            }
        }
    }

    /// Removes process `id`, which exits with `reason`, and fires its links
    /// and monitors.
    pub(crate) fn terminate(&mut self, id: LocalId, reason: Term, out: &mut Vec<Remote>) {
        let mut work = Vec::new();
        self.terminate_into(id, reason, &mut work, out);
        while let Some((to, from, reason, kind)) = work.pop() {
            self.exit_signal(to, from, reason, kind, out);
        }
    }

    fn terminate_into(
        &mut self,
        id: LocalId,
        reason: Term,
        work: &mut Vec<(LocalId, Pid, Term, ExitKind)>,
        out: &mut Vec<Remote>,
    ) {
        let Some(entry) = self.procs.remove(&id) else {
            return;
        };
        for watchers in self.node_monitors.values_mut() {
            watchers.remove(&id);
        }
        // Tell the handle, in case it is not the one that asked to terminate.
        let _ = entry.mailbox.send(Signal::Killed(reason.clone()));
        if let Some(name) = &entry.name {
            self.names.remove(name);
        }
        for alias in &entry.aliases {
            self.aliases.remove(alias);
        }
        for (reference, held) in entry.holds {
            // The watcher is gone, so drop_held cannot look up its pid: send the demonitor here.
            match held {
                Held::Local(t) => {
                    if let Some(e) = self.procs.get_mut(&t) {
                        e.monitored_by.remove(&reference);
                    }
                }
                Held::Remote(node, target) => {
                    if let Some(m) = self.remote_monitors.get_mut(&node) {
                        m.remove(&reference);
                    }
                    out.push(Remote {
                        node,
                        message: Message::demonitor_p(entry.pid.clone(), target, reference),
                    });
                }
            }
        }
        for linked in entry.links {
            if linked.node == entry.pid.node {
                if let Some(lid) = self.id_of_local(&linked) {
                    work.push((lid, entry.pid.clone(), reason.clone(), ExitKind::Link));
                }
            } else {
                out.push(Remote {
                    node: linked.node.clone(),
                    message: Message::exit(entry.pid.clone(), linked, reason.clone()),
                });
            }
        }
        for (reference, watcher) in entry.monitored_by {
            if watcher.pid.node == entry.pid.node {
                if let Some(wid) = self.id_of_local(&watcher.pid) {
                    if let Some(w) = self.procs.get_mut(&wid) {
                        w.holds.remove(&reference);
                    }
                    self.deliver(
                        wid,
                        Mail::Down {
                            reference,
                            object: down_object(&entry.pid, &watcher.by_name),
                            reason: reason.clone(),
                        },
                    );
                }
            } else {
                let from_proc = match watcher.by_name {
                    Some(name) => PidOrAtom::Atom(name),
                    None => PidOrAtom::Pid(entry.pid.clone()),
                };
                out.push(Remote {
                    node: watcher.pid.node.clone(),
                    message: Message::monitor_p_exit(
                        from_proc,
                        watcher.pid,
                        reference,
                        reason.clone(),
                    ),
                });
            }
        }
    }

    /// Local pids are looked up by scanning only where no id is at hand
    /// (links and monitors between local processes store pids).
    fn id_of_local(&self, pid: &Pid) -> Option<LocalId> {
        let id = key_of(pid);
        self.procs.get(&id).filter(|e| e.pid == *pid).map(|_| id)
    }

    /// The connection to `node` is gone: every link to it breaks with
    /// `noconnection`, every monitor on its processes fires, and monitors its
    /// processes held here are dropped.
    pub(crate) fn connection_lost(&mut self, node: &Atom, out: &mut Vec<Remote>) {
        for watcher in self.node_monitors.remove(node).unwrap_or_default() {
            self.deliver(
                watcher,
                Mail::NodeDown {
                    node: node.name.clone(),
                },
            );
        }
        if let Some(monitors) = self.remote_monitors.remove(node) {
            for (reference, (watcher, target)) in monitors {
                self.remote_monitor_down(node, reference, watcher, target, atom("noconnection"));
            }
        }
        // Remove every link to the node before any exit runs, so a process
        // that dies of `noconnection` sends nothing back to that node.
        let mut broken = Vec::new();
        for (&id, e) in self.procs.iter_mut() {
            e.monitored_by.retain(|_, w| w.pid.node != *node);
            e.links.retain(|p| {
                let gone = p.node == *node;
                if gone {
                    broken.push((id, p.clone()));
                }
                !gone
            });
        }
        for (id, linked) in broken {
            self.exit_signal(id, linked, atom("noconnection"), ExitKind::Unlinked, out);
        }
    }
}
