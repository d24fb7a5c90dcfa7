//! The Rust API of the services: Rust processes take locks and register
//! names on the same quorum BEAM code uses, and find names BEAM processes
//! registered. Every call goes to the `erl_quorum` process of one serving
//! node (this one by default), as `rebar_fixture`'s modules do.

mod route;
mod singletons;

pub use singletons::{
    scoped_name, Restart, Singleton, StartError, StartOptions, StartSpec, Started,
};

use super::protocol::{Reply, ReplyError, Request};
use crate::process::{CallError, Process};
use crate::term::{Pid, Term};
use route::{AfterFailure, ShardMap};
use std::time::Duration;

/// Why a [`Registry`] call failed (no quorum is an answer, not an error).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// The call to `erl_quorum` failed: timeout, no such process (the
    /// service is not running there) or no connection.
    #[error("the erl_quorum service could not be called: {0}")]
    Call(#[from] CallError),
    /// The service answered something outside the protocol.
    #[error("unexpected reply from the erl_quorum service: {0}")]
    Reply(Term),
}

impl From<ReplyError> for RegistryError {
    fn from(e: ReplyError) -> Self {
        RegistryError::Reply(e.reply)
    }
}

/// Redirects followed for one call.
const MAX_REDIRECTS: usize = 3;

/// The answer to a lock request.
#[derive(Debug, Clone, PartialEq)]
pub enum LockReply {
    /// The lock is ours (`{acquired, _}`), held until the process exits.
    Acquired,
    /// Another process holds it (non-blocking request only).
    HeldBy(Pid),
    /// No quorum of masters could be reached; try again later.
    NoQuorum,
}

/// A lock's fencing token: it only grows per key, across grants, serving
/// nodes and their restarts (see the README, "Fencing tokens", for the
/// clock assumption). A resource guarded by the lock remembers the largest
/// token it saw and refuses a request with a smaller one: a holder that
/// lost the lock without knowing yet is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token as a number (as BEAM code sees it).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for FencingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The answer to [`Registry::lock_fenced`].
#[derive(Debug, Clone, PartialEq)]
pub enum Fenced {
    /// The lock is ours (`{acquired, Token}`), held until the process
    /// exits, under this token (the same one when it already was).
    Acquired(FencingToken),
    /// Another process holds it (non-blocking request only).
    HeldBy(Pid),
    /// No quorum of masters could be reached; try again later.
    NoQuorum,
}

/// A client of one serving node's `erl_quorum` service, bound to a process.
pub struct Registry {
    process: Process,
    server: String,
    timeout: Duration,
    /// Which serving node holds which shard, as far as this client saw:
    /// a keyed request goes there first.
    shards: ShardMap,
}

impl Registry {
    /// A client of the service on `process`'s own node. Starts the node's
    /// guard (`rust_quorum`) if none runs: a lock or name granted by
    /// another node is lost by an exit signal `{lock_lost, Key}` /
    /// `{name_lost, Name}` to the owner, as on a BEAM node.
    pub fn new(process: Process) -> Registry {
        super::guard::ensure_started(process.node());
        let server = process.node().name().to_owned();
        Registry {
            process,
            server,
            timeout: Duration::from_secs(30),
            shards: ShardMap::default(),
        }
    }

    /// Talk to the service on `node` instead.
    pub fn with_server(mut self, node: &str) -> Registry {
        self.server = node.to_owned();
        self
    }

    /// The timeout of each call to the service (default 30 s; blocking
    /// locks wait up to a day).
    pub fn with_timeout(mut self, timeout: Duration) -> Registry {
        self.timeout = timeout;
        self
    }

