//! OTP's `sys` module against a Rust gen_server, from a real BEAM node:
//! get_state, get_status, suspend (a call waits until the resume), resume,
//! what cannot be done (an error for the caller, the server goes on), and
//! gen_server:stop.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::process::{spawn_server, CallReply, Caller, GenServer, Process};
use erl_quorum::term::{atom, int, is_atom, tuple, Term};
use std::time::Duration;

/// Counts `incr` calls; its state term is `{counter, N}`.
struct Counter(i64);

impl GenServer for Counter {
    async fn handle_call(&mut self, request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        if is_atom(&request, "incr") {
            self.0 += 1;
            CallReply::Reply(int(self.0))
        } else {
            CallReply::Reply(tuple(vec![atom("error"), atom("unknown")]))
        }
    }

    fn state_term(&self) -> Term {
        tuple(vec![atom("counter"), int(self.0)])
    }
}

fn beam(prefix: &str) -> BeamNode {
    common::ensure_epmd().expect("epmd");
    BeamNode::start(&common::unique_name(prefix), rust_node::COOKIE, &[]).expect("start erl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_inspects_suspends_and_resumes_a_rust_gen_server() {
    let node = rust_node::start("rs_sys").await;
    spawn_server(&node, Some("counter"), Counter(0)).expect("register counter");
    let b = beam("b_sys");
    let r = common::atom(node.name());
    b.eval_ok(&format!("R = {{counter, {r}}}"));
    // The reply has OTP 26.1+'s form, which older releases show wrapped.
    let state = |n: i64| match b.otp() {
        common::Otp::V25 => format!("{{ok,{{counter,{n}}}}}"),
        _ => format!("{{counter,{n}}}"),
    };

    assert_eq!(b.eval_ok("sys:get_state(R)"), state(0));
    assert_eq!(b.eval_ok("sys:get_state(R, 5000)"), state(0));
    assert_eq!(
        b.eval_ok(
            "{status, P, {module, gen_server}, [[], running, P, [], Misc]} = sys:get_status(R), \
             {lists:keyfind(header, 1, Misc), lists:last(Misc), is_pid(P)}"
        ),
        "{{header,\"Status for generic server counter\"},{data,[{\"State\",{counter,0}}]},true}"
    );

    // Suspended: a call waits, system messages are still answered.
    assert_eq!(b.eval_ok("sys:suspend(R)"), "ok");
    b.eval_ok(
        "Self = self(), spawn(fun() -> Self ! {answered, gen_server:call(R, incr, 20000)} end)",
    );
    assert_eq!(
        b.eval_ok("receive {answered, Early} -> {early, Early} after 500 -> held end"),
        "held"
    );
    assert_eq!(b.eval_ok("sys:get_state(R)"), state(0));
    assert_eq!(
        b.eval_ok("{status, _, _, [_, SysState | _]} = sys:get_status(R), SysState"),
        "suspended"
    );
    assert_eq!(b.eval_ok("sys:resume(R)"), "ok");
    assert_eq!(
        b.eval_ok("receive {answered, Late} -> Late after 5000 -> timeout end"),
        "1"
    );

    // What a Rust server cannot do is an error for the caller, nothing more.
    assert_eq!(
        b.eval_ok(
            "case catch sys:replace_state(R, fun(S) -> S end) of \
             {'EXIT', {{callback_failed, _, _}, _}} -> raised; Other -> Other end"
        ),
        "raised"
    );
    assert_eq!(
        b.eval_ok("element(1, sys:change_code(R, counter, \"0\", []))"),
        "error"
    );
    assert_eq!(b.eval_ok("element(1, sys:log(R, true))"), "error");
    assert_eq!(b.eval_ok("gen_server:call(R, incr)"), "2");

    assert_eq!(b.eval_ok("gen_server:stop(R)"), "ok");
    rust_node::wait_until("counter gone", Duration::from_secs(5), || {
        node.whereis("counter").is_none()
    })
    .await;
}
