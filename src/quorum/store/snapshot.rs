//! Catch-up (ours): what one master tells another that (re)starts, and how
//! the starting master merges it.
//!
//! `{erl_quorum_catch_up, FromNode}` is answered with [`CatchUpReply`]:
//!
//! ```text
//! {erl_quorum_catch_up, Incarnation, Status, Entries, Promises, Sessions}
//!   Status   = {starting, new | restarted} | {serving, [{Node, Incarnation}]}
//!   Entries  = [{Key, Value, RemainingMs} | {Key, Value, {session, S}}]
//!   Promises = [{Key, Tag, RemainingMs}]
//!   Sessions = [{S, RemainingMs}]
//! ```
//!
//! Times are what remains on the answering master's clock (clocks differ
//! between nodes); the merging master adds them to its own `now`, which is
//! later than the peer's moment of answering, so its copies never end
//! sooner than the originals. `serving` lists the masters (and their
//! incarnations) this one saw starting when it found the whole cluster
//! starting and declared it new (empty otherwise): a master named there
//! with its current incarnation may serve at once (see `quorum::catch_up`).
//! `restarted`: the starting master has served before (its marker file
//! says so), so it may have granted what nobody else remembers; nobody
//! declares a cluster new while such a master is starting.
//!
//! A master whose answer would exceed [`MAX_CATCH_UP_BYTES`] (estimated)
//! answers `{error, too_large}` instead; the asker counts it as no answer
//! (and keeps its guard), rather than break the connection with a frame
//! over the receiver's limit.
//! The decoder bounds what it accepts ([`MAX_CATCH_UP_ITEMS`], each key,
//! value, tag and session as deep as the store keeps, times capped to the
//! store's limits) and rejects the whole answer otherwise.

use super::parse::MAX_ARG_DEPTH;
use super::{
    atom, is_atom, list, millis_term, tuple, Canon, Entry, Packed, Promise, SessionId, Store, Term,
    Wake,
};
use crate::term::{as_atom, as_int, as_tuple, list_elements};

/// The most entries, promises and sessions (together) a catch-up answer may
/// carry; a larger one is rejected and the master keeps its restart guard.
pub(crate) const MAX_CATCH_UP_ITEMS: usize = 1_000_000;

/// The most bytes (estimated) of a catch-up answer: well under the
/// default 64 MiB frame limit, so an answer never breaks the connection.
pub(crate) const MAX_CATCH_UP_BYTES: usize = 16 << 20;

/// Whether the answering master serves, and whom it vouched for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PeerStatus {
    /// Still in its restart guard: it may have forgotten what it granted.
    /// `restarted`: it has served before (its marker exists), so this is
    /// not a brand-new cluster.
    Starting { restarted: bool },
    /// Caught up (or started `--fresh`, or past its guard). `vouched`: the
    /// masters it saw starting when it declared the cluster new.
    Serving { vouched: Vec<(String, u64)> },
}

