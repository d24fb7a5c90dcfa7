//! What the `erl_quorum` process answers.

use super::request::{BadRequest, Request};
use super::{decode_names, encode_names, PEER_VERSIONS};
use crate::term::{as_atom, as_int, as_tuple, atom, int, is_atom, list, tuple, Pid, Term};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// `acquired`: the owner holds the lock (also when it already did).
    Acquired,
    /// `{acquired, Token}`, to a lock that asked for its fencing token:
    /// held, under this token (the same on a reentrant call); see
    /// `services::core::fencing`.
    Fenced(u64),
    /// `{held_by, Pid}` (only to a lock that does not block).
    HeldBy(Pid),
    /// `no_quorum`.
    NoQuorum,
    /// `yes` / `no` to a registration.
    Yes,
    No,
    /// `ok` to an unregistration.
    Ok,
    /// A pid or `undefined`, to `whereis_name` / `whereis_lock`.
    Whereis(Option<Pid>),
    /// `{ok, [{Name, Pid}]}` to `subscribe` (and to a version 1
    /// `subscribe_peer`).
    Names(Vec<(Term, Pid)>),
    /// `{ok, Version, [{Name, Pid}]}` to a versioned `subscribe_peer`.
    PeerNames {
        version: u32,
        names: Vec<(Term, Pid)>,
    },
    /// `{ok, ValidMs}` to `keepalive`.
    Valid {
        ms: u64,
    },
    /// `{erl_quorum_redirect, Node}`: ask `Node`, which holds the key's shard.
    Redirect(String),
    /// `[{Counter, Integer}]` to `status`.
    Status(Vec<(String, i64)>),
    /// `{shard, N}` to `shard_of`, or `undefined` for a key too deep to
    /// hold.
    Shard(Option<u32>),
    /// `{error, key_too_deep}`: a lock key deeper than any store accepts.
    KeyTooDeep,
    /// `{error, {forward_failed, Node}}`: a peer to which an unregister was
    /// passed on could not be reached.
    ForwardFailed(String),
    /// The request was not understood.
    Refused(BadRequest),
    /// `{started, Pid}`: this `start_name` started Pid, which holds the name.
    Started(Pid),
    /// `{already_started, Pid}`: the name is held by Pid with an equal Start.
    AlreadyStarted(Pid),
    /// `{conflict, Pid}`: the name is held by Pid, plainly or with another Start.
    Conflict(Pid),
    /// `{error, {start_failed, Reason}}`: the start did not give a process.
    StartFailed(Term),
    /// `{error, no_host}`: no host of the Start's kind is known.
    NoHost,
    /// `{Pid, Meta}` or `undefined`, to `whereis_meta`.
    WhereisMeta(Option<(Pid, Term)>),
}

/// A reply that is not what the request it answers can get.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unexpected reply to a {op} request")]
pub struct ReplyError {
    pub op: &'static str,
    pub reply: Term,
}

impl Reply {
    /// The answer to a lock or registration that cannot be served for want
    /// of a quorum (or of a settled shard): `no` to a registration,
    /// `no_quorum` to anything else.
    pub(crate) fn no_quorum(request: &Request) -> Reply {
        match request {
            Request::RegisterName { .. } => Reply::No,
            Request::WhereisLock { .. } | Request::WhereisName { .. } => Reply::Whereis(None),
            Request::WhereisMeta { .. } => Reply::WhereisMeta(None),
            Request::Started { .. } => Reply::No,
            _ => Reply::NoQuorum,
        }
    }

