//! The calls the `erl_quorum` process serves (`gen_server:call` requests).

use super::peer::{PEER_VERSION, PEER_VERSIONS};
use super::singletons::{decode_id, HostKind, Restart, Start, StartOpts};
use crate::services::slots::Kind;
use crate::term::{as_int, as_tuple, atom, int, is_atom, list, tuple, Pid, Term};

/// A call to `{erl_quorum, Node}`. `UnregisterNameHere` and `SubscribePeer`
/// come only from other serving nodes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    /// `{lock, Key, Owner, Block}`, or `{lock, Key, Owner, Block, Opts}`
    /// (`fencing`: `fencing` or `{fencing, true}` in `Opts` asks for the
    /// grant's fencing token, answered `{acquired, Token}`).
    Lock {
        key: Term,
        owner: Pid,
        block: bool,
        fencing: bool,
    },
    /// `{whereis_lock, Key}`.
    WhereisLock { key: Term },
    /// `{register_name, Name, Pid}`, or `{register_name, Name, Pid, Meta}`
    /// (`meta` kept with the name while `pid` holds it).
    RegisterName {
        name: Term,
        pid: Pid,
        meta: Option<Term>,
    },
    /// `{start_name, Name, Start, Opts}`: `Name` held by a process `start`
    /// starts on a host, restarted as `restart` says.
    StartName {
        name: Term,
        start: Start,
        restart: Restart,
        meta: Term,
        /// Where to start it first (`undefined`: any host of its kind).
        host: Option<Pid>,
    },
    /// `{whereis_meta, Name}`.
    WhereisMeta { name: Term },
    /// `{host, HostPid, Kind}`: `pid` starts children of `kind`.
    Host { pid: Pid, kind: HostKind },
    /// `{started, Id, Pid}` from the keeper of start `id`.
    Started { id: u64, pid: Pid },
    /// `{start_failed, Id, Reason}` from the keeper of start `id`.
    StartFailed { id: u64, reason: Term },
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
    /// `{shard_of, Kind, Key}`: the shard this node puts `key` of `kind`
    /// in (for clients that route by shard, and to check their hash).
    ShardOf { kind: Kind, key: Term },
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

/// Deepest nesting of a lock key, a name or its metadata: what
/// `rust_quorum:call/1` sends at most. Every reply and message that carries
/// one wraps it in at most 4 levels (a `subscribe` reply is `{Tag, {ok,
/// [{Name, Pid}]}}`), so all of them stay within the distribution's 128.
pub(crate) const MAX_NAME_DEPTH: usize = 120;
/// Largest encoded size of a lock key, a name or its metadata.
pub(crate) const MAX_NAME_BYTES: usize = 4 << 20;

/// `Ok` if `term` is within [`MAX_NAME_DEPTH`] and [`MAX_NAME_BYTES`] (and
/// can be sent at all); otherwise `{badarg, {too_deep, Max}}`,
/// `{badarg, {too_large, MaxBytes}}` or `{badarg, unencodable}`: the term
/// itself is not echoed, since it may be what cannot be sent.
pub(crate) fn check_bounded(term: &Term) -> Result<(), BadRequest> {
    use crate::dist::etf::{encode_term, peek};
    let bad = |why: Term| Err(BadRequest::Badarg(why));
    if peek::depth_at_most(term, MAX_NAME_DEPTH) > MAX_NAME_DEPTH {
        return bad(tuple(vec![atom("too_deep"), int(MAX_NAME_DEPTH as i64)]));
    }
    let mut bytes = Vec::new();
    if encode_term(term, &mut bytes).is_err() {
        return bad(atom("unencodable"));
    }
    if bytes.len() > MAX_NAME_BYTES {
        return bad(tuple(vec![atom("too_large"), int(MAX_NAME_BYTES as i64)]));
    }
    Ok(())
}

fn block_flag(term: &Term) -> Option<bool> {
    match term {
        t if is_atom(t, "true") => Some(true),
        t if is_atom(t, "false") => Some(false),
        _ => None,
    }
}

/// Longest lock option list read: options are a handful of atoms, and a
/// longer list is refused rather than walked.
const MAX_LOCK_OPTS: usize = 16;

