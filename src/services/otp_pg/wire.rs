//! The messages of OTP `pg`'s scope protocol (kernel `pg.erl`, OTP 23 to
//! 27), with one decoder and one encoder. `rebar_fixture/PROTOCOL.md`,
//! "Native OTP pg scopes", documents the same shapes.
//!
//! A BEAM `pg` crashes (`erlang:error(badarg)`) on any message it does not
//! know, so only these shapes are ever sent; `{discover, Peer, Version}` is
//! decoded (OTP 26+ accept it, a later pg may send it) but never encoded:
//! OTP 25 would crash on it.

use crate::term::{as_tuple, atom, list, tuple, Pid, Term};
use thiserror::Error;

/// Most groups one `sync` may list (more is refused whole).
pub(crate) const MAX_SYNC_GROUPS: usize = 10_000;
/// Most pids one `sync`, `join` or `leave` may carry in all.
pub(crate) const MAX_MESSAGE_PIDS: usize = 50_000;
/// Most groups one `leave` may name.
pub(crate) const MAX_LEAVE_GROUPS: usize = 10_000;

/// One message between scope processes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PgMessage {
    /// `{discover, Peer}` (or `{discover, Peer, Version}` from OTP 28+):
    /// "I run this scope; sync me".
    Discover { peer: Pid },
    /// `{'$gen_cast', {sync, Peer, [{Group, [Pid]}]}}`: all of `peer`'s
    /// local members, replacing what was known of it.
    Sync {
        peer: Pid,
        groups: Vec<(Term, Vec<Pid>)>,
    },
    /// `{join, Peer, Group, PidOrPids}`.
    Join {
        peer: Pid,
        group: Term,
        pids: Vec<Pid>,
    },
    /// `{leave, Peer, PidOrPids, [Group]}`: each pid leaves each group once.
    Leave {
        peer: Pid,
        pids: Vec<Pid>,
        groups: Vec<Term>,
    },
}

/// Why a term is not a pg message. Never holds the term itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum WireError {
    #[error("not a pg scope message")]
    Unknown,
    #[error("malformed pg {0} message")]
    Malformed(&'static str),
    #[error("pg {what} message too large: {count} entries (at most {max})")]
    TooLarge {
        what: &'static str,
        count: usize,
        max: usize,
    },
}

impl PgMessage {
    /// The sending scope process named in the message.
    pub(crate) fn peer(&self) -> &Pid {
        match self {
            PgMessage::Discover { peer }
            | PgMessage::Sync { peer, .. }
            | PgMessage::Join { peer, .. }
            | PgMessage::Leave { peer, .. } => peer,
        }
    }

    /// The kind, for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            PgMessage::Discover { .. } => "discover",
            PgMessage::Sync { .. } => "sync",
            PgMessage::Join { .. } => "join",
            PgMessage::Leave { .. } => "leave",
        }
    }

    pub(crate) fn encode(&self) -> Term {
        match self {
            PgMessage::Discover { peer } => tuple(vec![atom("discover"), peer.clone().into()]),
            PgMessage::Sync { peer, groups } => {
                let groups = groups
                    .iter()
                    .map(|(g, pids)| tuple(vec![g.clone(), pid_list(pids)]))
                    .collect();
                tuple(vec![
                    atom("$gen_cast"),
                    tuple(vec![atom("sync"), peer.clone().into(), list(groups)]),
                ])
            }
            PgMessage::Join { peer, group, pids } => tuple(vec![
                atom("join"),
                peer.clone().into(),
                group.clone(),
                pid_or_pids(pids),
            ]),
            PgMessage::Leave { peer, pids, groups } => tuple(vec![
                atom("leave"),
                peer.clone().into(),
                pid_or_pids(pids),
                list(groups.clone()),
            ]),
        }
    }

    pub(crate) fn decode(term: &Term) -> Result<PgMessage, WireError> {
        let elements = as_tuple(term).ok_or(WireError::Unknown)?;
        let tag = elements
            .first()
            .and_then(crate::term::as_atom)
            .ok_or(WireError::Unknown)?;
        match (tag, elements) {
            ("discover", [_, Term::Pid(peer)] | [_, Term::Pid(peer), _]) => {
                Ok(PgMessage::Discover { peer: peer.clone() })
            }
            ("discover", _) => Err(WireError::Malformed("discover")),
            ("$gen_cast", [_, inner]) => decode_sync(inner),
            ("join", [_, Term::Pid(peer), group, pids]) => Ok(PgMessage::Join {
                peer: peer.clone(),
                group: group.clone(),
                pids: decode_pids(pids, "join")?,
            }),
            ("join", _) => Err(WireError::Malformed("join")),
            ("leave", [_, Term::Pid(peer), pids, groups]) => {
                let pids = decode_pids(pids, "leave")?;
                let groups = list_ref(groups).ok_or(WireError::Malformed("leave"))?;
                bounded("leave", groups.len(), MAX_LEAVE_GROUPS)?;
                Ok(PgMessage::Leave {
                    peer: peer.clone(),
                    pids,
                    groups: groups.to_vec(),
                })
            }
            ("leave", _) => Err(WireError::Malformed("leave")),
            _ => Err(WireError::Unknown),
        }
    }
}

