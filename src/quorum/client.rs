//! A locker client in Rust: the two-phase writes of wooga/locker's client
//! (promise on every master, then write once W promised), against any set of
//! masters, Rust or BEAM. Result shapes follow locker's: a lock is
//! `{ok, W, VotesFor, WritesAcked}` there, [`Quorum`] here.
//!
//! One difference, for safety: a lock counts as taken only when at least W
//! masters acknowledged the write (the original reports success on the
//! votes alone).

use crate::process::{CallError, Process, ProcessError};
use crate::term::{atom, int, is_atom, list, tuple, Term};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) mod round;

/// How many masters voted for and acknowledged a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    /// The quorum size the client was configured with.
    pub w: usize,
    /// Masters that promised the key (one-round locks: that took it).
    pub votes: usize,
    /// Masters that acknowledged the write.
    pub acks: usize,
}

/// Why a locker operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LockerError {
    /// Fewer than W masters promised or acknowledged (locker's `{error, no_quorum}`).
    #[error("no quorum: {votes} votes and {acks} acks, {w} needed")]
    NoQuorum {
        /// The quorum size.
        w: usize,
        /// Masters that promised.
        votes: usize,
        /// Masters that acknowledged the write.
        acks: usize,
    },
    /// The master answered something else than expected.
    #[error("{0}")]
    Reply(Term),
    /// A call to a master failed (timeout, no such process, no connection).
    #[error("locker call failed: {0}")]
    Call(#[from] CallError),
    /// The client's own process was killed by an exit signal.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The operation's deadline passed (`lock_until`, `wait_for`).
    #[error("timed out")]
    Timeout,
}

/// A locker client bound to one Rust process (its pid is the caller the
/// masters see).
#[derive(Debug)]
pub struct LockerClient {
    process: Process,
    masters: Vec<String>,
    replicas: Vec<String>,
    w: usize,
    timeout: Duration,
    one_round_lock: bool,
    /// Which masters a one-round lock calls first.
    fan_out: FanOut,
    /// Keys this client locked on the first W masters only (most recent
    /// last, at most [`NARROW_KEYS`]): their release can skip the others,
    /// which never saw the lock. Any other release goes to every master.
    narrow: Vec<Term>,
}

/// Which masters a one-round lock calls first. Any W masters make a lock
/// (2W > N), so calling only W of them is as safe as calling all; the
/// others are called when those cannot make W: one of them refused, is
/// down, or has not answered within the hedge delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    /// Every master at once, as locker does.
    All,
    /// The first W masters (this node's own master first), the rest only
    /// when needed: the default. W masters woken a round instead of N saves
    /// CPU, and with the masters' readers polling their sockets after an
    /// exchange (`NodeConfig::busy_poll`) the same W stay warm round after
    /// round, where N would make N processes compete for the cores.
    W {
        /// How long the first W may take before the rest are called.
        hedge_after: Duration,
    },
    /// [`FanOut::All`] while no other round is in flight in this OS
    /// process, else [`FanOut::W`]. An idle client spends spare CPU on
    /// latency (the second-fastest of N answers comes sooner than the
    /// slower of W chosen ones); a loaded one saves it. Better than `W`
    /// only where nodes sleep between rounds (busy polling off).
    WWhenBusy {
        /// As for [`FanOut::W`].
        hedge_after: Duration,
    },
}

impl Default for FanOut {
    fn default() -> Self {
        FanOut::W {
            hedge_after: Duration::from_millis(20),
        }
    }
}

impl FanOut {
    fn hedge_after(self) -> Duration {
        match self {
            FanOut::All => Duration::ZERO,
            FanOut::W { hedge_after } | FanOut::WWhenBusy { hedge_after } => hedge_after,
        }
    }
}

/// Staged rounds in flight in this OS process: how a client tells an idle
/// node from a loaded one (see [`LockerClient::first_stage`]).
static ROUNDS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One round counted in [`ROUNDS_IN_FLIGHT`] until dropped.
struct InFlight {
    /// Whether another round was in flight when this one started.
    busy: bool,
}

