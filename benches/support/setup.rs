//! What every bench does the same way: settings from the environment, its
//! tokio runtimes, and evaluations on its BEAM nodes.

// Each bench includes this file and uses only part of it.
#![allow(dead_code)]

use crate::common::BeamNode;
use std::time::Duration;

/// `var` parsed, if set; a value that does not parse stops the bench.
pub fn env_parse<T: std::str::FromStr>(var: &str) -> Option<T> {
    let value = std::env::var(var).ok()?;
    match value.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => panic!("{var}={value:?} is not a valid number"),
    }
}

/// A worker-thread count from `var`: unset gives `default`, 0 gives
/// `None` (tokio's default, one per core).
pub fn env_workers(var: &str, default: Option<usize>) -> Option<usize> {
    match env_parse::<usize>(var) {
        None => default,
        Some(0) => None,
        Some(w) => Some(w),
    }
}

/// `EQ_BUSY_POLL_US`: how long the nodes' readers busy-poll after an
/// exchange (0 turns it off); unset leaves the nodes' default.
pub fn busy_poll_us() -> Option<u64> {
    env_parse("EQ_BUSY_POLL_US")
}

/// `EQ_COALESCE_US`: how long the nodes' readers, woken in a one-way
/// stream, wait before reading (0 turns it off); unset leaves the default.
pub fn coalesce_us() -> Option<u64> {
    env_parse("EQ_COALESCE_US")
}

/// A bench node's configuration: `NodeConfig::new` with [`busy_poll_us`]
/// and [`coalesce_us`] applied.
pub fn node_config(name: String, cookie: &str) -> erl_quorum::NodeConfig {
    let us = std::time::Duration::from_micros;
    let mut config = erl_quorum::NodeConfig::new(name, cookie);
    if let Some(poll) = busy_poll_us() {
        config = config.with_busy_poll(us(poll));
    }
    if let Some(wait) = coalesce_us() {
        config = config.with_coalesce_reads(us(wait));
    }
    config
}

/// A multi-threaded runtime with `workers` threads (`None`: tokio's default).
pub fn runtime(workers: Option<usize>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(w) = workers {
        builder.worker_threads(w);
    }
    builder.enable_all().build().expect("tokio runtime")
}

/// Evaluates `expr` on `node`; a failure stops the bench.
pub fn eval_for(node: &BeamNode, expr: &str, timeout: Duration) -> String {
    node.eval_timeout(expr, timeout)
        .unwrap_or_else(|e| panic!("`{expr}` on {} failed: {e}", node.node_name()))
}

/// Parses a flat tuple of integers as eq_peer prints it (`expr` is what
/// printed it, for the panic message).
pub fn parse_ints(expr: &str, printed: &str) -> Vec<u64> {
    let ints: Option<Vec<u64>> = printed
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .map(|body| body.split(',').map(|n| n.trim().parse().ok()).collect())
        .unwrap_or(None);
    ints.unwrap_or_else(|| panic!("`{expr}` returned {printed}, expected a tuple of integers"))
}
