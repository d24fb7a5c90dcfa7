//! Packaging as users consume it: the sample projects in `examples/`, a
//! rebar3 project (`rebar3_app`, Erlang) and a mix project (`mix_app`,
//! Elixir), each depending on `rebar_fixture` by path, are built offline
//! with the release's own rebar3 or mix (`EQ_OTP=27`: OTP 27's), and their
//! code runs on a real node against three `erl_quorum serve` masters.
//!
//! Each sample starts a greeter that takes a Paxtor lock and registers by
//! name through `rust_registry`, and calls a name of its own. The test
//! checks, from a Rust node, that the lock is held by that greeter and that
//! the name reaches it; from the sample, that it reaches a Rust server by
//! name; and that the lock goes with the greeter. It also checks that every
//! module the node runs of `erl_quorum` and of the sample was loaded from
//! the build (the harness's own compiled copy is on the code path too).

mod common;
mod packaging_support;
mod quorum_support;
mod rust_node;
mod services_support;

use common::{BeamNode, Otp};
use erl_quorum::process::spawn_server;
use erl_quorum::services::{LockReply, Registry};
use erl_quorum::term::{atom, tuple, Term};
use packaging_support::{erl_string, Built, Tool};
use quorum_support::erl_list;
use services_support::{beval, wait_on, Lang};
use std::time::Duration;

/// One sample project and how its users run it.
struct Sample {
    /// Its directory under `examples/`, also its application's name.
    app: &'static str,
    tool: Tool,
    /// The module with `start/2`, `call/2` and `holder/1`.
    module: &'static str,
    lang: Lang,
}

const REBAR3_APP: Sample = Sample {
    app: "rebar3_app",
    tool: Tool::Rebar3,
    module: "rebar3_app",
    lang: Lang::Erlang,
};

const MIX_APP: Sample = Sample {
    app: "mix_app",
    tool: Tool::Mix,
    module: "'Elixir.MixApp'",
    lang: Lang::Elixir,
};

/// How long the node waits for erl_quorum's subscription and session.
const READY_MS: u64 = 20_000;

/// Starts a node of `sample.lang`, puts the build's ebins first on its code
/// path, sets `rust_nodes`, starts the sample's application (which starts
/// erl_quorum) and waits until erl_quorum is subscribed with a session.
fn start_sample_node(sample: &Sample, built: &Built, rust_nodes: &[String]) -> BeamNode {
    let name = common::unique_name(&format!("pkg_{}", sample.app));
    let cookie = rust_node::COOKIE;
    let node = match sample.lang {
        Lang::Erlang => BeamNode::start(&name, cookie, &[]),
        Lang::Elixir => BeamNode::start_elixir(&name, cookie, &[]),
    }
    .unwrap_or_else(|e| panic!("start the {:?} node: {e}", sample.lang));
    let ebins: Vec<String> = built
        .ebins
        .iter()
        .map(|p| erl_string(&p.to_string_lossy()))
        .collect();
    node.eval_ok(&format!("ok = code:add_pathsa([{}])", ebins.join(", ")));
    let app = sample.app;
    let nodes = erl_list(rust_nodes);
    let started = node.eval_ok(&format!(
        "ok = application:load(erl_quorum), \
         ok = application:set_env(erl_quorum, rust_nodes, {nodes}), \
         {{ok, Started}} = application:ensure_all_started({app}), \
         Started"
    ));
    assert!(
        started.contains("erl_quorum") && started.contains(app),
        "starting {app} starts erl_quorum first: {started}"
    );
    // Already started, so this only waits for the subscription and session.
    node.eval_timeout(
        &format!(
            "Sub = eq_services:start_app({nodes}, {READY_MS}), \
             ok = eq_services:wait_status(Sub, {READY_MS})"
        ),
        Duration::from_millis(2 * READY_MS + 5_000),
    )
    .unwrap_or_else(|e| panic!("{}: erl_quorum not ready: {e}", node.node_name()));
    node
}

/// Every module of `erl_quorum` and of the sample that is not loaded (or
/// loadable) from the build: `[]` when the node runs what rebar3/mix built.
fn modules_outside_build(node: &BeamNode, sample: &Sample, built: &Built) -> String {
    let build = erl_string(&built.project.join("_build").to_string_lossy());
    node.eval_ok(&format!(
        "[{{M, W}} || App <- [erl_quorum, {app}], \
           {{ok, Ms}} <- [application:get_key(App, modules)], M <- Ms, \
           W <- [code:which(M)], not (is_list(W) andalso lists:prefix({build}, W))]",
        app = sample.app
    ))
}

