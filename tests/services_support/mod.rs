//! Helpers for the tests of the `erl_quorum` service (locks and names served
//! to BEAM and Rust processes): a cluster of `erl_quorum serve` masters and
//! BEAM nodes (Erlang or Elixir) running the `erl_quorum` application from
//! `rebar_fixture/` against it.
//!
//! Include it next to the modules it builds on:
//!
//! ```ignore
//! mod common;
//! mod quorum_support;
//! mod rust_node;
//! #[path = "services_support/mod.rs"]   // only needed outside tests/
//! mod services_support;
//! ```
//!
//! The API:
//! - [`start_cluster`]: 3 masters, W=2, `--fresh`, an optional session lease;
//!   [`start_cluster_with`]: also the release margin ([`ClusterOpts`]).
//! - [`start_app_node`]: an Erlang or Elixir node with `erl_quorum` started
//!   on a given `rust_nodes` order, subscribed and ready;
//!   [`start_app_nodes`]: several at once, each with another master first.
//! - [`beval`] / [`beval_result`]: Erlang evals from async tests (re-exported
//!   from `quorum_support`); [`ex_expr`] / [`ex`]: Elixir code from them.
//! - [`wait_on`]: `eq_peer:wait_until/2` on a node, from an async test.
//!
//! On the node, `erlang_test/eq_services.erl` has the servers, holders and
//! contention helpers the tests call.

#![allow(dead_code)]

use super::common::{self, BeamNode};
use super::quorum_support::{erl_list, node_name, Cluster, MasterProcess, ServeOpts};
use std::time::Duration;

#[allow(unused_imports)]
pub use super::quorum_support::{beval, beval_result};

/// The quorum of [`start_cluster`]'s three masters.
pub const W: usize = 2;

/// How long [`start_app_node`] waits for the subscription and the session.
const READY_MS: u64 = 20_000;

/// Three `erl_quorum serve` masters named `m{0,1,2}_{prefix}_…@127.0.0.1`,
/// W=2, started `--fresh` and at once (each serves `locker` and
/// `erl_quorum`). `session_lease_ms`: the erl_quorum service's session lease
/// (`None`: its 10 s default; the binary raises anything below 5000 to
/// 5000). The masters are in `cluster.masters`, in name order; dropping the
/// cluster kills them.
pub async fn start_cluster(prefix: &str, session_lease_ms: Option<u64>) -> Cluster {
    start_cluster_with(
        prefix,
        ClusterOpts {
            session_lease_ms,
            release_margin_ms: None,
        },
    )
    .await
}

/// The erl_quorum service's timing flags for [`start_cluster_with`]
/// (`None`: the binary's default).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterOpts {
    /// `--session-lease-ms`.
    pub session_lease_ms: Option<u64>,
    /// `--release-margin-ms`: how long past the session lease a hold
    /// outlives its owner's node.
    pub release_margin_ms: Option<u64>,
}

/// [`start_cluster`] with every timing flag of [`ClusterOpts`].
pub async fn start_cluster_with(prefix: &str, timing: ClusterOpts) -> Cluster {
    start_cluster_args(prefix, timing, &[]).await
}

/// [`start_cluster_with`], each node's `serve` given `extra` flags too
/// (`--no-rebalance`: shards stay where they were first taken).
pub async fn start_cluster_args(prefix: &str, timing: ClusterOpts, extra: &[&str]) -> Cluster {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let names: Vec<String> = (0..3)
        .map(|i| node_name(&format!("m{i}_{prefix}")))
        .collect();
    let opts = ServeOpts {
        masters: names.clone(),
        replicas: Vec::new(),
        w: W,
        fresh: true,
        no_catch_up: false,
        max_lease_ms: None,
        session_lease_ms: timing.session_lease_ms,
        release_margin_ms: timing.release_margin_ms,
    };
    let (a, b, c) = tokio::join!(
        MasterProcess::start_with_args(&names[0], opts.clone(), extra.clone()),
        MasterProcess::start_with_args(&names[1], opts.clone(), extra.clone()),
        MasterProcess::start_with_args(&names[2], opts.clone(), extra),
    );
    Cluster {
        masters: vec![a, b, c],
        replicas: Vec::new(),
    }
}

/// Which kind of BEAM node [`start_app_node`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Erlang,
    /// `elixir` (`elixir27` with `EQ_OTP=27`), see `BeamNode::start_elixir`.
    Elixir,
}

/// Starts a BEAM node named `{prefix}_…@127.0.0.1` (off the async runtime's
/// worker threads), sets the `erl_quorum` application's `rust_nodes` to
/// `rust_nodes` (in that order: the first is the one it calls and subscribes
/// to first), starts the application, and returns once
/// `rust_quorum:status()` says subscribed and the erl_quorum service of the
/// node it subscribed to has a confirmed session (so locks and names work at
/// once). Panics with the node's output when any of that fails.
///
/// The future borrows nothing, so several nodes can start at once:
/// `tokio::join!(start_app_node("a", Lang::Erlang, &m), start_app_node(…))`.
pub fn start_app_node(
    prefix: &str,
    lang: Lang,
    rust_nodes: &[String],
) -> impl std::future::Future<Output = BeamNode> + Send + 'static {
    start_app_node_with(prefix, lang, rust_nodes, Vec::new())
}

