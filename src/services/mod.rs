//! The BEAM-facing services: Paxtor-style locks and a name registry,
//! served on the quorum to Erlang, Elixir and Rust processes.
//!
//! Each serving node runs a process registered as `erl_quorum` (the wire
//! contract is `rebar_fixture/PROTOCOL.md`). The key space (locks and
//! names, apart) is cut into 64 shards. A serving node grants keys only in shards it
//! holds: a shard is a quorum entry `{'$erl_quorum_shard', I}` whose value
//! names the node's `erl_quorum` process, taken in one round under the
//! node's session lease (an entry of the [`crate::quorum`] store). One renewal a
//! period keeps every shard; grants in a held shard cost no quorum round,
//! and a request for a shard another node holds is redirected there.
//!
//! Internal modules, bottom up:
//! - `shards`: which node grants which shard, sans-IO.
//! - `session`: the session lease and which masters count for it.
//! - `slots`: the sans-IO state of every lock and name this node serves.
//! - `rounds`: the quorum operations, on a pool of worker processes.
//! - `names`: the registry as this node sees it, for `whereis_name`.
//! - `protocol`: every term on the wire, with one decoder and encoder.
//! - `core`: the service as one sans-IO state machine over the above.
//! - `server`: the process that drives it.
//! - `registry`: the Rust API, public as [`Registry`].
//! - `guard`: the guard for Rust owners granted by other nodes.
//! - [`host`]: the Rust host that runs Rust services as supervised names.
//!
//! The public API: [`start`] with a [`ServicesConfig`], and [`Registry`].
//!
//! Safety: two nodes never hold one shard (W masters of N, 2W > N), and a
//! node grants only from a shard held under a session confirmed for
//! `lost_margin` plus half a second. The owner is monitored; a hold is
//! released when the owner exits, and, when only the owner's node lost us,
//! after `session_lease + margin`, by which time the guard on that node
//! (`rust_quorum`) has told the owner (`{lock_lost, Key}` /
//! `{name_lost, Name}`). When the session cannot be renewed by W masters
//! that hold all its shards, every owner is told `lost_margin` before it
//! could lapse. A master that may lack a shard (restarted, away when the
//! shard was taken, or refusing it in its restart guard) stops counting
//! until the shards are written back there.

pub(crate) mod core;
pub mod election;
pub mod groups;
pub(crate) mod guard;
pub mod host;
pub mod membership;
pub(crate) mod names;
pub mod otp_pg;
pub(crate) mod protocol;
pub(crate) mod registry;
pub(crate) mod rounds;
mod server;
pub(crate) mod session;
pub(crate) mod shards;
pub(crate) mod slots;
pub(crate) mod supervise;

use crate::node::Node;
use crate::process::RegisterError;
use crate::term::Pid;
use std::time::Duration;

pub use groups::Groups;
pub use host::Host;
pub use otp_pg::{OtpPgConfig, OtpPgError, OtpPgScope};
pub use registry::{
    scoped_name, LockReply, Registry, RegistryError, Restart, Singleton, StartError, StartOptions,
    StartSpec, Started,
};
pub use registry::{Fenced, FencingToken};

/// How long a stop (SIGTERM) hands shards over before the node exits.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How the `erl_quorum` service runs.
#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// The locker masters holding the entries (this node's `locker` too).
    pub masters: Vec<String>,
    /// Quorum size: how many masters must answer (default 1).
    pub w: usize,
    /// Other serving nodes whose names this node follows (default: the
    /// masters).
    pub peers: Vec<String>,
    /// The session lease on the masters (default 10 s).
    pub session_lease: Duration,
    /// How often the session (and with it every held shard) is renewed
    /// (default 1 s).
    pub renew_every: Duration,
    /// Owners are told this long before the session could lapse (default 3 s).
    pub lost_margin: Duration,
    /// Extra wait beyond the session lease before releasing the hold of an
    /// owner whose node lost us, and restarting a supervised name it held
    /// elsewhere (default 2 s; `serve --release-margin-ms`, whose doc in
    /// `main.rs` says why the default stays).
    pub margin: Duration,
    /// Worker processes running quorum rounds in parallel (default 32).
    pub workers: usize,
    /// Timeout of each call to a master in a quorum round (default 2 s).
    pub call_timeout: Duration,
    /// Hand shards to the live peer each is preferred on, so they spread
    /// (`core::rebalance`; on by default, `serve --no-rebalance` turns it
    /// off). Off, a shard stays with the first node asked for it while it
    /// lives, and moves on a graceful stop.
    pub rebalance: bool,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            masters: Vec::new(),
            w: 1,
            peers: Vec::new(),
            session_lease: Duration::from_secs(10),
            renew_every: Duration::from_secs(1),
            lost_margin: Duration::from_secs(3),
            margin: Duration::from_secs(2),
            workers: 32,
            call_timeout: Duration::from_secs(2),
            rebalance: true,
        }
    }
}

/// Starts the service on `node`, registered as `erl_quorum`.
pub fn start(node: &Node, config: ServicesConfig) -> Result<Pid, RegisterError> {
    start_stoppable(node, config).map(|stopper| stopper.pid)
}

/// A running service, to stop gracefully: its shards, holds, names and
/// waiters handed to its peers first (`core::handoff`).
#[derive(Debug, Clone)]
pub struct Stopper {
    /// The `erl_quorum` process.
    pub pid: Pid,
    events: tokio::sync::mpsc::UnboundedSender<rounds::Event>,
}

impl Stopper {
    /// Stops taking shards and hands every held one to the live peers;
    /// `true` once none is left, `false` at `timeout` (the rest then goes
    /// the slow way: its owners' guards tell them at the nodedown).
    pub async fn drain(&self, timeout: Duration) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.events.send(rounds::Event::Drain(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(())))
    }
}

/// [`start`], with a [`Stopper`] for a graceful stop.
pub fn start_stoppable(node: &Node, mut config: ServicesConfig) -> Result<Stopper, RegisterError> {
    if config.masters.is_empty() {
        config.masters = vec![node.name().to_owned()];
    }
    if config.peers.is_empty() {
        config.peers = config.masters.clone();
    }
    guard::ensure_started(node);
    groups::start(node, &config.peers)?;
    let process = node.spawn_process();
    process.register("erl_quorum")?;
    let pid = process.pid().clone();
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let rounds = rounds::RoundConfig {
        masters: config.masters.clone(),
        w: config.w,
        timeout: config.call_timeout,
    };
    let jobs = rounds::start_pool(node, config.workers, rounds.clone(), events_tx.clone());
    let renewals = rounds::start_pool(node, 1, rounds, events_tx.clone());
    let server = server::Server::new(&process, config, jobs, renewals);
    crate::process::start_event_server(process, server, events_rx);
    Ok(Stopper {
        pid,
        events: events_tx,
    })
}
