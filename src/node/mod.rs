//! The node: EPMD registration, the listener, connections to peers, and
//! routing of signals between Rust processes and the rest of the cluster.
//!
//! This is the tokio driver around the sans-IO pieces in [`crate::dist`]
//! and the bookkeeping in `crate::proc_table`. `Node::start` (which adds
//! the built-in `net_kernel`) and `Node::spawn_process` are defined in the
//! layer above (`process/node_methods.rs`): nothing here imports it.

mod config;
mod connection;
mod cpu_pressure;
mod dispatch;
pub(crate) mod epmd;
mod handshake_io;
mod outbox;
mod peers;
mod read_pacing;
mod sending;
mod socket_read;
mod spawn_hook;
mod tls;
mod traffic;
mod transport;

pub use config::{full_node_name, resolve_cookie, ConfigError, NodeConfig};
pub use epmd::EpmdError;
pub(crate) use sending::Busy;
pub use spawn_hook::{SpawnHandler, SpawnRequest};
pub use tls::{TlsConfig, TlsError, TlsOptions, TlsSide, Verify};
pub use traffic::{PeerTable, PeerTraffic, TrafficCounts};

use crate::dist::{flags, handshake::LocalIdentity};
use crate::proc_table::ids::{IdGen, LocalId};
use crate::proc_table::table::{ProcessTable, Remote};
use crate::term::{Atom, Pid, Reference};
use erl_dist::message::Message;
use peers::Peers;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How often [`Node::flushed`] looks at the outboxes again.
const FLUSH_POLL: Duration = Duration::from_millis(5);

/// Why a node could not start or reach a peer.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The [`NodeConfig`] is invalid (node name, cookie, ...).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// EPMD could not be reached or refused our registration or lookup.
    #[error(transparent)]
    Epmd(#[from] epmd::EpmdError),
    /// The distribution listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address we tried to bind.
        addr: std::net::SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// A connection to a peer failed (lookup, TCP connect or handshake).
    #[error("cannot connect to {node}: {reason}")]
    Connect {
        /// The peer's node name.
        node: String,
        /// What failed, as text.
        reason: String,
    },
}

/// A running node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name.name)
            .finish()
    }
}

pub(crate) struct NodeInner {
    pub name: Atom,
    pub config: NodeConfig,
    pub creation: u32,
    pub ids: IdGen,
    table: Mutex<ProcessTable>,
    pub(crate) peers: Peers,
    shutdown: watch::Sender<bool>,
    /// Dropping this stream unregisters the node from EPMD.
    epmd_registration: Mutex<Option<tokio_util::compat::Compat<tokio::net::TcpStream>>>,
    pub listen_port: u16,
    /// What runs a peer's `SPAWN_REQUEST` (installed by the layer above).
    spawn_handler: OnceLock<Arc<dyn SpawnHandler>>,
    /// Quorum rounds and session renewals, counted where they happen.
    metrics: crate::metrics::Recorder,
}

impl Node {
    /// Registers in EPMD (starting it if needed) and listens for BEAM
    /// nodes; [`Node::start`] adds the built-in processes.
    pub(crate) async fn start_driver(config: NodeConfig) -> Result<Node, NodeError> {
        let (short, _host) = config::split_node_name(&config.name)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| NodeError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let listen_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        epmd::ensure_local_epmd(config.epmd_port).await?;
        let (registration, creation) = epmd::register(config.epmd_port, short, listen_port).await?;
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(NodeInner {
            name: Atom::from(config.name.as_str()),
            creation,
            ids: IdGen::new(&config.name, creation),
            table: Mutex::new(ProcessTable::new(&config.name)),
            peers: Peers::default(),
            shutdown,
            epmd_registration: Mutex::new(Some(registration)),
            listen_port,
            config,
            spawn_handler: OnceLock::new(),
            metrics: crate::metrics::Recorder::new(),
        });
        let node = Node { inner };
        tokio::spawn(connection::accept_loop(node.inner.clone(), listener));
        tracing::info!(node = %node.name(), port = listen_port, creation, "node started");
        Ok(node)
    }

    /// A node that never listens, registers or connects, for unit tests of
    /// what happens between its own processes.
    #[cfg(test)]
    pub(crate) fn offline(name: &str) -> Node {
        let config = NodeConfig::new(name, "cookie");
        let (shutdown, _) = watch::channel(false);
        Node {
            inner: Arc::new(NodeInner {
                name: Atom::from(name),
                creation: 1,
                ids: IdGen::new(name, 1),
                table: Mutex::new(ProcessTable::new(name)),
                peers: Peers::default(),
                shutdown,
                epmd_registration: Mutex::new(None),
                listen_port: 0,
                config,
                spawn_handler: OnceLock::new(),
                metrics: crate::metrics::Recorder::new(),
            }),
        }
    }

    /// The full node name, `name@host`.
    pub fn name(&self) -> &str {
        &self.inner.name.name
    }

    /// The creation EPMD assigned to this incarnation.
    pub fn creation(&self) -> u32 {
        self.inner.creation
    }

    /// The port this node accepts distribution connections on.
    pub fn port(&self) -> u16 {
        self.inner.listen_port
    }

