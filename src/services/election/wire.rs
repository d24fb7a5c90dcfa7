//! The messages between the members of an election group
//! (`rebar_fixture/PROTOCOL.md`, "Leader election"): the same shapes as
//! `rebar_fixture/src/eq_leader_wire.erl`, with one encoder and one decoder.
//! Every message is `{'$eq_leader', Body}`, Body naming the group first.

use crate::term::{as_atom, as_int, as_tuple, atom, int, list, list_elements, tuple, Pid, Term};

/// The tag of every member message.
pub const TAG: &str = "$eq_leader";

/// A member's role: candidates may lead, workers only follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May lead.
    Candidate,
    /// Only follows.
    Worker,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Worker => "worker",
        }
    }
}

/// A fencing token (`undefined` on the wire when the serving nodes give none).
pub type Token = Option<u64>;

/// `From` of a forwarded leader call: gen_server's `{Pid, Tag}`.
#[derive(Debug, Clone, PartialEq)]
pub struct From {
    /// The caller.
    pub pid: Pid,
    /// Its call tag.
    pub tag: Term,
}

/// One member message (the group travels beside it).
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// member -> leader: I am here.
    Join {
        /// The joining member.
        member: Pid,
        /// Its role.
        role: Role,
    },
    /// leader -> members: the term's sync and whom the leader knows.
    Sync {
        /// The leader.
        leader: Pid,
        /// Its term's token.
        token: Token,
        /// What `elected` returned.
        sync: Term,
        /// The candidates it knows.
        candidates: Vec<Pid>,
        /// The workers it knows.
        workers: Vec<Pid>,
    },
    /// leader -> members: the member lists changed.
    Members {
        /// The leader.
        leader: Pid,
        /// Its term's token.
        token: Token,
        /// The candidates it knows.
        candidates: Vec<Pid>,
        /// The workers it knows.
        workers: Vec<Pid>,
    },
    /// leader -> members: a broadcast.
    FromLeader {
        /// The leader.
        leader: Pid,
        /// Its term's token.
        token: Token,
        /// The broadcast.
        msg: Term,
    },
    /// member -> leader: a leader call forwarded.
    LeaderCall {
        /// Who waits for the answer.
        from: From,
        /// The request.
        request: Term,
    },
    /// member -> leader: a leader cast forwarded.
    LeaderCast {
        /// The cast.
        msg: Term,
    },
}

fn token_term(t: Token) -> Term {
    match t {
        Some(t) => int(i64::try_from(t).unwrap_or(i64::MAX)),
        None => atom("undefined"),
    }
}

fn token_of(t: &Term) -> Option<Token> {
    if as_atom(t) == Some("undefined") {
        return Some(None);
    }
    as_int(t).and_then(|i| u64::try_from(i).ok()).map(Some)
}

fn pids(v: &[Pid]) -> Term {
    list(v.iter().cloned().map(Term::from).collect())
}

/// At most `MAX_MEMBERS` pids: a longer list refuses the message.
fn pids_of(t: &Term) -> Option<Vec<Pid>> {
    let elems = list_elements(t)?;
    if elems.len() > super::core::MAX_MEMBERS {
        return None;
    }
    elems
        .into_iter()
        .map(|p| match p {
            Term::Pid(p) => Some(p),
            _ => None,
        })
        .collect()
}

impl Msg {
    /// `{'$eq_leader', Body}` for `group`.
    pub fn encode(&self, group: &Term) -> Term {
        let g = group.clone();
        let body = match self {
            Msg::Join { member, role } => tuple(vec![
                atom("join"),
                g,
                Term::from(member.clone()),
                atom(role.as_str()),
            ]),
            Msg::Sync {
                leader,
                token,
                sync,
                candidates,
                workers,
            } => tuple(vec![
                atom("sync"),
                g,
                Term::from(leader.clone()),
                token_term(*token),
                sync.clone(),
                pids(candidates),
                pids(workers),
            ]),
            Msg::Members {
                leader,
                token,
                candidates,
                workers,
            } => tuple(vec![
                atom("members"),
                g,
                Term::from(leader.clone()),
                token_term(*token),
                pids(candidates),
                pids(workers),
            ]),
            Msg::FromLeader { leader, token, msg } => tuple(vec![
                atom("from_leader"),
                g,
                Term::from(leader.clone()),
                token_term(*token),
                msg.clone(),
            ]),
            Msg::LeaderCall { from, request } => tuple(vec![
                atom("leader_call"),
                g,
                tuple(vec![Term::from(from.pid.clone()), from.tag.clone()]),
                request.clone(),
            ]),
            Msg::LeaderCast { msg } => tuple(vec![atom("leader_cast"), g, msg.clone()]),
        };
        tuple(vec![atom(TAG), body])
    }

