//! The state of one `locker` server (master or replica), sans IO.
//!
//! [`Store`] is what the gen_server registered as `locker` keeps, as plain
//! data: no sockets, no tasks, no clock. Every method takes `now_ms`, a
//! monotonic millisecond clock the driver reads, and returns what the driver
//! must do: a reply, a waiter to park, waiters to answer. The driver:
//! - answers each `{'$gen_call', From, Req}` with [`Store::call`]: on
//!   [`CallOutcome::Reply`] it replies at once; on [`CallOutcome::Wait`] it
//!   keeps `From` under the [`WaiterId`] until some later result lists that
//!   id in `wake` (reply with the term given) or in
//!   [`SweepResult::timed_out`] (reply `{error, timeout}`);
//! - passes each `{'$gen_cast', Msg}` to [`Store::cast`];
//! - calls [`Store::sweep`] about every second (locker's `expire_leases` and
//!   `expire_locks` timers; also on the `expire_leases` info message);
//! - about every 100 ms (and on the `push_trans_log` info message) sends
//!   `{'$gen_cast', {trans_log, node(), Ops}}` with `Ops =`
//!   [`Store::take_log`] to every node of [`Store::push_targets`] when `Ops`
//!   is not empty. It must drain the log even when there is nobody to send
//!   it to, or the log grows.
//!
//! # Requests and replies (locker's `handle_call`, wooga/locker master)
//!
//! | request | reply |
//! |---|---|
//! | `{get_write_lock, Key, Expected, Tag}` | `ok` / `{error, already_locked}` / `{error, not_expected_value}` |
//! | `{release_write_lock, Tag}` | `ok` |
//! | `{write, Tag, Key, Value, LeaseMs}` | `ok`; logs `{write, Key, Value, LeaseMs}` (the lease as applied) |
//! | `{update, Tag, Key, Value}` | `ok`; logs `{update, Key, Value}` (even when Key is gone) |
//! | `{extend_lease, Tag, Key, Value, LeaseMs}` | `ok`; logs `{extend_lease, Key, Value, LeaseMs}` |
//! | `{release, Key, Value, Tag}` | `ok` (logs `{release, Key}`) / `{error, not_owner}` / `{error, not_found}` |
//! | `{set_nodes, Masters, Replicas}` | `ok` |
//! | `{set_w, W}` | `ok` |
//! | `{wait_for, Key, TimeoutMs}` | `{ok, Value}`, now or when Key is written; `{error, timeout}` at the timeout |
//! | `{wait_for_release, Key, TimeoutMs}` | `{ok, released}`, now or when Key goes; `{error, timeout}` at the timeout |
//! | `get_debug_state` | `{ok, [{Key, Tag, DeadlineMs}], [{Key, Value, ExpiresAtMs}], undefined, undefined, undefined}` |
//! | `{erl_quorum_lock, Key, Value, LeaseMs \| {session, S}, Tag}` (ours) | `ok` / `{error, already_locked}` / `{error, not_expected_value}` / `{error, no_session}`: vote and write at once |
//! | `{erl_quorum_session, S, LeaseMs}` (ours) | `ok`: session `S` lives at least `LeaseMs` more; `created`: it was not live here (new, lapsed, or this master restarted), and starts now with no entries |
//! | `{erl_quorum_repair, Key, Value, S}` (ours) | `ok` / `{error, not_expected_value}` / `{error, no_session}`: writes a hold back under `S`, also during the restart guard |
//! | `{erl_quorum_transfer, Key, From, To, S}` (ours) | `ok` / `{error, not_expected_value}` / `{error, already_locked}` / `{error, no_session}`: Key holding `From` (or already `To` under `S`) now holds `To` under `S`, in one step; an absent Key is taken as by `erl_quorum_lock` (not during the restart guard) |
//! | `get_meta`, `summary` (ours) | `{Masters, Replicas, W}`, `[{write_locks, N}, {leases, N}]` |
//! | `{erl_quorum_catch_up, FromNode}` (ours) | `{erl_quorum_catch_up, Incarnation, Status, Entries, Promises, Sessions}`: everything live here, for a master that (re)starts (see `snapshot`) |
//! | anything else | `{error, {unknown_request, Req}}` |
//!
//! A write lock ("promise") is one per key, holds a `Tag`, and lives
//! `promise_ms`; `write`, `update`, `extend_lease`, `release` and
//! `release_write_lock` drop every promise held under their `Tag`. Leases are
//! milliseconds (`now + LeaseMs`; a call asking for more than `max_lease_ms`
//! is refused with `{error, lease_too_long}`, a replayed op is capped), where the
//! original rounds to whole seconds. An entry or promise whose time is up is
//! gone for every operation at once, swept or not.
//!
//! # Sessions (ours)
//!
//! A serving erl_quorum node writes the keys it holds for BEAM and Rust
//! owners under a session: the entry has no lease of its own and lives while
//! the session does, so one `erl_quorum_session` call a period renews all of
//! them. When a session's lease is up its entries go, as expired leases do,
//! and a later renewal answers `created`: the serving node then knows this
//! master lost its holds and writes them back (`erl_quorum_repair`) before
//! counting it again. Session entries and session renewals are not logged
//! for replicas.
//!
//! # Deliberate differences from the original
//!
//! - Restart guard: a new store refuses every promise with
//!   `{error, already_locked}` until `now + promise_ms + max_lease_ms`, or
//!   until [`Store::mark_caught_up`] / [`Store::set_guard_until`]; the
//!   driver (`quorum::catch_up`) ends it early once enough peers' state is
//!   merged ([`Store::merge_catch_up`]).
//! - `wait_for` answers `{ok, Value}` at once when Key is present (the
//!   original parks it regardless), and is woken by any `write` or
//!   `extend_lease`, called or replayed (the original: replayed `write` ops
//!   only, so never on a master that is not also a replica).
//!   `wait_for_release` answers `{ok, released}` at once when Key is absent
//!   (the original parks it), and is woken by replayed releases too. A failed
//!   `release` (`not_owner`) does not wake release waiters (the original
//!   does, while the key is still held). Waiters past their timeout are
//!   handed back by [`Store::sweep`] and answered `{error, timeout}`, and a
//!   timeout of 0 is answered so at once (the original never answers them,
//!   and forgets parked `wait_for` callers only when their key is next
//!   written, so a caller with a longer call timeout than its wait hung).
//!   The driver also forgets the waiters of a caller that exits or whose
//!   node goes (the original keeps them until their key changes).
//! - A `trans_log` is replayed only when it names another master of the
//!   last `set_nodes` (the original replays any, including one that claims
//!   to come from the master itself).
//! - A `write`, `extend_lease` or `update` whose Tag holds no live promise
//!   on the key here is refused with `{error, no_promise}` when it would
//!   change a key someone else may hold (another tag's live promise, or a
//!   live entry with another value); the original applies it regardless,
//!   which lets a client that stalled past its promise's lifetime overwrite
//!   a lease granted meanwhile. During the restart guard every such write is
//!   refused (the master may have forgotten a lease it granted).
//! - `release` drops its Tag's promise whatever the outcome (the original
//!   keeps it on `not_owner` / `not_found` until it expires).
//! - Timeouts may be `infinity`; leases and timeouts must be non-negative
//!   numbers. Malformed calls get an error reply; bad casts and log ops are
//!   reported, never fatal.

