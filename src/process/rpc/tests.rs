//! The protocol decisions of `plan`, in memory.

use super::functions::Exception;
use super::plan::{self, Entry, Target};
use super::rex::RexRequest;
use crate::term::{atom, int, list, tuple, Term};

fn nil() -> Term {
    list(vec![])
}

#[test]
fn options_keep_link_and_monitor_and_ignore_the_requesters_own() {
    let o = plan::options(&[
        tuple(vec![atom("reply"), atom("error_only")]),
        atom("monitor"),
    ]);
    assert!(o.monitor && !o.link);
    let o = plan::options(&[
        atom("link"),
        tuple(vec![atom("monitor"), list(vec![])]),
        tuple(vec![atom("priority"), atom("high")]),
    ]);
    assert!(o.monitor && o.link);
    assert_eq!(plan::options(&[]), plan::Options::default());
}

#[test]
fn erpc_entries_are_recognised_and_their_arguments_checked() {
    let res = atom("res");
    let e = plan::entry(
        "erpc",
        "execute_call",
        vec![res.clone(), atom("m"), atom("f"), list(vec![int(1)])],
    );
    let target = Target {
        module: "m".into(),
        function: "f".into(),
        args: vec![int(1)],
    };
    assert_eq!(
        e,
        Entry::ErpcCall {
            res: res.clone(),
            target: Ok(target.clone())
        }
    );
    // apply/3 with a non-list: erpc answers {erpc, badarg}, without a stack.
    let Entry::ErpcCall { target: Err(e), .. } = plan::entry(
        "erpc",
        "execute_call",
        vec![res.clone(), atom("m"), atom("f"), int(1)],
    ) else {
        panic!("bad arguments must be refused");
    };
    assert_eq!(
        plan::erpc_reason(&res, Err(e)),
        tuple(vec![
            res.clone(),
            atom("error"),
            tuple(vec![atom("erpc"), atom("badarg")])
        ])
    );
    assert_eq!(
        plan::entry("erpc", "execute_cast", vec![atom("m"), atom("f"), nil()]),
        Entry::ErpcCast {
            target: Ok(Target {
                module: "m".into(),
                function: "f".into(),
                args: vec![]
            })
        }
    );
    // Another arity of the same name is a plain spawn of that function.
    assert!(matches!(
        plan::entry("erpc", "execute_call", vec![atom("m")]),
        Entry::Direct(_)
    ));
}

#[test]
fn results_travel_as_each_caller_expects() {
    let res = atom("r");
    let target = Target {
        module: "m".into(),
        function: "f".into(),
        args: vec![int(7)],
    };
    let undef = plan::undef(&target);
    let undef_stack = list(vec![tuple(vec![
        atom("m"),
        atom("f"),
        list(vec![int(7)]),
        nil(),
    ])]);
    // erpc: {Res, Class, ...} as erpc:execute_call/4 exits.
    assert_eq!(
        plan::erpc_reason(&res, Ok(int(1))),
        tuple(vec![res.clone(), atom("return"), int(1)])
    );
    assert_eq!(
        plan::erpc_reason(&res, Err(undef.clone())),
        tuple(vec![
            res.clone(),
            atom("error"),
            atom("undef"),
            undef_stack.clone()
        ])
    );
    assert_eq!(
        plan::erpc_reason(&res, Err(Exception::Throw(atom("t")))),
        tuple(vec![res.clone(), atom("throw"), atom("t")])
    );
    // rpc (rex): the value, a thrown value as is, or {badrpc, {'EXIT', ...}}.
    assert_eq!(plan::rpc_reply(Ok(int(1))), int(1));
    assert_eq!(plan::rpc_reply(Err(Exception::Throw(atom("t")))), atom("t"));
    assert_eq!(
        plan::rpc_reply(Err(undef.clone())),
        tuple(vec![
            atom("badrpc"),
            tuple(vec![
                atom("EXIT"),
                tuple(vec![atom("undef"), undef_stack.clone()])
            ])
        ])
    );
    assert_eq!(
        plan::rpc_reply(Err(Exception::Exit(atom("boom")))),
        tuple(vec![
            atom("badrpc"),
            tuple(vec![atom("EXIT"), atom("boom")])
        ])
    );
    // A plain spawn: normal, or what a crashed BEAM process exits with.
    assert_eq!(plan::exit_reason(Ok(int(1))), atom("normal"));
    assert_eq!(
        plan::exit_reason(Err(undef)),
        tuple(vec![atom("undef"), undef_stack])
    );
    // A Rust error without a stack gets the function as its frame.
    let e = plan::with_stack(Exception::badarg(), "m", "f", target.args.len());
    assert_eq!(
        e,
        Exception::Error {
            reason: atom("badarg"),
            stack: vec![tuple(vec![atom("m"), atom("f"), int(1), nil()])]
        }
    );
}

#[test]
fn rex_requests_decode_once() {
    let call =
        |kind: &str, m: Term, a: Term| tuple(vec![atom(kind), m, atom("f"), a, atom("user")]);
    assert!(matches!(
        RexRequest::decode(&call("call", atom("m"), nil())),
        RexRequest::Call(Ok(_))
    ));
    assert!(matches!(
        RexRequest::decode(&call("block_call", atom("m"), nil())),
        RexRequest::Call(Ok(_))
    ));
    assert!(matches!(
        RexRequest::decode(&call("cast", atom("m"), nil())),
        RexRequest::Cast(Ok(_))
    ));
    assert_eq!(
        RexRequest::decode(&call("call", int(1), nil())),
        RexRequest::Call(Err(atom("badarg")))
    );
    assert_eq!(RexRequest::decode(&atom("stop")), RexRequest::Unknown);
}
