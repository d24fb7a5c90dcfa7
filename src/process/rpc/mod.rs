//! rpc and erpc into this node, and rpc from it.
//!
//! BEAM nodes reach Rust code the way they reach any node:
//!
//! - `erpc:call/cast/multicall` and (since OTP 23) `rpc:call/cast/multicall`
//!   send a `SPAWN_REQUEST` for `erpc:execute_call/4` or
//!   `erpc:execute_cast/3`; [`exec`] spawns a process that runs the named
//!   function and exits with the result, which the requester's monitor
//!   delivers. A raw `erlang:spawn_request/5` of a registered function
//!   runs it the same way.
//! - The `rex` server ([`rex`]) answers `rpc:block_call`, `rpc:sbcast` and
//!   callers that use `{call, M, F, A, GL}` directly.
//!
//! Functions are registered by module, name and arity ([`Functions`]); a
//! built-in set ([`builtins`]) answers what operators type. An unknown
//! function fails with `undef` exactly as on a BEAM node; a failing or
//! panicking Rust function becomes an Erlang exception. The protocol's
//! decisions (options, entry points, result encodings) are pure functions
//! in [`plan`]; the rest is a thin driver.
//!
//! From Rust, [`Node::rpc`](crate::Node::rpc) calls a function on a BEAM node ([`client`]).

mod builtins;
mod client;
mod exec;
mod functions;
mod plan;
mod rex;
#[cfg(test)]
mod tests;

pub use client::RpcError;
pub use functions::{Call, Exception, Functions};

use crate::node::Node;
use std::sync::Arc;

/// Installs rpc on a starting node: the `SPAWN_REQUEST` handler with the
/// built-in functions, and the `rex` server.
pub(crate) fn start(node: &Node) {
    let service = Arc::new(exec::RpcService::new());
    builtins::register(&service.functions);
    node.set_spawn_handler(service.clone());
    rex::start(node, service);
}

impl Node {
    /// The functions BEAM nodes can call here with `rpc` and `erpc`.
    /// Register yours with [`Functions::register`].
    pub fn rpc_functions(&self) -> &Functions {
        match self
            .spawn_handler()
            .and_then(|h| h.as_any().downcast_ref::<exec::RpcService>())
        {
            Some(service) => &service.functions,
            None => functions::none(),
        }
    }
}
