//! The `locker` service: a process registered as `locker` that drives a
//! `Store` (the sans-IO locker state) with real time, answers gen_server calls, parks and wakes
//! waiters, sweeps expired promises and leases, and pushes its log to the
//! replicas (`{'$gen_cast', {trans_log, Node, Ops}}`), as wooga/locker's
//! server does. It is a [`GenServer`]: the sweep and the push are its
//! deadline, and `sys:get_state({locker, Node})` shows a summary of it.
//! A master that starts without `fresh_cluster` catches up from its peers
//! (`catch_up`), asking them on spawned processes through `rpc` (a BEAM
//! locker master would crash on a call it does not know; `rpc` answers
//! `undef` there). A master that has served keeps a marker file in its
//! state directory (`DIR/<node>.served`): restarted with it, it never takes
//! every peer starting (or having no peers) for a new cluster.

use super::catch_up::{self, CatchUp, Poll};
use super::store::{self, CallOutcome, CatchUpReply, Config, Store, WaiterId};
use crate::node::Node;
use crate::process::rpc::{Call, Exception, RpcError};
use crate::process::{
    start_event_server, CallReply, Caller, EventServer, Flow, GenServer, Mail, Process,
    RegisterError,
};
use crate::term::Brief;
use crate::term::{as_tuple, atom, int, is_atom, list, tuple, Pid, Reference, Term};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// How a `locker` service starts.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Master nodes; empty means a cluster of this node alone.
    pub masters: Vec<String>,
    /// Replica nodes: they get the transaction log but take no part in
    /// quorums (locker's `add_replica`).
    pub replicas: Vec<String>,
    /// Quorum size; at most the number of masters.
    pub w: usize,
    /// Promise and lease limits; its `w` is replaced by [`ServiceConfig::w`].
    pub store: Config,
    /// Sweep and log push period (the original: 1 s sweeps, 100 ms pushes;
    /// leases here are in milliseconds, so both run every `tick`).
    pub tick: Duration,
    /// Skip the restart guard and the catch-up. Not needed for a brand-new
    /// cluster (its masters find each other starting and serve at once);
    /// dangerous for a master that may have granted leases before a crash.
    pub fresh_cluster: bool,
    /// Catch up from peers at start (the default). Off, a master waits out
    /// its whole restart guard (as before catch-up existed; tests use it).
    pub catch_up: bool,
    /// Where this master keeps its marker file `<node>.served`, written
    /// when it first serves; found at a start, the master is a restarted
    /// one and serves only by catching up from serving peers, a vouch, or
    /// its whole guard. `None` (in-process users that do not set it): no
    /// marker, so a whole-cluster or lone-master restart looks new and
    /// serves at once; only safe when nothing outlives the masters.
    pub state_dir: Option<PathBuf>,
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
            catch_up: true,
            state_dir: None,
        }
    }
}

/// Starts the service on `node`, registered as `locker`.
pub fn start(node: &Node, config: ServiceConfig) -> Result<Pid, RegisterError> {
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
    // Below 2^62, so it travels as a small integer.
    store.set_incarnation(rand::random::<u64>() >> 2);
    let marker = config
        .state_dir
        .as_ref()
        .map(|dir| dir.join(format!("{}.served", node.name())));
    if marker.as_ref().is_some_and(|m| m.exists()) && !config.fresh_cluster {
        tracing::info!(marker = %marker.as_ref().map_or(String::new(), |m| m.display().to_string()),
            "locker: this master has served before: it will not take a cluster of starting masters for a new one");
        store.set_restarted(true);
    }
    let catch_up = if config.fresh_cluster {
        store.mark_caught_up();
        None
    } else {
        tracing::info!(
            refuse_for_ms = store.stats(0).guard_remaining_ms,
            "locker: restart guard on until caught up from peers (or every lease this node could have granted has expired)"
        );
        config.catch_up.then(|| CatchUp::new(node.name(), 0))
    };
    let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let service = Service {
        node: node.clone(),
        store,
        epoch,
        waiters: HashMap::new(),
        watched: HashMap::new(),
        tick: config.tick,
        next_tick: epoch,
        catch_up,
        marker,
        events,
    };
    let process = node.spawn_process();
    process.register("locker")?;
    let pid = start_event_server(process, service, events_rx);
    register_rpc(node);
    Ok(pid)
}

