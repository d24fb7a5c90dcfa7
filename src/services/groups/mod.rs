//! Process groups mirroring OTP `pg`, for BEAM and Rust processes alike.
//!
//! Every serving node runs a hub, the process registered as `eq_groups`
//! (one server per concern: it is not the `erl_quorum` service). The
//! design, and why:
//!
//! - **Authorities.** A member's own node knows first when it exits, so the
//!   authority for a member is on its node: a BEAM node's scope server
//!   (`eq_pg_scope`) for BEAM processes, as in `pg`, and this node's hub for
//!   its Rust processes. An authority pushes its members of a scope to every
//!   hub: a `sync` (all, as of a number), then numbered `join` / `leave`
//!   deltas. A hub that sees a gap or an unknown stream asks `resync`.
//! - **Merging.** Each hub monitors every authority that pushed to it and
//!   merges their members. When an authority's node goes, the DOWN
//!   (`noconnection`) removes every member it reported at once, so a
//!   node's loss costs one monitor, not one per member.
//! - **Readers.** A BEAM scope server subscribes to one hub (the one its
//!   `rust_quorum` calls) and gets a snapshot then numbered updates: every
//!   BEAM node served by a hub sees that hub's changes in one order. On the
//!   hub's loss it subscribes to another and applies the difference. Rust
//!   readers read the hub's local table ([`Groups`]).
//!
//! Modules: `wire` (every message, one encoder and decoder), `table`
//! (pg-shaped members), `core` (the hub, sans-IO; `core::local`: its own
//! Rust members and peer hubs), `driver` (the process),
//! `shared` (the local table for Rust readers and monitors), `api`
//! ([`Groups`]).

mod api;
mod core;
mod driver;
mod shared;
mod table;
#[cfg(test)]
mod tests;
mod wire;

pub use self::api::{GroupMonitor, Groups, GroupsError, Left};
pub use self::core::JoinRefused;
pub use self::shared::GroupEvent;

use crate::node::Node;
use crate::process::RegisterError;
use crate::term::Pid;
use std::sync::Arc;
use tokio::time::Instant;

/// Starts the hub on `node`, registered as `eq_groups`, pushing this
/// node's Rust members to the hubs on `peers`.
pub fn start(node: &Node, peers: &[String]) -> Result<Pid, RegisterError> {
    let process = node.spawn_process();
    process.register(driver::HUB)?;
    let pid = process.pid().clone();
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(shared::Shared::new(events_tx));
    shared::register(node.name(), shared.clone());
    let core = core::HubCore::new(
        pid.clone(),
        node.name(),
        peers,
        core::Limits::default(),
        Instant::now(),
    );
    let server = driver::HubServer::new(core, shared);
    crate::process::start_event_server(process, server, events_rx);
    Ok(pid)
}