mod ops;
mod parse;
mod snapshot;
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_catch_up;
#[cfg(test)]
mod tests_input;
#[cfg(test)]
mod tests_log;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_session;
#[cfg(test)]
mod tests_transfer;
#[cfg(test)]
mod tests_wait;

pub(crate) use snapshot::{catch_up_request, CatchUpReply, PeerStatus};
pub(crate) use stats::Stats;

use crate::term::canon::Canon;
use crate::term::{as_tuple, atom, int, is_atom, list, list_elements, tuple, Packed, Term};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Timing and quorum settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long a promise (`get_write_lock`) holds a key: the original's 10 s.
    pub promise_ms: u64,
    /// The longest lease granted; longer requests are refused. Also the
    /// length of the restart guard (with `promise_ms`).
    pub max_lease_ms: u64,
    /// The quorum size until a `set_w` call (locker's `start_link(W)`).
    pub w: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            promise_ms: 10_000,
            max_lease_ms: 60_000,
            w: 1,
        }
    }
}

/// A parked `wait_for` / `wait_for_release` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WaiterId(pub u64);

/// What to do with one call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallOutcome {
    /// Reply now with this term.
    Reply(Term),
    /// Keep the caller's `From` under this id; no reply yet.
    Wait(WaiterId),
}

/// The result of [`Store::call`].
#[derive(Debug, Clone, PartialEq)]
#[must_use = "answer the parked callers in `wake`"]
pub(crate) struct CallResult {
    pub outcome: CallOutcome,
    /// Parked callers to answer now, with their replies.
    pub wake: Vec<(WaiterId, Term)>,
}