    /// The pid registered locally under `name`.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.inner
            .table()
            .whereis(&Atom::from(name))
            .map(|(_, pid)| pid)
    }

    /// Whether `pid`, a process of this node, is alive (false for other nodes' pids).
    pub fn is_process_alive(&self, pid: &Pid) -> bool {
        self.inner
            .local_id(pid)
            .is_some_and(|id| self.inner.table().is_alive(id))
    }

    /// Names registered on this node.
    pub fn registered(&self) -> Vec<String> {
        self.inner.table().registered()
    }

    /// Number of live processes on this node.
    pub fn process_count(&self) -> usize {
        self.inner.table().len()
    }

    /// A new reference unique to this node incarnation.
    pub fn make_ref(&self) -> Reference {
        self.inner.ids.new_ref()
    }

    /// Nodes we have a working connection to.
    pub fn connected_nodes(&self) -> Vec<String> {
        self.inner.peers.connected()
    }

    /// The metrics counted in place (rounds, renewals) of this node.
    pub fn metrics(&self) -> &crate::metrics::Recorder {
        &self.inner.metrics
    }

    /// Connected peers with their traffic counters, and how many
    /// connections are being set up (for the metrics endpoint).
    pub fn peer_traffic(&self) -> PeerTable {
        self.inner.peers.traffic()
    }

    /// Connected nodes as `erlang:nodes/1` sorts them: the published
    /// (`visible`) ones first, then the hidden ones.
    pub fn connected_nodes_by_kind(&self) -> (Vec<String>, Vec<String>) {
        let (mut visible, mut hidden): (Vec<_>, Vec<_>) = self
            .inner
            .peers
            .connected_kinds()
            .into_iter()
            .partition(|(_, published)| *published);
        visible.sort();
        hidden.sort();
        let names = |v: Vec<(String, bool)>| v.into_iter().map(|(n, _)| n).collect();
        (names(visible), names(hidden))
    }

    /// Connects to `node` (as `net_kernel:connect_node/1` does) and waits
    /// until the connection is up or has failed.
    pub async fn connect(&self, node: &str) -> Result<(), NodeError> {
        config::split_node_name(node)?;
        let atom = Atom::from(node);
        let timeout = self.inner.config.handshake_timeout * 2;
        connection::ensure_connecting(&self.inner, &atom);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.inner.peers.state(&atom) {
                peers::State::Up => return Ok(()),
                peers::State::Absent => {
                    return Err(NodeError::Connect {
                        node: node.to_owned(),
                        reason: "connection attempt failed (see log)".into(),
                    })
                }
                peers::State::Connecting if tokio::time::Instant::now() > deadline => {
                    return Err(NodeError::Connect {
                        node: node.to_owned(),
                        reason: "timed out".into(),
                    })
                }
                peers::State::Connecting => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    /// Drops the connection to `node`, as `erlang:disconnect_node/1` does.
    pub fn disconnect(&self, node: &str) -> bool {
        connection::close_peer(&self.inner, &Atom::from(node), "disconnect requested")
    }

    /// Like [`Node::disconnect`], but the connection is reset (TCP
    /// `SO_LINGER` 0) rather than closed: what was queued or still in
    /// flight is discarded, so nothing sent before reaches `node` if the
    /// network between us comes back. For a peer judged gone while it may
    /// still be reachable later (a silent client of the services).
    pub fn reset_connection(&self, node: &str) -> bool {
        connection::reset_peer(&self.inner, &Atom::from(node), "connection reset")
    }

    /// Waits, at most `within`, until every connection has written what
    /// was queued for it (true), so that the last messages of a graceful
    /// stop (a handoff's `eq_moved` notices, often queued in a burst)
    /// reach their nodes before [`Node::shutdown`] closes the connections.
    pub async fn flushed(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.inner.peers.unflushed() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(FLUSH_POLL).await;
        }
    }

    /// Stops listening, closes every connection and leaves EPMD.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        for node in self.inner.peers.all_names() {
            connection::close_peer(&self.inner, &node, "node shutting down");
        }
        self.inner
            .epmd_registration
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

impl NodeInner {
    pub(crate) fn table(&self) -> MutexGuard<'_, ProcessTable> {
        // A panic while holding the lock must not take the whole node down.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn identity(&self) -> LocalIdentity {
        LocalIdentity {
            name: self.name.name.clone(),
            flags: flags::ADVERTISED,
            creation: self.creation,
            cookie: self.config.cookie.clone(),
        }
    }

    pub(crate) fn local_id(&self, pid: &Pid) -> Option<LocalId> {
        self.ids.local_id(pid)
    }

    pub(crate) fn is_local(&self, node: &Atom) -> bool {
        *node == self.name
    }

    /// Sends control messages produced while the table was locked.
    pub(crate) fn send_remotes(self: &Arc<Self>, remotes: Vec<Remote>) {
        for r in remotes {
            if r.needs_existing_connection() {
                self.send_if_connected(&r.node, r.message);
            } else {
                self.send_remote(&r.node, r.message);
            }
        }
    }

    /// Encodes `message` and queues it for `node` if its connection is up;
    /// else drops it (see `Remote::needs_existing_connection`).
    fn send_if_connected(self: &Arc<Self>, node: &Atom, message: Message) {
        match crate::dist::control::encode(message) {
            Ok(frame) => sending::send_frame_if_up(self, node, frame),
            Err(e) => {
                tracing::warn!(peer = %node.name, error = %e, "cannot encode a message; dropped")
            }
        }
    }

    /// Encodes `message` and queues it for `node`, connecting first if
    /// needed; for a sender that cannot wait (past the connection's busy
    /// limit the frame is still queued, up to its hard limit).
    pub(crate) fn send_remote(self: &Arc<Self>, node: &Atom, message: Message) {
        let _ = self.send_remote_paced(node, message);
    }

    /// Everything tied to `node` fails with `noconnection`.
    pub(crate) fn connection_lost(self: &Arc<Self>, node: &Atom) {
        let mut out = Vec::new();
        self.table().connection_lost(node, &mut out);
        self.send_remotes(out);
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}
