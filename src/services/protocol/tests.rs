//! Round trips of every shape, and malformed input of each.

use super::notices::NoticeError;
use super::peer::PEER_VERSION;
use super::*;
use crate::services::slots::Kind;
use crate::term::{atom, binary, int, list, tuple, Pid, Term};

fn pid(n: u32) -> Pid {
    Pid::new("beam@host", n, 0, 1)
}

fn requests() -> Vec<Request> {
    vec![
        Request::Lock {
            key: atom("k"),
            owner: pid(1),
            block: true,
            fencing: false,
        },
        Request::Lock {
            key: tuple(vec![atom("k"), int(2)]),
            owner: pid(1),
            block: false,
            fencing: false,
        },
        Request::WhereisLock { key: atom("k") },
        Request::RegisterName {
            name: binary(b"n".to_vec()),
            pid: pid(2),
            meta: None,
        },
        Request::UnregisterName { name: atom("n") },
        Request::UnregisterNameHere { name: atom("n") },
        Request::WhereisName { name: atom("n") },
        Request::Subscribe { subscriber: pid(3) },
        Request::SubscribePeer {
            subscriber: pid(4),
            version: 1,
        },
        Request::subscribe_peer(pid(4)),
        Request::Keepalive,
        Request::Status,
        Request::ShardOf {
            kind: Kind::Name,
            key: atom("k"),
        },
    ]
}

#[test]
fn every_request_round_trips() {
    for request in requests() {
        assert_eq!(Request::decode(&request.encode()), Ok(request.clone()));
    }
}

#[test]
fn the_wire_shapes_stay_those_of_protocol_md() {
    let lock = Request::Lock {
        key: atom("k"),
        owner: pid(1),
        block: true,
        fencing: false,
    };
    assert_eq!(
        lock.encode(),
        tuple(vec![
            atom("lock"),
            atom("k"),
            Term::from(pid(1)),
            atom("true")
        ])
    );
    assert_eq!(
        Request::subscribe_peer(pid(4)).encode(),
        tuple(vec![
            atom("subscribe_peer"),
            Term::from(pid(4)),
            int(i64::from(PEER_VERSION))
        ])
    );
    assert_eq!(
        Reply::Redirect("b@h".into()).encode(),
        tuple(vec![atom("erl_quorum_redirect"), atom("b@h")])
    );
}

#[test]
fn malformed_requests_are_refused_with_their_otp_error() {
    let me = Term::from(pid(1));
    let unknown = [
        tuple(vec![atom("lock"), atom("k")]),
        tuple(vec![atom("lock"), atom("k"), me.clone()]),
        tuple(vec![
            atom("lock"),
            atom("k"),
            me.clone(),
            atom("true"),
            list(vec![]),
            atom("x"),
        ]),
        tuple(vec![atom("lock"), atom("k"), atom("notapid"), atom("true")]),
        tuple(vec![
            atom("lock"),
            atom("k"),
            list(vec![me.clone()]),
            atom("true"),
        ]),
        tuple(vec![atom("register_name"), atom("n")]),
        tuple(vec![atom("register_name"), atom("n"), atom("notapid")]),
        tuple(vec![atom("unregister_name")]),
        tuple(vec![atom("whereis_lock"), atom("k"), atom("x")]),
        tuple(vec![atom("subscribe"), atom("notapid")]),
        tuple(vec![atom("subscribe_peer"), atom("notapid")]),
        tuple(vec![atom("subscribe_peer"), me.clone(), atom("two")]),
        tuple(vec![atom("keepalive")]),
        tuple(vec![
            binary(b"lock".to_vec()),
            atom("k"),
            me.clone(),
            atom("true"),
        ]),
        tuple(vec![]),
        atom("lock"),
        atom("status_x"),
        list(vec![]),
        int(42),
        me.clone(),
    ];
    for request in unknown {
        let refused = Request::decode(&request).unwrap_err();
        assert_eq!(refused, BadRequest::Unknown(request.clone()));
        assert_eq!(
            refused.encode(),
            tuple(vec![
                atom("error"),
                tuple(vec![atom("unknown_request"), request])
            ])
        );
    }
    // `shard_of`: a kind of key, `lock` or `name`.
    for kind in [atom("locks"), int(0)] {
        let request = tuple(vec![atom("shard_of"), kind, atom("k")]);
        assert_eq!(
            Request::decode(&request).unwrap_err().encode(),
            tuple(vec![atom("error"), tuple(vec![atom("badarg"), request])])
        );
    }
    for block in [atom("maybe"), int(1)] {
        let request = tuple(vec![atom("lock"), atom("k"), me.clone(), block]);
        assert_eq!(
            Request::decode(&request).unwrap_err().encode(),
            tuple(vec![atom("error"), tuple(vec![atom("badarg"), request])])
        );
    }
    // Lock options: a list, at most 16 long; `{fencing, X}` a boolean.
    let too_many = list((0..17).map(|_| atom("x")).collect());
    let bad_opts = [
        atom("fencing"),
        tuple(vec![atom("fencing"), atom("true")]),
        list(vec![tuple(vec![atom("fencing"), atom("yes")])]),
        too_many,
    ];
    for opts in bad_opts {
        let request = tuple(vec![
            atom("lock"),
            atom("k"),
            me.clone(),
            atom("true"),
            opts,
        ]);
        assert_eq!(
            Request::decode(&request).unwrap_err().encode(),
            tuple(vec![atom("error"), tuple(vec![atom("badarg"), request])])
        );
    }
}