/// [`start_app_node`] with `extra_args` for `erl` (e.g. TLS distribution).
pub fn start_app_node_with(
    prefix: &str,
    lang: Lang,
    rust_nodes: &[String],
    extra_args: Vec<String>,
) -> impl std::future::Future<Output = BeamNode> + Send + 'static {
    let name = common::unique_name(prefix);
    let expr = format!(
        "Sub = eq_services:start_app({nodes}, {READY_MS}), \
         ok = eq_services:wait_status(Sub, {READY_MS}), \
         Sub",
        nodes = erl_list(rust_nodes)
    );
    async move {
        common::ensure_epmd().expect("epmd");
        let cookie = super::quorum_support::COOKIE;
        tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra_args.iter().map(String::as_str).collect();
            let node = match lang {
                Lang::Erlang => BeamNode::start(&name, cookie, &extra),
                Lang::Elixir => BeamNode::start_elixir(&name, cookie, &extra),
            }
            .unwrap_or_else(|e| panic!("start the {lang:?} node: {e}"));
            if let Err(e) = node.eval_timeout(&expr, Duration::from_millis(2 * READY_MS + 5_000)) {
                panic!("{}: erl_quorum did not start: {e}", node.node_name());
            }
            node
        })
        .await
        // A panic in there is the test's failure: keep its message.
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// The Erlang expression that evaluates Elixir `code` on an Elixir node and
/// gives its value: `element(1, 'Elixir.Code':eval_string(<<"…"/utf8>>,
/// Bindings))`. `bindings` pairs an Elixir variable name with an Erlang
/// expression (typically a variable bound by an earlier eval), so Elixir
/// code can use values from earlier evals: `&[("pid", "P1")]`.
pub fn ex_expr(code: &str, bindings: &[(&str, &str)]) -> String {
    let mut quoted = String::with_capacity(code.len() + 16);
    for c in code.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\r' => {}
            c => quoted.push(c),
        }
    }
    let binds: Vec<String> = bindings
        .iter()
        .map(|(var, erl)| format!("{{{var}, {erl}}}"))
        .collect();
    format!(
        "element(1, 'Elixir.Code':eval_string(<<\"{quoted}\"/utf8>>, [{}]))",
        binds.join(", ")
    )
}

/// Evaluates Elixir `code` on `node` from an async test; the value printed
/// as Erlang prints it (`ok`, `{ok,<0.1.0>}`, `nil`). Panics on an error.
#[track_caller]
pub fn ex(node: &BeamNode, code: &str, bindings: &[(&str, &str)]) -> String {
    beval(node, &ex_expr(code, bindings))
}

/// `eq_peer:wait_until(fun() -> Cond end, TimeoutMs)` on `node`, where
/// `cond` is an Erlang expression that becomes `true`. Panics with what
/// was last seen on a timeout.
#[track_caller]
pub fn wait_on(node: &BeamNode, cond: &str, timeout: Duration) {
    let expr = format!(
        "ok = eq_peer:wait_until(fun() -> {cond} end, {})",
        timeout.as_millis()
    );
    let result =
        tokio::task::block_in_place(|| node.eval_timeout(&expr, timeout + Duration::from_secs(5)));
    if let Err(e) = result {
        panic!("{}: `{cond}` did not become true: {e}", node.node_name());
    }
}

/// An Erlang expression that rebuilds, on any node, the value `expr` has on
/// `node`: `binary_to_term(<<…>>)`. For handing a pid (or any term) from
/// one BEAM node to another, e.g. `format!("P = {}", term_expr(&a, "P"))`.
pub fn term_expr(node: &BeamNode, expr: &str) -> String {
    format!(
        "binary_to_term({})",
        beval(node, &format!("term_to_binary({expr})"))
    )
}

/// `nodes` rotated left by `k`: the same masters, another one first.
pub fn rotated(nodes: &[String], k: usize) -> Vec<String> {
    let mut v = nodes.to_vec();
    if !v.is_empty() {
        let n = v.len();
        v.rotate_left(k % n);
    }
    v
}

/// One [`start_app_node`] per entry of `langs`, started at once, named
/// `{prefix}{i}_…`; node `i` gets the masters rotated by `i` (so three
/// nodes are served by three different masters). In `langs`' order.
pub async fn start_app_nodes(prefix: &str, langs: &[Lang], masters: &[String]) -> Vec<BeamNode> {
    let starts: Vec<_> = langs
        .iter()
        .enumerate()
        .map(|(i, &lang)| {
            tokio::spawn(start_app_node(
                &format!("{prefix}{i}"),
                lang,
                &rotated(masters, i),
            ))
        })
        .collect();
    let mut nodes = Vec::with_capacity(starts.len());
    for s in starts {
        // A panic in there is the test's failure: keep its message.
        nodes.push(
            s.await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        );
    }
    nodes
}
