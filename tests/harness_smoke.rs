//! Proves the test harness (tests/common + erlang_test/eq_peer.erl) against
//! real BEAM nodes. Exercises only the harness, not the crate, so a failure
//! here means the harness or the Erlang install is broken, not erl_quorum.
//!
//! Run with EQ_OTP=25 (default) and EQ_OTP=27; scripts/test.sh does both.

mod common;

use common::{atom, unique_name, BeamNode, Otp, DEFAULT_COOKIE};
use std::path::Path;
use std::time::{Duration, Instant};

fn start(prefix: &str) -> BeamNode {
    BeamNode::start(&unique_name(prefix), DEFAULT_COOKIE, &[])
        .unwrap_or_else(|e| panic!("start {prefix}: {e}"))
}

fn proc_comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn two_nodes_ping_eval_echo_and_kill9() {
    let a = start("smoke_a");
    let mut b = start("smoke_b");
    assert!(a.node_name().ends_with("@127.0.0.1"), "{}", a.node_name());
    assert_eq!(
        a.eval_ok("erlang:system_info(otp_release)"),
        format!("\"{}\"", Otp::from_env().release())
    );

    // Distribution between the two.
    assert_eq!(
        a.eval_ok(&format!("net_adm:ping({})", b.node_atom())),
        "pong"
    );
    assert_eq!(a.eval_ok("nodes()"), format!("[{}]", b.node_atom()));

    // Bindings persist; the trailing dot is optional; a line may hold several forms.
    assert_eq!(a.eval_ok("X = 21."), "21");
    assert_eq!(a.eval_ok("X * 2"), "42");
    assert_eq!(a.eval_ok("Y = X + 1. Y * 10"), "220");
    assert_eq!(a.eval_ok("[1,\n 2]"), "[1,2]");
    assert_eq!(
        a.eval_ok("lists:seq(1, 300)").matches(',').count(),
        299,
        "long results are not truncated"
    );

    // Errors come back as Err and the loop survives them.
    let err = a.eval("1 / 0").unwrap_err();
    assert!(err.contains("badarith"), "{err}");
    let err = a.eval("X = 22").unwrap_err();
    assert!(err.contains("badmatch"), "{err}");
    let err = a.eval("foo(").unwrap_err();
    assert!(err.contains("syntax_error"), "{err}");
    let err = a.eval("throw(oops)").unwrap_err();
    assert!(err.starts_with("{throw,oops,"), "{err}");
    // A linked process dying does not take the evaluator down.
    let flushed =
        a.eval_ok("spawn_link(fun() -> exit(boom) end), timer:sleep(50), eq_peer:flush()");
    assert!(flushed.contains("boom"), "{flushed}");
    assert_eq!(a.eval_ok("X"), "21");

    // The echo gen_server on B, called from A (call and info contract).
    assert!(b.eval_ok("eq_peer:start_echo(echo)").starts_with("{ok,<"));
    let echo = format!("{{echo, {}}}", b.node_atom());
    assert_eq!(
        a.eval_ok(&format!("gen_server:call({echo}, {{hello, [1,2]}})")),
        "{hello,[1,2]}"
    );
    assert_eq!(
        a.eval_ok(&format!("{echo} ! {{self(), hi}}, eq_peer:recv(5000)")),
        "{echo,hi}"
    );

    // kill -9 B: A sees it leave nodes(), B's evals fail, the process is gone.
    let b_pid = b.os_pid();
    assert_eq!(
        proc_comm(b_pid).as_deref(),
        Some("beam.smp"),
        "os_pid must be the BEAM itself"
    );
    b.kill9();
    assert_eq!(
        a.eval_ok(&format!(
            "eq_peer:wait_until(fun() -> not lists:member({}, nodes()) end, 10000)",
            b.node_atom()
        )),
        "ok"
    );
    assert!(b.eval("ok").unwrap_err().contains("exited"));
    assert!(
        !Path::new(&format!("/proc/{b_pid}")).exists(),
        "killed BEAM {b_pid} still exists"
    );
}

#[test]
fn sname_node_starts() {
    let n = BeamNode::start_sname(
        &unique_name("smoke_s"),
        DEFAULT_COOKIE,
        &["-kernel", "net_ticktime", "8"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !n.node_name().contains('.'),
        "short name expected: {}",
        n.node_name()
    );
    assert_eq!(
        n.eval_ok("atom_to_list(node())"),
        format!("{:?}", n.node_name())
    );
    assert_eq!(
        n.eval_ok("net_kernel:get_net_ticktime()"),
        "8",
        "extra args reach erl"
    );
}

#[test]
fn timeouts_signals_threads_and_drop() {
    let n = start("smoke_t");
    let pid = n.os_pid();

    // A timed-out eval leaves the node usable; the late answer is skipped.
    let t = Instant::now();
    let err = n
        .eval_timeout("timer:sleep(700), late", Duration::from_millis(100))
        .unwrap_err();
    assert!(err.contains("timed out"), "{err}");
    assert!(t.elapsed() < Duration::from_millis(600));
    assert_eq!(n.eval_ok("after_timeout"), "after_timeout");

    // SIGSTOP freezes it, SIGCONT thaws it.
    n.sigstop();
    assert!(n
        .eval_timeout("frozen", Duration::from_millis(300))
        .is_err());
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(state.contains(") T "), "expected stopped state: {state}");
    n.sigcont();
    assert_eq!(n.eval_ok("thawed"), "thawed");

    // Evals from several threads are serialised and each gets its own answer.
    std::thread::scope(|s| {
        for t in 0..4 {
            let n = &n;
            s.spawn(move || {
                for i in 0..15 {
                    assert_eq!(n.eval_ok(&format!("{{{t}, {i}}}")), format!("{{{t},{i}}}"));
                }
            });
        }
    });

    // Dropping kills and reaps the BEAM.
    drop(n);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "dropped BEAM {pid} still exists"
    );
}

#[test]
fn stop_halts_via_stdin_eof_and_bad_start_fails_clearly() {
    let name = unique_name("smoke_x");
    let n = BeamNode::start(&name, "cookie_x", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n.eval_ok("erlang:get_cookie()"), "cookie_x");

    // A second node with the same name can't register with epmd: the error
    // must say what happened instead of timing out.
    let t = Instant::now();
    let err = BeamNode::start(&name, "cookie_x", &[])
        .expect_err("duplicate name must fail")
        .to_string();
    assert!(err.contains(&name) && err.contains("exited"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "failure took {:?}",
        t.elapsed()
    );

    let pid = n.os_pid();
    let status = n.stop().expect("node halts when its stdin closes");
    assert!(status.success(), "{status}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(atom("a@b.c"), "'a@b.c'");
}
