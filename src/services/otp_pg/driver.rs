//! The process that runs a scope's [`Core`]: mail, the API's wake-ups,
//! a poll of the node's connections and the core's deadline in; the core's
//! actions executed in the order it queued them.

use super::core::{Action, Core, Target};
use super::wire::{PgMessage, WireError};
use super::Shared;
use crate::process::{Mail, Process};
use crate::term::{Pid, Reference, Term};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the node's connections are read (a node that connects is
/// discovered within this, plus the first retry).
pub(crate) const CONNECTIONS_EVERY: Duration = Duration::from_millis(200);

pub(crate) async fn run(mut process: Process, scope: String, shared: Arc<Shared>) {
    let node = process.node().clone();
    // A stray exit signal must not end the scope (`kill` still does).
    process.trap_exit(true);
    let mut monitors: HashMap<Pid, Reference> = HashMap::new();
    let mut connections = tokio::time::interval(CONNECTIONS_EVERY);
    loop {
        if shared.stopped.load(Ordering::Acquire) {
            let generation = {
                let mut core = shared.core();
                core.stopped();
                core.generation()
            };
            shared.publish(generation);
            return; // dropping the process: peers' monitors fire
        }
        let deadline = shared.core().deadline();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            mail = process.recv() => match mail {
                Ok(Mail::Message(term)) => on_message(&shared, &node, &term),
                Ok(Mail::Down { reference, object: Term::Pid(pid), .. }) => {
                    if monitors.get(&pid) == Some(&reference) {
                        monitors.remove(&pid);
                        shared.core().down(&pid, Instant::now());
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    shared.stopped.store(true, Ordering::Release);
                    let generation = {
                        let mut core = shared.core();
                        core.stopped();
                        core.generation()
                    };
                    shared.publish(generation);
                    return;
                }
            },
            _ = shared.wake.notified() => {}
            _ = connections.tick() => {
                shared.core().connections(node.connected_nodes(), Instant::now());
            }
            _ = sleep => {
                let mut core = shared.core();
                core.connections(node.connected_nodes(), Instant::now());
                core.tick(Instant::now());
            }
        }
        let (actions, generation) = {
            let mut core = shared.core();
            (core.take_actions(), core.generation())
        };
        shared.publish(generation);
        for action in actions {
            execute(&mut process, &scope, &mut monitors, action);
        }
    }
}

fn on_message(shared: &Shared, node: &crate::node::Node, term: &Term) {
    match PgMessage::decode(term) {
        Ok(message) => {
            let mut core = shared.core();
            if matches!(message, PgMessage::Discover { .. } | PgMessage::Sync { .. }) {
                // A new peer must be on a connected node: read them fresh.
                refresh(&mut core, node);
            }
            core.on_message(message);
        }
        Err(WireError::Unknown) => {
            tracing::debug!("pg scope: a message that is not pg's ignored");
        }
        Err(e) => tracing::warn!(error = %e, "pg scope: a pg message refused"),
    }
}

fn refresh(core: &mut Core, node: &crate::node::Node) {
    core.connections(node.connected_nodes(), Instant::now());
}

fn execute(
    process: &mut Process,
    scope: &str,
    monitors: &mut HashMap<Pid, Reference>,
    action: Action,
) {
    match action {
        Action::Send { to, message } => {
            let term = message.encode();
            match to {
                Target::Pid(pid) => process.send(&pid, term),
                Target::Scope(node) => process.send((scope, node.as_str()), term),
            }
        }
        Action::Monitor(pid) => {
            let reference = process.monitor(&pid);
            if let Some(old) = monitors.insert(pid, reference) {
                process.demonitor(&old);
            }
        }
        Action::Demonitor(pid) => {
            if let Some(reference) = monitors.remove(&pid) {
                process.demonitor(&reference);
            }
        }
    }
}