#[test]
fn a_lock_asks_for_its_fencing_token_with_an_option() {
    let me = Term::from(pid(1));
    let lock5 = |opts: Term| {
        tuple(vec![
            atom("lock"),
            atom("k"),
            me.clone(),
            atom("false"),
            opts,
        ])
    };
    let fencing = |term: &Term| match Request::decode(term) {
        Ok(Request::Lock { fencing, block, .. }) => {
            assert!(!block);
            fencing
        }
        other => panic!("{other:?}"),
    };
    assert!(fencing(&lock5(list(vec![atom("fencing")]))));
    let on = tuple(vec![atom("fencing"), atom("true")]);
    let off = tuple(vec![atom("fencing"), atom("false")]);
    assert!(fencing(&lock5(list(vec![
        atom("later_option"),
        on.clone()
    ]))));
    // The first occurrence wins; unknown options are ignored.
    assert!(!fencing(&lock5(list(vec![off.clone(), on.clone()]))));
    assert!(!fencing(&lock5(list(vec![]))));
    assert!(!fencing(&lock5(list(vec![atom("later_option")]))));
    assert!(!fencing(&lock5(Term::from(eetf::ByteList::from(vec![
        1u8, 2
    ])))));
    // Encoded as the 5-tuple only when asked; both decode back.
    let asked = Request::Lock {
        key: atom("k"),
        owner: pid(1),
        block: false,
        fencing: true,
    };
    assert_eq!(asked.encode(), lock5(list(vec![atom("fencing")])));
    assert_eq!(Request::decode(&asked.encode()), Ok(asked.clone()));
    // `{acquired, Token}`, a positive integer, only to a lock.
    let reply = Reply::Fenced(1 << 61);
    assert_eq!(reply.encode(), tuple(vec![atom("acquired"), int(1 << 61)]));
    assert_eq!(Reply::decode(&asked, &reply.encode()), Ok(reply));
    assert_eq!(
        Reply::decode(&asked, &atom("acquired")),
        Ok(Reply::Acquired)
    );
    for bad in [int(0), int(-3), atom("x")] {
        let term = tuple(vec![atom("acquired"), bad]);
        assert!(Reply::decode(&asked, &term).is_err());
    }
    let name = Request::WhereisName { name: atom("k") };
    assert!(Reply::decode(&name, &Reply::Fenced(5).encode()).is_err());
}

