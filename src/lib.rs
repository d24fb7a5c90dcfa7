//! erl_quorum: a Rust node that speaks the Erlang distribution protocol.
//!
//! It joins BEAM clusters as a hidden node, runs Rust processes that BEAM
//! processes message, call, link and monitor, stands in a wooga/locker
//! cluster as a master or replica, and serves Paxtor-style locks and a name
//! registry on that quorum to BEAM and Rust processes alike. The README's
//! examples (compiled as doc tests) show each use.
//!
//! # Layers, bottom up
//!
//! Each layer imports only from the ones below it.
//!
//! - [`term`]: helpers for building and reading Erlang terms (`eetf`'s
//!   [`Term`]), [`term::Packed`] terms, and [`term::parse_term`] for literals.
//! - [`dist`]: the wire protocol as sans-IO code: framing, bounded term
//!   checks, the atom cache, control messages and the handshake state
//!   machine. Only [`dist::handshake`] and [`dist::flags`] are public, for
//!   raw peers (tests that play a BEAM node byte by byte) and custom drivers.
//! - `proc_table` (internal): the process table: pids, mailboxes, names,
//!   aliases, links, monitors and what a death or a lost connection fires;
//!   no I/O. Its [`Mail`] is what a process receives.
//! - [`node`]: the tokio driver: EPMD, the listener, connections and ticks,
//!   routing signals between Rust processes and peers.
//! - [`process`]: Rust processes with pids and mailboxes, calls
//!   (`gen_server:call`, multi-calls, quorum calls) and gen_server both
//!   ways: servers BEAM code calls and inspects with `sys`, and
//!   [`EventServer`]s that also take events from Rust. [`Node::start`] and
//!   [`Node::spawn_process`] live here, since they need processes.
//! - [`quorum`]: the locker-compatible store (sans-IO, internal), the
//!   process registered as `locker` that drives it ([`quorum::service`]),
//!   and a Rust client of locker masters ([`quorum::client::LockerClient`]).
//! - [`services`]: Paxtor-style locks and the name registry on the quorum:
//!   the typed wire protocol, the sans-IO core, the `erl_quorum` process
//!   driving it ([`services::start`]), the Rust API
//!   ([`services::Registry`]), and the `rust_quorum` guard that tells Rust
//!   owners when a lock or name granted by another node is lost.
//!
//! - [`metrics`]: the Prometheus endpoint (`serve --metrics-addr`): what
//!   the node and its services say at scrape time, and the rounds and
//!   renewals each node's [`metrics::Recorder`] counts in place.
//!
//! # What a user needs
//!
//! - [`Node`] and [`NodeConfig`]: start a node ([`Node::start`]), connect,
//!   spawn processes; [`NodeError`] when it cannot start or connect.
//! - [`Process`]: send, receive ([`Mail`]), register, link, monitor, alias
//!   and [`Process::call`] with [`Dest`]; [`CallError`] and [`ProcessError`].
//! - [`GenServer`] (with [`Caller`], [`CallReply`], [`Flow`]) and
//!   [`EventServer`], started by [`process::spawn_server`] and
//!   [`process::start_event_server`].
//! - The [`term`] helpers (`atom`, `tuple`, `list`, `int`, ...).
//! - [`quorum::client::LockerClient`] and [`quorum::service::start`] for
//!   locker; [`services::Registry`] (errors: [`services::RegistryError`])
//!   and [`services::start`] for locks and names.
//! - [`dist::handshake::Handshake`] and [`dist::flags`], only for raw peers.

#![warn(missing_docs, unreachable_pub)]

pub mod dist;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_api; // entry points for fuzz/
pub mod metrics;
pub mod node;

pub(crate) mod proc_table;
pub mod process;
pub mod quorum;
pub mod services;
pub mod term;

pub use node::{Node, NodeConfig, NodeError};
pub use process::{
    CallError, CallReply, Caller, Dest, EventServer, Flow, GenServer, Mail, Process, ProcessError,
};
pub use term::Term;

/// The README's Rust examples are compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
