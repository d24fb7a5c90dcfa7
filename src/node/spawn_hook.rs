//! Where a peer's `SPAWN_REQUEST` goes: the driver only routes it. What a
//! spawned process runs (rpc, erpc, registered Rust entry points) is the
//! business of the layer above (`process::rpc`), which installs its
//! handler when the node starts; without one, every request is answered
//! `notsup`, as a node without the `SPAWN` capability would.

use super::{Node, NodeInner};
use crate::term::{Atom, Pid, Reference, Term};
use erl_dist::message::Message;
use erl_dist::term::{FixInteger, PidOrAtom};
use std::any::Any;
use std::sync::Arc;

/// A `SPAWN_REQUEST` from a peer, as the handler sees it.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    /// The peer that sent it (replies and signals go back there).
    pub peer: Atom,
    /// The request id; also the monitor reference when `monitor` is asked.
    pub req_id: Reference,
    /// The requesting process.
    pub from: Pid,
    /// The requester's group leader (the node does no I/O, so unused).
    pub group_leader: Pid,
    /// The entry point's module.
    pub module: Atom,
    /// The entry point's function.
    pub function: Atom,
    /// The arity the requester named (checked against `args` by the handler).
    pub arity: i32,
    /// Spawn options (`link`, `monitor`, and the requester's own ones).
    pub options: Vec<Term>,
    /// The arguments.
    pub args: Vec<Term>,
}

/// The layer above's side of `SPAWN_REQUEST`.
pub trait SpawnHandler: Send + Sync + 'static {
    /// Handles one request: must answer it with [`Node::spawn_reply`].
    fn spawn_request(&self, node: &Node, request: SpawnRequest);
    /// The handler itself, for the layer that installed it.
    fn as_any(&self) -> &dyn Any;
}

impl Node {
    /// Installs the handler of `SPAWN_REQUEST`s (once; later calls are ignored).
    pub fn set_spawn_handler(&self, handler: Arc<dyn SpawnHandler>) {
        let _ = self.inner.spawn_handler.set(handler);
    }

    /// The installed handler of `SPAWN_REQUEST`s.
    pub fn spawn_handler(&self) -> Option<&Arc<dyn SpawnHandler>> {
        self.inner.spawn_handler.get()
    }

    /// Answers `request`: the new process (with the link and monitor flags
    /// it set up) or the atom a BEAM node would give (`notsup`,
    /// `system_limit`, `badopt`).
    pub fn spawn_reply(&self, request: &SpawnRequest, result: Result<(Pid, u8), Atom>) {
        let (flags, result) = match result {
            Ok((pid, flags)) => (i32::from(flags), PidOrAtom::Pid(pid)),
            Err(reason) => (0, PidOrAtom::Atom(reason)),
        };
        let reply = Message::spawn_reply(
            request.req_id.clone(),
            request.from.clone(),
            FixInteger::from(flags),
            result,
        );
        // Only on the connection the request came by: never dial a peer
        // that has gone (it named itself; see `dispatch`).
        self.inner.send_if_connected(&request.peer, reply);
    }
}

/// The driver's side: a decoded request goes to the handler, or is refused.
pub(super) fn dispatch(node: &Arc<NodeInner>, peer: &Atom, m: erl_dist::message::SpawnRequest) {
    let request = SpawnRequest {
        peer: peer.clone(),
        req_id: m.req_id,
        from: m.from_pid,
        group_leader: m.group_leader,
        module: m.mfa.module,
        function: m.mfa.function,
        arity: m.mfa.arity.value,
        options: m.opt_list.elements,
        args: m.arg_list.elements,
    };
    let node = Node {
        inner: node.clone(),
    };
    match node.inner.spawn_handler.get().cloned() {
        Some(handler) => handler.spawn_request(&node, request),
        None => node.spawn_reply(&request, Err(Atom::from("notsup"))),
    }
}
