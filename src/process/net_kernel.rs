//! The part of `net_kernel` peers rely on: `net_adm:ping/1` calls
//! `{net_kernel, Node}` with `{is_auth, Node}` and needs `yes`.

use super::{spawn_server, CallReply, Caller, GenServer, Process};
use crate::node::Node;
use crate::term::{as_tuple, atom, is_atom, tuple, Term};

struct NetKernel;

impl GenServer for NetKernel {
    async fn handle_call(
        &mut self,
        request: Term,
        _from: &Caller,
        _process: &mut Process,
    ) -> CallReply {
        match as_tuple(&request) {
            Some([kind, _node]) if is_atom(kind, "is_auth") => CallReply::Reply(atom("yes")),
            _ => {
                tracing::debug!(request = %crate::term::Brief(&request), "unsupported net_kernel call");
                CallReply::Reply(tuple(vec![atom("error"), atom("not_supported")]))
            }
        }
    }
}

pub(super) fn start(node: &Node) {
    if let Err(e) = spawn_server(node, Some("net_kernel"), NetKernel) {
        tracing::error!(error = %e, "cannot register net_kernel");
    }
}
