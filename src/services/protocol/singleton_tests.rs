//! Round trips and malformed input of the supervised-name shapes.

use super::singletons::*;
use super::*;
use crate::term::{atom, binary, int, list, tuple, Map, Pid, Term};
use std::collections::HashMap;

fn pid(n: u32) -> Pid {
    Pid::new("beam@host", n, 0, 1)
}

fn mfa() -> Term {
    tuple(vec![atom("m"), atom("f"), list(vec![int(1)])])
}

fn map(pairs: Vec<(Term, Term)>) -> Term {
    Term::from(Map::from(pairs.into_iter().collect::<HashMap<_, _>>()))
}

fn requests() -> Vec<Request> {
    vec![
        Request::StartName {
            name: atom("n"),
            start: Start::Beam(mfa()),
            restart: Restart::Permanent,
            meta: tuple(vec![atom("m"), int(1)]),
            host: Some(pid(7)),
        },
        Request::start_name(atom("n"), Start::rust("counter"), Restart::Transient),
        Request::RegisterName {
            name: atom("n"),
            pid: pid(2),
            meta: Some(atom("meta")),
        },
        Request::WhereisMeta { name: atom("n") },
        Request::Host {
            pid: pid(3),
            kind: HostKind::Beam,
        },
        Request::Host {
            pid: pid(3),
            kind: HostKind::Rust,
        },
        Request::Started {
            id: 12,
            pid: pid(4),
        },
        Request::StartFailed {
            id: 0,
            reason: tuple(vec![atom("error"), atom("boom")]),
        },
    ]
}

#[test]
fn every_singleton_request_round_trips() {
    for request in requests() {
        assert_eq!(Request::decode(&request.encode()), Ok(request.clone()));
    }
}

#[test]
fn start_name_reads_the_wire_shape_of_protocol_md() {
    let me = Term::from(pid(7));
    let wire = tuple(vec![
        atom("start_name"),
        atom("n"),
        tuple(vec![atom("beam"), mfa()]),
        map(vec![
            (atom("restart"), atom("permanent")),
            (atom("host"), me),
            (atom("future_option"), int(1)),
        ]),
    ]);
    assert_eq!(
        Request::decode(&wire),
        Ok(Request::StartName {
            name: atom("n"),
            start: Start::Beam(mfa()),
            restart: Restart::Permanent,
            meta: atom("undefined"),
            host: Some(pid(7)),
        })
    );
    // An empty map: every default.
    let bare = tuple(vec![
        atom("start_name"),
        atom("n"),
        tuple(vec![atom("rust"), binary(b"svc".to_vec())]),
        map(vec![]),
    ]);
    assert_eq!(
        Request::decode(&bare),
        Ok(Request::start_name(
            atom("n"),
            Start::rust("svc"),
            Restart::Temporary
        ))
    );
    let register = tuple(vec![
        atom("register_name"),
        atom("n"),
        Term::from(pid(2)),
        atom("m"),
    ]);
    assert_eq!(Request::decode(&register).unwrap().encode(), register);
}

#[test]
fn malformed_singleton_requests_are_badarg() {
    let me = Term::from(pid(1));
    let start = tuple(vec![atom("beam"), mfa()]);
    let long = tuple(vec![atom("rust"), binary(vec![b'x'; MAX_SERVICE_LEN + 1])]);
    let badarg = [
        tuple(vec![atom("start_name"), atom("n"), start.clone()]),
        tuple(vec![
            atom("start_name"),
            atom("n"),
            atom("mfa"),
            map(vec![]),
        ]),
        tuple(vec![atom("start_name"), atom("n"), long, map(vec![])]),
        tuple(vec![
            atom("start_name"),
            atom("n"),
            tuple(vec![atom("rust"), atom("not_a_binary")]),
            map(vec![]),
        ]),
        tuple(vec![
            atom("start_name"),
            atom("n"),
            start.clone(),
            list(vec![]),
        ]),
        tuple(vec![
            atom("start_name"),
            atom("n"),
            start.clone(),
            map(vec![(atom("restart"), atom("sometimes"))]),
        ]),
        tuple(vec![
            atom("start_name"),
            atom("n"),
            start,
            map(vec![(atom("host"), atom("here"))]),
        ]),
        tuple(vec![atom("host"), me.clone(), atom("python")]),
        tuple(vec![atom("host"), atom("nopid"), atom("beam")]),
        tuple(vec![atom("started"), int(-1), me.clone()]),
        tuple(vec![atom("started"), int(1), atom("nopid")]),
        tuple(vec![atom("started"), int(1)]),
        tuple(vec![atom("start_failed"), atom("x"), atom("boom")]),
    ];
    for request in badarg {
        assert_eq!(
            Request::decode(&request),
            Err(BadRequest::Badarg(request.clone())),
            "{request:?}"
        );
    }
    for request in [
        tuple(vec![atom("whereis_meta")]),
        tuple(vec![
            atom("register_name"),
            atom("n"),
            atom("nopid"),
            atom("m"),
        ]),
    ] {
        assert_eq!(
            Request::decode(&request),
            Err(BadRequest::Unknown(request.clone()))
        );
    }
}

