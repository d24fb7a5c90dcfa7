//! The Rust host: runs Rust services as supervised names (cluster-wide
//! singletons) that the serving nodes start on it.
//!
//! A [`Host`] is a process registered `erl_quorum_host` on a Rust node. It
//! announces itself (`{host, Pid, rust}`) to the serving nodes it is given
//! (the local node's `erl_quorum` by default), watches their `erl_quorum`
//! processes and announces again when one comes back. When a serving node
//! places a name whose start spec is `{rust, Service}` here, it sends
//! `{eq_start, RustNode, Id, Name, Start, Restart}`; the host spawns a
//! *keeper* for it and goes on at once. The keeper runs the service's
//! factory, reports `{started, Id, Pid}` or `{start_failed, Id, Reason}` to
//! the serving node, kills the child if the node answers `no`, and watches
//! it: when the child lost its name (`{name_lost, Name}`, the guard's exit)
//! and restarts, it asks for the name again (`start_name`) so the node
//! places it anew. Everything else (which node runs it, restarts after an
//! exit or a lost node, never two instances) the serving nodes decide.
//!
//! Each Rust node that may run a service starts a host that provides it;
//! exactly one instance runs in the cluster, and BEAM code reaches it by name
//! (`{via, rust_registry, Name}`). A name is placed by the serving node that
//! holds its shard, on the hosts announced to that node: announce each host
//! to every serving node ([`HostBuilder::serving_nodes`]), or a name served
//! by a node that knows no other host cannot move when its host's node
//! dies.
//!
//! The record of a name (its start spec and restart) lives on the serving
//! node that holds the name's shard; if that node dies together with the
//! instance, the record goes with it. A host that *declares* the singleton
//! ([`HostBuilder::keep`], [`Host::keep`]) keeps it running anyway: it
//! checks every 500 ms to 1 s (and when a serving node goes down) that the
//! name is held and asks for it if not. Declare a permanent singleton on
//! every host that provides it; the registry still starts exactly one.
//!
//! ```no_run
//! use erl_quorum::process::{spawn_server, CallReply, Caller, GenServer};
//! use erl_quorum::services::host::Host;
//! use erl_quorum::services::{Registry, Restart, Singleton};
//! use erl_quorum::term::{atom, binary, int, Term};
//! use erl_quorum::{Node, Process};
//! use std::time::Duration;
//!
//! #[derive(Default)]
//! struct Counter(i64);
//!
//! impl GenServer for Counter {
//!     async fn handle_call(&mut self, _req: Term, _from: &Caller, _p: &mut Process) -> CallReply {
//!         self.0 += 1;
//!         CallReply::Reply(int(self.0))
//!     }
//! }
//!
//! # async fn run(node: Node, serving: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
//! // On every Rust node that may run it (beside `services::start`),
//! // announced to every serving node:
//! Host::builder(&node)
//!     .serving_nodes(serving)
//!     .provide("counter", |start| {
//!         spawn_server(start.node(), None, Counter::default())
//!             .map_err(|e| binary(e.to_string()))
//!     })
//!     // Keep it running even when its serving node dies with it.
//!     .keep(atom("counter"), "counter", Restart::Permanent)
//!     .start()?;
//!
//! // Anywhere: started on first use, on exactly one node.
//! let counter = Singleton::rust(atom("counter"), "counter").restart(Restart::Permanent);
//! let mut registry = Registry::new(node.spawn_process());
//! let n = registry
//!     .call_singleton(&counter, atom("incr"), Duration::from_secs(5))
//!     .await?;
//! println!("count: {n}");
//! # Ok(())
//! # }
//! ```

mod announce;
mod decide;
mod ensure;
mod keeper;
mod server;
#[cfg(test)]
mod tests;

use crate::node::Node;
use crate::process::RegisterError;
use crate::services::registry::Restart;
use crate::term::{Pid, Term};
use ensure::Declared;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc::UnboundedSender;

/// The name a host process is registered under.
pub const HOST_NAME: &str = "erl_quorum_host";

/// What a factory is given: where and for what it starts the child.
#[derive(Debug, Clone)]
pub struct StartContext {
    node: Node,
    name: Term,
    service: String,
    restart: Restart,
}

impl StartContext {
    /// The host's node, where the child is to run.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The registry name the child will hold.
    pub fn name(&self) -> &Term {
        &self.name
    }

    /// The service asked for.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// How the name restarts.
    pub fn restart(&self) -> Restart {
        self.restart
    }
}

/// Starts one instance of a service: spawns its process (typically a
/// [`GenServer`](crate::process::GenServer) with
/// [`spawn_server`](crate::process::spawn_server)) and returns its pid, or
/// the reason it could not (`{error, Reason}` to the caller of the start).
/// It runs on the keeper's task: return once the process is spawned and let
/// it initialise itself. A panic is caught and reported as a failed start
/// (`{panic, Message}`).
pub type Factory = Arc<dyn Fn(&StartContext) -> Result<Pid, Term> + Send + Sync>;

