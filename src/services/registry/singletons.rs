//! Supervised names on the Rust side: what a start spec is, how a name
//! restarts, and what `start_name` answers, as public types (the wire
//! shapes are in `protocol`; these are what Rust code writes and matches).

use super::{Registry, RegistryError};
use crate::process::CallError;
use crate::services::protocol::{self, Reply, Request};
use crate::term::{atom, binary, is_atom, tuple, Pid, Term};
use std::time::Duration;

/// How a supervised name is started (`Start` in `{start_name, Name, Start,
/// Opts}`).
#[derive(Debug, Clone, PartialEq)]
pub enum StartSpec {
    /// `{beam, ChildSpec}`: started by a BEAM host (`erl_quorum_host`) from
    /// an MFA `{M, F, A}`, an OTP child spec map or tuple, or an Elixir child
    /// spec (`Module` or `{Module, Arg}`).
    Beam(Term),
    /// `{rust, Service}`: started by a Rust [`Host`](crate::services::host::Host)
    /// that provides the service of this name.
    Rust(String),
}

impl StartSpec {
    /// The wire form: `{beam, ChildSpec}` or `{rust, <<"Service">>}`.
    pub fn to_term(&self) -> Term {
        match self {
            StartSpec::Beam(spec) => tuple(vec![atom("beam"), spec.clone()]),
            StartSpec::Rust(service) => tuple(vec![atom("rust"), binary(service.as_bytes())]),
        }
    }
}

/// When a supervised name is restarted, as in an OTP child spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always: after any exit, and on a surviving node when its node is lost.
    Permanent,
    /// After an abnormal exit (not `normal`, `shutdown` or `{shutdown, _}`)
    /// and when its node is lost.
    Transient,
    /// Never: the record goes with the process; the next start starts it
    /// again (what a Paxtor singleton on first use is).
    #[default]
    Temporary,
}

impl Restart {
    /// `permanent`, `transient` or `temporary`.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Permanent => "permanent",
            Restart::Transient => "transient",
            Restart::Temporary => "temporary",
        }
    }

    /// The inverse of [`Restart::as_str`].
    pub fn from_name(name: &str) -> Option<Restart> {
        match name {
            "permanent" => Some(Restart::Permanent),
            "transient" => Some(Restart::Transient),
            "temporary" => Some(Restart::Temporary),
            _ => None,
        }
    }
}

/// The options of a start (`Opts` in `{start_name, Name, Start, Opts}`);
/// the defaults are the protocol's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StartOptions {
    /// When it is restarted (default [`Restart::Temporary`]).
    pub restart: Restart,
    /// Metadata kept with the name ([`Registry::whereis_meta`](super::Registry::whereis_meta)
    /// returns it); `None` is `undefined`.
    pub meta: Option<Term>,
    /// The host to start it on first (default: any host of the right kind).
    pub host: Option<Pid>,
}

/// What a start of a supervised name got: the name is held in each case,
/// by the pid given.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// `{started, Pid}`: this request started it.
    Started(Pid),
    /// `{already_started, Pid}`: it was running (or being started by another
    /// request) with an equal start spec.
    AlreadyStarted(Pid),
    /// `{conflict, Pid}`: the name is held by `Pid`, registered plainly or
    /// with another start spec.
    Conflict(Pid),
}

impl Started {
    /// The process that holds the name.
    pub fn pid(&self) -> &Pid {
        match self {
            Started::Started(p) | Started::AlreadyStarted(p) | Started::Conflict(p) => p,
        }
    }
}

