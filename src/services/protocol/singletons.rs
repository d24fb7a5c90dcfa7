//! The shapes of supervised names (singletons): how a child is started
//! ([`Start`]), when it is restarted ([`Restart`]), what a host runs
//! ([`HostKind`]), the options of `start_name` ([`StartOpts`]) and the one
//! message a serving node sends a host ([`HostMsg`]).

use crate::term::{as_atom, as_int, as_tuple, atom, is_atom, tuple, Binary, Pid, Term};

/// Services are named by short binaries; a longer one is refused (untrusted
/// input stays bounded).
pub(crate) const MAX_SERVICE_LEN: usize = 255;

/// What kind of child a host can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HostKind {
    /// A BEAM host (`erl_quorum_host`) running `{beam, StartSpec}`.
    Beam,
    /// A Rust host running `{rust, Service}`.
    Rust,
}

impl HostKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HostKind::Beam => "beam",
            HostKind::Rust => "rust",
        }
    }

    pub(crate) fn encode(self) -> Term {
        atom(self.as_str())
    }

    pub(crate) fn decode(term: &Term) -> Option<HostKind> {
        match as_atom(term)? {
            "beam" => Some(HostKind::Beam),
            "rust" => Some(HostKind::Rust),
            _ => None,
        }
    }
}

/// How a supervised name's process is started.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Start {
    /// `{beam, StartSpec}`: an MFA or child spec a BEAM keeper runs.
    Beam(Term),
    /// `{rust, Service}`: a service (a binary) a Rust host provides.
    Rust(Vec<u8>),
}

impl Start {
    pub(crate) fn kind(&self) -> HostKind {
        match self {
            Start::Beam(_) => HostKind::Beam,
            Start::Rust(_) => HostKind::Rust,
        }
    }

    /// A Rust service by name.
    #[allow(dead_code)] // For Rust callers (the registry, the Rust host) and tests.
    pub(crate) fn rust(service: impl Into<Vec<u8>>) -> Start {
        Start::Rust(service.into())
    }

    pub(crate) fn encode(&self) -> Term {
        match self {
            Start::Beam(spec) => tuple(vec![atom("beam"), spec.clone()]),
            Start::Rust(service) => tuple(vec![
                atom("rust"),
                Term::from(Binary::from(service.clone())),
            ]),
        }
    }

    pub(crate) fn decode(term: &Term) -> Option<Start> {
        match as_tuple(term)? {
            [tag, spec] if is_atom(tag, "beam") => Some(Start::Beam(spec.clone())),
            [tag, Term::Binary(service)] if is_atom(tag, "rust") => {
                (service.bytes.len() <= MAX_SERVICE_LEN).then(|| Start::Rust(service.bytes.clone()))
            }
            _ => None,
        }
    }
}

/// When a supervised name's process is restarted (OTP's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Restart {
    /// Always.
    Permanent,
    /// Unless it exited `normal`, `shutdown` or `{shutdown, _}`.
    Transient,
    /// Never: the record goes with the process; the next `start_name`
    /// starts it again.
    #[default]
    Temporary,
}

impl Restart {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Restart::Permanent => "permanent",
            Restart::Transient => "transient",
            Restart::Temporary => "temporary",
        }
    }

    pub(crate) fn encode(self) -> Term {
        atom(self.as_str())
    }

    pub(crate) fn decode(term: &Term) -> Option<Restart> {
        match as_atom(term)? {
            "permanent" => Some(Restart::Permanent),
            "transient" => Some(Restart::Transient),
            "temporary" => Some(Restart::Temporary),
            _ => None,
        }
    }

    /// Whether a process that exited with `reason` is restarted (`None`:
    /// its node was lost, the reason is unknown; treated as abnormal).
    pub(crate) fn restarts_after(self, reason: Option<&Term>) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Temporary => false,
            Restart::Transient => !reason.is_some_and(is_clean_exit),
        }
    }
}

/// `normal`, `shutdown` or `{shutdown, _}`: what a transient child may end with.
pub(crate) fn is_clean_exit(reason: &Term) -> bool {
    if is_atom(reason, "normal") || is_atom(reason, "shutdown") {
        return true;
    }
    matches!(as_tuple(reason), Some([tag, _]) if is_atom(tag, "shutdown"))
}

/// The `Opts` map of `start_name`; every key optional, unknown keys ignored
/// (a newer caller's options do not break an older node).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StartOpts {
    pub restart: Restart,
    pub meta: Term,
    pub host: Option<Pid>,
}

impl Default for StartOpts {
    fn default() -> StartOpts {
        StartOpts {
            restart: Restart::Temporary,
            meta: atom("undefined"),
            host: None,
        }
    }
}

impl StartOpts {
    pub(crate) fn encode(&self) -> Term {
        let mut map = std::collections::HashMap::new();
        map.insert(atom("restart"), self.restart.encode());
        map.insert(atom("meta"), self.meta.clone());
        map.insert(
            atom("host"),
            self.host.clone().map_or(atom("undefined"), Term::from),
        );
        Term::from(crate::term::Map::from(map))
    }

    /// `None` when `term` is no map or a known key has a bad value.
    pub(crate) fn decode(term: &Term) -> Option<StartOpts> {
        let Term::Map(map) = term else {
            return None;
        };
        let mut opts = StartOpts::default();
        for (key, value) in &map.map {
            match as_atom(key) {
                Some("restart") => opts.restart = Restart::decode(value)?,
                Some("meta") => opts.meta = value.clone(),
                Some("host") => {
                    opts.host = match value {
                        Term::Pid(p) => Some(p.clone()),
                        v if is_atom(v, "undefined") => None,
                        _ => return None,
                    }
                }
                _ => {}
            }
        }
        Some(opts)
    }
}

/// What a serving node sends a host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HostMsg {
    /// `{eq_start, RustNode, Id, Name, Start, Restart}`: spawn a keeper
    /// that runs `start` and answers `{started, Id, Pid}` or
    /// `{start_failed, Id, Reason}` to `{erl_quorum, RustNode}`.
    Start {
        node: String,
        id: u64,
        name: Term,
        start: Start,
        restart: Restart,
    },
}

#[allow(dead_code)] // Read by the Rust host (a host decodes `eq_start`) and tests.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a host message")]
pub(crate) struct HostMsgError;

impl HostMsg {
    pub(crate) fn encode(&self) -> Term {
        match self {
            HostMsg::Start {
                node,
                id,
                name,
                start,
                restart,
            } => tuple(vec![
                atom("eq_start"),
                atom(node),
                super::request::encode_id(*id),
                name.clone(),
                start.encode(),
                restart.encode(),
            ]),
        }
    }

    #[allow(dead_code)] // Read by the Rust host and tests.
    pub(crate) fn decode(term: &Term) -> Result<HostMsg, HostMsgError> {
        match as_tuple(term) {
            Some([tag, node, id, name, start, restart]) if is_atom(tag, "eq_start") => {
                Ok(HostMsg::Start {
                    node: as_atom(node).ok_or(HostMsgError)?.to_owned(),
                    id: decode_id(id).ok_or(HostMsgError)?,
                    name: name.clone(),
                    start: Start::decode(start).ok_or(HostMsgError)?,
                    restart: Restart::decode(restart).ok_or(HostMsgError)?,
                })
            }
            _ => Err(HostMsgError),
        }
    }
}

/// A start id: a non-negative integer.
pub(crate) fn decode_id(term: &Term) -> Option<u64> {
    as_int(term).and_then(|i| u64::try_from(i).ok())
}
