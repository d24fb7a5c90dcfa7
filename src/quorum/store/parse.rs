//! Reading locker requests and transaction-log ops out of terms. Anything
//! that does not have exactly the expected shape is `None`; nothing here
//! panics or allocates in proportion to a bad input beyond its canonical form.

use crate::term::Canon;
use crate::term::{as_atom, as_int, as_tuple, is_atom, Term};

/// A term from a request together with its canonical form.
#[derive(Debug)]
pub(super) struct Arg<'a> {
    pub term: &'a Term,
    pub canon: Canon,
}

/// Deepest nesting of a key, value or tag the locker keeps (as deep as
/// `rust_quorum:call/1` sends). Replies and replication wrap them in at
/// most 4 levels (`get_debug_state` lists every key in `{Tag, {ok, [{Key,
/// ...}]}}`, a `trans_log` op sits in `{'$gen_cast', {trans_log, N,
/// [Op]}}`), which must stay within the distribution's 128, or one held
/// key would make those messages unsendable for every caller.
pub(crate) const MAX_ARG_DEPTH: usize = 120;

fn arg(term: &Term) -> Option<Arg<'_>> {
    if crate::dist::etf::peek::depth_at_most(term, MAX_ARG_DEPTH) > MAX_ARG_DEPTH {
        return None;
    }
    Canon::of(term).ok().map(|canon| Arg { term, canon })
}