/// Why a supervised name could not be started or reached.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StartError {
    /// `{error, {start_failed, Reason}}`: the start function failed
    /// (`{error, R}` gives `R`, `ignore`, `{Class, Reason}` for a crash,
    /// `{undefined_service, S}` from a Rust host that lacks it, `timeout`).
    /// Nothing stays registered.
    #[error("the start failed: {0}")]
    StartFailed(Term),
    /// `{error, no_host}`: no host of the start spec's kind is known.
    #[error("no host of this kind is known to the serving node")]
    NoHost,
    /// `no_quorum`: the name's shard cannot be served now; try again later.
    #[error("no quorum for the name's shard")]
    NoQuorum,
    /// The name is held by another process, registered plainly or with
    /// another start spec (only from the calls that want this spec's
    /// instance, such as [`Registry::singleton`](super::Registry::singleton)).
    #[error("the name is held by {0} with another start spec")]
    Conflict(Pid),
    /// The call to the service failed, or it answered outside the protocol.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl From<CallError> for StartError {
    fn from(e: CallError) -> Self {
        StartError::Registry(RegistryError::Call(e))
    }
}

/// A name in a scope: `{'$eq_scope', Scope, Name}`. Paxtor singletons are
/// in scope `paxtor`, a Sworm registry's names in its module's scope.
pub fn scoped_name(scope: Term, name: Term) -> Term {
    tuple(vec![atom("$eq_scope"), scope, name])
}

/// A cluster-wide singleton: a name and how to start it, for
/// [`Registry::singleton`](super::Registry::singleton) and
/// [`Registry::call_singleton`](super::Registry::call_singleton).
#[derive(Debug, Clone, PartialEq)]
pub struct Singleton {
    /// The registry name (BEAM code reaches it as `{via, rust_registry, Name}`).
    pub name: Term,
    /// How it is started.
    pub spec: StartSpec,
    /// Restart, metadata, first host.
    pub options: StartOptions,
}

impl Singleton {
    /// A Rust service run by a [`Host`](crate::services::host::Host) that
    /// provides `service`; [`Restart::Temporary`] until
    /// [`Singleton::restart`] says otherwise.
    pub fn rust(name: Term, service: &str) -> Singleton {
        Singleton {
            name,
            spec: StartSpec::Rust(service.to_owned()),
            options: StartOptions::default(),
        }
    }

    /// A BEAM child spec run by a BEAM host.
    pub fn beam(name: Term, child_spec: Term) -> Singleton {
        Singleton {
            name,
            spec: StartSpec::Beam(child_spec),
            options: StartOptions::default(),
        }
    }

    /// With this restart policy.
    pub fn restart(mut self, restart: Restart) -> Singleton {
        self.options.restart = restart;
        self
    }

    /// With metadata kept beside the name.
    pub fn meta(mut self, meta: Term) -> Singleton {
        self.options.meta = Some(meta);
        self
    }
}

impl From<Restart> for protocol::Restart {
    fn from(r: Restart) -> Self {
        match r {
            Restart::Permanent => protocol::Restart::Permanent,
            Restart::Transient => protocol::Restart::Transient,
            Restart::Temporary => protocol::Restart::Temporary,
        }
    }
}

impl From<protocol::Restart> for Restart {
    fn from(r: protocol::Restart) -> Self {
        match r {
            protocol::Restart::Permanent => Restart::Permanent,
            protocol::Restart::Transient => Restart::Transient,
            protocol::Restart::Temporary => Restart::Temporary,
        }
    }
}

impl StartSpec {
    fn to_wire(&self) -> protocol::Start {
        match self {
            StartSpec::Beam(spec) => protocol::Start::Beam(spec.clone()),
            StartSpec::Rust(service) => protocol::Start::rust(service.as_bytes()),
        }
    }
}

impl StartError {
    /// The serving node asked could not be reached (no connection, no
    /// `erl_quorum` there, no answer): another one may do.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StartError::Registry(RegistryError::Call(
                CallError::NoConnection | CallError::NoProc | CallError::Timeout
            ))
        )
    }
}

/// Calls that start singleton instances never spend longer waiting for one
/// to start than this past the node's own 30 s limit on a start.
const START_TIMEOUT: Duration = Duration::from_secs(35);

