//! The thin tokio driver of one Rust member ([`Election`]): a process whose
//! mail (member messages, gen_server calls from BEAM code, monitors, the
//! guard's `{lock_lost, Key}`) and helper answers feed the sans-IO
//! [`Member`], whose actions it carries out.
//!
//! Helpers, each a task with its own process so the member never blocks:
//! the locker (queues the member's pid for the group's lock on a serving
//! node, following redirects, and reports the grant), the finder
//! (`whereis_lock`), and the validity query (the guard `rust_quorum` on
//! this node: how long the hold is safe).

use super::core::{Action, Callbacks, Caller, Info, Input, Member};
use super::wire::{From, Msg, Role};
use crate::node::Node;
use crate::process::{CallError, Caller as GenCaller, Mail, Process};
use crate::services::protocol::{Reply, Request};
use crate::term::{as_atom, as_int, as_tuple, atom, list, tuple, Pid, Reference, Term};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How often the member's timers are looked at.
const TICK: Duration = Duration::from_millis(100);
/// Redirects followed for one lock or whereis call.
const MAX_REDIRECTS: usize = 3;

/// Why an [`Election`] call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ElectionError {
    /// The member process is gone.
    #[error("the election member has stopped")]
    Stopped,
    /// No answer in time (no leader, or the leader did not answer).
    #[error("the leader call timed out")]
    Timeout,
    /// The call to the leader failed.
    #[error("the leader call failed: {0}")]
    Call(#[from] CallError),
    /// `Election::start` was given no serving node to ask for the lock.
    #[error("no serving nodes given")]
    NoServers,
    /// The leader answered outside the protocol.
    #[error("unexpected answer: {0}")]
    Reply(Term),
}

enum Command {
    /// The request, where the answer goes, and the caller's deadline.
    LeaderCall(Term, oneshot::Sender<Term>, Instant),
    LeaderCast(Term),
    Broadcast(Term),
    Info(oneshot::Sender<Info>),
}

enum Helper {
    Locked(Option<u64>),
    Found(Option<Pid>),
    Validity(u64, Option<Instant>),
}

/// A Rust member of an election group (a candidate or a worker), running
/// until dropped. Its callbacks run on the member's task.
pub struct Election {
    pid: Pid,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Starts a member of `group` on `node`, asking the serving nodes
    /// `servers` (in order; the next on failure) for the group's lock.
    /// Its holds are guarded by this node's guard, so the serving nodes
    /// must be other nodes than `node`; `ElectionError::NoServers` when
    /// `servers` is empty.
    pub fn start<C: Callbacks + Send + 'static>(
        node: &Node,
        group: Term,
        role: Role,
        servers: Vec<String>,
        callbacks: C,
    ) -> Result<Election, ElectionError> {
        if servers.is_empty() {
            return Err(ElectionError::NoServers);
        }
        super::super::guard::ensure_started(node);
        let process = node.spawn_process();
        process.trap_exit(true);
        let pid = process.pid().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(process, group, role, servers, callbacks, rx));
        Ok(Election {
            pid,
            commands: tx,
            task,
        })
    }

    /// The member's pid (BEAM code can call it with `eq_leader`'s API).
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// `eq_leader:leader_call/3`: the leader's answer to `request`.
    pub async fn leader_call(
        &self,
        request: Term,
        timeout: Duration,
    ) -> Result<Term, ElectionError> {
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        self.commands
            .send(Command::LeaderCall(request, tx, deadline))
            .map_err(|_| ElectionError::Stopped)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(ElectionError::Stopped),
            Err(_) => Err(ElectionError::Timeout),
        }
    }

    /// `eq_leader:leader_cast/2`.
    pub fn leader_cast(&self, msg: Term) {
        let _ = self.commands.send(Command::LeaderCast(msg));
    }

    /// Sends `msg` to every member's `from_leader` if this member leads
    /// (within its term); otherwise nothing.
    pub fn broadcast(&self, msg: Term) {
        let _ = self.commands.send(Command::Broadcast(msg));
    }

    /// What the member knows now: leader, token, candidates, workers.
    pub async fn info(&self) -> Result<Info, ElectionError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Info(tx))
            .map_err(|_| ElectionError::Stopped)?;
        rx.await.map_err(|_| ElectionError::Stopped)
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        // The member's process ends with its task: its lock is released.
        self.task.abort();
    }
}