/// The functions locker's own client reaches through `rpc`:
/// `master_dirty_read/1` is `rpc:call(Master, locker, dirty_read, [Key])`,
/// and `get_debug_state/0` is how operators look inside. Each is a local
/// call to this node's `locker`, as the original's are.
fn register_rpc(node: &Node) {
    node.rpc_functions()
        .register("locker", "dirty_read", 1, |c: Call| {
            let request = tuple(vec![atom("dirty_read"), c.args[0].clone()]);
            local_call(c.node, request)
        });
    node.rpc_functions()
        .register("locker", "get_debug_state", 0, |c: Call| {
            local_call(c.node, atom("get_debug_state"))
        });
    node.rpc_functions()
        .register("locker", "erl_quorum_catch_up", 1, |c: Call| {
            let request = tuple(vec![atom("erl_quorum_catch_up"), c.args[0].clone()]);
            local_call(c.node, request)
        });
}

/// A peer's answer to a catch-up round, back from a spawned process.
#[derive(Debug)]
struct CatchUpAnswer {
    round: u64,
    peer: String,
    answer: Result<CatchUpReply, String>,
}

/// Asks `peer` for its state and sends the decoded answer back.
async fn ask_peer(
    node: Node,
    round: u64,
    peer: String,
    request: Term,
    events: tokio::sync::mpsc::UnboundedSender<CatchUpAnswer>,
) {
    let args = match as_tuple(&request) {
        Some([_, from]) => vec![from.clone()],
        _ => Vec::new(),
    };
    let timeout = Duration::from_millis(catch_up::ROUND_MS);
    let answer = match node
        .rpc(&peer, "locker", "erl_quorum_catch_up", args, timeout)
        .await
    {
        Ok(term) => CatchUpReply::decode(&term).map_err(|e| e.to_string()),
        // Bounded for the log: a peer's badrpc reason is its own term.
        Err(RpcError::BadRpc(reason)) => Err(format!("badrpc: {}", Brief(&reason))),
        Err(RpcError::Timeout) => Err("timeout".to_owned()),
    };
    let _ = events.send(CatchUpAnswer {
        round,
        peer,
        answer,
    });
}

async fn local_call(node: Node, request: Term) -> Result<Term, Exception> {
    let mut process = node.spawn_process();
    process
        .call("locker", request, Duration::from_secs(5))
        .await
        .map_err(|e| Exception::Exit(crate::term::binary(e.to_string())))
}

/// A monitored caller and its parked waiters.
struct Watch {
    monitor: Reference,
    waiters: BTreeSet<WaiterId>,
}

struct Service {
    node: Node,
    store: Store,
    epoch: Instant,
    waiters: HashMap<WaiterId, Caller>,
    /// The callers with parked waiters, each monitored once: when one
    /// exits, or its node goes, its waiters are forgotten (they would
    /// otherwise stay until their key changes, or forever with `infinity`).
    watched: HashMap<Pid, Watch>,
    /// Sweep and log push period, and when they are next due.
    tick: Duration,
    next_tick: Instant,
    /// The restart guard's catch-up, while it runs.
    catch_up: Option<CatchUp>,
    /// Where spawned catch-up asks send their answers.
    events: tokio::sync::mpsc::UnboundedSender<CatchUpAnswer>,
    /// The marker file still to write once this master serves.
    marker: Option<PathBuf>,
}

impl EventServer for Service {
    type Event = CatchUpAnswer;

    async fn handle_event(&mut self, event: CatchUpAnswer, process: &mut Process) -> Flow {
        let now = self.now();
        if let Some(catch_up) = self.catch_up.as_mut() {
            let answer = match event.answer {
                Ok(reply) => Ok(reply),
                Err(why) => {
                    // Bounded: an error text of ours, never the peer's term.
                    tracing::info!(peer = %event.peer, error = %why, "locker: no catch-up from peer");
                    Err(())
                }
            };
            let poll = catch_up.answer(now, &mut self.store, event.round, &event.peer, answer);
            self.on_poll(poll, process);
        }
        self.run_overdue_tick(process);
        Flow::Continue
    }
}