    /// The process this client calls from, which owns its locks and names.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Calls the service, first on the node known to hold the key's shard
    /// (else on this client's server), following redirects to the node that
    /// holds it (a few hops at most, as `rust_quorum` does; past them the
    /// views are changing, which to the caller is no quorum yet).
    async fn call(&mut self, request: Request, timeout: Duration) -> Result<Reply, RegistryError> {
        let shard = ShardMap::shard(&request);
        let mapped = self.shards.holder(shard).filter(|&h| h != self.server);
        // Whether `server` came from the map: if it is gone or silent, the
        // entry goes and this client's own server is asked, as without a
        // map (`ShardMap::failed`).
        let mut from_map = mapped.is_some();
        let mut server = mapped.unwrap_or(&self.server).to_owned();
        let term = request.encode();
        let mut hop = 0;
        while hop <= MAX_REDIRECTS {
            let reply = self
                .process
                .call(("erl_quorum", server.as_str()), term.clone(), timeout)
                .await;
            let reply = match reply {
                Ok(reply) => Reply::decode(&request, &reply)?,
                Err(e) => match self.shards.failed(&server, &e, from_map, hop > 0) {
                    AfterFailure::AskOwnServer => {
                        from_map = false;
                        server = self.server.clone();
                        continue;
                    }
                    AfterFailure::NoQuorum => return Ok(Reply::no_quorum(&request)),
                    AfterFailure::Fail => return Err(e.into()),
                },
            };
            from_map = false;
            match reply {
                Reply::Redirect(node) => {
                    self.shards.learn(shard, &node);
                    server = node;
                }
                reply => {
                    self.shards.answered(shard, &request, &reply, &server);
                    return Ok(reply);
                }
            }
            hop += 1;
        }
        Ok(Reply::no_quorum(&request))
    }

    /// `paxtor:lock(Key, [{block, Block}])` for this client's process: it
    /// holds the lock until it exits (reentrant).
    pub async fn lock(&mut self, key: Term, block: bool) -> Result<LockReply, RegistryError> {
        match self.lock_request(key, block, false).await? {
            Reply::Acquired => Ok(LockReply::Acquired),
            Reply::NoQuorum => Ok(LockReply::NoQuorum),
            Reply::HeldBy(pid) => Ok(LockReply::HeldBy(pid)),
            other => Err(RegistryError::Reply(other.encode())),
        }
    }

    /// [`Registry::lock`] answered with the grant's fencing token
    /// (`paxtor:lock(Key, [fencing])`): the same token again while this
    /// process holds the key, a larger one for every later holder.
    pub async fn lock_fenced(&mut self, key: Term, block: bool) -> Result<Fenced, RegistryError> {
        match self.lock_request(key, block, true).await? {
            Reply::Fenced(token) => Ok(Fenced::Acquired(FencingToken(token))),
            Reply::NoQuorum => Ok(Fenced::NoQuorum),
            Reply::HeldBy(pid) => Ok(Fenced::HeldBy(pid)),
            other => Err(RegistryError::Reply(other.encode())),
        }
    }

    async fn lock_request(
        &mut self,
        key: Term,
        block: bool,
        fencing: bool,
    ) -> Result<Reply, RegistryError> {
        let owner = self.process.pid().clone();
        let request = Request::Lock {
            key,
            owner,
            block,
            fencing,
        };
        let timeout = if block {
            Duration::from_secs(86_400)
        } else {
            self.timeout
        };
        self.call(request, timeout).await
    }

    /// `register_name(Name, Pid)`: `true` for `yes`.
    pub async fn register(&mut self, name: Term, pid: &Pid) -> Result<bool, RegistryError> {
        let request = Request::RegisterName {
            name,
            pid: pid.clone(),
            meta: None,
        };
        match self.call(request, self.timeout).await? {
            Reply::Yes => Ok(true),
            Reply::No => Ok(false),
            other => Err(RegistryError::Reply(other.encode())),
        }
    }

    /// `unregister_name(Name)`: frees `name` if registered.
    pub async fn unregister(&mut self, name: Term) -> Result<(), RegistryError> {
        let request = Request::UnregisterName { name };
        self.call(request, self.timeout).await.map(|_| ())
    }

    /// The pid registered under `name` (by any BEAM or Rust process).
    pub async fn whereis(&mut self, name: Term) -> Result<Option<Pid>, RegistryError> {
        let request = Request::WhereisName { name };
        match self.call(request, self.timeout).await? {
            Reply::Whereis(pid) => Ok(pid),
            other => Err(RegistryError::Reply(other.encode())),
        }
    }

    /// `gen_server:call({via, rust_registry, Name}, Request)`.
    pub async fn call_name(
        &mut self,
        name: Term,
        request: Term,
        timeout: Duration,
    ) -> Result<Term, RegistryError> {
        let Some(pid) = self.whereis(name.clone()).await? else {
            return Err(RegistryError::Call(CallError::NoProc));
        };
        Ok(self.process.call(&pid, request, timeout).await?)
    }
}

#[cfg(test)]
mod singleton_tests;