struct Driver {
    process: Process,
    node: Node,
    key: Term,
    group: Term,
    servers: Vec<String>,
    helpers: mpsc::UnboundedSender<Helper>,
    monitors: HashMap<Pid, Reference>,
    /// Local leader calls not yet forwarded, with the caller's deadline:
    /// dropped once it passes or the caller gave up (pending overflow too).
    local_calls: HashMap<u64, (oneshot::Sender<Term>, Instant)>,
    next_call: u64,
    lockers_started: u64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn run<C: Callbacks>(
    process: Process,
    group: Term,
    role: Role,
    servers: Vec<String>,
    mut cb: C,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let (helpers_tx, mut helpers) = mpsc::unbounded_channel();
    let me = process.pid().clone();
    let (mut member, first) = Member::new(group.clone(), me, role);
    let node = process.node().clone();
    let mut d = Driver {
        process,
        node,
        key: tuple(vec![atom("$eq_leader"), group.clone()]),
        group,
        servers,
        helpers: helpers_tx,
        monitors: HashMap::new(),
        local_calls: HashMap::new(),
        next_call: 0,
        lockers_started: 0,
        tasks: Vec::new(),
    };
    d.act(first, &member);
    let mut ticker = tokio::time::interval(TICK);
    loop {
        let input = tokio::select! {
            mail = d.process.recv() => match mail {
                Ok(mail) => d.on_mail(mail, &member),
                Err(_) => break,
            },
            Some(h) = helpers.recv() => Some(match h {
                Helper::Locked(token) => Input::Locked(token),
                Helper::Found(p) => Input::Found(p),
                Helper::Validity(n, v) => Input::Validity(n, v),
            }),
            c = commands.recv() => match c {
                None => break,
                Some(Command::LeaderCall(request, reply, deadline)) => {
                    let id = d.next_call;
                    d.next_call += 1;
                    d.local_calls.insert(id, (reply, deadline));
                    Some(Input::LeaderCall { caller: Caller::Local(id), request })
                }
                Some(Command::LeaderCast(msg)) => Some(Input::LeaderCast(msg)),
                Some(Command::Broadcast(msg)) => Some(Input::Broadcast(msg)),
                Some(Command::Info(reply)) => {
                    let _ = reply.send(member.info().clone());
                    None
                }
            },
            _ = ticker.tick() => {
                let now = Instant::now();
                d.local_calls.retain(|_, (tx, until)| !tx.is_closed() && *until > now);
                Some(Input::Tick)
            }
        };
        if let Some(input) = input {
            let out = member.handle(input, Instant::now(), &mut cb);
            d.act(out, &member);
            d.forward_pending(&mut member);
        }
        d.tasks.retain(|t| !t.is_finished());
    }
    for t in d.tasks {
        t.abort();
    }
}

impl Driver {
    fn on_mail(&mut self, mail: Mail, member: &Member) -> Option<Input> {
        match mail {
            Mail::Message(term) => {
                if let Some((group, msg)) = Msg::decode(&term) {
                    return (group == self.group).then_some(Input::Wire(msg));
                }
                self.gen_message(&term, member)
            }
            Mail::Down { reference, .. } => {
                let pid = self
                    .monitors
                    .iter()
                    .find(|(_, r)| **r == reference)
                    .map(|(p, _)| p.clone())?;
                self.monitors.remove(&pid);
                Some(Input::Down(pid))
            }
            Mail::Exit { reason, .. } => match as_tuple(&reason) {
                Some([what, key]) if as_atom(what) == Some("lock_lost") && *key == self.key => {
                    Some(Input::Lost)
                }
                _ => None,
            },
            Mail::NodeDown { .. } => None,
        }
    }

