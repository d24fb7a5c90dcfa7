//! The Erlang distribution protocol, sans-IO: plain functions and state
//! machines fed bytes, with no sockets and no async.

pub mod atom_cache;
pub mod connection;
pub mod control;
pub mod etf;
pub mod flags;
pub mod frame;
pub mod handshake;