async fn run_sample(sample: Sample, prefix: &str) {
    let otp = Otp::from_env();
    let built =
        tokio::task::spawn_blocking(move || packaging_support::build(otp, sample.app, sample.tool))
            .await
            .expect("build task")
            .unwrap_or_else(|e| panic!("{e}"));
    let cluster = services_support::start_cluster(prefix, None).await;
    let m = cluster.master_names();
    let node = tokio::task::block_in_place(|| start_sample_node(&sample, &built, &m));

    assert_eq!(modules_outside_build(&node, &sample, &built), "[]");
    let count = beval(
        &node,
        "{ok, Ms} = application:get_key(erl_quorum, modules), length(Ms)",
    );
    assert!(
        count.parse::<usize>().unwrap_or(0) > 10,
        "erl_quorum's modules: {count}"
    );
    // mix builds rebar_fixture's Elixir modules (`Sworm`, `ErlQuorum.Server`)
    // too; rebar3 only its Erlang ones, as rebar_fixture/README.md says.
    let has_sworm = "{ok, Ms} = application:get_key(erl_quorum, modules), \
                     lists:member('Elixir.Sworm', Ms)";
    let expected = if sample.tool == Tool::Mix {
        "true"
    } else {
        "false"
    };
    assert_eq!(beval(&node, has_sworm), expected, "{:?} build", sample.tool);

    // The sample's greeter takes the lock and registers by name.
    let module = sample.module;
    let key = tuple(vec![atom("pkg"), atom(sample.app)]);
    let (key_erl, name) = (
        format!("{{pkg, {}}}", sample.app),
        format!("pkg_{}_greeter", sample.app),
    );
    beval(
        &node,
        &format!("{{ok, P}} = {module}:start({name}, {key_erl})"),
    );
    assert_eq!(
        beval(&node, &format!("{module}:holder({key_erl}) =:= P")),
        "true"
    );

    // A Rust node, served by another master, sees the holder and calls the name.
    let rust = rust_node::start(&format!("rs_{prefix}")).await;
    let mut reg = Registry::new(rust.spawn_process()).with_server(&m[1]);
    match reg.lock(key.clone(), false).await {
        Ok(LockReply::HeldBy(pid)) => assert_eq!(pid.node.name, node.node_name()),
        other => panic!("lock {key} from Rust while the greeter holds it: {other:?}"),
    }
    let reply = reg
        .call_name(
            atom(&name),
            tuple(vec![atom("hello"), atom("rust")]),
            Duration::from_secs(5),
        )
        .await
        .expect("call the greeter by name from Rust");
    let expected: Term = tuple(vec![
        atom("hello"),
        atom("rust"),
        atom("from"),
        atom(node.node_name()),
        atom("holding"),
        key.clone(),
    ]);
    assert_eq!(reply, expected);

    // The sample calls a Rust server by name.
    let echo = spawn_server(&rust, None, rust_node::Echo).expect("spawn echo");
    let rust_name = format!("pkg_{}_rust_echo", sample.app);
    assert_eq!(reg.register(atom(&rust_name), &echo).await, Ok(true));
    // Names reach a BEAM node's local cache asynchronously (no round trip
    // on lookup), here from another master than the one it subscribed to.
    let cached = format!("is_pid(rust_registry:whereis_name({rust_name}))");
    wait_on(&node, &cached, Duration::from_secs(5));
    assert_eq!(
        beval(&node, &format!("{module}:call({rust_name}, {{ping, 1}})")),
        "{ping,1}"
    );

    // The lock is the greeter's: it goes when the greeter does.
    beval(&node, "exit(P, kill)");
    let lock = tokio::time::timeout(Duration::from_secs(15), reg.lock(key.clone(), true)).await;
    assert_eq!(lock.expect("the lock is released"), Ok(LockReply::Acquired));
    rust.shutdown();
    drop(node);
    drop(built);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebar3_project_depending_on_rebar_fixture() {
    run_sample(REBAR3_APP, "pkgr").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix_project_depending_on_rebar_fixture() {
    run_sample(MIX_APP, "pkgm").await;
}
