//! Metrics and status: a Prometheus endpoint (`erl_quorum serve
//! --metrics-addr`), and the pieces `erl_quorum status` shares with it.
//!
//! Most of what a scrape shows is read at scrape time from state the node
//! keeps anyway ([`collect`]): the peer table with each connection's
//! traffic counters (`node::traffic`), and the status answers of the
//! `locker` and `erl_quorum` services. Only what no table holds is counted
//! in place, by the [`Recorder`] each node owns: quorum rounds with their
//! latency, and session renewals with their margin.
//!
//! [`recorder`] is a leaf (the node layer holds one); the rest sits above
//! the services, which it calls.

pub mod collect;
pub mod exposition;
pub mod fields;
pub mod http;
pub mod names;
pub mod recorder;
pub mod table;

pub use exposition::{render, Snapshot};
pub use http::serve;
pub use recorder::{round_op, Recorder, RoundOutcome};