#[test]
fn an_unknown_peer_version_is_refused() {
    for version in [0, 3, -1, 1 << 40] {
        let request = tuple(vec![
            atom("subscribe_peer"),
            Term::from(pid(1)),
            int(version),
        ]);
        let refused = Request::decode(&request).unwrap_err();
        assert_eq!(refused, BadRequest::UnsupportedVersion { version });
        let reply = Reply::Refused(refused);
        let back = Reply::decode(&Request::subscribe_peer(pid(1)), &reply.encode());
        assert_eq!(back, Ok(reply));
        let batch = tuple(vec![
            atom("rust_registry_peer"),
            atom("a@h"),
            int(version),
            list(vec![]),
        ]);
        assert_eq!(
            PeerMsg::decode(&batch),
            Err(PeerMsgError::UnsupportedVersion(version))
        );
    }
}

#[test]
fn every_reply_round_trips_for_its_request() {
    let lock = &requests()[0];
    let register = &requests()[3];
    let cases = [
        (lock, Reply::Acquired),
        (lock, Reply::HeldBy(pid(9))),
        (lock, Reply::NoQuorum),
        (lock, Reply::KeyTooDeep),
        (lock, Reply::Redirect("b@h".into())),
        (lock, Reply::Refused(BadRequest::Badarg(atom("x")))),
        (register, Reply::Yes),
        (register, Reply::No),
        (&requests()[4], Reply::Ok),
        (&requests()[4], Reply::ForwardFailed("c@h".into())),
        (&requests()[5], Reply::Ok),
        (&requests()[6], Reply::Whereis(Some(pid(2)))),
        (&requests()[2], Reply::Whereis(None)),
        (&requests()[7], Reply::Names(vec![(atom("n"), pid(2))])),
        (
            &requests()[8],
            Reply::PeerNames {
                version: 1,
                names: vec![(atom("n"), pid(2))],
            },
        ),
        (
            &requests()[9],
            Reply::PeerNames {
                version: 2,
                names: vec![],
            },
        ),
        (&requests()[10], Reply::Valid { ms: 9000 }),
        (
            &requests()[11],
            Reply::Status(vec![("slots".into(), 3), ("epoch".into(), 0)]),
        ),
        (
            &requests()[11],
            Reply::Refused(BadRequest::Unknown(atom("x"))),
        ),
        (&requests()[12], Reply::Shard(Some(63))),
        (&requests()[12], Reply::Shard(None)),
    ];
    for (request, reply) in cases {
        assert_eq!(
            Reply::decode(request, &reply.encode()),
            Ok(reply),
            "{request:?}"
        );
    }
}

#[test]
fn a_reply_the_request_cannot_get_is_an_error() {
    let lock = &requests()[0];
    let register = &requests()[3];
    for (request, reply) in [
        (lock, atom("yes")),
        (lock, tuple(vec![atom("held_by"), atom("x")])),
        (register, atom("acquired")),
        (&requests()[6], int(1)),
        (
            &requests()[7],
            tuple(vec![atom("ok"), list(vec![atom("garbage")])]),
        ),
        (
            &requests()[9],
            tuple(vec![atom("ok"), int(7), list(vec![])]),
        ),
        (&requests()[10], tuple(vec![atom("ok"), int(-1)])),
        (&requests()[11], list(vec![atom("x")])),
        (lock, tuple(vec![atom("error"), atom("whatever")])),
    ] {
        let err = Reply::decode(request, &reply).unwrap_err();
        assert_eq!((err.op, err.reply), (request.op(), reply));
    }
    assert_eq!(Reply::no_quorum(register), Reply::No);
    assert_eq!(Reply::no_quorum(lock), Reply::NoQuorum);
}

