//! Every request gets an answer, whatever its depth (issue 15, hole 3):
//! real BEAM nodes running the `erl_quorum` application against three
//! `erl_quorum serve` masters (which serve `locker` and `erl_quorum`).
//!
//! - A locker call whose reply would nest too deep to send is answered
//!   `{error, {reply_unencodable, {too_deep, 128}}}`, not left to time out.
//! - A name nested too deep (or too large) is refused at `register_name`,
//!   so it can never make the `{subscribe, Pid}` reply unsendable for every
//!   client.
//! - A BEAM client sending a call 200 levels deep (the BEAM accepts it)
//!   keeps its connection and gets `{error, {too_deep, 128}}`.

mod common;
mod quorum_support;
mod rust_node;
mod services_support;

use services_support::{beval, start_app_node, start_cluster, Lang::Erlang};

/// An Erlang expression binding `Var` to `levels` nested 1-tuples.
fn nested(var: &str, levels: usize) -> String {
    format!("{var} = lists:foldl(fun(_, T) -> {{T}} end, x, lists:seq(1, {levels}))")
}

/// Three masters and two BEAM app nodes, each with `M` bound to the
/// first master.
async fn setup(prefix: &str) -> (quorum_support::Cluster, common::BeamNode, common::BeamNode) {
    let cluster = start_cluster(prefix, None).await;
    let m = cluster.master_names();
    let a = start_app_node(&format!("a_{prefix}"), Erlang, &m).await;
    let b = start_app_node(&format!("b_{prefix}"), Erlang, &m).await;
    beval(&a, &format!("M = '{}'", m[0]));
    beval(&b, &format!("M = '{}'", m[0]));
    (cluster, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locker_reply_too_deep_to_send_becomes_an_error_reply() {
    let (cluster, a, b) = setup("dt1").await;
    // 1. The locker's `{error, {unknown_request, Deep127}}` cannot be sent
    // (129 levels with its wrapping): an error reply comes instead.
    beval(&a, &nested("D127", 127));
    assert_eq!(
        beval(&a, "catch gen_server:call({locker, M}, D127, 5000)"),
        "{error,{reply_unencodable,{too_deep,128}}}"
    );

    drop((a, b, cluster));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_names_are_refused_and_subscribe_keeps_working() {
    let (cluster, a, b) = setup("dt2").await;
    // 2. A name 126 deep, registered by a direct call (rust_quorum:call/1
    // refuses requests over 120 levels itself), following redirects to the
    // shard's node: refused as a bad argument, not echoed...
    beval(&a, &nested("D126", 126));
    beval(&a, "P = spawn(fun() -> receive stop -> ok end end)");
    beval(
        &a,
        "Reg = fun R(_, 0) -> gave_up; \
                   R(Node, K) -> case catch gen_server:call({erl_quorum, Node}, \
                                        {register_name, D126, P}, 5000) of \
                                   {erl_quorum_redirect, To} -> R(To, K - 1); \
                                   Other -> Other end end",
    );
    assert_eq!(beval(&a, "Reg(M, 3)"), "{error,{badarg,{too_deep,120}}}");
    assert_eq!(
        beval(
            &a,
            "catch gen_server:call({erl_quorum, M}, {lock, D126, self(), false}, 5000)"
        ),
        "{error,{badarg,{too_deep,120}}}"
    );
    // rust_registry raises badarg for a name over the size bound (its
    // depth is checked by rust_quorum:call/1 before it is sent).
    beval(&a, "Big = binary:copy(<<\"n\">>, 5 * 1024 * 1024)");
    let refused = beval(
        &a,
        "case catch rust_registry:register_name(Big, self()) of \
           {'EXIT', {{badarg, Why}, _}} -> Why; Other -> {unexpected, Other} end",
    );
    assert_eq!(refused, "{too_large,4194304}");
    // ... so every client's subscription still gets its names.
    for node in [&a, &b] {
        let reply = beval(
            node,
            "case catch gen_server:call({erl_quorum, M}, {subscribe, self()}, 5000) of \
               {ok, L} when is_list(L) -> ok; Other -> Other end",
        );
        assert_eq!(reply, "ok");
    }
    // Names within the bound still register.
    beval(&a, &nested("D20", 20));
    assert_eq!(
        beval(
            &a,
            "element(1, eq_services:holder(fun() -> rust_registry:register_name(D20, self()) end))"
        ),
        "yes"
    );

    drop((a, b, cluster));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beam_call_200_deep_is_answered_and_keeps_the_connection() {
    let (cluster, a, b) = setup("dt3").await;
    beval(&a, &nested("D20", 20));
    assert_eq!(
        beval(
            &a,
            "element(1, eq_services:holder(fun() -> rust_registry:register_name(D20, self()) end))"
        ),
        "yes"
    );
    // 3. A call 200 deep: the BEAM sends it, our node drops that message
    // alone and answers the caller; the connection stays.
    beval(&b, &nested("D200", 200));
    beval(&b, "true = monitor_node(M, true)");
    assert_eq!(
        beval(&b, "catch gen_server:call({erl_quorum, M}, D200, 5000)"),
        "{error,{too_deep,128}}"
    );
    // A plain send of it, then a normal call on the same connection.
    beval(&b, "{erl_quorum, M} ! D200");
    assert_eq!(
        beval(
            &b,
            "case catch gen_server:call({erl_quorum, M}, {subscribe, self()}, 5000) of \
               {ok, L2} when is_list(L2) -> ok; Other -> Other end"
        ),
        "ok"
    );
    assert_eq!(
        beval(
            &b,
            "receive {nodedown, M} -> nodedown after 200 -> connected end"
        ),
        "connected"
    );
    drop((a, b, cluster));
}
