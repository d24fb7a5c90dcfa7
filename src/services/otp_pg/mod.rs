//! Native OTP `pg` scopes: Rust processes join a scope that BEAM nodes run
//! with `pg:start_link(Scope)`, through `pg`'s own scope protocol, so BEAM
//! code calling `pg:get_members(Scope, Group)` sees Rust pids with no change
//! on the BEAM side, and Rust code sees the BEAM members.
//!
//! A [`OtpPgScope`] is a process registered under the scope's name on this
//! node that plays a `pg` scope process toward the BEAM ones (the wire is
//! `rebar_fixture/PROTOCOL.md`, "Native OTP pg scopes").
//!
//! Modules: `wire` (pg's messages, one decoder and encoder), `members`
//! (member lists and their bounds), `core` (the scope, sans-IO), `driver`
//! (the process that runs it).

mod core;
mod driver;
mod members;
mod wire;

use self::core::Core;
pub use self::core::{
    OtpPgError, FIRST_RETRY, MAX_GROUP_BYTES, MAX_PEERS, MAX_PEER_GROUPS, MAX_PEER_MEMBERS,
    MAX_RETRY,
};
use crate::node::Node;
use crate::process::RegisterError;
use crate::term::{Pid, Term};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// How a scope runs.
#[derive(Debug, Clone)]
pub struct OtpPgConfig {
    /// The scope's name: the name `pg:start_link/1` got on the BEAM nodes.
    pub scope: String,
    /// BEAM nodes to discover at once (connecting to them) and again
    /// whenever they lack a scope peer.
    pub nodes: Vec<String>,
    /// Also discover every node this node connects to (default true).
    pub follow_connections: bool,
}

impl OtpPgConfig {
    /// A scope following `nodes` and every connected node.
    pub fn new(scope: &str, nodes: &[&str]) -> OtpPgConfig {
        OtpPgConfig {
            scope: scope.to_owned(),
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            follow_connections: true,
        }
    }
}

pub(crate) struct Shared {
    core: Mutex<Core>,
    /// Wakes the driver: the API queued actions, or stop was asked.
    wake: Notify,
    stopped: std::sync::atomic::AtomicBool,
    /// The core's generation, for [`OtpPgScope::changes`].
    changes: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells watchers when the membership changed since they last looked.
    fn publish(&self, generation: u64) {
        self.changes.send_if_modified(|seen| {
            let new = *seen != generation;
            *seen = generation;
            new
        });
    }
}

/// A native `pg` scope on this node. Reads come from a local table (no
/// round trip); joins and leaves apply at once here and reach the BEAM
/// peers as pg's own `join`/`leave` messages. Dropping it stops the scope
/// process: the BEAM peers' monitors then drop every member it announced.
pub struct OtpPgScope {
    shared: Arc<Shared>,
    pid: Pid,
}

impl std::fmt::Debug for OtpPgScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpPgScope")
            .field("pid", &self.pid)
            .finish()
    }
}

impl OtpPgScope {
    /// Starts scope `scope` on `node`, discovering `beam_nodes` and every
    /// node `node` connects to.
    pub fn start(
        node: &Node,
        scope: &str,
        beam_nodes: &[&str],
    ) -> Result<OtpPgScope, RegisterError> {
        OtpPgScope::start_with(node, OtpPgConfig::new(scope, beam_nodes))
    }

    /// Starts a scope as `config` says.
    pub fn start_with(node: &Node, config: OtpPgConfig) -> Result<OtpPgScope, RegisterError> {
        let process = node.spawn_process();
        process.register(&config.scope)?;
        let pid = process.pid().clone();
        let now = tokio::time::Instant::now();
        let core = Core::new(pid.clone(), config.nodes, config.follow_connections, now);
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            wake: Notify::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            changes: tokio::sync::watch::channel(0).0,
        });
        tokio::spawn(driver::run(process, config.scope, shared.clone()));
        Ok(OtpPgScope { shared, pid })
    }

    /// The scope process's pid.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    fn apply<T>(
        &self,
        f: impl FnOnce(&mut Core) -> Result<T, OtpPgError>,
    ) -> Result<T, OtpPgError> {
        if self
            .shared
            .stopped
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(OtpPgError::Stopped);
        }
        let (out, generation) = {
            let mut core = self.shared.core();
            (f(&mut core), core.generation())
        };
        self.shared.publish(generation);
        self.shared.wake.notify_one();
        out
    }

    /// `pg:join(Scope, Group, Pid)`: `pid`, a process of this node, joins
    /// `group` (twice joined, it is listed twice, as in pg). It is
    /// monitored, and leaves every group when it exits.
    pub fn join(&self, group: Term, pid: &Pid) -> Result<(), OtpPgError> {
        self.apply(|core| core.join(group, pid.clone()))
    }

    /// `pg:leave(Scope, Group, Pid)`: `Ok(false)` is pg's `not_joined`.
    pub fn leave(&self, group: Term, pid: &Pid) -> Result<bool, OtpPgError> {
        self.apply(|core| core.leave(group, pid))
    }

    /// `pg:get_members(Scope, Group)`: this node's members and every
    /// peer's, as their syncs, joins and leaves announced them.
    /// The answer is shared until the group changes (no copy per read).
    pub fn get_members(&self, group: &Term) -> Arc<[Pid]> {
        self.shared.core().get_members(group)
    }

    /// `pg:get_local_members(Scope, Group)`.
    pub fn get_local_members(&self, group: &Term) -> Vec<Pid> {
        self.shared.core().get_local_members(group)
    }

    /// `pg:which_groups(Scope)`.
    pub fn which_groups(&self) -> Vec<Term> {
        self.shared.core().which_groups()
    }

    /// Groups with a member on this node.
    pub fn which_local_groups(&self) -> Vec<Term> {
        self.shared.core().which_local_groups()
    }

    /// The peer scope processes (one per BEAM node running the scope).
    pub fn peers(&self) -> Vec<Pid> {
        self.shared.core().peers()
    }

    /// Wakes (`changed().await`) after any change to the members this
    /// scope knows, here or at a peer; then read them again. A receiver
    /// that lags sees one wake for many changes (nothing queues up).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Stops the scope process (as dropping the handle does).
    pub fn stop(&self) {
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.wake.notify_one();
    }
}

impl Drop for OtpPgScope {
    fn drop(&mut self) {
        self.stop();
    }
}