#[test]
fn peer_batches_round_trip_in_both_versions_and_skip_bad_entries() {
    let changes = vec![
        NameChange::new(atom("a"), Some(pid(1))),
        NameChange::new(atom("b"), None),
    ];
    for version in PEER_VERSIONS {
        let msg = PeerMsg::Changes {
            from: "a@h".into(),
            version,
            changes: changes.clone(),
        };
        assert_eq!(PeerMsg::decode(&msg.encode()), Ok(msg));
    }
    let garbage = tuple(vec![
        atom("rust_registry_peer"),
        atom("a@h"),
        list(vec![
            atom("garbage"),
            tuple(vec![atom("a")]),
            tuple(vec![atom("a"), atom("b"), atom("c")]),
            tuple(vec![atom("n6"), atom("undefined")]),
            tuple(vec![atom("n6"), int(42)]),
        ]),
    ]);
    match PeerMsg::decode(&garbage) {
        Ok(PeerMsg::Changes { changes, .. }) => {
            assert_eq!(changes, vec![NameChange::new(atom("n6"), None)])
        }
        other => panic!("{other:?}"),
    }
    let bad = [
        (
            tuple(vec![atom("rust_registry_peer"), int(42), list(vec![])]),
            PeerMsgError::Malformed,
        ),
        (
            tuple(vec![atom("rust_registry_peer"), atom("a@h"), atom("x")]),
            PeerMsgError::Malformed,
        ),
        (
            tuple(vec![atom("rust_registry_peer")]),
            PeerMsgError::Malformed,
        ),
        (
            tuple(vec![
                atom("rust_registry_peer"),
                atom("a@h"),
                atom("v"),
                list(vec![]),
            ]),
            PeerMsgError::Malformed,
        ),
        (
            tuple(vec![atom("rust_registry"), atom("a@h"), list(vec![])]),
            PeerMsgError::NotPeer,
        ),
        (atom("garbage"), PeerMsgError::NotPeer),
    ];
    for (term, error) in bad {
        assert_eq!(PeerMsg::decode(&term), Err(error), "{term}");
    }
}

#[test]
fn guard_notices_and_subscriber_batches_round_trip() {
    for notice in [Notice::Owned, Notice::Released, Notice::Lost, Notice::Moved] {
        for kind in [Kind::Lock, Kind::Name] {
            let n = GuardNotice {
                notice,
                node: "a@h".into(),
                owner: pid(1),
                kind,
                key: tuple(vec![atom("k"), int(1)]),
                to: (notice == Notice::Moved).then(|| "b@h".to_owned()),
            };
            assert_eq!(GuardNotice::decode(&n.encode()), Ok(n));
        }
    }
    let o = Term::from(pid(1));
    for bad in [
        tuple(vec![atom("eq_owned"), atom("a@h"), o.clone(), atom("lock")]),
        tuple(vec![
            atom("eq_gone"),
            atom("a@h"),
            o.clone(),
            atom("lock"),
            atom("k"),
        ]),
        tuple(vec![
            atom("eq_owned"),
            int(1),
            o.clone(),
            atom("lock"),
            atom("k"),
        ]),
        tuple(vec![
            atom("eq_owned"),
            atom("a@h"),
            atom("x"),
            atom("lock"),
            atom("k"),
        ]),
        tuple(vec![
            atom("eq_owned"),
            atom("a@h"),
            o.clone(),
            atom("file"),
            atom("k"),
        ]),
        atom("eq_owned"),
    ] {
        assert_eq!(GuardNotice::decode(&bad), Err(NoticeError));
    }
    let batch = NamesChanged {
        node: "a@h".into(),
        changes: vec![NameChange::new(atom("n"), Some(pid(2)))],
    };
    assert_eq!(NamesChanged::decode(&batch.encode()), Some(batch));
    assert_eq!(NamesChanged::decode(&atom("x")), None);
    assert_eq!(
        lost_reason(Kind::Name, atom("n")),
        tuple(vec![atom("name_lost"), atom("n")])
    );
}

