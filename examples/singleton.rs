//! A Rust counter as a cluster-wide singleton.
//!
//! Run the same program as three Rust nodes (three terminals), each a
//! locker master serving `erl_quorum` and a host that provides the
//! `counter` service:
//!
//! ```text
//! NODES=a@127.0.0.1,b@127.0.0.1,c@127.0.0.1
//! cargo run --example singleton -- a@127.0.0.1 $NODES --fresh
//! cargo run --example singleton -- b@127.0.0.1 $NODES --fresh
//! cargo run --example singleton -- c@127.0.0.1 $NODES --fresh
//! ```
//!
//! Each node calls the counter every two seconds: the first calls start it
//! on exactly one node, and every node counts on the same instance. Stop
//! (or `kill -9`) the node that runs it: about the session lease (5 s) plus
//! half a second later the counter runs on a survivor, counting from zero
//! (state lives in the instance). When the killed node also served the
//! name, the calls meanwhile answer no quorum (nobody may serve its shard
//! until the dead node's session lapses) and the next call after that
//! starts the counter again. Restart a node without `--fresh` (its
//! locker master then waits out its restart guard).
//!
//! BEAM code reaches it by name once the `erl_quorum` application runs
//! with `rust_nodes` set to the same nodes (cookie `erl_quorum_example`):
//!
//! ```erlang
//! gen_server:call({via, rust_registry, counter}, incr).
//! ```

use erl_quorum::process::{spawn_server, CallReply, Caller, GenServer};
use erl_quorum::quorum::service::{self as locker, ServiceConfig};
use erl_quorum::services::host::Host;
use erl_quorum::services::{self, Registry, Restart, ServicesConfig, Singleton};
use erl_quorum::term::{atom, binary, int, is_atom, Term};
use erl_quorum::{Node, NodeConfig, Process};
use std::time::Duration;

const COOKIE: &str = "erl_quorum_example";
const SESSION_LEASE: Duration = Duration::from_secs(5);

/// `incr` counts and answers the count; anything else answers it.
#[derive(Default)]
struct Counter {
    count: i64,
}

impl GenServer for Counter {
    async fn handle_call(&mut self, request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        if is_atom(&request, "incr") {
            self.count += 1;
        }
        CallReply::Reply(int(self.count))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(nodes)) = (args.first(), args.get(1)) else {
        return Err("usage: singleton NAME@HOST NODE1,NODE2,NODE3 [--fresh]".into());
    };
    let masters: Vec<String> = nodes.split(',').map(str::to_owned).collect();
    let fresh = args.iter().any(|a| a == "--fresh");
    let w = masters.len() / 2 + 1;

    let node = Node::start(NodeConfig::new(name.clone(), COOKIE)).await?;
    locker::start(
        &node,
        ServiceConfig {
            masters: masters.clone(),
            w,
            fresh_cluster: fresh,
            ..ServiceConfig::default()
        },
    )?;
    services::start(
        &node,
        ServicesConfig {
            masters: masters.clone(),
            w,
            session_lease: SESSION_LEASE,
            renew_every: SESSION_LEASE / 8,
            margin: Duration::from_millis(500),
            ..ServicesConfig::default()
        },
    )?;
    // This node can run the counter; so can every other node running this.
    // Each declares it (`keep`), so it comes back on a survivor even when
    // the node that served its name dies together with it.
    Host::builder(&node)
        .serving_nodes(masters.clone())
        .provide("counter", |start| {
            println!("[{}] starting the counter here", start.node().name());
            spawn_server(start.node(), None, Counter::default())
                .map_err(|e| binary(e.to_string().into_bytes()))
        })
        .keep(atom("counter"), "counter", Restart::Permanent)
        .start()?;
    println!("{} serving; calling the counter every 2 s", node.name());

    let counter = Singleton::rust(atom("counter"), "counter").restart(Restart::Permanent);
    let mut registry = Registry::new(node.spawn_process()).with_timeout(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let count = registry
            .call_singleton(&counter, atom("incr"), Duration::from_secs(2))
            .await;
        let place = registry.whereis(atom("counter")).await.ok().flatten();
        match (count, place) {
            (Ok(n), Some(pid)) => println!("[{}] count {n} (on {})", node.name(), pid.node.name),
            (Ok(n), None) => println!("[{}] count {n}", node.name()),
            (Err(e), _) => println!("[{}] no counter yet: {e}", node.name()),
        }
    }
    node.shutdown();
    Ok(())
}
