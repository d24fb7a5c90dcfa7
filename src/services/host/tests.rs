//! The host's sans-IO parts (announcements, keeper decisions) and its
//! driver on an offline node, against a stand-in `erl_quorum` that records
//! what the host and its keepers send and answers as a serving node would.

use super::announce::{Announcer, RETRY};
use super::decide::{after_exit, keeps_child, AfterExit, Rerequests, PAUSE_MS, RETRY_FOR};
use super::keeper::rust_service;
use super::*;
use crate::process::{spawn_server, CallError, CallReply, Caller, GenServer, Mail, Process};
use crate::services::protocol::{HostMsg, Request, Start};
use crate::services::registry::{RegistryError, StartError, Started};
use crate::term::{atom, binary, list, string, tuple, Term};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

fn pid(n: u32) -> Pid {
    Pid::new("rust@host", n, 0, 1)
}

#[test]
fn announcements_retry_until_answered_and_again_after_a_down() {
    let t0 = Instant::now();
    let nodes = vec!["a@h".to_owned(), "b@h".to_owned()];
    let mut a = Announcer::new(&nodes, t0);
    assert_eq!(a.next_due(), Some(t0));
    assert_eq!(a.due(t0), nodes);
    // In flight: nothing due until answered.
    assert_eq!(a.next_due(), None);
    assert!(a.due(t0 + RETRY * 10).is_empty());
    a.answered("a@h", true, t0);
    a.answered("b@h", false, t0);
    assert_eq!(a.known(), vec!["a@h"]);
    assert_eq!(a.next_due(), Some(t0 + RETRY));
    assert!(a.due(t0 + RETRY / 2).is_empty());
    assert_eq!(a.due(t0 + RETRY), vec!["b@h".to_owned()]);
    // a@h's erl_quorum went down: announce again after the pause.
    let t1 = t0 + RETRY * 3;
    a.down("a@h", t1);
    assert!(a.known().is_empty());
    assert_eq!(a.due(t1 + RETRY), vec!["a@h".to_owned()]);
    // A down for a node in flight or unknown changes nothing.
    a.down("a@h", t1);
    a.down("c@h", t1);
    assert_eq!(a.next_due(), None);
}

#[test]
fn only_yes_keeps_the_child() {
    assert!(keeps_child(Some(&atom("yes"))));
    assert!(!keeps_child(Some(&atom("no"))));
    assert!(!keeps_child(Some(&atom("no_quorum"))));
    assert!(!keeps_child(None));
}

#[test]
fn only_a_lost_name_that_restarts_is_asked_for_again() {
    let name = list(vec![atom("a"), atom("b")]);
    let lost = tuple(vec![atom("name_lost"), name.clone()]);
    assert_eq!(
        after_exit(&lost, &name, Restart::Permanent),
        AfterExit::Rerequest
    );
    assert_eq!(
        after_exit(&lost, &name, Restart::Transient),
        AfterExit::Rerequest
    );
    assert_eq!(after_exit(&lost, &name, Restart::Temporary), AfterExit::End);
    // =:=, not eetf's ==: "ab" as a byte list is the list [97, 98].
    let bytes = string("ab");
    let ints = list(vec![crate::term::int(97), crate::term::int(98)]);
    let lost_bytes = tuple(vec![atom("name_lost"), bytes]);
    assert_eq!(
        after_exit(&lost_bytes, &ints, Restart::Permanent),
        AfterExit::Rerequest
    );
    // Another name lost, or any other exit: the serving node decides.
    let other = tuple(vec![atom("name_lost"), atom("other")]);
    assert_eq!(
        after_exit(&other, &name, Restart::Permanent),
        AfterExit::End
    );
    for reason in [atom("normal"), atom("killed"), atom("noconnection")] {
        assert_eq!(
            after_exit(&reason, &name, Restart::Permanent),
            AfterExit::End
        );
    }
}

#[test]
fn rerequests_retry_no_quorum_no_host_and_unreachable_nodes_for_a_minute() {
    let t0 = Instant::now();
    let run = Rerequests::new(t0);
    let retried = [
        Err(StartError::NoQuorum),
        Err(StartError::NoHost),
        Err(StartError::Registry(RegistryError::Call(
            CallError::NoConnection,
        ))),
    ];
    for reply in &retried {
        let pause = run
            .after(reply, t0 + Duration::from_secs(1))
            .expect("retried");
        let ms = pause.as_millis() as u64;
        assert!(PAUSE_MS.contains(&ms), "{ms} ms");
        assert_eq!(run.after(reply, t0 + RETRY_FOR), None);
    }
    let settled = [
        Ok(Started::Started(pid(1))),
        Ok(Started::AlreadyStarted(pid(1))),
        Ok(Started::Conflict(pid(1))),
        Err(StartError::StartFailed(atom("ignore"))),
        Err(StartError::Registry(RegistryError::Reply(atom("what")))),
    ];
    for reply in &settled {
        assert_eq!(run.after(reply, t0), None, "{reply:?}");
    }
}