    /// gen_server calls and casts from BEAM code (`eq_leader`'s API on a
    /// Rust member's pid).
    fn gen_message(&mut self, term: &Term, member: &Member) -> Option<Input> {
        match as_tuple(term)? {
            [tag, from, request] if as_atom(tag) == Some("$gen_call") => {
                let caller = GenCaller::from_term(from)?;
                match as_tuple(request) {
                    Some([t, req]) if as_atom(t) == Some("$eq_leader_call") => {
                        Some(Input::LeaderCall {
                            caller: Caller::Remote(From {
                                pid: caller.pid,
                                tag: caller.tag,
                            }),
                            request: req.clone(),
                        })
                    }
                    Some([t, item]) if as_atom(t) == Some("$eq_leader_info") => {
                        caller.reply(&self.process, info_item(member.info(), item));
                        None
                    }
                    _ => {
                        let bad = tuple(vec![atom("error"), atom("unknown_request")]);
                        caller.reply(&self.process, bad);
                        None
                    }
                }
            }
            [tag, msg] if as_atom(tag) == Some("$gen_cast") => match as_tuple(msg) {
                Some([t, m]) if as_atom(t) == Some("$eq_leader_cast") => {
                    Some(Input::LeaderCast(m.clone()))
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn act(&mut self, actions: Vec<Action>, member: &Member) {
        for a in actions {
            match a {
                Action::Send(to, msg) => self.process.send(&to, msg.encode(&self.group)),
                Action::Reply(Caller::Local(id), reply) => {
                    if let Some((tx, _)) = self.local_calls.remove(&id) {
                        let _ = tx.send(reply);
                    }
                }
                Action::Reply(Caller::Remote(from), reply) => {
                    let caller = GenCaller {
                        pid: from.pid,
                        tag: from.tag,
                    };
                    caller.reply(&self.process, tuple(vec![atom("$eq_leader_reply"), reply]));
                }
                Action::Monitor(pid) => {
                    let r = self.process.monitor(&pid);
                    self.monitors.insert(pid, r);
                }
                Action::Demonitor(pid) => {
                    if let Some(r) = self.monitors.remove(&pid) {
                        self.process.demonitor(&r);
                    }
                }
                Action::StartLocker => {
                    // After the first, a pause: a hold the serving node still
                    // counts as ours is granted again at once (reentrant),
                    // and the loop must not spin while it and the guard
                    // disagree.
                    let pause = if self.lockers_started == 0 {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(100 + rand_ms(200))
                    };
                    self.lockers_started += 1;
                    self.start_locker(member.info().me.clone(), pause)
                }
                Action::Find => self.start_finder(),
                Action::QueryValidity(n) => self.query_validity(n, member.info().me.clone()),
            }
        }
    }

    /// Local calls and casts waiting for a leader, once one is known: a
    /// helper calls the leader (a BEAM or Rust member) as `eq_leader` does.
    fn forward_pending(&mut self, member: &mut Member) {
        let Some(leader) = member.info().leader.clone() else {
            return;
        };
        for (id, msg) in member.take_pending() {
            match id {
                None => self
                    .process
                    .send(&leader, Msg::LeaderCast { msg }.encode(&self.group)),
                Some(id) => {
                    let Some((tx, until)) = self.local_calls.remove(&id) else {
                        continue; // the caller gave up
                    };
                    // No longer than the caller waits.
                    let timeout = until.saturating_duration_since(Instant::now());
                    if timeout.is_zero() {
                        continue;
                    }
                    let mut caller = self.node.spawn_process();
                    let leader = leader.clone();
                    let req = tuple(vec![atom("$eq_leader_call"), msg]);
                    self.tasks.push(tokio::spawn(async move {
                        let mut tx = tx;
                        let r = tokio::select! {
                            r = caller.call(&leader, req, timeout) => r,
                            _ = tx.closed() => return,
                        };
                        if let Ok(reply) = r {
                            if let Some([t, v]) = as_tuple(&reply) {
                                if as_atom(t) == Some("$eq_leader_reply") {
                                    let _ = tx.send(v.clone());
                                }
                            }
                        }
                    }));
                }
            }
        }
    }

    fn start_locker(&mut self, owner: Pid, pause: Duration) {
        let mut p = self.node.spawn_process();
        let servers = self.servers.clone();
        let key = self.key.clone();
        let tx = self.helpers.clone();
        self.tasks.push(tokio::spawn(async move {
            // With the grant's fencing token: the term's token.
            let request = Request::Lock {
                key,
                owner,
                block: true,
                fencing: true,
            };
            tokio::time::sleep(pause).await;
            let mut i = 0usize;
            loop {
                let server = servers[i % servers.len()].clone();
                match call_routed(&mut p, &server, &request, Duration::from_secs(86_400)).await {
                    Ok(Reply::Fenced(token)) => {
                        let _ = tx.send(Helper::Locked(Some(token)));
                        return;
                    }
                    // A serving node without tokens.
                    Ok(Reply::Acquired) => {
                        let _ = tx.send(Helper::Locked(None));
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => i += 1,
                }
                tokio::time::sleep(Duration::from_millis(100 + rand_ms(150))).await;
            }
        }));
    }

    fn start_finder(&mut self) {
        let mut p = self.node.spawn_process();
        let servers = self.servers.clone();
        let request = Request::WhereisLock {
            key: self.key.clone(),
        };
        let tx = self.helpers.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut found = None;
            for s in &servers {
                if let Ok(Reply::Whereis(p)) =
                    call_routed(&mut p, s, &request, Duration::from_millis(1500)).await
                {
                    found = p;
                    break;
                }
            }
            let _ = tx.send(Helper::Found(found));
        }));
    }

    fn query_validity(&mut self, n: u64, owner: Pid) {
        let mut p = self.node.spawn_process();
        let guard = self.node.name().to_owned();
        let req = tuple(vec![
            atom("valid_until"),
            Term::from(owner),
            self.key.clone(),
        ]);
        let tx = self.helpers.clone();
        self.tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let v = match p
                .call(("rust_quorum", guard.as_str()), req, Duration::from_secs(1))
                .await
            {
                Ok(t) => as_int(&t)
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(|ms| sent + Duration::from_millis(ms)),
                Err(_) => None,
            };
            let _ = tx.send(Helper::Validity(n, v));
        }));
    }
}