/// A transaction-log op that was skipped (its position in `Ops` and itself).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SkippedOp {
    pub index: usize,
    pub op: Term,
}

/// The result of a [`Store::cast`] that was understood.
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use = "answer the parked callers in `wake`"]
pub(crate) struct CastResult {
    /// Parked callers to answer now, with their replies.
    pub wake: Vec<(WaiterId, Term)>,
    /// Malformed ops of a `trans_log`, not applied; the others were.
    pub skipped: Vec<SkippedOp>,
}

/// The result of [`Store::sweep`].
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use = "answer `wake`, and `timed_out` with `{error, timeout}`"]
pub(crate) struct SweepResult {
    /// Parked callers to answer now (`wait_for_release` of expired keys).
    pub wake: Vec<(WaiterId, Term)>,
    /// Parked callers whose own timeout passed: answer `{error, timeout}`
    /// (a caller whose own call already timed out drops it: OTP 24+ calls
    /// reply to an alias that is gone by then).
    pub timed_out: Vec<WaiterId>,
}

/// A cast the store does not understand. The original locker stops on these
/// (`{stop, {badmsg, Msg}}`); the driver should log and carry on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("unknown cast to locker: {0}")]
    UnknownCast(Term),
    #[error("malformed trans_log cast: {0}")]
    MalformedTransLog(Term),
    /// Only another master's log is replayed: a cast naming this node, a
    /// replica or a stranger would let whoever sent it write entries.
    #[error("trans_log cast naming {0}, not another configured master, ignored")]
    NotFromMaster(String),
}

/// What this node is in the cluster, by the last `set_nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Master,
    Replica,
    /// Listed both as a master and as a replica.
    Both,
    /// In neither list (the state before any `set_nodes`).
    Neither,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitKind {
    /// `wait_for`: answered `{ok, Value}` when the key is present.
    Present,
    /// `wait_for_release`: answered `{ok, released}` when the key is absent.
    Absent,
}

/// Whether `packed` is the term with canonical form `canon` (`=:=`).
fn packed_is(packed: &Packed, canon: &Canon) -> bool {
    Canon::of(&packed.term()).is_ok_and(|c| c == *canon)
}

#[derive(Debug)]
struct Entry {
    key: Packed,
    value: Packed,
    /// `u64::MAX` for an entry held by a session: it lives as long as the
    /// session does, and is not in `Store::expiry`.
    expires_at: u64,
    /// The session whose lease this entry shares, if any.
    session: Option<SessionId>,
}

#[derive(Debug)]
struct Promise {
    key: Term,
    tag: Term,
    tag_canon: Canon,
    deadline: u64,
}

#[derive(Debug)]
struct Waiter {
    key: Canon,
    kind: WaitKind,
    deadline: Option<u64>,
}

