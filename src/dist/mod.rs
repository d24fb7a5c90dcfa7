//! The Erlang distribution protocol, sans-IO: plain functions and state
//! machines fed bytes, with no sockets and no async.

pub(crate) mod atom_cache;
pub(crate) mod control;
pub(crate) mod etf;
pub mod flags;
pub(crate) mod frame;
pub mod handshake;