#[test]
fn only_rust_starts_with_a_utf8_service_name_a_rust_service() {
    assert_eq!(
        rust_service(&Start::rust("counter")),
        Ok("counter".to_owned())
    );
    let beam = Start::Beam(atom("m"));
    assert_eq!(
        rust_service(&beam),
        Err(tuple(vec![atom("badarg"), beam.encode()]))
    );
    assert_eq!(
        rust_service(&Start::Rust(vec![0xff])),
        Err(tuple(vec![atom("undefined_service"), binary(vec![0xff])]))
    );
}

/// Stands in for a serving node's `erl_quorum`: records every call and
/// answers `started` with `yes` or `no`, `start_name` with `no_quorum`
/// (so a keeper keeps asking), `whereis_name` with `undefined` (nothing is
/// held), anything else with `ok`.
struct FakeServing {
    seen: Arc<Mutex<Vec<Term>>>,
    started: Term,
}

impl GenServer for FakeServing {
    async fn handle_call(&mut self, request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        self.seen.lock().unwrap().push(request.clone());
        let reply = match Request::decode(&request) {
            Ok(Request::Started { .. }) => self.started.clone(),
            Ok(Request::StartName { .. }) => atom("no_quorum"),
            Ok(Request::WhereisName { .. }) => atom("undefined"),
            _ => atom("ok"),
        };
        CallReply::Reply(reply)
    }
}

/// A child that does nothing but live.
struct Idle;

impl GenServer for Idle {
    async fn handle_call(&mut self, request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        CallReply::Reply(request)
    }
}

struct Setup {
    node: Node,
    seen: Arc<Mutex<Vec<Term>>>,
    children: Arc<Mutex<Vec<Pid>>>,
    host: Host,
    me: Process,
}

/// An offline node with a stand-in `erl_quorum` answering `started` with
/// `started`, and a host providing `idle` (its children are kept in
/// `children`), `failing` (`{error, nope}`) and `panicking`.
async fn setup(started: &str) -> Setup {
    let node = Node::offline("host_test@localhost");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fake = FakeServing {
        seen: seen.clone(),
        started: atom(started),
    };
    spawn_server(&node, Some("erl_quorum"), fake).unwrap();
    let children = Arc::new(Mutex::new(Vec::new()));
    let kept = children.clone();
    let host = Host::builder(&node)
        .provide("idle", move |start| {
            let child = spawn_server(start.node(), None, Idle).map_err(|_| atom("register"))?;
            kept.lock().unwrap().push(child.clone());
            Ok(child)
        })
        .provide("failing", |_| Err(tuple(vec![atom("error"), atom("nope")])))
        .provide("panicking", |_| panic!("boom"))
        .start()
        .unwrap();
    let me = node.spawn_process();
    Setup {
        node,
        seen,
        children,
        host,
        me,
    }
}

