//! The partition test's harness (see `tests/partition.rs`):
//! - `net`: hosts made of network namespaces on a bridge, partitions as
//!   blackhole routes, cleanup of leftovers and on drop;
//! - `procs`: masters (`erl_quorum serve`) and BEAM clients running the
//!   workload (`erlang_test/eq_partition.erl`) on those hosts;
//! - `check`: the history, its overlap checker and availability figures.

#![allow(dead_code)]

pub mod check;
pub mod net;
pub mod procs;
