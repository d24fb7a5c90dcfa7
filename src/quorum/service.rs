//! The `locker` service: a process registered as `locker` that drives a
//! [`Store`] with real time, answers gen_server calls, parks and wakes
//! waiters, sweeps expired promises and leases, and pushes its log to the
//! replicas (`{'$gen_cast', {trans_log, Node, Ops}}`), as wooga/locker's
//! server does.

use super::store::{CallOutcome, Config, Store, WaiterId};
use crate::node::Node;
use crate::process::{Caller, Mail, Process, ProcessError, RegisterError};
use crate::term::{as_tuple, atom, int, is_atom, list, tuple, Pid, Term};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How a `locker` service starts.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Master nodes; empty means a cluster of this node alone.
    pub masters: Vec<String>,
    pub replicas: Vec<String>,
    /// Quorum size; at most the number of masters.
    pub w: usize,
    pub store: Config,
    /// Sweep and log push period (the original: 1 s sweeps, 100 ms pushes;
    /// leases here are in milliseconds, so both run every `tick`).
    pub tick: Duration,
    /// Skip the restart guard: only for a brand-new cluster, where no lease
    /// can be outstanding. A restarted master must keep it on.
    pub fresh_cluster: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            masters: Vec::new(),
            replicas: Vec::new(),
            w: 1,
            store: Config::default(),
            tick: Duration::from_millis(100),
            fresh_cluster: false,
        }
    }
}

/// Starts the service on `node`, registered as `locker`.
pub fn start(node: &Node, config: ServiceConfig) -> Result<Pid, RegisterError> {
    let process = node.spawn_process();
    process.register("locker")?;
    let pid = process.pid().clone();
    let epoch = Instant::now();
    let mut store = Store::new(
        Config {
            w: config.w,
            ..config.store.clone()
        },
        0,
        node.name(),
    );
    let masters = if config.masters.is_empty() {
        vec![node.name().to_owned()]
    } else {
        config.masters.clone()
    };
    let setup = tuple(vec![
        atom("set_nodes"),
        list(masters.iter().map(|m| atom(m)).collect()),
        list(config.replicas.iter().map(|r| atom(r)).collect()),
    ]);
    let _ = store.call(0, &setup);
    if config.fresh_cluster {
        store.mark_caught_up();
    } else {
        tracing::info!(
            refuse_for_ms = store.stats(0).guard_remaining_ms,
            "locker: restart guard on; promises refused until every lease this node could have granted has expired"
        );
    }
    tokio::spawn(
        Service {
            process,
            store,
            epoch,
            waiters: HashMap::new(),
            self_node: node.name().to_owned(),
        }
        .run(config.tick),
    );
    Ok(pid)
}

struct Service {
    process: Process,
    store: Store,
    epoch: Instant,
    waiters: HashMap<WaiterId, Caller>,
    self_node: String,
}

impl Service {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn run(mut self, tick: Duration) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                mail = self.process.recv() => match mail {
                    Ok(mail) => self.handle(mail),
                    Err(ProcessError::Exited(reason)) => {
                        tracing::warn!(%reason, "locker service stopped");
                        return;
                    }
                },
                _ = ticker.tick() => {
                    self.sweep();
                    self.push_log();
                }
            }
        }
    }

    fn handle(&mut self, mail: Mail) {
        let Mail::Message(message) = mail else {
            return;
        };
        match as_tuple(&message) {
            Some([kind, from, request]) if is_atom(kind, "$gen_call") => {
                match Caller::from_term(from) {
                    Some(caller) => self.call(caller, request),
                    None => tracing::warn!(?from, "locker: call with a malformed From ignored"),
                }
            }
            Some([kind, cast]) if is_atom(kind, "$gen_cast") => self.cast(cast),
            // The original's timer messages, also sent by its test suites.
            _ if is_atom(&message, "expire_leases") || is_atom(&message, "expire_locks") => {
                self.sweep()
            }
            _ if is_atom(&message, "push_trans_log") => self.push_log(),
            _ => tracing::debug!(%message, "locker: unexpected message ignored"),
        }
    }

    fn call(&mut self, caller: Caller, request: &Term) {
        let now = self.now();
        // Ours, not the original's (which answers these through `rpc`, and
        // this node has no `rex`): `{dirty_read, Key}` -> `{ok, Value}` |
        // `{error, not_found}`, and `{erl_quorum, status}` for operators.
        match as_tuple(request) {
            Some([kind, key]) if is_atom(kind, "dirty_read") => {
                caller.reply(&self.process, self.store.dirty_read_reply(now, key));
                return;
            }
            Some([ours, what]) if is_atom(ours, "erl_quorum") && is_atom(what, "status") => {
                caller.reply(&self.process, self.status(now));
                return;
            }
            _ => {}
        }
        let result = self.store.call(now, request);
        match result.outcome {
            CallOutcome::Reply(reply) => caller.reply(&self.process, reply),
            CallOutcome::Wait(id) => {
                self.waiters.insert(id, caller);
            }
        }
        self.wake(result.wake);
    }

    /// A proplist for `erl_quorum status`.
    fn status(&self, now: u64) -> Term {
        let stats = self.store.stats(now);
        let nodes = |names: &[String]| list(names.iter().map(|n| atom(n)).collect());
        let mut connected = self.process.node().connected_nodes();
        connected.sort();
        let role = format!("{:?}", self.store.role()).to_lowercase();
        let pair = |k: &str, v: Term| tuple(vec![atom(k), v]);
        let count = |n: usize| int(n as i64);
        list(vec![
            pair("role", atom(&role)),
            pair("masters", nodes(self.store.masters())),
            pair("replicas", nodes(self.store.replicas())),
            pair("w", count(stats.w)),
            pair("entries", count(stats.entries)),
            pair("promises", count(stats.promises)),
            pair(
                "waiters",
                count(stats.wait_for_waiters + stats.release_waiters),
            ),
            pair("guard_remaining_ms", int(stats.guard_remaining_ms as i64)),
            pair("connected", nodes(&connected)),
        ])
    }

    fn cast(&mut self, cast: &Term) {
        let now = self.now();
        match self.store.cast(now, cast) {
            Ok(result) => {
                for skipped in &result.skipped {
                    tracing::warn!(op = %skipped.op, index = skipped.index, "locker: malformed log op skipped");
                }
                self.wake(result.wake);
            }
            Err(e) => tracing::warn!(error = %e, "locker: cast ignored"),
        }
    }

    fn sweep(&mut self) {
        let now = self.now();
        let result = self.store.sweep(now);
        for id in result.timed_out {
            self.waiters.remove(&id);
        }
        self.wake(result.wake);
    }

    fn wake(&mut self, wake: Vec<(WaiterId, Term)>) {
        for (id, reply) in wake {
            if let Some(caller) = self.waiters.remove(&id) {
                caller.reply(&self.process, reply);
            }
        }
    }

    /// `gen_server:abcast(Replicas, locker, {trans_log, node(), Ops})`.
    fn push_log(&mut self) {
        let ops = self.store.take_log();
        if ops.is_empty() {
            return;
        }
        let message = tuple(vec![
            atom("$gen_cast"),
            tuple(vec![atom("trans_log"), atom(&self.self_node), list(ops)]),
        ]);
        for replica in self.store.push_targets() {
            self.process
                .send(("locker", replica.as_str()), message.clone());
        }
    }
}
