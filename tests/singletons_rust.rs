//! Rust services as cluster-wide singletons, on real nodes: three Rust
//! serving nodes (locker masters, W=2, each serving `erl_quorum` with a 5 s
//! session lease and a 500 ms release margin) each run a host
//! (`services::host::Host`) providing a `counter` service, and a real `erl`
//! node runs the `erl_quorum` application against them.
//!
//! Each Rust node runs on a tokio runtime of its own, so aborting one
//! closes its connections and then ends every task of that node at once, as
//! `kill -9` ends an OS process. Every counter instance
//! records where and when it ran ([`History`]), so the tests count the
//! instances started and check that no two were alive at once.
//!
//! What each test shows:
//! - `first_use_from_three_nodes_starts_one_counter_that_keeps_its_state`:
//!   the first calls from all three Rust nodes at once start exactly one
//!   instance; the count goes on across calls from every Rust node and from
//!   the `erl` node by `{via, rust_registry, Name}`.
//! - `a_counter_whose_node_is_aborted_restarts_on_a_survivor`: the node
//!   running a permanent counter (not the one serving its name) is
//!   aborted; the serving node restarts it on another node once the lost
//!   node's hold is released. The failover time is printed.
//! - `a_counter_whose_serving_node_is_aborted_restarts_on_a_survivor`: the
//!   same when the aborted node also served the name (its record dies with
//!   it): the hosts that declared the counter (`Host::keep`) start it again
//!   on a survivor. The failover time is printed.
//! - `a_killed_counter_restarts_and_a_temporary_one_waits_for_its_next_use`:
//!   a permanent counter killed restarts (no node lost: at once); a
//!   temporary one is gone until the next use starts it.
//! - `failed_starts_are_errors_and_leave_the_name_free`: an unknown service
//!   and a factory that panics give `StartError::StartFailed`, the name
//!   stays free and the nodes serve on.

mod common;
mod quorum_support;
mod rust_node;
mod services_support;

use erl_quorum::process::{spawn_server, CallReply, Caller, GenServer};
use erl_quorum::quorum::service::{self as locker, ServiceConfig};
use erl_quorum::services::host::Host;
use erl_quorum::services::{
    self, Registry, Restart, ServicesConfig, Singleton, StartError, StartOptions, Started,
};
use erl_quorum::term::{as_int, atom, binary, int, is_atom, list_elements, tuple, Pid, Term};
use erl_quorum::{Node, Process};
use services_support::{beval, start_app_node, wait_on, Lang};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SESSION_LEASE: Duration = Duration::from_secs(5);
const MARGIN: Duration = Duration::from_millis(500);
const CALL: Duration = Duration::from_secs(5);

/// One counter instance: where it ran, and when.
#[derive(Debug, Clone)]
struct Instance {
    /// The singleton's name.
    name: Term,
    node: String,
    pid: Pid,
    /// When its factory ran.
    started: Instant,
    /// When it last served a call.
    last_call: Option<Instant>,
    /// When its server was dropped (stopped, killed, its node aborted). A
    /// killed Rust process is dead in its node's table (monitors fire, its
    /// name is released) a moment before its task gets to drop it.
    ended: Option<Instant>,
}

/// Every counter instance started in one test, on any node.
#[derive(Clone, Default)]
struct History(Arc<Mutex<Vec<Instance>>>);

impl History {
    fn instances(&self) -> Vec<Instance> {
        self.0.lock().unwrap().clone()
    }

    fn alive(&self) -> Vec<Instance> {
        self.instances()
            .into_iter()
            .filter(|i| i.ended.is_none())
            .collect()
    }

    /// Panics if two instances of one name were ever at work at once: of
    /// any two, the earlier has ended, and served its last call before the
    /// later one was started.
    fn assert_never_two(&self) {
        let all = self.instances();
        for (i, a) in all.iter().enumerate() {
            for b in all[i + 1..].iter().filter(|b| b.name == a.name) {
                let (first, second) = if a.started <= b.started {
                    (a, b)
                } else {
                    (b, a)
                };
                assert!(
                    first.ended.is_some(),
                    "two instances alive: {first:?} and {second:?}"
                );
                assert!(
                    first.last_call.is_none_or(|at| at <= second.started),
                    "the earlier instance served a call after the later one started: \
                     {first:?} and {second:?}"
                );
            }
        }
    }
}

