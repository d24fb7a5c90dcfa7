//! A shard handed from one serving node to another (graceful handoff):
//! `{erl_quorum_handoff, Version, From, Id, Body}` between the `erl_quorum`
//! processes of two peers. `From` is the sender's node, `Id` the handoff's
//! number at the giving node (the giver's ids grow while it runs from a
//! random start below 2^61, so a restarted giver does not repeat them; the
//! taker keys them by giver).
//!
//! The giver drives it (see `core::handoff`): `ask` -> `ready` (the taker's
//! shard value and session), the giver's transfer round on the masters,
//! `state` (holds, waiters, the next fencing token; resent until) `done`.
//! Any other version, or a malformed body, is a typed error: the message
//! is dropped with a log line, never a crash.

use crate::services::slots::Kind;
use crate::term::{as_atom, as_int, as_tuple, atom, int, is_atom, list, tuple, Pid, Term};

/// The one version spoken.
pub(crate) const HANDOFF_VERSION: i64 = 1;
/// At most this many slots in one `state` (a shard of more is not handed
/// off: it stays with its node, and goes the slow way at its stop).
pub(crate) const MAX_MOVED_SLOTS: usize = 100_000;
/// The giver's estimate of a `state`'s encoded bytes stays under this (a
/// quarter of the default 64 MiB frame limit): a larger shard is not
/// handed off either.
pub(crate) const MAX_STATE_BYTES: usize = 16 << 20;
/// At most this many waiters of one slot travel (more are answered by the
/// giver with a redirect: they ask the taker again).
pub(crate) const MAX_MOVED_WAITERS: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HandoffMsg {
    pub from: String,
    pub id: u64,
    pub body: HandoffBody,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HandoffBody {
    /// `{ask, Shard}`: will you take `shard`?
    Ask { shard: u32 },
    /// `{ready, Shard, Value, Session}`: yes; write my entry as `value`
    /// under `session`.
    Ready {
        shard: u32,
        value: Term,
        session: Term,
    },
    /// `{no, Shard}`: not now (stopping, no session, or busy with it).
    No { shard: u32 },
    /// `{valid, Shard, ValidMs}`: sent by the taker just before `ready`:
    /// its session lives `valid_ms` more at least (as it counts when it
    /// answers). A message of its own, not a field of `ready`, so that a
    /// giver of an earlier release still reads `ready` (and drops this).
    Valid { shard: u32, valid_ms: u64 },
    /// `{state, Shard, NextToken, OkAt, Slots}`: the entry is yours (written
    /// on the masters `ok_at`); here is what the shard held.
    State {
        shard: u32,
        next_token: u64,
        ok_at: Vec<String>,
        slots: Vec<MovedSlot>,
    },
    /// `{done, Shard}`: installed; the taker serves it.
    Done { shard: u32 },
}

/// One key of a handed-off shard: `{Kind, Key, Holder, Waiters}` with
/// `Holder` `undefined`, `{Owner, Token}` or `{orphaned, Owner, Token}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MovedSlot {
    pub kind: Kind,
    pub key: Term,
    pub holder: Option<(Pid, u64)>,
    /// The holder's node lost the giver: its guard told the owner the hold
    /// is lost, and the taker only keeps it until the release margin ends
    /// (no `eq_owned`, no watch).
    pub orphaned: bool,
    /// In order.
    pub waiters: Vec<MovedWaiter>,
}

/// `{CallerPid, Tag, Owner, Ask}`: a request waiting on the key; the taker
/// answers the caller itself (the reply tag works from any node).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MovedWaiter {
    pub caller: Pid,
    pub tag: Term,
    pub owner: Pid,
    pub ask: MovedAsk,
}

/// `{lock, Block, Fencing}` | `register` | `unregister`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MovedAsk {
    Lock { block: bool, fencing: bool },
    Register,
    Unregister,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum HandoffError {
    #[error("not a handoff message")]
    NotHandoff,
    #[error("malformed handoff message")]
    Malformed,
    #[error("unsupported handoff version {0}")]
    UnsupportedVersion(i64),
}