/// One locker server's data: entries with leases, promises, parked waiters,
/// the membership lists and the log for replicas. See the module docs.
#[derive(Debug)]
pub(crate) struct Store {
    config: Config,
    self_node: String,
    masters: Vec<String>,
    replicas: Vec<String>,
    w: usize,
    /// Promises are refused while `now < guard_until`; `None` when caught up.
    guard_until: Option<u64>,
    entries: HashMap<Canon, Entry>,
    /// `(expires_at, key)` for every entry, so sweeps touch only what is due.
    expiry: BTreeSet<(u64, Canon)>,
    /// One promise per key.
    promises: HashMap<Canon, Promise>,
    promise_deadlines: BTreeSet<(u64, Canon)>,
    /// The keys each tag holds promises for.
    promises_by_tag: HashMap<Canon, BTreeSet<Canon>>,
    waiters: HashMap<WaiterId, Waiter>,
    /// Waiters per key, oldest first (ids grow).
    waiters_by_key: HashMap<Canon, BTreeSet<WaiterId>>,
    waiter_deadlines: BTreeSet<(u64, WaiterId)>,
    /// Session leases (`erl_quorum_session`): expiry per session. Entries
    /// written under a session live while it does, so a serving node renews
    /// all its keys with one call instead of one per key.
    sessions: HashMap<Canon, SessionId>,
    session_until: HashMap<SessionId, u64>,
    /// Each session's term, for catch-up answers.
    session_names: HashMap<SessionId, Packed>,
    next_session: SessionId,
    /// This start's number (catch-up answers carry it; see `snapshot`).
    incarnation: u64,
    /// The masters this one saw starting when it declared the cluster new.
    vouched: Vec<(String, u64)>,
    /// This master has served before (its marker file): see `snapshot`.
    restarted: bool,
    /// Keys changed during the guard; a catch-up merge leaves them alone.
    touched: HashSet<Canon>,
    next_waiter: u64,
    log: Vec<Term>,
    stats: Stats,
}

type Wake = Vec<(WaiterId, Term)>;

/// A session's number in this store (entries hold this, not the term).
type SessionId = u32;

fn error(reason: &str) -> Term {
    tuple(vec![atom("error"), atom(reason)])
}

/// The reply to a waiter whose own timeout passed: `{error, timeout}`.
pub(crate) fn timed_out() -> Term {
    error("timeout")
}

fn ok_value(value: &Term) -> Term {
    tuple(vec![atom("ok"), value.clone()])
}