/// The counter service: `incr` counts and answers the count, `get`
/// answers it, `stop` stops normally.
struct Counter {
    count: i64,
    history: History,
    index: usize,
}

impl GenServer for Counter {
    async fn handle_call(&mut self, request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        self.history.0.lock().unwrap()[self.index].last_call = Some(Instant::now());
        if is_atom(&request, "incr") {
            self.count += 1;
        }
        if is_atom(&request, "stop") {
            return CallReply::Stop {
                reason: atom("normal"),
                reply: Some(atom("ok")),
            };
        }
        CallReply::Reply(int(self.count))
    }
}

impl Drop for Counter {
    /// Runs however the instance ends: stopped, killed, or its node's
    /// runtime aborted.
    fn drop(&mut self) {
        let mut all = self.history.0.lock().unwrap();
        all[self.index].ended.get_or_insert_with(Instant::now);
    }
}

/// One node's host, announced to `serving`: `counter` starts a counter,
/// `panicking` panics.
fn provide_counters(node: &Node, serving: &[String], history: History) -> Host {
    Host::builder(node)
        .serving_nodes(serving.to_vec())
        .provide("counter", move |start| {
            // Recorded before the process exists, so no instance can
            // appear alive in the history before it is counted.
            let index = {
                let mut all = history.0.lock().unwrap();
                all.push(Instance {
                    name: start.name().clone(),
                    node: start.node().name().to_owned(),
                    pid: Pid::new(start.node().name(), 0, 0, 0),
                    started: Instant::now(),
                    last_call: None,
                    ended: None,
                });
                all.len() - 1
            };
            let counter = Counter {
                count: 0,
                history: history.clone(),
                index,
            };
            let pid = spawn_server(start.node(), None, counter)
                .map_err(|e| binary(e.to_string().into_bytes()))?;
            history.0.lock().unwrap()[index].pid = pid.clone();
            Ok(pid)
        })
        .provide("panicking", |_| panic!("this factory always panics"))
        .start()
        .expect("start the host")
}

