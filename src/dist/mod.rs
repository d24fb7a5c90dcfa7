//! The Erlang distribution protocol, sans-IO: plain functions and state
//! machines fed bytes, with no sockets and no async.
//!
//! Public for raw peers (tests that misbehave on purpose) and custom
//! drivers: the handshake state machine and the distribution flags. The
//! rest is the node's own.

pub(crate) mod atom_cache;
pub(crate) mod connection;
pub(crate) mod control;
pub(crate) mod etf;
pub mod flags;
pub(crate) mod frame;
pub mod handshake;
