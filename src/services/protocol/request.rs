//! The calls the `erl_quorum` process serves (`gen_server:call` requests).

use super::peer::{PEER_VERSION, PEER_VERSIONS};
use crate::term::{as_int, as_tuple, atom, int, is_atom, list, tuple, Pid, Term};

/// A call to `{erl_quorum, Node}`. `UnregisterNameHere` and `SubscribePeer`
/// come only from other serving nodes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    /// `{lock, Key, Owner, Block}`.
    Lock { key: Term, owner: Pid, block: bool },
    /// `{whereis_lock, Key}`.
    WhereisLock { key: Term },
    /// `{register_name, Name, Pid}`.
    RegisterName { name: Term, pid: Pid },
    /// `{unregister_name, Name}`.
    UnregisterName { name: Term },
    /// `{unregister_name_here, Name}`: a peer passes on an unregister for a
    /// name this node holds; acted on only here, never forwarded again.
    UnregisterNameHere { name: Term },
    /// `{whereis_name, Name}`.
    WhereisName { name: Term },
    /// `{subscribe, Subscriber}`.
    Subscribe { subscriber: Pid },
    /// `{subscribe_peer, Server, Version}` from a peer serving node
    /// (`{subscribe_peer, Server}`: version 1, from nodes before versions).
    SubscribePeer { subscriber: Pid, version: u32 },
    /// `keepalive`.
    Keepalive,
    /// `status`: counters, for operators and tests.
    Status,
}

/// A call that is not a [`Request`]; the caller is told so.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum BadRequest {
    #[error("unknown request")]
    Unknown(Term),
    /// A known request with an argument of the wrong type.
    #[error("bad argument in a request")]
    Badarg(Term),
    /// A peer speaks a version of the node-to-node protocol we do not.
    #[error("unsupported peer protocol version {version}")]
    UnsupportedVersion { version: i64 },
}

impl BadRequest {
    /// `{error, {unknown_request, R}}`, `{error, {badarg, R}}` or
    /// `{error, {unsupported_version, V, Supported}}`.
    pub(crate) fn encode(&self) -> Term {
        let reason = match self {
            BadRequest::Unknown(r) => tuple(vec![atom("unknown_request"), r.clone()]),
            BadRequest::Badarg(r) => tuple(vec![atom("badarg"), r.clone()]),
            BadRequest::UnsupportedVersion { version } => tuple(vec![
                atom("unsupported_version"),
                int(*version),
                list(PEER_VERSIONS.map(|v| int(i64::from(v))).collect()),
            ]),
        };
        tuple(vec![atom("error"), reason])
    }

    /// The inverse of [`BadRequest::encode`] for the reason part.
    pub(super) fn decode_reason(reason: &Term) -> Option<BadRequest> {
        match as_tuple(reason)? {
            [tag, r] if is_atom(tag, "unknown_request") => Some(BadRequest::Unknown(r.clone())),
            [tag, r] if is_atom(tag, "badarg") => Some(BadRequest::Badarg(r.clone())),
            [tag, v, _] if is_atom(tag, "unsupported_version") => {
                Some(BadRequest::UnsupportedVersion {
                    version: as_int(v)?,
                })
            }
            _ => None,
        }
    }
}

fn block_flag(term: &Term) -> Option<bool> {
    match term {
        t if is_atom(t, "true") => Some(true),
        t if is_atom(t, "false") => Some(false),
        _ => None,
    }
}