/// A Rust serving node on a runtime of its own.
struct RustServer {
    node: Node,
    host: Pid,
    /// The host's handle (to declare singletons).
    handle: Host,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RustServer {
    fn name(&self) -> &str {
        self.node.name()
    }

    /// Runs `f` on this node's runtime (everything a node does must run
    /// there, or its tasks would outlive an abort).
    async fn run<T, F>(&self, f: impl FnOnce(Node) -> F) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("the node was aborted");
        runtime
            .spawn(f(self.node.clone()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// As `kill -9`: the node's connections close first, so no process of
    /// it is seen to exit (its peers see only the connection go), then
    /// every task of the node ends. (Ending the tasks alone would let the
    /// dying processes' exits out over connections not yet closed, which a
    /// killed OS process never sends.)
    fn abort(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            self.node.shutdown();
            runtime.shutdown_background();
        }
    }

    async fn call(&self, counter: &Singleton, request: &str) -> Result<Term, StartError> {
        let (counter, request) = (counter.clone(), atom(request));
        self.run(|node| async move {
            Registry::new(node.spawn_process())
                .call_singleton(&counter, request, CALL)
                .await
        })
        .await
    }

    /// `call` for a count.
    async fn call_singleton(&self, counter: &Singleton, request: &str) -> Result<i64, StartError> {
        let reply = self.call(counter, request).await?;
        Ok(as_int(&reply).unwrap_or_else(|| panic!("counter answered {reply}")))
    }

    async fn start_name(
        &self,
        name: Term,
        service: &str,
        options: StartOptions,
    ) -> Result<Started, StartError> {
        let service = service.to_owned();
        self.run(|node| async move {
            let spec = services::StartSpec::Rust(service);
            Registry::new(node.spawn_process())
                .start_name(name, spec, options)
                .await
        })
        .await
    }

    async fn whereis(&self, name: Term) -> Option<Pid> {
        self.run(|node| async move {
            Registry::new(node.spawn_process())
                .with_timeout(Duration::from_secs(2))
                .whereis(name)
                .await
                .ok()
                .flatten()
        })
        .await
    }

    /// The serving nodes this node's host was taken by.
    async fn announced_to(&self) -> Vec<String> {
        let host = self.host.clone();
        self.run(|node| async move {
            let mut p = node.spawn_process();
            let reply = p.call(&host, atom("announced_to"), CALL).await;
            reply
                .ok()
                .and_then(|t| list_elements(&t))
                .unwrap_or_default()
                .iter()
                .filter_map(|n| erl_quorum::term::as_atom(n).map(str::to_owned))
                .collect()
        })
        .await
    }
}

impl Drop for RustServer {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Three Rust serving nodes, each providing `counter`, every host
/// announced to every serving node (so a start can go anywhere).
async fn start_servers(prefix: &str, history: &History) -> Vec<RustServer> {
    let mut nodes = Vec::new();
    for i in 0..3 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let prefix = format!("{prefix}{i}");
        let node = runtime
            .spawn(async move { rust_node::start(&prefix).await })
            .await
            .expect("start the node");
        nodes.push((node, runtime));
    }
    let masters: Vec<String> = nodes.iter().map(|(n, _)| n.name().to_owned()).collect();
    let mut servers = Vec::new();
    for (node, runtime) in nodes {
        let (masters, history, on) = (masters.clone(), history.clone(), node.clone());
        let host = runtime
            .spawn(async move {
                let config = ServiceConfig {
                    masters: masters.clone(),
                    w: 2,
                    fresh_cluster: true,
                    ..ServiceConfig::default()
                };
                locker::start(&on, config).expect("start locker");
                let config = ServicesConfig {
                    masters: masters.clone(),
                    w: 2,
                    session_lease: SESSION_LEASE,
                    renew_every: SESSION_LEASE / 8,
                    margin: MARGIN,
                    ..ServicesConfig::default()
                };
                services::start(&on, config).expect("start erl_quorum");
                provide_counters(&on, &masters, history)
            })
            .await
            .expect("start the services");
        servers.push(RustServer {
            node,
            host: host.pid().clone(),
            handle: host,
            runtime: Some(runtime),
        });
    }
    let mut all = masters.clone();
    all.sort();
    let deadline = Instant::now() + Duration::from_secs(20);
    for server in &servers {
        loop {
            let mut known = server.announced_to().await;
            known.sort();
            if known == all {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}'s host was taken only by {known:?}",
                server.name()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    servers
}

fn permanent(name: &str) -> Singleton {
    Singleton::rust(atom(name), "counter").restart(Restart::Permanent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_use_from_three_nodes_starts_one_counter_that_keeps_its_state() {
    let history = History::default();
    let servers = start_servers("sg_first", &history).await;
    let masters: Vec<String> = servers.iter().map(|s| s.name().to_owned()).collect();
    let erl = tokio::spawn(start_app_node("sg_erl", Lang::Erlang, &masters));
    let counter = permanent("sg_counter");
    let (a, b, c) = tokio::join!(
        servers[0].call_singleton(&counter, "incr"),
        servers[1].call_singleton(&counter, "incr"),
        servers[2].call_singleton(&counter, "incr"),
    );
    let mut counts = [a, b, c].map(|r| r.expect("incr"));
    counts.sort();
    assert_eq!(counts, [1, 2, 3], "three increments of one counter");
    let instances = history.instances();
    assert_eq!(instances.len(), 1, "one instance started: {instances:?}");
    let instance = &instances[0];

    // A real Erlang node reaches it by name, and the count goes on.
    let erl = erl.await.expect("start the erl node");
    wait_on(
        &erl,
        "is_pid(rust_registry:whereis_name(sg_counter))",
        Duration::from_secs(10),
    );
    assert_eq!(
        beval(&erl, "node(rust_registry:whereis_name(sg_counter))"),
        format!("'{}'", instance.node)
    );
    assert_eq!(
        beval(
            &erl,
            "gen_server:call({via, rust_registry, sg_counter}, incr)"
        ),
        "4"
    );
    for server in &servers {
        assert_eq!(server.call_singleton(&counter, "get").await.unwrap(), 4);
        assert_eq!(
            server.whereis(atom("sg_counter")).await.as_ref(),
            Some(&instance.pid)
        );
    }
    assert_eq!(history.instances().len(), 1, "still one instance");
    // Started again with the same spec: already started, same pid.
    let again = servers[1]
        .start_name(atom("sg_counter"), "counter", counter.options.clone())
        .await;
    assert_eq!(again, Ok(Started::AlreadyStarted(instance.pid.clone())));
    // Another spec on the name: a conflict, nothing started.
    let other = servers[2]
        .start_name(atom("sg_counter"), "panicking", StartOptions::default())
        .await;
    assert_eq!(other, Ok(Started::Conflict(instance.pid.clone())));
    assert_eq!(history.instances().len(), 1);
    history.assert_never_two();
}

/// Aborts the node running `name` and polls another node until the name is
/// held by a live instance elsewhere; returns how long that took.
async fn failover(servers: &mut [RustServer], history: &History, name: &str) -> Duration {
    let running = history.alive();
    assert_eq!(running.len(), 1, "{running:?}");
    let victim = servers
        .iter()
        .position(|s| s.name() == running[0].node)
        .expect("the node running it");
    let witness = (victim + 1) % servers.len();
    let counter = permanent(name);
    let t0 = Instant::now();
    servers[victim].abort();
    let limit = SESSION_LEASE + MARGIN + Duration::from_secs(10);
    let new = loop {
        // Only look (whereis): a call through call_singleton would start
        // it on first use and hide a missing restart.
        if let Some(pid) = servers[witness].whereis(atom(name)).await {
            if pid.node.name != running[0].node {
                break pid;
            }
        }
        assert!(
            t0.elapsed() < limit,
            "{name} not restarted within {limit:?} of its node's abort; history {:?}",
            history.instances()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = t0.elapsed();
    println!(
        "failover of {name}: {} ms after the abort (session lease {} ms + margin {} ms)",
        took.as_millis(),
        SESSION_LEASE.as_millis(),
        MARGIN.as_millis()
    );
    // The new instance counts from zero (state lives in the instance) and
    // every survivor reaches it.
    for (i, server) in servers.iter().enumerate() {
        if i != victim {
            let n = server.call_singleton(&counter, "incr").await.expect("incr");
            assert!(n >= 1);
            assert_eq!(server.whereis(atom(name)).await, Some(new.clone()));
        }
    }
    let instances = history.instances();
    assert_eq!(instances.len(), 2, "one restart: {instances:?}");
    assert_eq!(instances[1].pid, new);
    history.assert_never_two();
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_whose_node_is_aborted_restarts_on_a_survivor() {
    let history = History::default();
    let mut servers = start_servers("sg_fo", &history).await;
    // Served by node 0 (it takes the name's shard, asked first), run by
    // node 1 (its host asked for).
    let options = StartOptions {
        restart: Restart::Permanent,
        host: Some(servers[1].host.clone()),
        ..StartOptions::default()
    };
    let started = servers[0]
        .start_name(atom("sg_fo_counter"), "counter", options)
        .await
        .expect("start");
    assert!(matches!(started, Started::Started(ref p) if p.node.name == servers[1].name()));
    let counter = permanent("sg_fo_counter");
    assert_eq!(servers[2].call_singleton(&counter, "incr").await, Ok(1));
    let took = failover(&mut servers, &history, "sg_fo_counter").await;
    assert!(
        took < SESSION_LEASE + MARGIN + Duration::from_secs(3),
        "failover took {took:?}"
    );
}

/// The record (start spec, restart) lives only on the node serving the
/// name, so when that node dies with the instance, only the hosts that
/// declared the counter know it is to run: their next check after the lost
/// node's hold is released starts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_whose_serving_node_is_aborted_restarts_on_a_survivor() {
    let history = History::default();
    let mut servers = start_servers("sg_fos", &history).await;
    // Served and run by node 0.
    let options = StartOptions {
        restart: Restart::Permanent,
        host: Some(servers[0].host.clone()),
        ..StartOptions::default()
    };
    let started = servers[0]
        .start_name(atom("sg_fos_counter"), "counter", options)
        .await
        .expect("start");
    assert!(matches!(started, Started::Started(ref p) if p.node.name == servers[0].name()));
    // Every host declares it (the running one included: its checks find
    // it held and start nothing).
    for server in &servers {
        server
            .handle
            .keep(atom("sg_fos_counter"), "counter", Restart::Permanent);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        history.instances().len(),
        1,
        "checks of a held name start nothing"
    );
    let took = failover(&mut servers, &history, "sg_fos_counter").await;
    // Released after lease + margin; then at most one check period
    // (500-1000 ms) and the start.
    let bound = SESSION_LEASE + MARGIN + Duration::from_millis(1000);
    println!(
        "failover of a counter lost with its serving node: {} ms (lease + margin + check period = {} ms)",
        took.as_millis(),
        bound.as_millis()
    );
    assert!(
        took < bound + Duration::from_secs(2),
        "failover took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_counter_restarts_and_a_temporary_one_waits_for_its_next_use() {
    let history = History::default();
    let servers = start_servers("sg_kill", &history).await;
    let counter = permanent("sg_kill_counter");
    assert_eq!(servers[0].call_singleton(&counter, "incr").await, Ok(1));
    let first = history.alive().remove(0);
    servers[0]
        .run({
            let pid = first.pid.clone();
            |node| async move { node.spawn_process().exit_signal(&pid, atom("kill")) }
        })
        .await;
    let t0 = Instant::now();
    let restarted = loop {
        match servers[1].whereis(atom("sg_kill_counter")).await {
            Some(pid) if pid != first.pid => break pid,
            _ => {}
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{:?}",
            history.instances()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "a killed permanent counter was back in {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(
        restarted.node.name, first.node,
        "restarted on its own node's host"
    );
    assert_eq!(history.instances().len(), 2);
    history.assert_never_two();

    // Temporary: a normal stop leaves the name free until the next use.
    let temporary = Singleton::rust(atom("sg_temp_counter"), "counter");
    assert_eq!(servers[1].call_singleton(&temporary, "incr").await, Ok(1));
    assert_eq!(servers[1].call(&temporary, "stop").await, Ok(atom("ok")));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(servers[2].whereis(atom("sg_temp_counter")).await, None);
    assert_eq!(history.instances().len(), 3, "not restarted");
    assert_eq!(servers[2].call_singleton(&temporary, "incr").await, Ok(1));
    assert_eq!(history.instances().len(), 4, "started by the next use");
    history.assert_never_two();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_starts_are_errors_and_leave_the_name_free() {
    let history = History::default();
    let servers = start_servers("sg_fail", &history).await;
    let nosuch = servers[0]
        .start_name(atom("sg_nosuch"), "nosuch", StartOptions::default())
        .await;
    let undefined = tuple(vec![atom("undefined_service"), binary("nosuch")]);
    assert_eq!(nosuch, Err(StartError::StartFailed(undefined)));
    let panics = servers[1]
        .start_name(atom("sg_panics"), "panicking", StartOptions::default())
        .await;
    match panics {
        Err(StartError::StartFailed(reason)) => {
            assert!(
                matches!(erl_quorum::term::as_tuple(&reason), Some([tag, _]) if is_atom(tag, "panic")),
                "{reason}"
            );
        }
        other => panic!("a panicking factory: {other:?}"),
    }
    for server in &servers {
        assert_eq!(server.whereis(atom("sg_nosuch")).await, None);
        assert_eq!(server.whereis(atom("sg_panics")).await, None);
    }
    // The nodes and their hosts serve on.
    let counter = permanent("sg_after_failures");
    assert_eq!(servers[2].call_singleton(&counter, "incr").await, Ok(1));
    assert_eq!(history.instances().len(), 1);
}
