//! The BEAM-facing services: Paxtor-style locks and a name registry,
//! served on the quorum to Erlang, Elixir and Rust processes.
//!
//! Each serving node runs a process registered as `erl_quorum` (the wire
//! contract is `rebar_fixture/PROTOCOL.md`). Locks and names are quorum
//! entries under `{'$erl_quorum_lock', Key}` / `{'$erl_quorum_name', Name}`
//! whose value is `{Owner, ServingNode}`, written in one round under this
//! node's session lease (see [`crate::quorum::store`]): one renewal a period
//! keeps every hold, however many.
//!
//! - [`slots`]: the sans-IO state of every lock and name this node serves.
//! - [`rounds`]: the quorum operations, on a pool of worker processes.
//! - [`names`]: the registry as this node sees it, for `whereis_name`.
//! - [`server`]: the process that drives them.
//! - [`registry`]: the Rust API.
//!
//! Safety: the owner is monitored; a hold is released when the owner exits,
//! and, when only the owner's node lost us, after `session_lease + margin`,
//! by which time the guard on that node (`rust_quorum`) has told the owner
//! (`{lock_lost, Key}` / `{name_lost, Name}`). When the session cannot be
//! renewed by W masters that hold all its entries, every owner is told
//! `lost_margin` before it could lapse; a master that lost the session
//! (restart, or cut off past the lease) says so on the next renewal and gets
//! the holds written back before its renewals count again. Grants are made
//! only under a session confirmed for `lost_margin` plus half a second.

pub mod names;
pub mod registry;
pub mod rounds;
mod server;
pub mod slots;

use crate::node::Node;
use crate::process::RegisterError;
use crate::term::Pid;
use std::time::Duration;

pub use registry::{LockReply, Registry, RegistryError};

/// How the `erl_quorum` service runs.
#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// The locker masters holding the entries (this node's `locker` too).
    pub masters: Vec<String>,
    pub w: usize,
    /// Other serving nodes whose names this node follows (default: the
    /// masters).
    pub peers: Vec<String>,
    /// The session lease on the masters.
    pub session_lease: Duration,
    pub renew_every: Duration,
    /// Owners are told this long before the session could lapse.
    pub lost_margin: Duration,
    /// Extra wait beyond the session lease before releasing the hold of an
    /// owner whose node lost us.
    pub margin: Duration,
    pub workers: usize,
    pub call_timeout: Duration,
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
        }
    }
}

/// Starts the service on `node`, registered as `erl_quorum`.
pub fn start(node: &Node, mut config: ServicesConfig) -> Result<Pid, RegisterError> {
    if config.masters.is_empty() {
        config.masters = vec![node.name().to_owned()];
    }
    if config.peers.is_empty() {
        config.peers = config.masters.clone();
    }
    let process = node.spawn_process();
    process.register("erl_quorum")?;
    let pid = process.pid().clone();
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let rounds = rounds::RoundConfig {
        masters: config.masters.clone(),
        w: config.w,
        timeout: config.call_timeout,
        wait_release: Duration::from_secs(5),
    };
    let jobs = rounds::start_pool(node, config.workers, rounds.clone(), events_tx.clone());
    let renewals = rounds::start_pool(node, 1, rounds, events_tx.clone());
    let server = server::Server::new(process, config, jobs, renewals, events_tx);
    tokio::spawn(server.run(events_rx));
    Ok(pid)
}