impl InFlight {
    fn enter() -> Self {
        InFlight {
            busy: ROUNDS_IN_FLIGHT.fetch_add(1, Ordering::Relaxed) > 0,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        ROUNDS_IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many narrowly locked keys a client remembers; a key it forgot is
/// released on every master, which is always safe.
const NARROW_KEYS: usize = 64;

/// `masters` with this node first if it is one of them: the first W
/// masters do a staged round's work, and the local one answers without a
/// system call (as `global`'s caller takes its own node's lock).
fn local_first(process: &Process, mut masters: Vec<String>) -> Vec<String> {
    let own = process.node().name();
    if let Some(i) = masters.iter().position(|m| m == own) {
        let local = masters.remove(i);
        masters.insert(0, local);
    }
    masters
}

fn lease_term(lease: Duration) -> Term {
    int(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

impl LockerClient {
    /// A client of `masters` with quorum `w`, and locker's default call
    /// timeout (5 s).
    pub fn new(process: Process, masters: Vec<String>, w: usize) -> Self {
        let masters = local_first(&process, masters);
        Self {
            process,
            masters,
            replicas: Vec::new(),
            w,
            timeout: Duration::from_secs(5),
            one_round_lock: false,
            fan_out: FanOut::default(),
            narrow: Vec::new(),
        }
    }

    /// Locks in one round instead of two (`{erl_quorum_lock, ...}`: vote
    /// and write at once, undone with a value-checked release when short of
    /// W). Only for clusters whose masters are all erl_quorum nodes: the
    /// original locker crashes on a call it does not know.
    pub fn with_one_round_lock(mut self, on: bool) -> Self {
        self.one_round_lock = on;
        self
    }

    /// Which masters a one-round lock calls first (default:
    /// [`FanOut::W`] with a 20 ms hedge). A release goes where its
    /// lock went.
    pub fn with_fan_out(mut self, fan_out: FanOut) -> Self {
        self.fan_out = fan_out;
        self
    }

    /// Replicas also receive `release`, as in locker.
    pub fn with_replicas(mut self, replicas: Vec<String>) -> Self {
        self.replicas = replicas;
        self
    }

    /// How long one call to a master may take (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The process the client calls from (its pid is the caller the
    /// masters see), for its own sends and receives.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    async fn multi_call(
        &mut self,
        nodes: &[String],
        request: Term,
    ) -> Result<Vec<Result<Term, CallError>>, LockerError> {
        let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
        Ok(self
            .process
            .multi_call(&nodes, "locker", request, self.timeout)
            .await?)
    }

    /// Sends `request` to every node of `to` at once and waits until W of
    /// the masters among them answered `ok`, or until that can no longer
    /// happen (errors, or the timeout). A slow or hung master therefore costs
    /// nothing while W others answer. Returns the masters' `ok` count.
    async fn quorum_round(&mut self, to: &[String], request: Term) -> Result<usize, LockerError> {
        let (oks, _) = self.staged_round(to, to.len(), request).await?;
        Ok(oks)
    }

    /// [`quorum_round`](Self::quorum_round) that calls `to[..first]` first
    /// and the rest only when those cannot make W (see
    /// [`Process::quorum_call_staged`]). Also says whether the rest were called.
    async fn staged_round(
        &mut self,
        to: &[String],
        first: usize,
        request: Term,
    ) -> Result<(usize, bool), LockerError> {
        let counts: Vec<bool> = to.iter().map(|n| self.masters.contains(n)).collect();
        let rule = round::StopRule {
            w: self.w,
            counts: |i: usize| counts[i],
        };
        let nodes: Vec<&str> = to.iter().map(String::as_str).collect();
        let round = round::run(
            &mut self.process,
            &nodes,
            first,
            request,
            self.timeout,
            self.fan_out.hedge_after(),
            &rule,
        )
        .await?;
        Ok((round.oks, round.widened))
    }

    /// How many masters a one-round lock calls first, after
    /// [`FanOut`] (the masters come first in every list it is used for).
    fn first_stage(&self, to: usize, busy: bool) -> usize {
        match self.fan_out {
            FanOut::All => to,
            FanOut::WWhenBusy { .. } if !busy => to,
            FanOut::W { .. } | FanOut::WWhenBusy { .. } => self.w.min(to),
        }
    }

    /// Phase 1: a promise from W masters that `key` holds `expected`
    /// (`not_found`: is absent). Returns the tag and the number of votes.
    async fn promise(&mut self, key: &Term, expected: Term) -> Result<(Term, usize), LockerError> {
        let tag = Term::from(self.process.node().make_ref());
        let request = tuple(vec![
            atom("get_write_lock"),
            key.clone(),
            expected,
            tag.clone(),
        ]);
        let masters = self.masters.clone();
        let votes = self.quorum_round(&masters, request).await?;
        Ok((tag, votes))
    }

    /// locker's two phases against the masters: promises that `key` holds
    /// `expected`, then the request `write(Tag)` builds.
    async fn two_phase(
        &mut self,
        key: &Term,
        expected: Term,
        write: impl FnOnce(Term) -> Term,
    ) -> Result<Quorum, LockerError> {
        let (tag, votes) = self.promise(key, expected).await?;
        let write = write(tag.clone());
        let masters = self.masters.clone();
        self.commit(tag, votes, write, masters).await
    }

    /// Phase 2 to every node of `to`, or the abort when phase 1 fell short.
    async fn commit(
        &mut self,
        tag: Term,
        votes: usize,
        write: Term,
        to: Vec<String>,
    ) -> Result<Quorum, LockerError> {
        if votes < self.w {
            // Nobody waits for the abort's answers: promises expire anyway.
            let abort = tuple(vec![atom("release_write_lock"), tag]);
            let masters: Vec<&str> = self.masters.iter().map(String::as_str).collect();
            self.process
                .quorum_call(&masters, "locker", abort, self.timeout, |_| true)
                .await?;
            return Err(LockerError::NoQuorum {
                w: self.w,
                votes,
                acks: 0,
            });
        }
        let acks = self.quorum_round(&to, write).await?;
        if acks < self.w {
            return Err(LockerError::NoQuorum {
                w: self.w,
                votes,
                acks,
            });
        }
        Ok(Quorum {
            w: self.w,
            votes,
            acks,
        })
    }

    /// `locker:lock(Key, Value, LeaseLength)`: takes `key` if nobody holds it.
    pub async fn lock(
        &mut self,
        key: Term,
        value: Term,
        lease: Duration,
    ) -> Result<Quorum, LockerError> {
        if self.one_round_lock {
            return self.lock_in_one_round(key, value, lease).await;
        }
        let lease = lease_term(lease);
        self.two_phase(&key, atom("not_found"), |tag| {
            tuple(vec![atom("write"), tag, key.clone(), value, lease])
        })
        .await
    }

    /// Each master takes the key if it is absent and unpromised, atomically;
    /// at most one client can get W of them (2W > N). Short of W, the
    /// masters that took it are released (the release follows the lock on
    /// each connection, so it also reaches a master that answers late).
    async fn lock_in_one_round(
        &mut self,
        key: Term,
        value: Term,
        lease: Duration,
    ) -> Result<Quorum, LockerError> {
        let tag = Term::from(self.process.node().make_ref());
        let request = tuple(vec![
            atom("erl_quorum_lock"),
            key.clone(),
            value.clone(),
            lease_term(lease),
            tag.clone(),
        ]);
        let masters = self.masters.clone();
        let in_flight = InFlight::enter();
        let first = self.first_stage(masters.len(), in_flight.busy);
        let (acks, widened) = self.staged_round(&masters, first, request).await?;
        drop(in_flight);
        if acks >= self.w {
            if !widened && first < masters.len() {
                self.narrow.retain(|k| *k != key);
                if self.narrow.len() == NARROW_KEYS {
                    self.narrow.remove(0);
                }
                self.narrow.push(key);
            }
            return Ok(Quorum {
                w: self.w,
                votes: acks,
                acks,
            });
        }
        let undo = tuple(vec![atom("release"), key, value, tag]);
        let nodes: Vec<&str> = masters.iter().map(String::as_str).collect();
        self.process
            .quorum_call(&nodes, "locker", undo, self.timeout, |_| true)
            .await?;
        Err(LockerError::NoQuorum {
            w: self.w,
            votes: acks,
            acks: 0,
        })
    }

    /// [`lock`](Self::lock), retried with jittered exponential backoff while
    /// the key is contended, until `deadline`.
    pub async fn lock_until(
        &mut self,
        key: Term,
        value: Term,
        lease: Duration,
        deadline: Instant,
    ) -> Result<Quorum, LockerError> {
        let mut backoff = Duration::from_millis(2);
        loop {
            match self.lock(key.clone(), value.clone(), lease).await {
                Err(LockerError::NoQuorum { .. }) if Instant::now() + backoff < deadline => {
                    let jitter = rand::random_range(0..=backoff.as_micros() as u64);
                    tokio::time::sleep(backoff / 2 + Duration::from_micros(jitter / 2)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(250));
                }
                other => return other,
            }
        }
    }

    /// `locker:update(Key, Value, NewValue)`: replaces the value, keeping the lease.
    pub async fn update(
        &mut self,
        key: Term,
        value: Term,
        new_value: Term,
    ) -> Result<Quorum, LockerError> {
        self.two_phase(&key, value, |tag| {
            tuple(vec![atom("update"), tag, key.clone(), new_value])
        })
        .await
    }

    /// `locker:extend_lease(Key, Value, LeaseLength)`.
    pub async fn extend_lease(
        &mut self,
        key: Term,
        value: Term,
        lease: Duration,
    ) -> Result<Quorum, LockerError> {
        let lease = lease_term(lease);
        self.two_phase(&key, value.clone(), |tag| {
            tuple(vec![atom("extend_lease"), tag, key.clone(), value, lease])
        })
        .await
    }

    /// `locker:release(Key, Value)`: masters and replicas drop `key` if it
    /// holds `value`. One round, where locker's client takes two: `release`
    /// needs no promise on either locker's masters or ours (it deletes only
    /// when the value matches), so the promise round protects nothing.
    pub async fn release(&mut self, key: Term, value: Term) -> Result<Quorum, LockerError> {
        let tag = Term::from(self.process.node().make_ref());
        let narrow = match self.narrow.iter().position(|k| *k == key) {
            Some(i) => {
                self.narrow.remove(i);
                self.replicas.is_empty()
            }
            None => false,
        };
        let request = tuple(vec![atom("release"), key, value, tag]);
        let mut to = self.masters.clone();
        to.extend(
            self.replicas
                .iter()
                .filter(|r| !self.masters.contains(r))
                .cloned(),
        );
        // Only the masters that took the key narrowly need the release.
        let first = if narrow { self.w } else { to.len() };
        let (acks, _) = self.staged_round(&to, first, request).await?;
        if acks < self.w {
            return Err(LockerError::NoQuorum {
                w: self.w,
                votes: acks,
                acks,
            });
        }
        Ok(Quorum {
            w: self.w,
            votes: acks,
            acks,
        })
    }

    /// The value of `key` on master `node`, without a quorum
    /// (`locker:master_dirty_read/1` reads one master the same way).
    pub async fn dirty_read(&mut self, node: &str, key: Term) -> Result<Option<Term>, LockerError> {
        // `master_dirty_read`'s way: `locker:dirty_read/1` through `rex`,
        // which BEAM and Rust masters both run. A node without `rex` gets
        // `{dirty_read, Key}`, which a Rust locker answers itself. Never
        // send that call to a BEAM locker: the original crashes on unknown
        // calls.
        let group_leader = Term::from(self.process.pid().clone());
        let rpc = tuple(vec![
            atom("call"),
            atom("locker"),
            atom("dirty_read"),
            list(vec![key.clone()]),
            group_leader,
        ]);
        match self.process.call(("rex", node), rpc, self.timeout).await {
            Err(CallError::NoProc) => {
                round::dirty_read(&mut self.process, node, key, self.timeout).await
            }
            other => round::read_reply(other?),
        }
    }

    /// `wait_for(Key, Timeout)` on the locker of `node`: the value once `key` is written.
    pub async fn wait_for(
        &mut self,
        node: &str,
        key: Term,
        timeout: Duration,
    ) -> Result<Term, LockerError> {
        let request = tuple(vec![atom("wait_for"), key, lease_term(timeout)]);
        let reply = self.wait_call(node, request, timeout).await?;
        match crate::term::as_tuple(&reply) {
            Some([ok, value]) if is_atom(ok, "ok") => Ok(value.clone()),
            _ => Err(LockerError::Reply(reply)),
        }
    }

    /// `wait_for_release(Key, Timeout)` on the locker of `node`.
    pub async fn wait_for_release(
        &mut self,
        node: &str,
        key: Term,
        timeout: Duration,
    ) -> Result<(), LockerError> {
        let request = tuple(vec![atom("wait_for_release"), key, lease_term(timeout)]);
        let reply = self.wait_call(node, request, timeout).await?;
        match crate::term::as_tuple(&reply) {
            Some([ok, released]) if is_atom(ok, "ok") && is_atom(released, "released") => Ok(()),
            _ => Err(LockerError::Reply(reply)),
        }
    }

    async fn wait_call(
        &mut self,
        node: &str,
        request: Term,
        timeout: Duration,
    ) -> Result<Term, LockerError> {
        // The server answers `{error, timeout}` at `timeout`; wait a little longer for it.
        match self
            .process
            .call(
                ("locker", node),
                request,
                timeout + Duration::from_millis(500),
            )
            .await
        {
            Err(CallError::Timeout) => Err(LockerError::Timeout),
            Ok(reply) if reply == crate::quorum::store::timed_out() => Err(LockerError::Timeout),
            other => Ok(other?),
        }
    }

    /// `locker:set_nodes(Cluster, Masters, Replicas)`; also retargets this client.
    pub async fn set_nodes(
        &mut self,
        cluster: &[String],
        masters: Vec<String>,
        replicas: Vec<String>,
    ) -> Result<(), LockerError> {
        let request = tuple(vec![
            atom("set_nodes"),
            list(masters.iter().map(|m| atom(m)).collect()),
            list(replicas.iter().map(|r| atom(r)).collect()),
        ]);
        self.all_ok(cluster, request).await?;
        self.masters = local_first(&self.process, masters);
        self.replicas = replicas;
        // The first W masters may have changed: release every key widely.
        self.narrow.clear();
        Ok(())
    }

    /// `locker:set_w(Cluster, W)`; also retargets this client.
    pub async fn set_w(&mut self, cluster: &[String], w: usize) -> Result<(), LockerError> {
        let request = tuple(vec![atom("set_w"), int(w as i64)]);
        self.all_ok(cluster, request).await?;
        self.w = w;
        self.narrow.clear();
        Ok(())
    }

    async fn all_ok(&mut self, cluster: &[String], request: Term) -> Result<(), LockerError> {
        for reply in self.multi_call(cluster, request).await? {
            match reply {
                Ok(t) if is_atom(&t, "ok") => {}
                Ok(t) => return Err(LockerError::Reply(t)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