impl Request {
    pub(crate) fn decode(term: &Term) -> Result<Request, BadRequest> {
        let unknown = || BadRequest::Unknown(term.clone());
        if is_atom(term, "keepalive") {
            return Ok(Request::Keepalive);
        }
        if is_atom(term, "status") {
            return Ok(Request::Status);
        }
        let Some((op, args)) = as_tuple(term).and_then(|t| t.split_first()) else {
            return Err(unknown());
        };
        let Some(op) = crate::term::as_atom(op) else {
            return Err(unknown());
        };
        let request = match (op, args) {
            ("lock", [key, Term::Pid(owner), block]) => Request::Lock {
                key: key.clone(),
                owner: owner.clone(),
                block: block_flag(block).ok_or_else(|| BadRequest::Badarg(term.clone()))?,
            },
            ("whereis_lock", [key]) => Request::WhereisLock { key: key.clone() },
            ("register_name", [name, Term::Pid(pid)]) => Request::RegisterName {
                name: name.clone(),
                pid: pid.clone(),
            },
            ("unregister_name", [name]) => Request::UnregisterName { name: name.clone() },
            ("unregister_name_here", [name]) => Request::UnregisterNameHere { name: name.clone() },
            ("whereis_name", [name]) => Request::WhereisName { name: name.clone() },
            ("subscribe", [Term::Pid(pid)]) => Request::Subscribe {
                subscriber: pid.clone(),
            },
            ("subscribe_peer", [Term::Pid(pid)]) => Request::SubscribePeer {
                subscriber: pid.clone(),
                version: 1,
            },
            ("subscribe_peer", [Term::Pid(pid), version]) => {
                let version = as_int(version).ok_or_else(unknown)?;
                match u32::try_from(version) {
                    Ok(v) if PEER_VERSIONS.contains(&v) => Request::SubscribePeer {
                        subscriber: pid.clone(),
                        version: v,
                    },
                    _ => return Err(BadRequest::UnsupportedVersion { version }),
                }
            }
            _ => return Err(unknown()),
        };
        Ok(request)
    }

    pub(crate) fn encode(&self) -> Term {
        let pid = |p: &Pid| Term::from(p.clone());
        match self {
            Request::Lock { key, owner, block } => tuple(vec![
                atom("lock"),
                key.clone(),
                pid(owner),
                atom(if *block { "true" } else { "false" }),
            ]),
            Request::WhereisLock { key } => tuple(vec![atom("whereis_lock"), key.clone()]),
            Request::RegisterName { name, pid: p } => {
                tuple(vec![atom("register_name"), name.clone(), pid(p)])
            }
            Request::UnregisterName { name } => tuple(vec![atom("unregister_name"), name.clone()]),
            Request::UnregisterNameHere { name } => {
                tuple(vec![atom("unregister_name_here"), name.clone()])
            }
            Request::WhereisName { name } => tuple(vec![atom("whereis_name"), name.clone()]),
            Request::Subscribe { subscriber } => tuple(vec![atom("subscribe"), pid(subscriber)]),
            Request::SubscribePeer {
                subscriber,
                version: 1,
            } => tuple(vec![atom("subscribe_peer"), pid(subscriber)]),
            Request::SubscribePeer {
                subscriber,
                version,
            } => tuple(vec![
                atom("subscribe_peer"),
                pid(subscriber),
                int(i64::from(*version)),
            ]),
            Request::Keepalive => atom("keepalive"),
            Request::Status => atom("status"),
        }
    }

    /// A subscription of `server` to a peer's names, in our version.
    pub(crate) fn subscribe_peer(server: Pid) -> Request {
        Request::SubscribePeer {
            subscriber: server,
            version: PEER_VERSION,
        }
    }

    /// The op's name, for logs (never the arguments: they are unbounded).
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Request::Lock { .. } => "lock",
            Request::WhereisLock { .. } => "whereis_lock",
            Request::RegisterName { .. } => "register_name",
            Request::UnregisterName { .. } => "unregister_name",
            Request::UnregisterNameHere { .. } => "unregister_name_here",
            Request::WhereisName { .. } => "whereis_name",
            Request::Subscribe { .. } => "subscribe",
            Request::SubscribePeer { .. } => "subscribe_peer",
            Request::Keepalive => "keepalive",
            Request::Status => "status",
        }
    }
}
