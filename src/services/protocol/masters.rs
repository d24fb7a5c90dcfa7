//! What a serving node asks the `locker` masters (this crate's
//! `quorum::store`, whose parser is the decoder of these requests) and
//! what it makes of their answers. Only Rust masters speak the session
//! calls; a serving node's masters are always Rust nodes.

use crate::term::{as_tuple, atom, int, is_atom, tuple, Pid, Term};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MasterRequest {
    /// `{erl_quorum_session, Session, LeaseMs}`: open or renew the session.
    Session { session: Term, lease: Duration },
    /// `{erl_quorum_lock, QKey, Value, {session, Session}, Tag}`: take a
    /// shard entry in one round, under the session.
    LockShard {
        key: Term,
        value: Term,
        session: Term,
        tag: Term,
    },
    /// `{erl_quorum_repair, QKey, Value, Session}`: write a held entry back.
    Repair {
        key: Term,
        value: Term,
        session: Term,
    },
    /// `{erl_quorum_transfer, QKey, From, To, Session}`: hand a shard entry
    /// from `from` to `to` under `session` in one step (`from` = `to`:
    /// confirm or take one's own).
    Transfer {
        key: Term,
        from: Term,
        to: Term,
        session: Term,
    },
    /// `{release, QKey, Value, Tag}`: undo a lock that fell short of W.
    Release { key: Term, value: Term, tag: Term },
}

impl MasterRequest {
    pub(crate) fn encode(&self) -> Term {
        match self {
            MasterRequest::Session { session, lease } => tuple(vec![
                atom("erl_quorum_session"),
                session.clone(),
                int(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)),
            ]),
            MasterRequest::LockShard {
                key,
                value,
                session,
                tag,
            } => tuple(vec![
                atom("erl_quorum_lock"),
                key.clone(),
                value.clone(),
                tuple(vec![atom("session"), session.clone()]),
                tag.clone(),
            ]),
            MasterRequest::Repair {
                key,
                value,
                session,
            } => tuple(vec![
                atom("erl_quorum_repair"),
                key.clone(),
                value.clone(),
                session.clone(),
            ]),
            MasterRequest::Transfer {
                key,
                from,
                to,
                session,
            } => tuple(vec![
                atom("erl_quorum_transfer"),
                key.clone(),
                from.clone(),
                to.clone(),
                session.clone(),
            ]),
            MasterRequest::Release { key, value, tag } => tuple(vec![
                atom("release"),
                key.clone(),
                value.clone(),
                tag.clone(),
            ]),
        }
    }
}

/// A master's answer, as the services read it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MasterReply {
    /// `ok`.
    Ok,
    /// `created`: the session was not live there (new to it, lapsed, or the
    /// master restarted), and starts now with no entries.
    Created,
    /// `{error, not_expected_value}`: someone else holds the key.
    Held,
    /// `{ok, Value}` / `{error, not_found}` to a dirty read.
    Value(Option<Term>),
    /// Any other answer: refused for now.
    Other(Term),
}

impl MasterReply {
    pub(crate) fn decode(term: &Term) -> MasterReply {
        if is_atom(term, "ok") {
            return MasterReply::Ok;
        }
        if is_atom(term, "created") {
            return MasterReply::Created;
        }
        match as_tuple(term) {
            Some([e, r]) if is_atom(e, "error") && is_atom(r, "not_expected_value") => {
                MasterReply::Held
            }
            Some([e, r]) if is_atom(e, "error") && is_atom(r, "not_found") => {
                MasterReply::Value(None)
            }
            Some([ok, v]) if is_atom(ok, "ok") => MasterReply::Value(Some(v.clone())),
            _ => MasterReply::Other(term.clone()),
        }
    }

    /// The serving process named in a shard entry (`{ServerPid, Session}`),
    /// when this is a dirty read of one.
    pub(crate) fn shard_holder(&self) -> Option<&Pid> {
        match self {
            MasterReply::Value(Some(value)) => match as_tuple(value)? {
                [Term::Pid(pid), _session] => Some(pid),
                _ => None,
            },
            _ => None,
        }
    }
}
