//! The operator commands of the `erl_quorum` binary: status, lock, read,
//! release, ping, against any locker cluster (Rust or BEAM nodes).

use erl_quorum::process::CallError;
use erl_quorum::quorum::client::{LockerClient, LockerError, Quorum};
use erl_quorum::term::{as_tuple, atom, is_atom, list, parse_term, tuple, Term};
use erl_quorum::Node;
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

pub fn term(text: &str) -> Result<Term, Box<dyn std::error::Error>> {
    Ok(parse_term(text)?)
}

pub fn client(
    node: &Node,
    masters: &[String],
    replicas: &[String],
    w: Option<usize>,
) -> LockerClient {
    let w = w.unwrap_or(masters.len() / 2 + 1);
    LockerClient::new(node.spawn_process(), masters.to_vec(), w)
        .with_replicas(replicas.to_vec())
        .with_timeout(TIMEOUT)
}

pub async fn ping(node: &Node, target: &str) -> bool {
    let mut p = node.spawn_process();
    let request = tuple(vec![atom("is_auth"), atom(node.name())]);
    matches!(p.call(("net_kernel", target), request, TIMEOUT).await, Ok(ref t) if is_atom(t, "yes"))
}

pub fn report(result: Result<Quorum, LockerError>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match result {
        Ok(q) => {
            println!("ok (W={}, votes {}, acks {})", q.w, q.votes, q.acks);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn read(
    client: &mut LockerClient,
    masters: &[String],
    key: Term,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut last = None;
    for master in masters {
        match client.dirty_read(master, key.clone()).await {
            Ok(Some(value)) => {
                println!("{value}");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(None) => {
                println!("not_found");
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(format!(
        "no master answered: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )
    .into())
}

/// Prints one block per node; false if any node could not be asked.
pub async fn status(node: &Node, masters: &[String], replicas: &[String]) -> bool {
    let mut p = node.spawn_process();
    let mut all_ok = true;
    let mut nodes: Vec<&String> = masters.iter().collect();
    nodes.extend(replicas.iter().filter(|r| !masters.contains(r)));
    for target in nodes {
        println!("{target}");
        // A BEAM node answers through `rex`; a Rust node has none and
        // answers `{erl_quorum, status}` itself (a BEAM locker would crash
        // on that call, so it is never sent there).
        let group_leader = Term::from(p.pid().clone());
        let rpc = |m: &str, f: &str, args: Vec<Term>| {
            tuple(vec![
                atom("call"),
                atom(m),
                atom(f),
                list(args),
                group_leader.clone(),
            ])
        };
        match p
            .call(
                ("rex", target.as_str()),
                rpc("locker", "get_meta", vec![]),
                TIMEOUT,
            )
            .await
        {
            Ok(meta) => {
                println!("  kind: BEAM node running locker");
                println!("  meta {{Masters, Replicas, W}}: {meta}");
                if let Ok(debug) = p
                    .call(
                        ("locker", target.as_str()),
                        atom("get_debug_state"),
                        TIMEOUT,
                    )
                    .await
                {
                    if let Some([_, promises, leases, ..]) = as_tuple(&debug) {
                        let n =
                            |t: &Term| erl_quorum::term::list_elements(t).map_or(0, |l| l.len());
                        println!("  entries: {}  promises: {}", n(leases), n(promises));
                    }
                }
                if let Ok(peers) = p
                    .call(
                        ("rex", target.as_str()),
                        rpc("erlang", "nodes", vec![atom("connected")]),
                        TIMEOUT,
                    )
                    .await
                {
                    println!("  connected: {peers}");
                }
            }
            Err(CallError::NoProc) => match p
                .call(
                    ("locker", target.as_str()),
                    tuple(vec![atom("erl_quorum"), atom("status")]),
                    TIMEOUT,
                )
                .await
            {
                Ok(status) => {
                    println!("  kind: erl_quorum node");
                    for item in erl_quorum::term::list_elements(&status).unwrap_or_default() {
                        if let Some([k, v]) = as_tuple(&item) {
                            println!("  {k}: {v}");
                        }
                    }
                }
                Err(e) => {
                    println!("  unreachable: {e}");
                    all_ok = false;
                }
            },
            Err(e) => {
                println!("  unreachable: {e}");
                all_ok = false;
            }
        }
    }
    all_ok
}