    /// The group and the message, or `None` for anything else (dropped:
    /// a member never fails on input).
    pub fn decode(term: &Term) -> Option<(Term, Msg)> {
        let [tag, body] = as_tuple(term)? else {
            return None;
        };
        if as_atom(tag) != Some(TAG) {
            return None;
        }
        let body = as_tuple(body)?;
        let (kind, rest) = body.split_first()?;
        let (group, rest) = rest.split_first()?;
        let msg = match (as_atom(kind)?, rest) {
            ("join", [Term::Pid(member), role]) => Msg::Join {
                member: member.clone(),
                role: match as_atom(role)? {
                    "candidate" => Role::Candidate,
                    "worker" => Role::Worker,
                    _ => return None,
                },
            },
            ("sync", [Term::Pid(leader), token, sync, c, w]) => Msg::Sync {
                leader: leader.clone(),
                token: token_of(token)?,
                sync: sync.clone(),
                candidates: pids_of(c)?,
                workers: pids_of(w)?,
            },
            ("members", [Term::Pid(leader), token, c, w]) => Msg::Members {
                leader: leader.clone(),
                token: token_of(token)?,
                candidates: pids_of(c)?,
                workers: pids_of(w)?,
            },
            ("from_leader", [Term::Pid(leader), token, msg]) => Msg::FromLeader {
                leader: leader.clone(),
                token: token_of(token)?,
                msg: msg.clone(),
            },
            ("leader_call", [from, request]) => match as_tuple(from)? {
                [Term::Pid(pid), tag] => Msg::LeaderCall {
                    from: From {
                        pid: pid.clone(),
                        tag: tag.clone(),
                    },
                    request: request.clone(),
                },
                _ => return None,
            },
            ("leader_cast", [msg]) => Msg::LeaderCast { msg: msg.clone() },
            _ => return None,
        };
        Some((group.clone(), msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(n: u32) -> Pid {
        Pid::new("a@h", n, 0, 1)
    }

    #[test]
    fn every_message_round_trips_and_junk_is_refused() {
        let g = atom("g");
        let msgs = vec![
            Msg::Join {
                member: pid(1),
                role: Role::Worker,
            },
            Msg::Sync {
                leader: pid(2),
                token: Some(7),
                sync: atom("s"),
                candidates: vec![pid(2), pid(3)],
                workers: vec![pid(1)],
            },
            Msg::Members {
                leader: pid(2),
                token: None,
                candidates: vec![],
                workers: vec![pid(1)],
            },
            Msg::FromLeader {
                leader: pid(2),
                token: Some(0),
                msg: int(5),
            },
            Msg::LeaderCall {
                from: From {
                    pid: pid(4),
                    tag: list(vec![atom("alias"), int(1)]),
                },
                request: atom("ping"),
            },
            Msg::LeaderCast { msg: atom("x") },
        ];
        for m in msgs {
            assert_eq!(Msg::decode(&m.encode(&g)), Some((g.clone(), m)));
        }
        for junk in [
            atom("x"),
            tuple(vec![atom(TAG), atom("join")]),
            tuple(vec![
                atom(TAG),
                tuple(vec![atom("join"), g.clone(), int(1), atom("worker")]),
            ]),
            tuple(vec![
                atom(TAG),
                tuple(vec![
                    atom("sync"),
                    g.clone(),
                    Term::from(pid(1)),
                    int(-1),
                    atom("s"),
                    list(vec![]),
                    list(vec![]),
                ]),
            ]),
            tuple(vec![
                atom(TAG),
                tuple(vec![
                    atom("members"),
                    g.clone(),
                    Term::from(pid(1)),
                    atom("undefined"),
                    list(vec![int(1)]),
                    list(vec![]),
                ]),
            ]),
        ] {
            assert_eq!(Msg::decode(&junk), None, "{junk}");
        }
    }
}