    pub(crate) fn encode(&self) -> Term {
        let pid = |p: &Pid| Term::from(p.clone());
        match self {
            Reply::Acquired => atom("acquired"),
            Reply::Fenced(token) => tuple(vec![atom("acquired"), encode_token(*token)]),
            Reply::HeldBy(p) => tuple(vec![atom("held_by"), pid(p)]),
            Reply::NoQuorum => atom("no_quorum"),
            Reply::Yes => atom("yes"),
            Reply::No => atom("no"),
            Reply::Ok => atom("ok"),
            Reply::Whereis(p) => p.as_ref().map_or(atom("undefined"), pid),
            Reply::Names(names) => tuple(vec![atom("ok"), encode_names(names)]),
            Reply::PeerNames { version: 1, names } => tuple(vec![atom("ok"), encode_names(names)]),
            Reply::PeerNames { version, names } => tuple(vec![
                atom("ok"),
                int(i64::from(*version)),
                encode_names(names),
            ]),
            Reply::Valid { ms } => tuple(vec![atom("ok"), int(*ms as i64)]),
            Reply::Redirect(node) => tuple(vec![atom("erl_quorum_redirect"), atom(node)]),
            Reply::Shard(None) => atom("undefined"),
            Reply::Shard(Some(n)) => tuple(vec![atom("shard"), int(i64::from(*n))]),
            Reply::Status(counters) => list(
                counters
                    .iter()
                    .map(|(k, v)| tuple(vec![atom(k), int(*v)]))
                    .collect(),
            ),
            Reply::KeyTooDeep => tuple(vec![atom("error"), atom("key_too_deep")]),
            Reply::ForwardFailed(node) => tuple(vec![
                atom("error"),
                tuple(vec![atom("forward_failed"), atom(node)]),
            ]),
            Reply::Refused(bad) => bad.encode(),
            Reply::Started(p) => tuple(vec![atom("started"), pid(p)]),
            Reply::AlreadyStarted(p) => tuple(vec![atom("already_started"), pid(p)]),
            Reply::Conflict(p) => tuple(vec![atom("conflict"), pid(p)]),
            Reply::StartFailed(reason) => tuple(vec![
                atom("error"),
                tuple(vec![atom("start_failed"), reason.clone()]),
            ]),
            Reply::NoHost => tuple(vec![atom("error"), atom("no_host")]),
            Reply::WhereisMeta(None) => atom("undefined"),
            Reply::WhereisMeta(Some((p, meta))) => tuple(vec![pid(p), meta.clone()]),
        }
    }

    /// Decodes `term` as an answer to `request`: only the replies that
    /// request can get (a redirect and the errors to any).
    pub(crate) fn decode(request: &Request, term: &Term) -> Result<Reply, ReplyError> {
        let fail = || ReplyError {
            op: request.op(),
            reply: term.clone(),
        };
        if let Some(reply) = decode_common(term) {
            return Ok(reply);
        }
        let reply = match (request, term) {
            (Request::Lock { .. }, t) if is_atom(t, "acquired") => Reply::Acquired,
            (Request::Lock { .. }, t) if is_atom(t, "no_quorum") => Reply::NoQuorum,
            (Request::Lock { .. }, t) => match as_tuple(t) {
                Some([tag, Term::Pid(p)]) if is_atom(tag, "held_by") => Reply::HeldBy(p.clone()),
                Some([tag, token]) if is_atom(tag, "acquired") => {
                    Reply::Fenced(decode_token(token).ok_or_else(fail)?)
                }
                _ => return Err(fail()),
            },
            (Request::RegisterName { .. } | Request::Started { .. }, t) if is_atom(t, "yes") => {
                Reply::Yes
            }
            (Request::RegisterName { .. } | Request::Started { .. }, t) if is_atom(t, "no") => {
                Reply::No
            }
            (Request::StartName { .. }, t) if is_atom(t, "no_quorum") => Reply::NoQuorum,
            (Request::StartName { .. }, t) => match as_tuple(t) {
                Some([tag, Term::Pid(p)]) => match as_atom(tag) {
                    Some("started") => Reply::Started(p.clone()),
                    Some("already_started") => Reply::AlreadyStarted(p.clone()),
                    Some("conflict") => Reply::Conflict(p.clone()),
                    _ => return Err(fail()),
                },
                _ => return Err(fail()),
            },
            (Request::WhereisMeta { .. }, t) if is_atom(t, "undefined") => Reply::WhereisMeta(None),
            (Request::WhereisMeta { .. }, t) => match as_tuple(t) {
                Some([Term::Pid(p), meta]) => Reply::WhereisMeta(Some((p.clone(), meta.clone()))),
                _ => return Err(fail()),
            },
            (
                Request::UnregisterName { .. }
                | Request::UnregisterNameHere { .. }
                | Request::Host { .. }
                | Request::StartFailed { .. },
                t,
            ) if is_atom(t, "ok") => Reply::Ok,
            (Request::WhereisLock { .. } | Request::WhereisName { .. }, Term::Pid(p)) => {
                Reply::Whereis(Some(p.clone()))
            }
            (Request::WhereisLock { .. } | Request::WhereisName { .. }, t)
                if is_atom(t, "undefined") =>
            {
                Reply::Whereis(None)
            }
            (Request::Subscribe { .. }, t) => match ok_payload(t) {
                Some([names]) => Reply::Names(decode_names(names).ok_or_else(fail)?),
                _ => return Err(fail()),
            },
            (Request::SubscribePeer { .. }, t) => match ok_payload(t) {
                Some([names]) => Reply::PeerNames {
                    version: 1,
                    names: decode_names(names).ok_or_else(fail)?,
                },
                Some([version, names]) => {
                    let version = as_int(version)
                        .and_then(|v| u32::try_from(v).ok())
                        .filter(|v| PEER_VERSIONS.contains(v))
                        .ok_or_else(fail)?;
                    let names = decode_names(names).ok_or_else(fail)?;
                    Reply::PeerNames { version, names }
                }
                _ => return Err(fail()),
            },
            (Request::Keepalive, t) => match ok_payload(t) {
                Some([ms]) => match as_int(ms).map(u64::try_from) {
                    Some(Ok(ms)) => Reply::Valid { ms },
                    _ => return Err(fail()),
                },
                _ => return Err(fail()),
            },
            (Request::Status, t) => Reply::Status(decode_status(t).ok_or_else(fail)?),
            (Request::ShardOf { .. }, t) if is_atom(t, "undefined") => Reply::Shard(None),
            (Request::ShardOf { .. }, t) => match as_tuple(t) {
                Some([tag, n]) if is_atom(tag, "shard") => {
                    let n = as_int(n).and_then(|n| u32::try_from(n).ok());
                    Reply::Shard(Some(n.ok_or_else(fail)?))
                }
                _ => return Err(fail()),
            },
            _ => return Err(fail()),
        };
        Ok(reply)
    }
}