fn millis_term(ms: u64) -> Term {
    int(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn atoms(names: &[String]) -> Term {
    list(names.iter().map(|n| atom(n)).collect())
}

impl Store {
    /// An empty store for the node `self_node`, with the restart guard on
    /// until `now_ms + promise_ms + max_lease_ms`: a lease granted before a
    /// restart (its write may arrive up to a promise's lifetime after the
    /// vote) has then run out. Call [`Store::set_guard_until`] or
    /// [`Store::mark_caught_up`] to change that (e.g. for a fresh cluster).
    pub(crate) fn new(config: Config, now_ms: u64, self_node: &str) -> Store {
        let guard = now_ms
            .saturating_add(config.promise_ms)
            .saturating_add(config.max_lease_ms);
        Store {
            w: config.w,
            config,
            self_node: self_node.to_owned(),
            masters: Vec::new(),
            replicas: Vec::new(),
            guard_until: Some(guard),
            entries: HashMap::new(),
            expiry: BTreeSet::new(),
            promises: HashMap::new(),
            promise_deadlines: BTreeSet::new(),
            promises_by_tag: HashMap::new(),
            waiters: HashMap::new(),
            waiters_by_key: HashMap::new(),
            waiter_deadlines: BTreeSet::new(),
            sessions: HashMap::new(),
            session_until: HashMap::new(),
            session_names: HashMap::new(),
            next_session: 0,
            incarnation: 0,
            vouched: Vec::new(),
            restarted: false,
            touched: HashSet::new(),
            next_waiter: 0,
            log: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Refuse promises until `until_ms` (a time on the caller's clock).
    #[cfg(test)]
    pub(crate) fn set_guard_until(&mut self, until_ms: u64) {
        self.guard_until = Some(until_ms);
    }

    /// This store has caught up: grant promises from now on.
    pub(crate) fn mark_caught_up(&mut self) {
        self.guard_until = None;
        self.touched = HashSet::new();
    }

    /// Whether promises are refused at `now_ms`.
    pub(crate) fn guard_active(&self, now_ms: u64) -> bool {
        self.guard_until.is_some_and(|until| now_ms < until)
    }

    /// The master list of the last `set_nodes`, sorted.
    pub(crate) fn masters(&self) -> &[String] {
        &self.masters
    }

    /// The replica list of the last `set_nodes`, sorted.
    pub(crate) fn replicas(&self) -> &[String] {
        &self.replicas
    }

    /// The quorum size.
    pub(crate) fn w(&self) -> usize {
        self.w
    }

    /// This node's role by the membership lists.
    pub(crate) fn role(&self) -> Role {
        let me = &self.self_node;
        match (self.masters.contains(me), self.replicas.contains(me)) {
            (true, true) => Role::Both,
            (true, false) => Role::Master,
            (false, true) => Role::Replica,
            (false, false) => Role::Neither,
        }
    }

    /// Where the log goes: every replica but this node. (The original
    /// abcasts to all replicas, itself included; replaying one's own log only
    /// pushes leases a little further out.)
    pub(crate) fn push_targets(&self) -> Vec<String> {
        let me = &self.self_node;
        self.replicas.iter().filter(|n| *n != me).cloned().collect()
    }

    /// The value of `key` if present and unexpired (`locker:dirty_read/1`
    /// reads the same table).
    pub(crate) fn dirty_read(&self, now_ms: u64, key: &Term) -> Option<Term> {
        let entry = self.entries.get(&Canon::of(key).ok()?)?;
        self.live(entry, now_ms).then(|| entry.value.term())
    }

    /// What `locker:dirty_read(Key)` returns: `{ok, Value}` or
    /// `{error, not_found}` (for an `rpc:call` from `master_dirty_read`).
    pub(crate) fn dirty_read_reply(&self, now_ms: u64, key: &Term) -> Term {
        match self.dirty_read(now_ms, key) {
            Some(value) => ok_value(&value),
            None => error("not_found"),
        }
    }

    /// Whether `from` names a master of the last `set_nodes` other than this
    /// node: the only senders whose `trans_log` is replayed.
    fn is_peer_master(&self, from: &Term) -> bool {
        match from {
            Term::Atom(a) => a.name != self.self_node && self.masters.contains(&a.name),
            _ => false,
        }
    }

    /// The ops logged since the last call, oldest first.
    pub(crate) fn take_log(&mut self) -> Vec<Term> {
        std::mem::take(&mut self.log)
    }

    /// Counts for an operator.
    pub(crate) fn stats(&self, now_ms: u64) -> Stats {
        let waiting = |kind| self.waiters.values().filter(|w| w.kind == kind).count();
        Stats {
            entries: self.entries.len(),
            sessions: self.sessions.len(),
            promises: self.promises.len(),
            wait_for_waiters: waiting(WaitKind::Present),
            release_waiters: waiting(WaitKind::Absent),
            pending_log: self.log.len(),
            masters: self.masters.len(),
            replicas: self.replicas.len(),
            w: self.w,
            guard_remaining_ms: self
                .guard_until
                .map_or(0, |until| until.saturating_sub(now_ms)),
            ..self.stats.clone()
        }
    }

    /// Forget a parked caller (it exited, or its node is gone). Returns
    /// whether it was still parked.
    pub(crate) fn cancel_waiter(&mut self, id: WaiterId) -> bool {
        self.remove_waiter(id).is_some()
    }

    /// One gen_server call. Never panics, whatever `request` is.
    pub(crate) fn call(&mut self, now_ms: u64, request: &Term) -> CallResult {
        self.stats.calls += 1;
        let mut wake = Vec::new();
        let outcome = match parse::request(request) {
            Some(req) => self.handle(now_ms, req, &mut wake),
            None => {
                self.stats.bad_requests += 1;
                CallOutcome::Reply(tuple(vec![
                    atom("error"),
                    tuple(vec![atom("unknown_request"), request.clone()]),
                ]))
            }
        };
        CallResult { outcome, wake }
    }

    /// One gen_server cast: `{trans_log, FromNode, Ops}` replays `Ops` in
    /// order, skipping (and returning) malformed ones. Anything else is an
    /// error for the driver to log; the store is unchanged.
    pub(crate) fn cast(&mut self, now_ms: u64, message: &Term) -> Result<CastResult, StoreError> {
        let ops = match as_tuple(message) {
            Some([name, from, _]) if is_atom(name, "trans_log") && !self.is_peer_master(from) => {
                self.stats.bad_casts += 1;
                let claimed = match from {
                    Term::Atom(a) => a.name.clone(),
                    _ => "(not an atom)".to_owned(),
                };
                return Err(StoreError::NotFromMaster(claimed));
            }
            Some([name, _from, ops]) if is_atom(name, "trans_log") => match ops {
                Term::List(l) => std::borrow::Cow::Borrowed(&l.elements),
                Term::ByteList(_) => {
                    std::borrow::Cow::Owned(list_elements(ops).unwrap_or_default())
                }
                _ => {
                    self.stats.bad_casts += 1;
                    return Err(StoreError::MalformedTransLog(message.clone()));
                }
            },
            Some([name, ..]) if is_atom(name, "trans_log") => {
                self.stats.bad_casts += 1;
                return Err(StoreError::MalformedTransLog(message.clone()));
            }
            _ => {
                self.stats.bad_casts += 1;
                return Err(StoreError::UnknownCast(message.clone()));
            }
        };
        let mut result = CastResult::default();
        for (index, term) in ops.iter().enumerate() {
            match parse::op(term) {
                Some(op) => {
                    self.stats.replayed_ops += 1;
                    self.replay(now_ms, op, &mut result.wake);
                }
                None => {
                    self.stats.skipped_ops += 1;
                    result.skipped.push(SkippedOp {
                        index,
                        op: term.clone(),
                    });
                }
            }
        }
        Ok(result)
    }

    /// Drops expired leases (answering their `wait_for_release` waiters),
    /// expired promises, and waiters past their own timeout.
    pub(crate) fn sweep(&mut self, now_ms: u64) -> SweepResult {
        let mut result = SweepResult::default();
        // A guard that ran out is over for good (and so is the record of
        // keys changed during it, which would otherwise grow on a replica).
        if self.guard_until.is_some_and(|until| now_ms >= until) {
            self.mark_caught_up();
        }
        while let Some((at, _)) = self.expiry.first() {
            if *at > now_ms {
                break;
            }
            let Some((at, key)) = self.expiry.pop_first() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|e| e.expires_at == at) {
                self.entries.remove(&key);
            }
            self.settle(now_ms, &key, &mut result.wake);
        }
        self.expire_sessions(now_ms, &mut result.wake);
        while let Some((at, _)) = self.promise_deadlines.first() {
            if *at > now_ms {
                break;
            }
            let Some((at, key)) = self.promise_deadlines.pop_first() else {
                break;
            };
            if self.promises.get(&key).is_some_and(|p| p.deadline == at) {
                self.remove_promise(&key);
            }
        }
        while let Some(&(at, id)) = self.waiter_deadlines.first() {
            if at > now_ms {
                break;
            }
            self.waiter_deadlines.pop_first();
            if self.remove_waiter(id).is_some() {
                result.timed_out.push(id);
            }
        }
        result
    }
}
