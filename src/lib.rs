//! erl_quorum: a Rust node that speaks the Erlang distribution protocol.
//!
//! Layers, bottom up:
//! - [`dist`]: the wire protocol as sans-IO code (framing, bounded term
//!   checks, control messages, the handshake state machine).
//! - `proc_table`: the process bookkeeping (pids, mailboxes, names, links,
//!   monitors, what a death fires), no I/O.
//! - [`node`]: the tokio driver: EPMD, listening, connecting, ticks, routing.
//! - [`process`]: Rust processes with pids, mailboxes, names, links,
//!   monitors, and gen_server both ways (also `Node::start` and
//!   `Node::spawn_process`, which need them).
//! - [`term`]: helpers for building and reading Erlang terms.

#![warn(missing_docs, unreachable_pub)]

pub mod dist;
pub mod node;

pub(crate) mod proc_table;
pub mod process;
pub mod quorum;
pub mod services;
pub mod term;

pub use node::{Node, NodeConfig, NodeError};
pub use process::{
    CallError, CallReply, Caller, Dest, Flow, GenServer, Mail, Process, ProcessError,
};
pub use term::Term;

/// The README's Rust examples are compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
