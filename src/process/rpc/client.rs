//! rpc from Rust to another node: `rpc:call/5` semantics through the
//! peer's `rex` server, on the node's own connection.
//!
//! Why not the `erl_rpc` crate: it opens a connection of its own under a
//! node name of its own and runs on smol; here the call shares the node's
//! connection (and its atom cache, ticks and monitors) with everything
//! else the node sends.

use crate::node::Node;
use crate::process::CallError;
use crate::term::{as_tuple, atom, is_atom, list, tuple, Term};
use std::time::Duration;
use thiserror::Error;

/// Why [`Node::rpc`] did not return the function's value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RpcError {
    /// `{badrpc, Reason}`: the function raised (`{'EXIT', ...}`), or the
    /// node is down (`nodedown`) or does not run `rex`.
    #[error("badrpc: {0}")]
    BadRpc(Term),
    /// No answer within the timeout (`{badrpc, timeout}`).
    #[error("no answer within the timeout")]
    Timeout,
}

impl Node {
    /// Calls `module:function(args...)` on `node` with `rpc:call/5`'s
    /// semantics: the value, or a typed `badrpc`. Output the function
    /// writes goes to the peer's `user` (a hidden node does no I/O).
    pub async fn rpc(
        &self,
        node: &str,
        module: &str,
        function: &str,
        args: Vec<Term>,
        timeout: Duration,
    ) -> Result<Term, RpcError> {
        let request = tuple(vec![
            atom("call"),
            atom(module),
            atom(function),
            list(args),
            atom("user"),
        ]);
        let mut process = self.spawn_process();
        match process.call(("rex", node), request, timeout).await {
            Ok(reply) => match as_tuple(&reply) {
                Some([tag, reason]) if is_atom(tag, "badrpc") => {
                    Err(RpcError::BadRpc(reason.clone()))
                }
                _ => Ok(reply),
            },
            Err(CallError::Timeout) => Err(RpcError::Timeout),
            Err(CallError::NoConnection) => Err(RpcError::BadRpc(atom("nodedown"))),
            Err(CallError::NoProc) => Err(RpcError::BadRpc(atom("nodedown"))),
            Err(CallError::Exit(reason)) => {
                Err(RpcError::BadRpc(tuple(vec![atom("EXIT"), reason])))
            }
            Err(CallError::Process(e)) => Err(RpcError::BadRpc(tuple(vec![
                atom("EXIT"),
                crate::term::binary(e.to_string()),
            ]))),
        }
    }
}