/// A fencing token on the wire: a positive integer (tokens stay below
/// 2^62, see `services::core::fencing`, so always a small enough one).
fn encode_token(token: u64) -> Term {
    int(i64::try_from(token).unwrap_or(i64::MAX))
}

fn decode_token(term: &Term) -> Option<u64> {
    as_int(term)
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
}

/// The replies any request can get: a redirect, the error forms.
fn decode_common(term: &Term) -> Option<Reply> {
    match as_tuple(term)? {
        [tag, Term::Atom(node)] if is_atom(tag, "erl_quorum_redirect") => {
            Some(Reply::Redirect(node.name.clone()))
        }
        [tag, reason] if is_atom(tag, "error") => {
            if is_atom(reason, "key_too_deep") {
                return Some(Reply::KeyTooDeep);
            }
            if is_atom(reason, "no_host") {
                return Some(Reply::NoHost);
            }
            if let Some([tag, Term::Atom(node)]) = as_tuple(reason) {
                if is_atom(tag, "forward_failed") {
                    return Some(Reply::ForwardFailed(node.name.clone()));
                }
            }
            if let Some([tag, r]) = as_tuple(reason) {
                if is_atom(tag, "start_failed") {
                    return Some(Reply::StartFailed(r.clone()));
                }
            }
            BadRequest::decode_reason(reason).map(Reply::Refused)
        }
        _ => None,
    }
}

/// The elements after `ok` in `{ok, ...}`.
fn ok_payload(term: &Term) -> Option<&[Term]> {
    match as_tuple(term)? {
        [ok, rest @ ..] if is_atom(ok, "ok") => Some(rest),
        _ => None,
    }
}

fn decode_status(term: &Term) -> Option<Vec<(String, i64)>> {
    crate::term::list_elements(term)?
        .iter()
        .map(|pair| match as_tuple(pair)? {
            [k, v] => Some((as_atom(k)?.to_owned(), as_int(v)?)),
            _ => None,
        })
        .collect()
}
