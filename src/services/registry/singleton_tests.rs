//! The singleton calls of [`Registry`] against a stand-in `erl_quorum` on
//! an offline node: every reply maps to its typed result, requests carry
//! their options, and a redirect to a node that cannot be reached is no
//! quorum.

use super::*;
use crate::node::Node;
use crate::process::{spawn_server, CallReply, Caller, GenServer};
use crate::services::protocol::{self, Request};
use crate::term::{atom, int, tuple};
use std::sync::{Arc, Mutex};

/// Answers each request by the atom in its name (`started`, `conflict`,
/// ...), and records what it was asked.
struct Scripted {
    holder: Pid,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl GenServer for Scripted {
    async fn handle_call(&mut self, request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        let request = Request::decode(&request).expect("a request");
        self.seen.lock().unwrap().push(request.clone());
        let holder = Term::from(self.holder.clone());
        let pick = |name: &Term| crate::term::as_atom(name).unwrap_or("").to_owned();
        let reply = match &request {
            Request::StartName { name, .. } => match pick(name).as_str() {
                "redirect" => tuple(vec![atom("erl_quorum_redirect"), atom("gone@nowhere")]),
                "failed" => tuple(vec![
                    atom("error"),
                    tuple(vec![atom("start_failed"), atom("boom")]),
                ]),
                "no_host" => tuple(vec![atom("error"), atom("no_host")]),
                "no_quorum" => atom("no_quorum"),
                "garbage" => int(42),
                tag => tuple(vec![atom(tag), holder]),
            },
            Request::WhereisMeta { name } => match pick(name).as_str() {
                "with_meta" => tuple(vec![holder, atom("blue")]),
                "without_meta" => tuple(vec![holder, atom("undefined")]),
                _ => atom("undefined"),
            },
            Request::WhereisName { name } if pick(name) == "running" => holder,
            Request::WhereisName { .. } => atom("undefined"),
            Request::RegisterName { .. } => atom("yes"),
            _ => atom("ok"),
        };
        CallReply::Reply(reply)
    }
}

/// Answers every call with `{echo, Request}`.
struct Echo;

impl GenServer for Echo {
    async fn handle_call(&mut self, request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        CallReply::Reply(tuple(vec![atom("echo"), request]))
    }
}

fn setup() -> (Registry, Pid, Arc<Mutex<Vec<Request>>>) {
    let node = Node::offline("registry_test@localhost");
    let holder = spawn_server(&node, None, Echo).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let scripted = Scripted {
        holder: holder.clone(),
        seen: seen.clone(),
    };
    spawn_server(&node, Some("erl_quorum"), scripted).unwrap();
    (Registry::new(node.spawn_process()), holder, seen)
}

#[tokio::test]
async fn start_name_replies_map_to_typed_results() {
    let (mut registry, holder, seen) = setup();
    let mut results = Vec::new();
    for name in [
        "started",
        "already_started",
        "conflict",
        "failed",
        "no_host",
        "no_quorum",
        "garbage",
        "redirect",
    ] {
        let spec = StartSpec::Rust("svc".into());
        let options = StartOptions::default();
        results.push(registry.start_name(atom(name), spec, options).await);
    }
    assert_eq!(
        results,
        vec![
            Ok(Started::Started(holder.clone())),
            Ok(Started::AlreadyStarted(holder.clone())),
            Ok(Started::Conflict(holder.clone())),
            Err(StartError::StartFailed(atom("boom"))),
            Err(StartError::NoHost),
            Err(StartError::NoQuorum),
            Err(StartError::Registry(RegistryError::Reply(int(42)))),
            // The node redirected to cannot be reached: no quorum yet.
            Err(StartError::NoQuorum),
        ]
    );
    assert!(seen.lock().unwrap().iter().all(|r| matches!(
        r,
        Request::StartName { start, restart, host: None, .. }
            if *start == protocol::Start::rust("svc") && *restart == protocol::Restart::Temporary
    )));
}

#[tokio::test]
async fn singleton_options_and_meta_go_on_the_wire() {
    let (mut registry, holder, seen) = setup();
    let singleton = Singleton::beam(atom("started"), atom("my_server"))
        .restart(Restart::Transient)
        .meta(atom("blue"));
    assert_eq!(registry.singleton(&singleton).await, Ok(holder.clone()));
    let conflict = Singleton::rust(atom("conflict"), "svc");
    assert_eq!(
        registry.singleton(&conflict).await,
        Err(StartError::Conflict(holder.clone()))
    );
    assert_eq!(
        registry
            .register_with_meta(atom("n"), &holder, int(7))
            .await,
        Ok(true)
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        Request::StartName {
            name: atom("started"),
            start: protocol::Start::Beam(atom("my_server")),
            restart: protocol::Restart::Transient,
            meta: atom("blue"),
            host: None,
        }
    );
    assert_eq!(
        seen[2],
        Request::RegisterName {
            name: atom("n"),
            pid: holder,
            meta: Some(int(7)),
        }
    );
}

#[tokio::test]
async fn whereis_meta_gives_none_for_undefined() {
    let (mut registry, holder, _) = setup();
    assert_eq!(
        registry.whereis_meta(atom("with_meta")).await,
        Ok(Some((holder.clone(), Some(atom("blue")))))
    );
    assert_eq!(
        registry.whereis_meta(atom("without_meta")).await,
        Ok(Some((holder, None)))
    );
    assert_eq!(registry.whereis_meta(atom("nobody")).await, Ok(None));
}

#[tokio::test]
async fn call_singleton_calls_the_holder_and_starts_it_when_none_runs() {
    let (mut registry, _, seen) = setup();
    // `running` is found by whereis: no start round.
    let running = Singleton::rust(atom("running"), "svc");
    let reply = registry
        .call_singleton(&running, atom("hi"), Duration::from_secs(1))
        .await;
    assert_eq!(reply, Ok(tuple(vec![atom("echo"), atom("hi")])));
    assert!(!seen
        .lock()
        .unwrap()
        .iter()
        .any(|r| matches!(r, Request::StartName { .. })));
    // `started` is not: started first, then called.
    let started = Singleton::rust(atom("started"), "svc");
    let reply = registry
        .call_singleton(&started, atom("hi"), Duration::from_secs(1))
        .await;
    assert_eq!(reply, Ok(tuple(vec![atom("echo"), atom("hi")])));
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|r| matches!(r, Request::StartName { name, .. } if *name == atom("started"))));
    // A failed start is the call's error.
    let failed = Singleton::rust(atom("failed"), "svc");
    assert_eq!(
        registry
            .call_singleton(&failed, atom("hi"), Duration::from_secs(1))
            .await,
        Err(StartError::StartFailed(atom("boom")))
    );
}