impl Registry {
    /// `{start_name, Name, Start, Opts}`: `name` held by a process `spec`
    /// starts on a host (unless it runs already), and restarted as
    /// `options.restart` says. Routed by the name's shard like
    /// [`register`](Registry::register). Waits up to 35 s (a start the
    /// node gives up on answers `{start_failed, timeout}` after 30 s).
    pub async fn start_name(
        &mut self,
        name: Term,
        spec: StartSpec,
        options: StartOptions,
    ) -> Result<Started, StartError> {
        let request = Request::StartName {
            name,
            start: spec.to_wire(),
            restart: options.restart.into(),
            meta: options.meta.unwrap_or_else(|| atom("undefined")),
            host: options.host,
        };
        let timeout = self.timeout.max(START_TIMEOUT);
        match self.call(request, timeout).await? {
            Reply::Started(pid) => Ok(Started::Started(pid)),
            Reply::AlreadyStarted(pid) => Ok(Started::AlreadyStarted(pid)),
            Reply::Conflict(pid) => Ok(Started::Conflict(pid)),
            Reply::StartFailed(reason) => Err(StartError::StartFailed(reason)),
            Reply::NoHost => Err(StartError::NoHost),
            Reply::NoQuorum => Err(StartError::NoQuorum),
            other => Err(RegistryError::Reply(other.encode()).into()),
        }
    }

    /// The pid of `singleton`, started on first use: running already (with
    /// this spec) or started now, on exactly one node however many callers
    /// race. A name held by another process or another spec is
    /// [`StartError::Conflict`].
    pub async fn singleton(&mut self, singleton: &Singleton) -> Result<Pid, StartError> {
        let started = self
            .start_name(
                singleton.name.clone(),
                singleton.spec.clone(),
                singleton.options.clone(),
            )
            .await?;
        match started {
            Started::Started(pid) | Started::AlreadyStarted(pid) => Ok(pid),
            Started::Conflict(pid) => Err(StartError::Conflict(pid)),
        }
    }

    /// `gen_server:call` to `singleton`, starting it on first use. The
    /// holder is looked up first (no start round when it runs); when the
    /// instance found is gone by the time the call reaches it (it is being
    /// restarted), the call is made once more to the instance the name's
    /// serving node gives (running, restarted, or started now).
    pub async fn call_singleton(
        &mut self,
        singleton: &Singleton,
        request: Term,
        timeout: Duration,
    ) -> Result<Term, StartError> {
        let found = self.whereis(singleton.name.clone()).await?;
        let pid = match found {
            Some(pid) => pid,
            None => self.singleton(singleton).await?,
        };
        match self.process.call(&pid, request.clone(), timeout).await {
            Err(CallError::NoProc | CallError::NoConnection) => {
                let pid = self.singleton(singleton).await?;
                Ok(self.process.call(&pid, request, timeout).await?)
            }
            reply => Ok(reply?),
        }
    }

    /// `{register_name, Name, Pid, Meta}`: as [`register`](Registry::register),
    /// and the serving node keeps `meta` for the name while `pid` holds it.
    pub async fn register_with_meta(
        &mut self,
        name: Term,
        pid: &Pid,
        meta: Term,
    ) -> Result<bool, RegistryError> {
        let request = Request::RegisterName {
            name,
            pid: pid.clone(),
            meta: Some(meta),
        };
        match self.call(request, self.timeout).await? {
            Reply::Yes => Ok(true),
            Reply::No => Ok(false),
            other => Err(RegistryError::Reply(other.encode())),
        }
    }

    /// `{whereis_meta, Name}`: the holder of `name` and its metadata (`None`
    /// when it has none: `undefined` on the wire). A round trip to the
    /// name's shard, unlike [`whereis`](Registry::whereis).
    pub async fn whereis_meta(
        &mut self,
        name: Term,
    ) -> Result<Option<(Pid, Option<Term>)>, RegistryError> {
        let request = Request::WhereisMeta { name };
        match self.call(request, self.timeout).await? {
            Reply::WhereisMeta(found) => Ok(found.map(|(pid, meta)| {
                let meta = (!is_atom(&meta, "undefined")).then_some(meta);
                (pid, meta)
            })),
            // No quorum for the shard: nobody can be said to hold it.
            Reply::NoQuorum => Ok(None),
            other => Err(RegistryError::Reply(other.encode())),
        }
    }
}