fn info_item(info: &Info, item: &Term) -> Term {
    let pids = |v: &[Pid]| list(v.iter().cloned().map(Term::from).collect());
    match as_atom(item) {
        Some("leader") => info.leader.clone().map_or(atom("undefined"), Term::from),
        Some("candidates") => pids(&info.candidates),
        Some("workers") => pids(&info.workers),
        Some("token") => info
            .token
            .and_then(|t| i64::try_from(t).ok())
            .map_or(atom("undefined"), crate::term::int),
        Some("group") => info.group.clone(),
        _ => tuple(vec![
            atom("error"),
            tuple(vec![atom("badarg"), item.clone()]),
        ]),
    }
}

/// Calls `erl_quorum` on `server`, following redirects (as `Registry`).
async fn call_routed(
    p: &mut Process,
    server: &str,
    request: &Request,
    timeout: Duration,
) -> Result<Reply, CallError> {
    let mut server = server.to_owned();
    let term = request.encode();
    for _ in 0..=MAX_REDIRECTS {
        let reply = p
            .call(("erl_quorum", server.as_str()), term.clone(), timeout)
            .await?;
        match Reply::decode(request, &reply) {
            Ok(Reply::Redirect(to)) => server = to,
            Ok(r) => return Ok(r),
            Err(_) => return Ok(Reply::NoQuorum),
        }
    }
    Ok(Reply::NoQuorum)
}

fn rand_ms(max: u64) -> u64 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) % max.max(1))
        .unwrap_or(0)
}