impl GenServer for Service {
    async fn handle_call(
        &mut self,
        request: Term,
        from: &Caller,
        process: &mut Process,
    ) -> CallReply {
        self.call(from, &request, process);
        self.run_overdue_tick(process);
        CallReply::NoReply
    }

    async fn handle_cast(&mut self, request: Term, process: &mut Process) -> Flow {
        self.cast(&request, process);
        self.run_overdue_tick(process);
        Flow::Continue
    }

    async fn handle_info(&mut self, mail: Mail, process: &mut Process) -> Flow {
        match mail {
            // The original's timer messages, also sent by its test suites.
            Mail::Message(m) if is_atom(&m, "expire_leases") || is_atom(&m, "expire_locks") => {
                self.sweep(process)
            }
            Mail::Message(m) if is_atom(&m, "push_trans_log") => self.push_log(process),
            Mail::Message(_) => tracing::debug!("locker: unexpected message ignored"),
            Mail::Down {
                object: Term::Pid(pid),
                reference,
                ..
            } => self.caller_gone(&pid, &reference),
            _ => {}
        }
        self.run_overdue_tick(process);
        Flow::Continue
    }

    fn terminate(&mut self, reason: &Term) {
        tracing::warn!(reason = %Brief(reason), "locker service stopped");
    }

    /// A summary, not the tables (`get_debug_state` lists those).
    fn state_term(&self) -> Term {
        self.status(self.now())
    }

    fn deadline(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    async fn handle_timeout(&mut self, process: &mut Process) -> Flow {
        self.periodic(process);
        Flow::Continue
    }
}

impl Service {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The sweep and the push, then the next tick a period from now (a
    /// late tick delays the next rather than bunching them).
    fn periodic(&mut self, process: &mut Process) {
        self.sweep(process);
        self.push_log(process);
        if let Some(catch_up) = self.catch_up.as_mut() {
            let poll = catch_up.poll(self.epoch.elapsed().as_millis() as u64, &mut self.store);
            self.on_poll(poll, process);
        }
        self.note_serving();
        self.next_tick = Instant::now() + self.tick;
    }

    /// Writes the marker once this master serves (any way: caught up, a
    /// new cluster, vouched, the guard over, `fresh`). A failed write is
    /// only logged: the master still serves, and a restart without the
    /// marker behaves as before it existed.
    fn note_serving(&mut self) {
        if self.store.guard_active(self.now()) {
            return;
        }
        let Some(marker) = self.marker.take() else {
            return;
        };
        let write = marker
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&marker, format!("{}\n", self.node.name())));
        match write {
            Ok(()) => tracing::debug!(marker = %marker.display(), "locker: served marker written"),
            Err(e) => {
                tracing::warn!(marker = %marker.display(), error = %e, "locker: cannot write the served marker; a restart of every master would serve at once")
            }
        }
    }

    /// Carries out what the catch-up asked for.
    fn on_poll(&mut self, poll: Poll, process: &mut Process) {
        match poll {
            Poll::Nothing => {}
            Poll::Ask(ask) => {
                for peer in ask.peers {
                    tokio::spawn(ask_peer(
                        self.node.clone(),
                        ask.round,
                        peer,
                        ask.request.clone(),
                        self.events.clone(),
                    ));
                }
            }
            Poll::Done(how, wake) => {
                let stats = self.store.stats(self.now());
                tracing::info!(
                    how = ?how,
                    after_ms = self.now(),
                    entries = stats.entries,
                    promises = stats.promises,
                    "locker: caught up, serving"
                );
                self.catch_up = None;
                self.wake(wake, process);
                self.note_serving();
            }
        }
    }

    /// Mail outranks the deadline in the loop, so a locker that is never
    /// idle runs an overdue tick itself: waiters still time out and
    /// replicas still get the log under a steady stream of calls.
    fn run_overdue_tick(&mut self, process: &mut Process) {
        if Instant::now() >= self.next_tick {
            self.periodic(process);
        }
    }