#[test]
fn the_masters_understand_our_requests_and_we_their_answers() {
    use crate::quorum::store::{CallOutcome, Config, Store};
    use std::time::Duration;
    let mut store = Store::new(Config::default(), 0, "m@h");
    store.mark_caught_up();
    let mut call = |request: MasterRequest| match store.call(10, &request.encode()).outcome {
        CallOutcome::Reply(reply) => MasterReply::decode(&reply),
        CallOutcome::Wait(_) => panic!("parked"),
    };
    let session = tuple(vec![atom("s"), int(1)]);
    let key = tuple(vec![atom("$erl_quorum_shard"), int(3)]);
    let value = tuple(vec![Term::from(pid(1)), session.clone()]);
    let lease = Duration::from_secs(10);
    let open = MasterRequest::Session {
        session: session.clone(),
        lease,
    };
    assert_eq!(call(open.clone()), MasterReply::Created);
    assert_eq!(call(open), MasterReply::Ok);
    let lock = |v: &Term, tag: i64| MasterRequest::LockShard {
        key: key.clone(),
        value: v.clone(),
        session: session.clone(),
        tag: int(tag),
    };
    assert_eq!(call(lock(&value, 1)), MasterReply::Ok);
    assert_eq!(call(lock(&atom("other"), 2)), MasterReply::Held);
    let repair = MasterRequest::Repair {
        key: key.clone(),
        value: value.clone(),
        session: session.clone(),
    };
    assert_eq!(call(repair), MasterReply::Ok);
    let release = MasterRequest::Release {
        key: key.clone(),
        value: value.clone(),
        tag: int(1),
    };
    assert_eq!(call(release), MasterReply::Ok);
    // `dirty_read` (sent by quorum::client::round, which the services
    // share with the locker client) is answered from the store.
    let gone = MasterReply::decode(&store.dirty_read_reply(20, &key));
    assert_eq!(gone, MasterReply::Value(None));
    assert_eq!(gone.shard_holder(), None);
    let held = MasterReply::Value(Some(value));
    assert_eq!(held.shard_holder(), Some(&pid(1)));
    let odd = tuple(vec![atom("error"), atom("already_locked")]);
    assert_eq!(MasterReply::decode(&odd), MasterReply::Other(odd.clone()));
}

#[test]
fn keys_names_and_meta_over_the_bounds_are_refused_without_echo() {
    use super::request::{MAX_NAME_BYTES, MAX_NAME_DEPTH};
    let nested = |levels: usize| (0..levels).fold(atom("n"), |t, _| tuple(vec![t]));
    let me = Term::from(pid(1));
    let too_deep = BadRequest::Badarg(tuple(vec![atom("too_deep"), int(MAX_NAME_DEPTH as i64)]));
    let too_large = BadRequest::Badarg(tuple(vec![atom("too_large"), int(MAX_NAME_BYTES as i64)]));
    let big = binary(vec![7; MAX_NAME_BYTES]);
    for (bad, why) in [(nested(MAX_NAME_DEPTH + 1), &too_deep), (big, &too_large)] {
        for request in [
            tuple(vec![atom("lock"), bad.clone(), me.clone(), atom("true")]),
            tuple(vec![atom("register_name"), bad.clone(), me.clone()]),
            tuple(vec![
                atom("register_name"),
                atom("n"),
                me.clone(),
                bad.clone(),
            ]),
        ] {
            let refused = Request::decode(&request).unwrap_err();
            assert_eq!(&refused, why);
            // What the caller gets is small whatever the request held.
            let mut bytes = Vec::new();
            crate::dist::etf::encode_term(&refused.encode(), &mut bytes).unwrap();
            assert!(bytes.len() < 64, "{}", bytes.len());
        }
    }
    // At the bounds: accepted. Lookups are not bounded (they hold nothing).
    let deepest = nested(MAX_NAME_DEPTH);
    let reg = tuple(vec![atom("register_name"), deepest.clone(), me.clone()]);
    assert!(Request::decode(&reg).is_ok());
    let whereis = tuple(vec![atom("whereis_name"), nested(100)]);
    assert!(Request::decode(&whereis).is_ok());
}
