//! The quorum: cluster-wide leases compatible with the Erlang library
//! `locker` (wooga/locker), so a Rust node can stand in a locker cluster as
//! a master or a replica next to BEAM nodes running the real library.
//!
//! - `store`: the sans-IO state of one `locker` server: promises, leases,
//!   waiters, membership and the transaction log for replicas (internal;
//!   its settings are [`StoreConfig`]).
//! - [`service`]: the process registered as `locker` that drives a store.
//! - `catch_up`: how a (re)starting master reads its peers' state and ends
//!   its restart guard early (sans IO; `service` drives it).
//! - [`client`]: locker's client operations, against any set of masters.
pub(crate) mod catch_up;
pub mod client;
pub mod service;
pub(crate) mod store;

pub use store::Config as StoreConfig;