#[test]
fn every_singleton_reply_round_trips_for_its_request() {
    let rs = requests();
    let (start, register, whereis, host, started, failed) =
        (&rs[0], &rs[2], &rs[3], &rs[4], &rs[6], &rs[7]);
    let cases = [
        (start, Reply::Started(pid(1))),
        (start, Reply::AlreadyStarted(pid(1))),
        (start, Reply::Conflict(pid(1))),
        (start, Reply::StartFailed(atom("timeout"))),
        (
            start,
            Reply::StartFailed(tuple(vec![atom("exit"), atom("boom")])),
        ),
        (start, Reply::NoHost),
        (start, Reply::NoQuorum),
        (start, Reply::Redirect("b@h".into())),
        (start, Reply::Refused(BadRequest::Badarg(atom("x")))),
        (register, Reply::Yes),
        (register, Reply::No),
        (whereis, Reply::WhereisMeta(None)),
        (whereis, Reply::WhereisMeta(Some((pid(2), atom("m"))))),
        (host, Reply::Ok),
        (started, Reply::Yes),
        (started, Reply::No),
        (failed, Reply::Ok),
    ];
    for (request, reply) in cases {
        assert_eq!(
            Reply::decode(request, &reply.encode()),
            Ok(reply),
            "{request:?}"
        );
    }
    assert_eq!(
        Reply::StartFailed(atom("ignore")).encode(),
        tuple(vec![
            atom("error"),
            tuple(vec![atom("start_failed"), atom("ignore")])
        ])
    );
    assert_eq!(
        Reply::NoHost.encode(),
        tuple(vec![atom("error"), atom("no_host")])
    );
    assert_eq!(Reply::no_quorum(start), Reply::NoQuorum);
    assert_eq!(Reply::no_quorum(whereis), Reply::WhereisMeta(None));
    for (request, reply) in [
        (start, atom("yes")),
        (start, tuple(vec![atom("started"), atom("nopid")])),
        (start, tuple(vec![atom("running"), Term::from(pid(1))])),
        (whereis, Term::from(pid(1))),
        (whereis, tuple(vec![atom("x"), atom("m")])),
        (host, atom("yes")),
        (started, atom("ok")),
    ] {
        let err = Reply::decode(request, &reply).unwrap_err();
        assert_eq!((err.op, err.reply), (request.op(), reply));
    }
}

#[test]
fn the_host_message_round_trips_and_refuses_other_shapes() {
    let msg = HostMsg::Start {
        node: "rust1@h".into(),
        id: 42,
        name: tuple(vec![atom("$eq_scope"), atom("paxtor"), atom("k")]),
        start: Start::Beam(mfa()),
        restart: Restart::Permanent,
    };
    assert_eq!(
        msg.encode(),
        tuple(vec![
            atom("eq_start"),
            atom("rust1@h"),
            int(42),
            tuple(vec![atom("$eq_scope"), atom("paxtor"), atom("k")]),
            tuple(vec![atom("beam"), mfa()]),
            atom("permanent"),
        ])
    );
    assert_eq!(HostMsg::decode(&msg.encode()), Ok(msg));
    let rust = HostMsg::Start {
        node: "rust1@h".into(),
        id: 0,
        name: binary(b"n".to_vec()),
        start: Start::rust("svc"),
        restart: Restart::Temporary,
    };
    assert_eq!(HostMsg::decode(&rust.encode()), Ok(rust));
    let good = |i: usize, bad: Term| {
        let mut fields = vec![
            atom("eq_start"),
            atom("r@h"),
            int(1),
            atom("n"),
            tuple(vec![atom("beam"), mfa()]),
            atom("temporary"),
        ];
        fields[i] = bad;
        tuple(fields)
    };
    for bad in [
        good(0, atom("eq_stop")),
        good(1, binary(b"r@h".to_vec())),
        good(2, int(-3)),
        good(4, atom("mfa")),
        good(5, atom("always")),
        tuple(vec![atom("eq_start"), atom("r@h")]),
        atom("eq_start"),
    ] {
        assert_eq!(HostMsg::decode(&bad), Err(HostMsgError), "{bad:?}");
    }
}

#[test]
fn restart_types_decide_as_otp_does() {
    let crash = atom("boom");
    let clean = [
        atom("normal"),
        atom("shutdown"),
        tuple(vec![atom("shutdown"), atom("why")]),
    ];
    assert!(Restart::Permanent.restarts_after(Some(&atom("normal"))));
    assert!(Restart::Permanent.restarts_after(None));
    assert!(!Restart::Temporary.restarts_after(Some(&crash)));
    assert!(!Restart::Temporary.restarts_after(None));
    assert!(Restart::Transient.restarts_after(Some(&crash)));
    assert!(Restart::Transient.restarts_after(None));
    for reason in clean {
        assert!(
            !Restart::Transient.restarts_after(Some(&reason)),
            "{reason:?}"
        );
        assert!(is_clean_exit(&reason));
    }
    assert!(!is_clean_exit(&tuple(vec![atom("shutdown")])));
    assert_eq!(Start::Beam(mfa()).kind(), HostKind::Beam);
    assert_eq!(Start::rust("s").kind(), HostKind::Rust);
}