/// Whether lock options `opts` (a proper list) ask for a fencing token:
/// `fencing` or `{fencing, true}` (`{fencing, false}` does not; the first
/// occurrence wins, as in proplists). Other options are ignored, so a
/// later option reaches an older node harmlessly. `None`: not a list, a
/// longer one than [`MAX_LOCK_OPTS`], or `{fencing, X}` with X no boolean.
fn lock_fencing(opts: &Term) -> Option<bool> {
    let items: &[Term] = match opts {
        Term::List(l) => &l.elements,
        // A string: small integers, none of them an option.
        Term::ByteList(b) => return (b.bytes.len() <= MAX_LOCK_OPTS).then_some(false),
        _ => return None,
    };
    if items.len() > MAX_LOCK_OPTS {
        return None;
    }
    for item in items {
        if is_atom(item, "fencing") {
            return Some(true);
        }
        if let Some([tag, flag]) = as_tuple(item) {
            if is_atom(tag, "fencing") {
                return block_flag(flag);
            }
        }
    }
    Some(false)
}

impl Request {
    pub(crate) fn decode(term: &Term) -> Result<Request, BadRequest> {
        let unknown = || BadRequest::Unknown(term.clone());
        let badarg = || BadRequest::Badarg(term.clone());
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
                block: block_flag(block).ok_or_else(badarg)?,
                fencing: false,
            },
            ("lock", [key, Term::Pid(owner), block, opts]) => Request::Lock {
                key: key.clone(),
                owner: owner.clone(),
                block: block_flag(block).ok_or_else(badarg)?,
                fencing: lock_fencing(opts).ok_or_else(badarg)?,
            },
            ("whereis_lock", [key]) => Request::WhereisLock { key: key.clone() },
            ("register_name", [name, Term::Pid(pid)]) => Request::RegisterName {
                name: name.clone(),
                pid: pid.clone(),
                meta: None,
            },
            ("register_name", [name, Term::Pid(pid), meta]) => Request::RegisterName {
                name: name.clone(),
                pid: pid.clone(),
                meta: Some(meta.clone()),
            },
            ("start_name", [name, start, opts]) => {
                let start = Start::decode(start).ok_or_else(badarg)?;
                let opts = StartOpts::decode(opts).ok_or_else(badarg)?;
                Request::StartName {
                    name: name.clone(),
                    start,
                    restart: opts.restart,
                    meta: opts.meta,
                    host: opts.host,
                }
            }
            ("whereis_meta", [name]) => Request::WhereisMeta { name: name.clone() },
            ("shard_of", [kind, key]) => Request::ShardOf {
                kind: match crate::term::as_atom(kind) {
                    Some("lock") => Kind::Lock,
                    Some("name") => Kind::Name,
                    _ => return Err(badarg()),
                },
                key: key.clone(),
            },
            ("host", [Term::Pid(pid), kind]) => Request::Host {
                pid: pid.clone(),
                kind: HostKind::decode(kind).ok_or_else(badarg)?,
            },
            ("started", [id, Term::Pid(pid)]) => Request::Started {
                id: decode_id(id).ok_or_else(badarg)?,
                pid: pid.clone(),
            },
            ("start_failed", [id, reason]) => Request::StartFailed {
                id: decode_id(id).ok_or_else(badarg)?,
                reason: reason.clone(),
            },
            ("start_name" | "host" | "started", _) => return Err(badarg()),
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
        request.check_bounds()?;
        Ok(request)
    }

    /// Refuses a key, name or metadata over [`MAX_NAME_DEPTH`] or
    /// [`MAX_NAME_BYTES`] before it is held: names are listed in replies
    /// to every subscriber, so one that could not be sent would silence
    /// them all.
    fn check_bounds(&self) -> Result<(), BadRequest> {
        let held: &[&Term] = match self {
            Request::Lock { key, .. } => &[key],
            Request::RegisterName {
                name,
                meta: Some(meta),
                ..
            } => &[name, meta],
            Request::RegisterName { name, .. } => &[name],
            Request::StartName { name, meta, .. } => &[name, meta],
            _ => &[],
        };
        held.iter().try_for_each(|t| check_bounded(t))
    }

    pub(crate) fn encode(&self) -> Term {
        let pid = |p: &Pid| Term::from(p.clone());
        match self {
            Request::Lock {
                key,
                owner,
                block,
                fencing,
            } => {
                let mut parts = vec![
                    atom("lock"),
                    key.clone(),
                    pid(owner),
                    atom(if *block { "true" } else { "false" }),
                ];
                if *fencing {
                    parts.push(list(vec![atom("fencing")]));
                }
                tuple(parts)
            }
            Request::WhereisLock { key } => tuple(vec![atom("whereis_lock"), key.clone()]),
            Request::RegisterName {
                name,
                pid: p,
                meta: None,
            } => tuple(vec![atom("register_name"), name.clone(), pid(p)]),
            Request::RegisterName {
                name,
                pid: p,
                meta: Some(meta),
            } => tuple(vec![
                atom("register_name"),
                name.clone(),
                pid(p),
                meta.clone(),
            ]),
            Request::StartName {
                name,
                start,
                restart,
                meta,
                host,
            } => {
                let opts = StartOpts {
                    restart: *restart,
                    meta: meta.clone(),
                    host: host.clone(),
                };
                tuple(vec![
                    atom("start_name"),
                    name.clone(),
                    start.encode(),
                    opts.encode(),
                ])
            }
            Request::WhereisMeta { name } => tuple(vec![atom("whereis_meta"), name.clone()]),
            Request::Host { pid: p, kind } => tuple(vec![atom("host"), pid(p), kind.encode()]),
            Request::Started { id, pid: p } => tuple(vec![atom("started"), encode_id(*id), pid(p)]),
            Request::StartFailed { id, reason } => {
                tuple(vec![atom("start_failed"), encode_id(*id), reason.clone()])
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
            Request::ShardOf { kind, key } => {
                tuple(vec![atom("shard_of"), atom(kind.as_str()), key.clone()])
            }
        }
    }

    /// `start_name` with the default options but `restart`.
    #[allow(dead_code)] // For Rust callers (the registry, the Rust host) and tests.
    pub(crate) fn start_name(name: Term, start: Start, restart: Restart) -> Request {
        Request::StartName {
            name,
            start,
            restart,
            meta: atom("undefined"),
            host: None,
        }
    }

    /// A subscription of `server` to a peer's names, in our version.
    pub(crate) fn subscribe_peer(server: Pid) -> Request {
        Request::SubscribePeer {
            subscriber: server,
            version: PEER_VERSION,
        }
    }

    /// The lock or name the request is about, for log spans (shown with
    /// [`Brief`](crate::term::Brief), never whole).
    pub(crate) fn key(&self) -> Option<&Term> {
        match self {
            Request::Lock { key, .. } | Request::WhereisLock { key } => Some(key),
            Request::RegisterName { name, .. }
            | Request::StartName { name, .. }
            | Request::WhereisMeta { name }
            | Request::UnregisterName { name }
            | Request::UnregisterNameHere { name }
            | Request::WhereisName { name } => Some(name),
            _ => None,
        }
    }

    /// The op's name, for logs (never the arguments: they are unbounded).
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Request::Lock { .. } => "lock",
            Request::WhereisLock { .. } => "whereis_lock",
            Request::RegisterName { .. } => "register_name",
            Request::StartName { .. } => "start_name",
            Request::WhereisMeta { .. } => "whereis_meta",
            Request::Host { .. } => "host",
            Request::Started { .. } => "started",
            Request::StartFailed { .. } => "start_failed",
            Request::UnregisterName { .. } => "unregister_name",
            Request::UnregisterNameHere { .. } => "unregister_name_here",
            Request::WhereisName { .. } => "whereis_name",
            Request::Subscribe { .. } => "subscribe",
            Request::SubscribePeer { .. } => "subscribe_peer",
            Request::Keepalive => "keepalive",
            Request::Status => "status",
            Request::ShardOf { .. } => "shard_of",
        }
    }
}

/// A start id on the wire (ids count up from 0; never near `i64::MAX`).
pub(crate) fn encode_id(id: u64) -> Term {
    int(i64::try_from(id).unwrap_or(i64::MAX))
}