    /// Replies itself (the loop's reply would come after the waiters this
    /// call wakes; the caller hears first, as in the original).
    fn call(&mut self, caller: &Caller, request: &Term, process: &mut Process) {
        let now = self.now();
        // Ours, not the original's (which answers these through `rpc`, and
        // this node has no `rex`): `{dirty_read, Key}` -> `{ok, Value}` |
        // `{error, not_found}`, and `{erl_quorum, status}` for operators.
        match as_tuple(request) {
            Some([kind, key]) if is_atom(kind, "dirty_read") => {
                caller.reply(process, self.store.dirty_read_reply(now, key));
                return;
            }
            Some([ours, what]) if is_atom(ours, "erl_quorum") && is_atom(what, "status") => {
                caller.reply(process, self.status(now));
                return;
            }
            _ => {}
        }
        let result = self.store.call(now, request);
        match result.outcome {
            CallOutcome::Reply(reply) => caller.reply(process, reply),
            CallOutcome::Wait(id) => self.park(id, caller, process),
        }
        self.wake(result.wake, process);
    }

    fn park(&mut self, id: WaiterId, caller: &Caller, process: &mut Process) {
        self.waiters.insert(id, caller.clone());
        let watch = self
            .watched
            .entry(caller.pid.clone())
            .or_insert_with(|| Watch {
                monitor: process.monitor(caller.pid.clone()),
                waiters: BTreeSet::new(),
            });
        watch.waiters.insert(id);
    }

    /// A waiter answered or timed out: its caller is watched while it has
    /// others.
    fn unpark(&mut self, id: WaiterId, process: &mut Process) -> Option<Caller> {
        let caller = self.waiters.remove(&id)?;
        if let Some(watch) = self.watched.get_mut(&caller.pid) {
            watch.waiters.remove(&id);
            if watch.waiters.is_empty() {
                let monitor = watch.monitor.clone();
                self.watched.remove(&caller.pid);
                process.demonitor(&monitor);
            }
        }
        Some(caller)
    }

    /// A caller with parked waiters exited or lost its node: nobody is
    /// left to answer.
    fn caller_gone(&mut self, pid: &Pid, reference: &Reference) {
        if self
            .watched
            .get(pid)
            .is_none_or(|w| w.monitor != *reference)
        {
            return;
        }
        let Some(watch) = self.watched.remove(pid) else {
            return;
        };
        for id in watch.waiters {
            self.waiters.remove(&id);
            self.store.cancel_waiter(id);
        }
    }

    /// A proplist for `erl_quorum status` and `sys:get_state/1`.
    fn status(&self, now: u64) -> Term {
        let stats = self.store.stats(now);
        let nodes = |names: &[String]| list(names.iter().map(|n| atom(n)).collect());
        let mut connected = self.node.connected_nodes();
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
            pair("sessions", count(stats.sessions)),
            pair(
                "waiters",
                count(stats.wait_for_waiters + stats.release_waiters),
            ),
            pair("guard_remaining_ms", int(stats.guard_remaining_ms as i64)),
            pair("connected", nodes(&connected)),
        ])
    }

    fn cast(&mut self, cast: &Term, process: &mut Process) {
        let now = self.now();
        match self.store.cast(now, cast) {
            Ok(result) => {
                for skipped in &result.skipped {
                    tracing::warn!(op = %skipped.op, index = skipped.index, "locker: malformed log op skipped");
                }
                self.wake(result.wake, process);
            }
            Err(e) => tracing::warn!(error = %e, "locker: cast ignored"),
        }
    }

    fn sweep(&mut self, process: &mut Process) {
        let now = self.now();
        let result = self.store.sweep(now);
        let timed_out = result
            .timed_out
            .into_iter()
            .map(|id| (id, store::timed_out()));
        self.wake(timed_out.collect(), process);
        self.wake(result.wake, process);
    }

    fn wake(&mut self, wake: Vec<(WaiterId, Term)>, process: &mut Process) {
        for (id, reply) in wake {
            if let Some(caller) = self.unpark(id, process) {
                caller.reply(process, reply);
            }
        }
    }

    /// `gen_server:abcast(Replicas, locker, {trans_log, node(), Ops})`.
    fn push_log(&mut self, process: &mut Process) {
        let ops = self.store.take_log();
        if ops.is_empty() {
            return;
        }
        let message = tuple(vec![
            atom("$gen_cast"),
            tuple(vec![atom("trans_log"), atom(self.node.name()), list(ops)]),
        ]);
        for replica in self.store.push_targets() {
            process.send(("locker", replica.as_str()), message.clone());
        }
    }
}