fn boolean(term: &Term) -> Option<bool> {
    match as_atom(term)? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn uint(term: &Term) -> Option<u64> {
    u64::try_from(as_int(term)?).ok()
}

fn shard(term: &Term) -> Option<u32> {
    let s = u32::try_from(as_int(term)?).ok()?;
    (s < crate::services::shards::SHARDS).then_some(s)
}

fn kind(term: &Term) -> Option<Kind> {
    match as_atom(term)? {
        "lock" => Some(Kind::Lock),
        "name" => Some(Kind::Name),
        _ => None,
    }
}

fn pid(term: &Term) -> Option<Pid> {
    match term {
        Term::Pid(p) => Some(p.clone()),
        _ => None,
    }
}

impl MovedAsk {
    fn encode(self) -> Term {
        match self {
            MovedAsk::Lock { block, fencing } => tuple(vec![
                atom("lock"),
                atom(if block { "true" } else { "false" }),
                atom(if fencing { "true" } else { "false" }),
            ]),
            MovedAsk::Register => atom("register"),
            MovedAsk::Unregister => atom("unregister"),
        }
    }

    fn decode(term: &Term) -> Option<MovedAsk> {
        if is_atom(term, "register") {
            return Some(MovedAsk::Register);
        }
        if is_atom(term, "unregister") {
            return Some(MovedAsk::Unregister);
        }
        match as_tuple(term)? {
            [tag, block, fencing] if is_atom(tag, "lock") => Some(MovedAsk::Lock {
                block: boolean(block)?,
                fencing: boolean(fencing)?,
            }),
            _ => None,
        }
    }
}

impl MovedSlot {
    fn encode(&self) -> Term {
        let holder = match &self.holder {
            Some((owner, token)) if self.orphaned => tuple(vec![
                atom("orphaned"),
                Term::from(owner.clone()),
                uint_term(*token),
            ]),
            Some((owner, token)) => tuple(vec![Term::from(owner.clone()), uint_term(*token)]),
            None => atom("undefined"),
        };
        let waiters = self
            .waiters
            .iter()
            .map(|w| {
                tuple(vec![
                    Term::from(w.caller.clone()),
                    w.tag.clone(),
                    Term::from(w.owner.clone()),
                    w.ask.encode(),
                ])
            })
            .collect();
        tuple(vec![
            atom(self.kind.as_str()),
            self.key.clone(),
            holder,
            list(waiters),
        ])
    }

    fn decode(term: &Term) -> Option<MovedSlot> {
        let [k, key, holder, waiters] = as_tuple(term)? else {
            return None;
        };
        let (holder, orphaned) = if is_atom(holder, "undefined") {
            (None, false)
        } else {
            match as_tuple(holder)? {
                [owner, token] => (Some((pid(owner)?, uint(token)?)), false),
                [tag, owner, token] if is_atom(tag, "orphaned") => {
                    (Some((pid(owner)?, uint(token)?)), true)
                }
                _ => return None,
            }
        };
        let waiters = crate::term::list_elements(waiters)?;
        if waiters.len() > MAX_MOVED_WAITERS {
            return None;
        }
        let waiters = waiters
            .iter()
            .map(|w| match as_tuple(w)? {
                [caller, tag, owner, ask] => Some(MovedWaiter {
                    caller: pid(caller)?,
                    tag: tag.clone(),
                    owner: pid(owner)?,
                    ask: MovedAsk::decode(ask)?,
                }),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(MovedSlot {
            kind: kind(k)?,
            key: key.clone(),
            holder,
            orphaned,
            waiters,
        })
    }
}

fn uint_term(n: u64) -> Term {
    int(i64::try_from(n).unwrap_or(i64::MAX))
}

impl HandoffMsg {
    pub(crate) fn encode(&self) -> Term {
        let body = match &self.body {
            HandoffBody::Ask { shard } => tuple(vec![atom("ask"), int(i64::from(*shard))]),
            HandoffBody::Ready {
                shard,
                value,
                session,
            } => tuple(vec![
                atom("ready"),
                int(i64::from(*shard)),
                value.clone(),
                session.clone(),
            ]),
            HandoffBody::No { shard } => tuple(vec![atom("no"), int(i64::from(*shard))]),
            HandoffBody::Valid { shard, valid_ms } => tuple(vec![
                atom("valid"),
                int(i64::from(*shard)),
                uint_term(*valid_ms),
            ]),
            HandoffBody::State {
                shard,
                next_token,
                ok_at,
                slots,
            } => tuple(vec![
                atom("state"),
                int(i64::from(*shard)),
                uint_term(*next_token),
                list(ok_at.iter().map(|m| atom(m)).collect()),
                list(slots.iter().map(MovedSlot::encode).collect()),
            ]),
            HandoffBody::Done { shard } => tuple(vec![atom("done"), int(i64::from(*shard))]),
        };
        tuple(vec![
            atom("erl_quorum_handoff"),
            int(HANDOFF_VERSION),
            atom(&self.from),
            uint_term(self.id),
            body,
        ])
    }

    pub(crate) fn decode(term: &Term) -> Result<HandoffMsg, HandoffError> {
        let Some([tag, rest @ ..]) = as_tuple(term) else {
            return Err(HandoffError::NotHandoff);
        };
        if !is_atom(tag, "erl_quorum_handoff") {
            return Err(HandoffError::NotHandoff);
        }
        let [version, from, id, body] = rest else {
            return Err(HandoffError::Malformed);
        };
        match as_int(version) {
            Some(HANDOFF_VERSION) => {}
            Some(v) => return Err(HandoffError::UnsupportedVersion(v)),
            None => return Err(HandoffError::Malformed),
        }
        let decoded = (|| {
            let from = as_atom(from)?.to_owned();
            let id = uint(id)?;
            let body = match as_tuple(body)? {
                [t, s] if is_atom(t, "ask") => HandoffBody::Ask { shard: shard(s)? },
                [t, s] if is_atom(t, "no") => HandoffBody::No { shard: shard(s)? },
                [t, s, ms] if is_atom(t, "valid") => HandoffBody::Valid {
                    shard: shard(s)?,
                    valid_ms: uint(ms)?,
                },
                [t, s] if is_atom(t, "done") => HandoffBody::Done { shard: shard(s)? },
                [t, s, value, session] if is_atom(t, "ready") => HandoffBody::Ready {
                    shard: shard(s)?,
                    value: value.clone(),
                    session: session.clone(),
                },
                [t, s, next, ok_at, slots] if is_atom(t, "state") => {
                    let slots = crate::term::list_elements(slots)?;
                    if slots.len() > MAX_MOVED_SLOTS {
                        return None;
                    }
                    HandoffBody::State {
                        shard: shard(s)?,
                        next_token: uint(next)?,
                        ok_at: crate::term::list_elements(ok_at)?
                            .iter()
                            .map(|m| as_atom(m).map(str::to_owned))
                            .collect::<Option<_>>()?,
                        slots: slots.iter().map(MovedSlot::decode).collect::<Option<_>>()?,
                    }
                }
                _ => return None,
            };
            Some(HandoffMsg { from, id, body })
        })();
        decoded.ok_or(HandoffError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(body: HandoffBody) {
        let msg = HandoffMsg {
            from: "a@h".into(),
            id: 7,
            body,
        };
        assert_eq!(HandoffMsg::decode(&msg.encode()), Ok(msg));
    }

    #[test]
    fn every_body_round_trips() {
        let owner = Pid::new("beam@h", 5, 0, 1);
        roundtrip(HandoffBody::Ask { shard: 3 });
        roundtrip(HandoffBody::No { shard: 3 });
        roundtrip(HandoffBody::Done { shard: 63 });
        roundtrip(HandoffBody::Ready {
            shard: 1,
            value: tuple(vec![Term::from(owner.clone()), atom("s")]),
            session: atom("s"),
        });
        roundtrip(HandoffBody::Valid {
            shard: 2,
            valid_ms: 9_000,
        });
        roundtrip(HandoffBody::State {
            shard: 9,
            next_token: 1 << 40,
            ok_at: vec!["m1@h".into(), "m2@h".into()],
            slots: vec![
                MovedSlot {
                    kind: Kind::Lock,
                    key: atom("k"),
                    holder: Some((owner.clone(), 12)),
                    orphaned: false,
                    waiters: vec![MovedWaiter {
                        caller: owner.clone(),
                        tag: int(4),
                        owner: owner.clone(),
                        ask: MovedAsk::Lock {
                            block: true,
                            fencing: false,
                        },
                    }],
                },
                MovedSlot {
                    kind: Kind::Name,
                    key: atom("n"),
                    holder: None,
                    orphaned: false,
                    waiters: vec![],
                },
                MovedSlot {
                    kind: Kind::Lock,
                    key: atom("o"),
                    holder: Some((owner.clone(), 13)),
                    orphaned: true,
                    waiters: vec![],
                },
            ],
        });
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let bad = |t: Term| HandoffMsg::decode(&t);
        assert_eq!(bad(atom("x")), Err(HandoffError::NotHandoff));
        let msg = |version: i64, body: Term| {
            tuple(vec![
                atom("erl_quorum_handoff"),
                int(version),
                atom("a@h"),
                int(1),
                body,
            ])
        };
        let ask = tuple(vec![atom("ask"), int(1)]);
        assert_eq!(
            bad(msg(2, ask.clone())),
            Err(HandoffError::UnsupportedVersion(2))
        );
        // A shard out of range, a negative id, an unknown body.
        assert_eq!(
            bad(msg(1, tuple(vec![atom("ask"), int(64)]))),
            Err(HandoffError::Malformed)
        );
        assert_eq!(
            bad(tuple(vec![
                atom("erl_quorum_handoff"),
                int(1),
                atom("a@h"),
                int(-1),
                ask
            ])),
            Err(HandoffError::Malformed)
        );
        assert_eq!(bad(msg(1, atom("state"))), Err(HandoffError::Malformed));
    }
}