/// One gen_server call to `locker`.
#[derive(Debug)]
pub(super) enum Request<'a> {
    /// `{get_write_lock, Key, Expected, Tag}`
    GetWriteLock {
        key: Arg<'a>,
        expected: Arg<'a>,
        tag: Arg<'a>,
    },
    /// `{release_write_lock, Tag}`
    ReleaseWriteLock { tag: Arg<'a> },
    /// `{write, Tag, Key, Value, LeaseMs}`
    Write {
        tag: Arg<'a>,
        key: Arg<'a>,
        value: Arg<'a>,
        lease_ms: u64,
    },
    /// `{erl_quorum_lock, Key, Value, LeaseMs, Tag}` (ours, for a one-round
    /// lock on erl_quorum masters): take Key if absent and unpromised.
    OneRoundLock {
        key: Arg<'a>,
        value: Arg<'a>,
        lease: Lease<'a>,
        tag: Arg<'a>,
    },
    /// `{erl_quorum_session, Session, LeaseMs}` (ours): start or extend a
    /// session lease, which every entry written under it shares.
    Session { session: Arg<'a>, lease_ms: u64 },
    /// `{erl_quorum_repair, Key, Value, Session}` (ours): write Key back
    /// under Session on a master that lost it.
    Repair {
        key: Arg<'a>,
        value: Arg<'a>,
        session: Arg<'a>,
    },
    /// `{erl_quorum_transfer, Key, From, To, Session}` (ours): hand a held
    /// entry from one value (a serving node's) to another under `Session`.
    Transfer {
        key: Arg<'a>,
        from: Arg<'a>,
        to: Arg<'a>,
        session: Arg<'a>,
    },
    /// `{update, Tag, Key, Value}`
    Update {
        tag: Arg<'a>,
        key: Arg<'a>,
        value: Arg<'a>,
    },
    /// `{extend_lease, Tag, Key, Value, LeaseMs}`
    ExtendLease {
        tag: Arg<'a>,
        key: Arg<'a>,
        value: Arg<'a>,
        lease_ms: u64,
    },
    /// `{release, Key, Value, Tag}`
    Release {
        key: Arg<'a>,
        value: Arg<'a>,
        tag: Arg<'a>,
    },
    /// `{set_nodes, Masters, Replicas}`, both lists of node-name atoms.
    SetNodes {
        masters: Vec<String>,
        replicas: Vec<String>,
    },
    /// `{set_w, W}`
    SetW(usize),
    /// `{wait_for, Key, Timeout}`; `None` is `infinity`.
    WaitFor { key: Arg<'a>, timeout: Option<u64> },
    /// `{wait_for_release, Key, Timeout}`; `None` is `infinity`.
    WaitForRelease { key: Arg<'a>, timeout: Option<u64> },
    /// `get_debug_state`
    GetDebugState,
    /// `get_meta` (our extension: what `locker:get_meta/0` returns locally).
    GetMeta,
    /// `summary` (our extension: what `locker:summary/0` returns locally).
    Summary,
    /// `{erl_quorum_catch_up, FromNode}` (ours): this master's state for
    /// one that (re)starts (`FromNode`, an atom, is only for the logs).
    CatchUp,
}

/// Parses one call. `None`: unknown or malformed.
pub(super) fn request(req: &Term) -> Option<Request<'_>> {
    if let Some(name) = as_atom(req) {
        return match name {
            "get_debug_state" => Some(Request::GetDebugState),
            "get_meta" => Some(Request::GetMeta),
            "summary" => Some(Request::Summary),
            _ => None,
        };
    }
    let (name, args) = as_tuple(req)?.split_first()?;
    Some(match (as_atom(name)?, args) {
        ("get_write_lock", [key, expected, tag]) => Request::GetWriteLock {
            key: arg(key)?,
            expected: arg(expected)?,
            tag: arg(tag)?,
        },
        ("release_write_lock", [tag]) => Request::ReleaseWriteLock { tag: arg(tag)? },
        ("write", [tag, key, value, lease]) => Request::Write {
            tag: arg(tag)?,
            key: arg(key)?,
            value: arg(value)?,
            lease_ms: millis(lease)?,
        },
        ("erl_quorum_lock", [key, value, lease, tag]) => Request::OneRoundLock {
            key: arg(key)?,
            value: arg(value)?,
            lease: lease_arg(lease)?,
            tag: arg(tag)?,
        },
        ("erl_quorum_repair", [key, value, session]) => Request::Repair {
            key: arg(key)?,
            value: arg(value)?,
            session: arg(session)?,
        },
        ("erl_quorum_transfer", [key, from, to, session]) => Request::Transfer {
            key: arg(key)?,
            from: arg(from)?,
            to: arg(to)?,
            session: arg(session)?,
        },
        ("erl_quorum_session", [session, lease]) => Request::Session {
            session: arg(session)?,
            lease_ms: millis(lease)?,
        },
        ("update", [tag, key, value]) => Request::Update {
            tag: arg(tag)?,
            key: arg(key)?,
            value: arg(value)?,
        },
        ("extend_lease", [tag, key, value, lease]) => Request::ExtendLease {
            tag: arg(tag)?,
            key: arg(key)?,
            value: arg(value)?,
            lease_ms: millis(lease)?,
        },
        ("release", [key, value, tag]) => Request::Release {
            key: arg(key)?,
            value: arg(value)?,
            tag: arg(tag)?,
        },
        ("set_nodes", [masters, replicas]) => Request::SetNodes {
            masters: node_set(masters)?,
            replicas: node_set(replicas)?,
        },
        ("erl_quorum_catch_up", [from]) if as_atom(from).is_some() => Request::CatchUp,
        ("set_w", [w]) => Request::SetW(usize::try_from(as_int(w)?).ok()?),
        ("wait_for", [key, timeout]) => Request::WaitFor {
            key: arg(key)?,
            timeout: wait_timeout(timeout)?,
        },
        ("wait_for_release", [key, timeout]) => Request::WaitForRelease {
            key: arg(key)?,
            timeout: wait_timeout(timeout)?,
        },
        _ => return None,
    })
}

/// One op of a `{trans_log, FromNode, Ops}` cast.
#[derive(Debug)]
pub(super) enum Op<'a> {
    /// `{write, Key, Value, LeaseMs}`
    Write {
        key: Arg<'a>,
        value: Arg<'a>,
        lease_ms: u64,
    },
    /// `{extend_lease, Key, Value, LeaseMs}`
    ExtendLease {
        key: Arg<'a>,
        value: Arg<'a>,
        lease_ms: u64,
    },
    /// `{release, Key}`
    Release { key: Arg<'a> },
    /// `{update, Key, Value}`
    Update { key: Arg<'a>, value: Arg<'a> },
}

/// Parses one transaction-log op. `None`: unknown or malformed.
pub(super) fn op(op: &Term) -> Option<Op<'_>> {
    let (name, args) = as_tuple(op)?.split_first()?;
    Some(match (as_atom(name)?, args) {
        ("write", [key, value, lease]) => Op::Write {
            key: arg(key)?,
            value: arg(value)?,
            lease_ms: millis(lease)?,
        },
        ("extend_lease", [key, value, lease]) => Op::ExtendLease {
            key: arg(key)?,
            value: arg(value)?,
            lease_ms: millis(lease)?,
        },
        ("release", [key]) => Op::Release { key: arg(key)? },
        ("update", [key, value]) => Op::Update {
            key: arg(key)?,
            value: arg(value)?,
        },
        _ => return None,
    })
}

/// A non-negative duration in milliseconds. locker's clients send integers;
/// the original computes `trunc(NowSeconds + Length / 1000)`, so a float
/// works there too and is accepted here (truncated to whole milliseconds).
/// Integers past `u64` saturate. Negative values and anything else: `None`.
pub(super) fn millis(term: &Term) -> Option<u64> {
    match term {
        Term::FixInteger(i) => u64::try_from(i.value).ok(),
        Term::BigInteger(b) => match u64::try_from(&b.value) {
            Ok(v) => Some(v),
            // Too big for u64, or negative: the sign bit of the top byte says which.
            Err(_) => match b.value.to_signed_bytes_le().last() {
                Some(top) if top & 0x80 == 0 => Some(u64::MAX),
                _ => None,
            },
        },
        // `as` saturates at u64::MAX; the range check keeps NaN and negatives out.
        Term::Float(f) if f.value.is_finite() && f.value >= 0.0 => Some(f.value as u64),
        _ => None,
    }
}

/// How long a one-round lock's entry lives.
#[derive(Debug)]
pub(super) enum Lease<'a> {
    /// `LeaseMs`: a lease of its own.
    Ms(u64),
    /// `{session, Session}`: as long as that session's lease.
    Session(Arg<'a>),
}

fn lease_arg(term: &Term) -> Option<Lease<'_>> {
    match as_tuple(term) {
        Some([tag, session]) if is_atom(tag, "session") => Some(Lease::Session(arg(session)?)),
        _ => millis(term).map(Lease::Ms),
    }
}

/// A wait timeout: milliseconds, or `infinity` (`Some(None)`).
fn wait_timeout(term: &Term) -> Option<Option<u64>> {
    if is_atom(term, "infinity") {
        Some(None)
    } else {
        millis(term).map(Some)
    }
}

/// A list of node-name atoms, sorted and without duplicates (locker keeps
/// them as an `ordsets`; atoms sort by their text, as Rust strings do).
fn node_set(term: &Term) -> Option<Vec<String>> {
    let elements = match term {
        Term::List(l) => l.elements.iter().map(as_atom).collect::<Option<Vec<_>>>()?,
        // A byte list holds integers: only an empty one is a list of atoms.
        Term::ByteList(b) if b.bytes.is_empty() => Vec::new(),
        _ => return None,
    };
    let mut nodes: Vec<String> = elements.into_iter().map(str::to_owned).collect();
    nodes.sort();
    nodes.dedup();
    Some(nodes)
}