impl Setup {
    /// Waits (up to 2 s) for a call the stand-in got that `pick` accepts.
    async fn seen(&self, what: &str, pick: impl Fn(&Request) -> bool) -> Request {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let found = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .filter_map(|t| Request::decode(t).ok())
                .find(|r| pick(r));
            if let Some(r) = found {
                return r;
            }
            assert!(Instant::now() < deadline, "no {what} call");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn order(&self, id: u64, service: &str, restart: Restart) {
        let order = HostMsg::Start {
            node: self.node.name().to_owned(),
            id,
            name: tuple(vec![atom("n"), crate::term::int(id as i64)]),
            start: Start::rust(service),
            restart: restart.into(),
        };
        self.me.send(HOST_NAME, order.encode());
    }
}

#[tokio::test]
async fn the_host_announces_itself_and_again_after_the_node_restarts() {
    let s = setup("yes").await;
    let host = s.host.pid().clone();
    let is_host = |r: &Request| matches!(r, Request::Host { pid, .. } if *pid == host);
    s.seen("host", is_host).await;
    assert_eq!(s.host.services(), vec!["failing", "idle", "panicking"]);
    // The serving process goes and comes back: the host announces again.
    let old = s.node.whereis("erl_quorum").unwrap();
    s.seen.lock().unwrap().clear();
    s.me.exit_signal(&old, atom("kill"));
    let fake = FakeServing {
        seen: s.seen.clone(),
        started: atom("yes"),
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    spawn_server(&s.node, Some("erl_quorum"), fake).unwrap();
    s.seen("host again", is_host).await;
}

#[tokio::test]
async fn failed_starts_are_reported_and_the_host_lives_on() {
    let s = setup("yes").await;
    s.order(1, "nosuch", Restart::Temporary);
    s.order(2, "failing", Restart::Temporary);
    s.order(3, "panicking", Restart::Permanent);
    let failed =
        |id: u64| move |r: &Request| matches!(r, Request::StartFailed { id: i, .. } if *i == id);
    let reason = |r: Request| match r {
        Request::StartFailed { reason, .. } => reason,
        _ => unreachable!(),
    };
    assert_eq!(
        reason(s.seen("start_failed 1", failed(1)).await),
        tuple(vec![atom("undefined_service"), binary("nosuch")])
    );
    assert_eq!(
        reason(s.seen("start_failed 2", failed(2)).await),
        tuple(vec![atom("error"), atom("nope")])
    );
    assert_eq!(
        reason(s.seen("start_failed 3", failed(3)).await),
        tuple(vec![atom("panic"), binary("boom")])
    );
    // The host still serves.
    s.order(4, "idle", Restart::Temporary);
    s.seen("started 4", |r| matches!(r, Request::Started { id: 4, .. }))
        .await;
}

#[tokio::test]
async fn a_child_the_node_does_not_take_is_killed() {
    let mut s = setup("no").await;
    s.order(7, "idle", Restart::Permanent);
    let started = s
        .seen("started", |r| matches!(r, Request::Started { .. }))
        .await;
    let Request::Started { pid: child, .. } = started else {
        unreachable!()
    };
    assert_eq!(s.children.lock().unwrap().clone(), vec![child.clone()]);
    let watch = s.me.monitor(&child);
    match s.me.recv_timeout(Duration::from_secs(2)).await.unwrap() {
        Some(Mail::Down {
            reference, reason, ..
        }) if reference == watch => assert!(
            crate::term::is_atom(&reason, "killed") || crate::term::is_atom(&reason, "noproc"),
            "{reason}"
        ),
        other => panic!("the child lives on: {other:?}"),
    }
}

#[tokio::test]
async fn a_kept_child_that_lost_its_name_is_asked_for_again_with_this_host() {
    let s = setup("yes").await;
    s.order(5, "idle", Restart::Permanent);
    s.order(6, "idle", Restart::Temporary);
    let child_of = |id: u64| {
        let s = &s;
        async move {
            match s
                .seen(
                    "started",
                    |r| matches!(r, Request::Started { id: i, .. } if *i == id),
                )
                .await
            {
                Request::Started { pid, .. } => pid,
                _ => unreachable!(),
            }
        }
    };
    let (permanent, temporary) = (child_of(5).await, child_of(6).await);
    for (child, id) in [(&permanent, 5), (&temporary, 6)] {
        let name = tuple(vec![atom("n"), crate::term::int(id)]);
        s.me.exit_signal(child, tuple(vec![atom("name_lost"), name]));
    }
    let again = s
        .seen("start_name", |r| matches!(r, Request::StartName { .. }))
        .await;
    let Request::StartName {
        name,
        start,
        restart,
        host,
        ..
    } = again
    else {
        unreachable!()
    };
    assert_eq!(name, tuple(vec![atom("n"), crate::term::int(5)]));
    assert_eq!(start, Start::rust("idle"));
    assert_eq!(restart, Restart::Permanent.into());
    assert_eq!(host.as_ref(), Some(s.host.pid()));
    // no_quorum is retried (after 100-300 ms); the temporary one never asks.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let asks: Vec<Term> = s
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|t| match Request::decode(t) {
            Ok(Request::StartName { name, .. }) => Some(name),
            _ => None,
        })
        .collect();
    assert!(asks.len() >= 2, "{asks:?}");
    assert!(asks
        .iter()
        .all(|n| *n == tuple(vec![atom("n"), crate::term::int(5)])));
}

#[tokio::test]
async fn a_declared_singleton_not_held_is_asked_for_at_every_check() {
    let s = setup("yes").await;
    let name = atom("kept");
    s.host.keep(name.clone(), "idle", Restart::Permanent);
    s.seen(
        "whereis_name",
        |r| matches!(r, Request::WhereisName { name: n } if *n == name),
    )
    .await;
    let again = s
        .seen("start_name", |r| matches!(r, Request::StartName { .. }))
        .await;
    let Request::StartName {
        name: asked,
        start,
        restart,
        host,
        ..
    } = again
    else {
        unreachable!()
    };
    assert_eq!(asked, name);
    assert_eq!(start, Start::rust("idle"));
    assert_eq!(restart, Restart::Permanent.into());
    assert_eq!(host.as_ref(), Some(s.host.pid()));
    // no_quorum is retried at the next check (every 500-1000 ms), one
    // check at a time: within 2.2 s, two to four requests.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let asks = s
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|t| matches!(Request::decode(t), Ok(Request::StartName { .. })))
        .count();
    assert!((2..=4).contains(&asks), "{asks} start_name requests");
}