/// How long an entry of an answer lives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Hold {
    /// Its own lease: this much remains.
    LeaseMs(u64),
    /// As long as this session (listed in the same answer).
    Session(Term),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapEntry {
    pub key: Term,
    pub value: Term,
    pub hold: Hold,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapPromise {
    pub key: Term,
    pub tag: Term,
    pub remaining_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapSession {
    pub session: Term,
    pub remaining_ms: u64,
}

/// The answer to `{erl_quorum_catch_up, FromNode}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CatchUpReply {
    pub incarnation: u64,
    pub status: PeerStatus,
    pub entries: Vec<SnapEntry>,
    pub promises: Vec<SnapPromise>,
    pub sessions: Vec<SnapSession>,
}

/// Why an answer was rejected (the master keeps its guard and retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CatchUpError {
    #[error("not a catch-up answer")]
    Shape,
    #[error("more than {MAX_CATCH_UP_ITEMS} items")]
    TooMany,
    #[error("a malformed or too deep {0}")]
    BadItem(&'static str),
    #[error("the peer's answer would be too large")]
    TooLarge,
}

/// The answer of a master whose state is over [`MAX_CATCH_UP_BYTES`].
pub(crate) fn too_large() -> Term {
    tuple(vec![atom("error"), atom("too_large")])
}

/// The request: `{erl_quorum_catch_up, FromNode}`.
pub(crate) fn catch_up_request(from: &str) -> Term {
    tuple(vec![atom("erl_quorum_catch_up"), atom(from)])
}

fn ms(term: &Term) -> Option<u64> {
    u64::try_from(as_int(term)?).ok()
}

fn shallow(term: &Term) -> Option<Term> {
    let ok = crate::dist::etf::peek::depth_at_most(term, MAX_ARG_DEPTH) <= MAX_ARG_DEPTH;
    ok.then(|| term.clone())
}

/// The elements of a list, refusing more than `budget` (spent as it goes).
fn bounded(term: &Term, budget: &mut usize) -> Result<Vec<Term>, CatchUpError> {
    let items = list_elements(term).ok_or(CatchUpError::Shape)?;
    *budget = budget
        .checked_sub(items.len())
        .ok_or(CatchUpError::TooMany)?;
    Ok(items)
}

impl CatchUpReply {
    pub(crate) fn encode(&self) -> Term {
        let status = match &self.status {
            PeerStatus::Starting { restarted } => tuple(vec![
                atom("starting"),
                atom(if *restarted { "restarted" } else { "new" }),
            ]),
            PeerStatus::Serving { vouched } => tuple(vec![
                atom("serving"),
                list(
                    vouched
                        .iter()
                        .map(|(n, i)| tuple(vec![atom(n), millis_term(*i)]))
                        .collect(),
                ),
            ]),
        };
        let entries = self.entries.iter().map(|e| {
            let hold = match &e.hold {
                Hold::LeaseMs(ms) => millis_term(*ms),
                Hold::Session(s) => tuple(vec![atom("session"), s.clone()]),
            };
            tuple(vec![e.key.clone(), e.value.clone(), hold])
        });
        let promises = self.promises.iter().map(|p| {
            tuple(vec![
                p.key.clone(),
                p.tag.clone(),
                millis_term(p.remaining_ms),
            ])
        });
        let sessions = self
            .sessions
            .iter()
            .map(|s| tuple(vec![s.session.clone(), millis_term(s.remaining_ms)]));
        tuple(vec![
            atom("erl_quorum_catch_up"),
            millis_term(self.incarnation),
            status,
            list(entries.collect()),
            list(promises.collect()),
            list(sessions.collect()),
        ])
    }

    pub(crate) fn decode(term: &Term) -> Result<CatchUpReply, CatchUpError> {
        if *term == too_large() {
            return Err(CatchUpError::TooLarge);
        }
        let Some([name, inc, status, entries, promises, sessions]) = as_tuple(term) else {
            return Err(CatchUpError::Shape);
        };
        if !is_atom(name, "erl_quorum_catch_up") {
            return Err(CatchUpError::Shape);
        }
        let mut budget = MAX_CATCH_UP_ITEMS;
        let incarnation = ms(inc).ok_or(CatchUpError::Shape)?;
        let status = match as_tuple(status) {
            Some([s, how]) if is_atom(s, "starting") && is_atom(how, "new") => {
                PeerStatus::Starting { restarted: false }
            }
            Some([s, how]) if is_atom(s, "starting") && is_atom(how, "restarted") => {
                PeerStatus::Starting { restarted: true }
            }
            Some([s, vouched]) if is_atom(s, "serving") => {
                let vouched = bounded(vouched, &mut budget)?
                    .iter()
                    .map(|v| match as_tuple(v) {
                        Some([n, i]) => Some((as_atom(n)?.to_owned(), ms(i)?)),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or(CatchUpError::BadItem("vouched master"))?;
                PeerStatus::Serving { vouched }
            }
            _ => return Err(CatchUpError::Shape),
        };
        let entry = |t: &Term| -> Option<SnapEntry> {
            let [k, v, hold] = as_tuple(t)? else {
                return None;
            };
            let hold = match as_tuple(hold) {
                Some([s, session]) if is_atom(s, "session") => Hold::Session(shallow(session)?),
                _ => Hold::LeaseMs(ms(hold)?),
            };
            Some(SnapEntry {
                key: shallow(k)?,
                value: shallow(v)?,
                hold,
            })
        };
        let entries = bounded(entries, &mut budget)?
            .iter()
            .map(entry)
            .collect::<Option<Vec<_>>>()
            .ok_or(CatchUpError::BadItem("entry"))?;
        let promise = |t: &Term| -> Option<SnapPromise> {
            let [k, tag, rem] = as_tuple(t)? else {
                return None;
            };
            Some(SnapPromise {
                key: shallow(k)?,
                tag: shallow(tag)?,
                remaining_ms: ms(rem)?,
            })
        };
        let promises = bounded(promises, &mut budget)?
            .iter()
            .map(promise)
            .collect::<Option<Vec<_>>>()
            .ok_or(CatchUpError::BadItem("promise"))?;
        let session = |t: &Term| -> Option<SnapSession> {
            let [s, rem] = as_tuple(t)? else {
                return None;
            };
            Some(SnapSession {
                session: shallow(s)?,
                remaining_ms: ms(rem)?,
            })
        };
        let sessions = bounded(sessions, &mut budget)?
            .iter()
            .map(session)
            .collect::<Option<Vec<_>>>()
            .ok_or(CatchUpError::BadItem("session"))?;
        Ok(CatchUpReply {
            incarnation,
            status,
            entries,
            promises,
            sessions,
        })
    }
}

impl Store {
    /// This incarnation's number (random per start, set by the driver), so
    /// a peer that vouched for a starting master names this start, not an
    /// earlier one.
    pub(crate) fn set_incarnation(&mut self, incarnation: u64) {
        self.incarnation = incarnation;
    }

    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// This master has served before (the driver found its marker file):
    /// it never declares a cluster new, and tells askers so.
    pub(crate) fn set_restarted(&mut self, restarted: bool) {
        self.restarted = restarted;
    }

    pub(crate) fn restarted(&self) -> bool {
        self.restarted
    }

    /// The encoded answer to `{erl_quorum_catch_up, _}`, or
    /// `{error, too_large}` when it would pass `max_bytes` (estimated from
    /// the packed sizes, before anything is decoded or built).
    pub(crate) fn catch_up_answer(&self, now: u64, max_bytes: usize) -> Term {
        if self.catch_up_size(now) > max_bytes {
            tracing::warn!(
                entries = self.entries.len(),
                max_bytes,
                "locker: catch-up answer too large; the asker keeps its guard"
            );
            return too_large();
        }
        self.catch_up_reply(now).encode()
    }

    /// A cheap upper estimate of the encoded answer: packed bytes plus a
    /// per-item allowance for the tuple, list cell and times.
    pub(super) fn catch_up_size(&self, now: u64) -> usize {
        const PER_ITEM: usize = 32;
        let packed = |p: &Packed| match p {
            Packed::Bytes(b) => b.len(),
            Packed::Term(_) => 1_024,
        };
        let entries: usize = self
            .entries
            .values()
            .filter(|e| self.live(e, now))
            .map(|e| packed(&e.key) + packed(&e.value) + PER_ITEM)
            .sum();
        let sessions: usize = self
            .session_names
            .values()
            .map(|n| 2 * packed(n) + PER_ITEM)
            .sum();
        let mut scratch = Vec::new();
        let mut promises = 0;
        for p in self.promises.values().filter(|p| p.deadline > now) {
            for t in [&p.key, &p.tag] {
                scratch.clear();
                promises += match crate::dist::etf::encode_term(t, &mut scratch) {
                    Ok(()) => scratch.len(),
                    Err(_) => 1_024,
                };
            }
            promises += PER_ITEM;
        }
        entries + sessions + promises
    }

    /// Caught up by finding every other master starting: a new cluster (or
    /// a whole-cluster restart, which nobody can tell from one). `vouched`
    /// is told to masters that ask later.
    pub(crate) fn mark_new_cluster(&mut self, vouched: Vec<(String, u64)>) {
        self.vouched = vouched;
        self.mark_caught_up();
    }

    /// Records a key changed by a call or a replayed op while the guard is
    /// on: a catch-up answer, taken earlier or later, must not overwrite
    /// it (a release done here would come back, under a session for good).
    pub(super) fn touch(&mut self, key: &Canon) {
        if self.guard_until.is_some() {
            self.touched.insert(key.clone());
        }
    }

    /// What this master tells a starting one: everything live at `now`.
    pub(crate) fn catch_up_reply(&self, now: u64) -> CatchUpReply {
        let status = if self.guard_active(now) {
            PeerStatus::Starting {
                restarted: self.restarted,
            }
        } else {
            PeerStatus::Serving {
                vouched: self.vouched.clone(),
            }
        };
        let entries = self
            .entries
            .values()
            .filter(|e| self.live(e, now))
            .filter_map(|e| {
                let hold = match e.session {
                    Some(id) => Hold::Session(self.session_names.get(&id)?.term()),
                    None => Hold::LeaseMs(e.expires_at - now),
                };
                Some(SnapEntry {
                    key: e.key.term(),
                    value: e.value.term(),
                    hold,
                })
            })
            .collect();
        let promises = self
            .promises
            .values()
            .filter(|p| p.deadline > now)
            .map(|p| SnapPromise {
                key: p.key.clone(),
                tag: p.tag.clone(),
                remaining_ms: p.deadline - now,
            })
            .collect();
        let sessions = self
            .session_until
            .iter()
            .filter(|(_, &until)| until > now)
            .filter_map(|(id, &until)| {
                Some(SnapSession {
                    session: self.session_names.get(id)?.term(),
                    remaining_ms: until - now,
                })
            })
            .collect();
        CatchUpReply {
            incarnation: self.incarnation,
            status,
            entries,
            promises,
            sessions,
        }
    }

    /// Merges a peer's answer: the union, keeping for a key the entry that
    /// lives longer (a key changed here during the guard stays as it is),
    /// the promise already here (else the peer's, with its tag, so the
    /// client's write is accepted), and each session's later expiry. Does
    /// not end the guard: the driver decides that.
    pub(crate) fn merge_catch_up(&mut self, now: u64, reply: &CatchUpReply) -> Wake {
        let mut wake = Vec::new();
        self.expire_sessions(now, &mut wake);
        for s in &reply.sessions {
            let Ok(canon) = Canon::of(&s.session) else {
                continue;
            };
            let until = now.saturating_add(s.remaining_ms.min(self.config.max_lease_ms));
            match self.sessions.get(&canon) {
                Some(id) => {
                    let e = self.session_until.entry(*id).or_insert(until);
                    *e = (*e).max(until);
                }
                None => {
                    self.new_session(canon, &s.session, until);
                }
            }
        }
        for e in &reply.entries {
            self.merge_entry(now, e, &mut wake);
        }
        for p in &reply.promises {
            let (Ok(key), Ok(tag_canon)) = (Canon::of(&p.key), Canon::of(&p.tag)) else {
                continue;
            };
            if self.promise_live(now, &key) {
                continue;
            }
            let deadline = now.saturating_add(p.remaining_ms.min(self.config.promise_ms));
            self.promise_deadlines.insert((deadline, key.clone()));
            self.promises_by_tag
                .entry(tag_canon.clone())
                .or_default()
                .insert(key.clone());
            self.promises.insert(
                key,
                Promise {
                    key: p.key.clone(),
                    tag: p.tag.clone(),
                    tag_canon,
                    deadline,
                },
            );
        }
        wake
    }

    fn merge_entry(&mut self, now: u64, e: &SnapEntry, wake: &mut Wake) {
        let Ok(key) = Canon::of(&e.key) else {
            return;
        };
        if self.touched.contains(&key) {
            return;
        }
        let (until, session) = match &e.hold {
            Hold::LeaseMs(ms) => (
                now.saturating_add((*ms).min(self.config.max_lease_ms)),
                None,
            ),
            Hold::Session(s) => {
                let Some(&id) = Canon::of(s).ok().and_then(|c| self.sessions.get(&c)) else {
                    return;
                };
                match self.session_until.get(&id) {
                    Some(&until) if until > now => (until, Some(id)),
                    _ => return,
                }
            }
        };
        self.expire_if_due(now, &key, wake);
        if let Some(local) = self.entries.get(&key) {
            let local_until = match local.session {
                Some(id) => self.session_until.get(&id).copied().unwrap_or(0),
                None => local.expires_at,
            };
            if local_until >= until {
                return;
            }
        }
        if let Some(old) = self.entries.remove(&key) {
            self.expiry.remove(&(old.expires_at, key.clone()));
        }
        let expires_at = if session.is_some() { u64::MAX } else { until };
        self.entries.insert(
            key.clone(),
            Entry {
                key: Packed::new(&e.key),
                value: Packed::new(&e.value),
                expires_at,
                session,
            },
        );
        if session.is_none() {
            self.expiry.insert((expires_at, key.clone()));
        }
        self.settle(now, &key, wake);
    }

    /// Starts session `canon` (absent here) until `until`.
    pub(super) fn new_session(&mut self, canon: Canon, term: &Term, until: u64) -> SessionId {
        let id = self.next_session;
        self.next_session = self.next_session.wrapping_add(1);
        self.sessions.insert(canon, id);
        self.session_until.insert(id, until);
        self.session_names.insert(id, Packed::new(term));
        id
    }
}