fn decode_sync(inner: &Term) -> Result<PgMessage, WireError> {
    let Some([tag, Term::Pid(peer), groups]) = as_tuple(inner) else {
        return Err(WireError::Unknown);
    };
    if !crate::term::is_atom(tag, "sync") {
        return Err(WireError::Unknown);
    }
    let groups = list_ref(groups).ok_or(WireError::Malformed("sync"))?;
    bounded("sync", groups.len(), MAX_SYNC_GROUPS)?;
    let mut total = 0usize;
    let mut out = Vec::with_capacity(groups.len());
    for entry in groups {
        let Some([group, pids]) = as_tuple(entry) else {
            return Err(WireError::Malformed("sync"));
        };
        let pids = list_ref(pids).ok_or(WireError::Malformed("sync"))?;
        total += pids.len();
        bounded("sync", total, MAX_MESSAGE_PIDS)?;
        let pids = pids
            .iter()
            .map(|p| match p {
                Term::Pid(p) => Ok(p.clone()),
                _ => Err(WireError::Malformed("sync")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push((group.clone(), pids));
    }
    Ok(PgMessage::Sync {
        peer: peer.clone(),
        groups: out,
    })
}

/// A pid, or a proper list of pids (bounded).
fn decode_pids(term: &Term, what: &'static str) -> Result<Vec<Pid>, WireError> {
    match term {
        Term::Pid(p) => Ok(vec![p.clone()]),
        Term::List(_) | Term::ByteList(_) => {
            let pids = list_ref(term).ok_or(WireError::Malformed(what))?;
            bounded(what, pids.len(), MAX_MESSAGE_PIDS)?;
            pids.iter()
                .map(|p| match p {
                    Term::Pid(p) => Ok(p.clone()),
                    _ => Err(WireError::Malformed(what)),
                })
                .collect()
        }
        _ => Err(WireError::Malformed(what)),
    }
}

/// The elements of a proper list, without copying them (`None` for
/// anything else; a non-empty byte list holds no pids or tuples).
fn list_ref(term: &Term) -> Option<&[Term]> {
    match term {
        Term::List(l) => Some(&l.elements),
        Term::ByteList(b) if b.bytes.is_empty() => Some(&[]),
        _ => None,
    }
}

fn bounded(what: &'static str, count: usize, max: usize) -> Result<(), WireError> {
    if count > max {
        Err(WireError::TooLarge { what, count, max })
    } else {
        Ok(())
    }
}

fn pid_list(pids: &[Pid]) -> Term {
    list(pids.iter().cloned().map(Term::from).collect())
}

/// pg sends a single pid bare, several as a list.
fn pid_or_pids(pids: &[Pid]) -> Term {
    match pids {
        [one] => one.clone().into(),
        _ => pid_list(pids),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{int, parse_term};

    fn pid(n: u32) -> Pid {
        Pid::new("beam@h", n, 0, 1)
    }

    #[test]
    fn every_message_round_trips() {
        let messages = [
            PgMessage::Discover { peer: pid(1) },
            PgMessage::Sync {
                peer: pid(1),
                groups: vec![(atom("g"), vec![pid(2), pid(3)]), (int(7), vec![pid(4)])],
            },
            PgMessage::Sync {
                peer: pid(1),
                groups: vec![],
            },
            PgMessage::Join {
                peer: pid(1),
                group: atom("g"),
                pids: vec![pid(2)],
            },
            PgMessage::Join {
                peer: pid(1),
                group: atom("g"),
                pids: vec![pid(2), pid(3)],
            },
            PgMessage::Leave {
                peer: pid(1),
                pids: vec![pid(2)],
                groups: vec![atom("g"), atom("h")],
            },
        ];
        for m in messages {
            assert_eq!(PgMessage::decode(&m.encode()), Ok(m.clone()), "{m:?}");
        }
    }

    #[test]
    fn shapes_are_pg_s_own() {
        let sync = PgMessage::Sync {
            peer: pid(1),
            groups: vec![(atom("g"), vec![pid(2)])],
        }
        .encode();
        let expected = tuple(vec![
            atom("$gen_cast"),
            tuple(vec![
                atom("sync"),
                pid(1).into(),
                list(vec![tuple(vec![atom("g"), list(vec![pid(2).into()])])]),
            ]),
        ]);
        assert_eq!(sync, expected);
        // The OTP 28 discover is accepted; the version is ignored.
        let d3 = tuple(vec![atom("discover"), pid(1).into(), int(1)]);
        assert_eq!(
            PgMessage::decode(&d3),
            Ok(PgMessage::Discover { peer: pid(1) })
        );
    }

    #[test]
    fn malformed_and_oversized_messages_are_refused() {
        for text in [
            "{discover, self}",
            "{join, 1, g, []}",
            "{leave, 1, [], []}",
            "{'$gen_cast', {sync, 1, []}}",
            "{'$gen_cast', other}",
            "hello",
            "{}",
        ] {
            let t = parse_term(text).unwrap();
            assert!(PgMessage::decode(&t).is_err(), "{text}");
        }
        let sync = |groups: Term| {
            tuple(vec![
                atom("$gen_cast"),
                tuple(vec![atom("sync"), pid(1).into(), groups]),
            ])
        };
        assert_eq!(
            PgMessage::decode(&sync(atom("x"))),
            Err(WireError::Malformed("sync"))
        );
        let many = list(
            (0..=MAX_SYNC_GROUPS as i64)
                .map(|i| tuple(vec![int(i), list(vec![])]))
                .collect(),
        );
        assert!(matches!(
            PgMessage::decode(&sync(many)),
            Err(WireError::TooLarge { what: "sync", .. })
        ));
        let pids: Vec<Term> = (0..=MAX_MESSAGE_PIDS as u32)
            .map(|i| pid(i).into())
            .collect();
        let join = tuple(vec![atom("join"), pid(1).into(), atom("g"), list(pids)]);
        assert!(matches!(
            PgMessage::decode(&join),
            Err(WireError::TooLarge { what: "join", .. })
        ));
        let bad_member = tuple(vec![
            atom("join"),
            pid(1).into(),
            atom("g"),
            list(vec![atom("x")]),
        ]);
        assert_eq!(
            PgMessage::decode(&bad_member),
            Err(WireError::Malformed("join"))
        );
    }
}