/// The services a host provides, shared by the host and its keepers.
#[derive(Clone, Default)]
pub(crate) struct Services(Arc<RwLock<HashMap<String, Factory>>>);

impl Services {
    fn insert(&self, service: String, factory: Factory) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service, factory);
    }

    fn get(&self, service: &str) -> Option<Factory> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
            .cloned()
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }
}

/// A running host; cheap to clone. The host process runs until its node
/// stops; dropping this handle does not stop it.
#[derive(Clone)]
pub struct Host {
    pid: Pid,
    services: Services,
    events: UnboundedSender<server::Event>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("pid", &self.pid)
            .field("services", &self.services.names())
            .finish()
    }
}

impl Host {
    /// A host for `node`, to configure and [`start`](HostBuilder::start).
    pub fn builder(node: &Node) -> HostBuilder {
        HostBuilder {
            node: node.clone(),
            services: Services::default(),
            serving: Vec::new(),
            declared: Vec::new(),
        }
    }

    /// The host process (`HostPid` in `start_name`'s `host` option).
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// Provides one more service (or replaces a factory). A serving node
    /// may already have tried to start it here and got `{undefined_service,
    /// Service}`, and then started it on another host: provide services
    /// before [`HostBuilder::start`] when that matters.
    pub fn provide(
        &self,
        service: &str,
        factory: impl Fn(&StartContext) -> Result<Pid, Term> + Send + Sync + 'static,
    ) {
        self.services.insert(service.to_owned(), Arc::new(factory));
    }

    /// The services provided, sorted.
    pub fn services(&self) -> Vec<String> {
        self.services.names()
    }

    /// Declares one more singleton this host keeps running, as
    /// [`HostBuilder::keep`] does (replacing a declaration of the same name).
    pub fn keep(&self, name: Term, service: &str, restart: Restart) {
        let declared = Declared {
            name,
            service: service.to_owned(),
            restart,
        };
        let _ = self.events.send(server::Event::Keep(declared));
    }
}

/// A [`Host`] being configured.
pub struct HostBuilder {
    node: Node,
    services: Services,
    serving: Vec<String>,
    declared: Vec<Declared>,
}

impl HostBuilder {
    /// Provides `service`: `factory` starts one instance of it (see
    /// [`Factory`]).
    pub fn provide(
        self,
        service: &str,
        factory: impl Fn(&StartContext) -> Result<Pid, Term> + Send + Sync + 'static,
    ) -> HostBuilder {
        self.services.insert(service.to_owned(), Arc::new(factory));
        self
    }

    /// The serving Rust nodes to announce this host to (default: this node,
    /// which must then run `services::start`). A host on a node that serves
    /// nothing itself lists the nodes that do.
    pub fn serving_nodes<S: Into<String>>(
        mut self,
        nodes: impl IntoIterator<Item = S>,
    ) -> HostBuilder {
        self.serving = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// Declares a singleton this host keeps running: `name`, an instance
    /// of `service` (which the host should provide), restarted as
    /// `restart` says (normally [`Restart::Permanent`]).
    ///
    /// The serving node that holds a name's shard keeps its record and
    /// restarts it; if that node dies together with the instance, the
    /// record goes with it. A declared name survives that: at start, when a
    /// watched serving node's `erl_quorum` goes down, and every 500 ms to
    /// 1 s, the host asks a serving node (its own first) whether the name
    /// is held (`whereis_name`), and if not, asks for it (`start_name`,
    /// `host =>` this host). `no_quorum`, `no_host` and an unreachable node
    /// are retried at the next check; at most one check per name is in
    /// flight. The registry settles concurrent starts, so every host that
    /// may run the singleton can declare it: exactly one instance runs. A
    /// name lost with its serving node comes back within `session_lease +
    /// margin` and one check period.
    pub fn keep(mut self, name: Term, service: &str, restart: Restart) -> HostBuilder {
        self.declared.push(Declared {
            name,
            service: service.to_owned(),
            restart,
        });
        self
    }

    /// Registers the host process as [`HOST_NAME`] (failing if one runs
    /// there already) and starts announcing it. Starts the node's guard
    /// (`rust_quorum`) too: a child granted its name by another serving node
    /// is told through it when the name is lost.
    pub fn start(self) -> Result<Host, RegisterError> {
        let HostBuilder {
            node,
            services,
            mut serving,
            declared,
        } = self;
        if serving.is_empty() {
            serving.push(node.name().to_owned());
        }
        crate::services::guard::ensure_started(&node);
        let (pid, events) = server::start(&node, services.clone(), serving, declared)?;
        Ok(Host {
            pid,
            services,
            events,
        })
    }
}
