//! The Rust side of the services bench: the echo gen_server that BEAM code
//! calls as `{via, rust_registry, Name}`, the many names of the memory
//! figures (registered with [`Registry`] clients), and reading a serving
//! node's `status`.

use erl_quorum::process::{spawn_server, Process};
use erl_quorum::services::Registry;
use erl_quorum::term::{as_atom, as_int, as_tuple, atom, int, list_elements, tuple, Pid, Term};
use erl_quorum::Node;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Starts an echo gen_server on `node` and registers it as `name` through
/// the `erl_quorum` service of `server` (a [`Registry`] client of its own).
pub async fn start_echo(node: &Node, server: &str, name: Term) -> Pid {
    let pid = spawn_server(node, None, crate::rust_node::Echo).expect("spawn the echo server");
    let mut registry = Registry::new(node.spawn_process()).with_server(server);
    let yes = registry
        .register(name.clone(), &pid)
        .await
        .unwrap_or_else(|e| panic!("register {name} on {server}: {e}"));
    assert!(yes, "{name} is taken on {server}");
    pid
}

/// The name of the `i`th name of the memory figures: `{eq_services_mem, I}`.
pub fn mem_name(i: u64) -> Term {
    tuple(vec![atom("eq_services_mem"), int(i as i64)])
}

/// Registers `count` names ([`mem_name`] 0..count) through the service of
/// `server` with `registrars` concurrent [`Registry`] clients (a process
/// each), name `i` owned by `owners[i % owners.len()]`. Prints progress to
/// stderr. Returns the time it took.
pub async fn register_names(
    node: &Node,
    server: &str,
    count: u64,
    registrars: usize,
    owners: &[Pid],
) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let owners: Arc<Vec<Pid>> = Arc::new(owners.to_vec());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..registrars.max(1) {
        let mut registry = Registry::new(node.spawn_process())
            .with_server(server)
            .with_timeout(Duration::from_secs(60));
        let (next, done, owners) = (next.clone(), done.clone(), owners.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let owner = &owners[(i % owners.len() as u64) as usize];
                match registry.register(mem_name(i), owner).await {
                    Ok(true) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => panic!("name {i} was taken"),
                    Err(e) => panic!("register name {i}: {e}"),
                }
            }
        }));
    }
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                let n = done.load(Ordering::Relaxed);
                let s = t0.elapsed().as_secs_f64();
                eprintln!(
                    "  {n} of {count} names registered in {s:.0} s ({:.1} k/s)",
                    n as f64 / s / 1e3
                );
            }
        })
    };
    for task in tasks {
        task.await.expect("a registrar panicked");
    }
    progress.abort();
    t0.elapsed()
}

/// The `status` of `server`'s `erl_quorum` service, as `(key, value)`
/// pairs (`slots`, `names`, `subscribers`, `session_valid_ms`, `epoch`).
pub async fn status(process: &mut Process, server: &str) -> Vec<(String, i64)> {
    let reply = process
        .call(
            ("erl_quorum", server),
            atom("status"),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("status of {server}: {e}"));
    list_elements(&reply)
        .unwrap_or_default()
        .iter()
        .filter_map(|pair| match as_tuple(pair)? {
            [k, v] => Some((as_atom(k)?.to_owned(), as_int(v)?)),
            _ => None,
        })
        .collect()
}

/// The names `server`'s service knows: its `status`'s `names`, or
/// `slots` + `peer_names` (its own holds and its peers' names).
pub async fn known_names(process: &mut Process, server: &str) -> i64 {
    let status = status(process, server).await;
    let get = |key: &str| status.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    get("names").unwrap_or_else(|| get("slots").unwrap_or(0) + get("peer_names").unwrap_or(0))
}

/// Polls [`known_names`] of every server until each knows at least
/// `count`, or `max` passes. Returns each server's last count.
pub async fn wait_names(
    process: &mut Process,
    servers: &[String],
    count: i64,
    max: Duration,
) -> Vec<i64> {
    let deadline = Instant::now() + max;
    loop {
        let mut counts = Vec::new();
        for server in servers {
            counts.push(known_names(process, server).await);
        }
        if counts.iter().all(|&n| n >= count) || Instant::now() >= deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
