//! The operator commands of the `erl_quorum` binary: status, lock, read,
//! release, ping, against any locker cluster (Rust or BEAM nodes).

use erl_quorum::metrics::collect;
use erl_quorum::metrics::fields::StatusFields;
use erl_quorum::metrics::names::Service;
use erl_quorum::metrics::table::{self, Kind, StatusRow};
use erl_quorum::process::{CallError, Process};
use erl_quorum::quorum::client::{LockerClient, LockerError, Quorum};
use erl_quorum::term::{
    as_atom, as_tuple, atom, int, is_atom, list, list_elements, parse_term, tuple, Brief, Term,
};
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

/// How `status` prints its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// An aligned table for people.
    Table,
    /// One Erlang term per node, for scripts (`file:consult/1`).
    Terms,
}

/// Prints one row per node (masters, then replicas not among them); false
/// if any node could not be asked.
pub async fn status(
    node: &Node,
    masters: &[String],
    replicas: &[String],
    format: StatusFormat,
) -> bool {
    let mut p = node.spawn_process();
    let mut nodes: Vec<&String> = masters.iter().collect();
    nodes.extend(replicas.iter().filter(|r| !masters.contains(r)));
    let mut rows = Vec::new();
    for target in nodes {
        rows.push(status_row(&mut p, target).await);
    }
    print!(
        "{}",
        match format {
            StatusFormat::Table => table::render_table(&rows),
            StatusFormat::Terms => table::render_terms(&rows),
        }
    );
    rows.iter().all(|r| r.error.is_none())
}

/// Asks `target` what it is and how it is.
async fn status_row(p: &mut Process, target: &str) -> StatusRow {
    let mut row = StatusRow {
        node: target.to_owned(),
        kind: Kind::Unknown,
        error: None,
        locker: None,
        services: None,
    };
    // A BEAM locker answers `locker:get_meta()` through `rex`; a Rust node
    // has no such module (its `rex` answers `badrpc`, or it has none) and
    // answers `{erl_quorum, status}` itself. That call is never sent to a
    // node whose `get_meta` worked: a BEAM locker crashes on it.
    let meta = p
        .call(
            ("rex", target),
            rpc(p, "locker", "get_meta", vec![]),
            TIMEOUT,
        )
        .await;
    if let Ok(meta) = &meta {
        if let Some(fields) = beam_locker_fields(p, target, meta).await {
            row.kind = Kind::Beam;
            row.locker = Some(fields);
            return row;
        }
    }
    if let Err(e @ (CallError::NoConnection | CallError::Timeout)) = &meta {
        row.error = Some(e.to_string());
        return row;
    }
    let request = collect::status_request(Service::Locker);
    match p.call(("locker", target), request, TIMEOUT).await {
        Ok(status) => {
            row.kind = Kind::Rust;
            row.locker = StatusFields::parse(&status);
            let request = collect::status_request(Service::Services);
            if let Ok(status) = p.call(("erl_quorum", target), request, TIMEOUT).await {
                row.services = StatusFields::parse(&status);
            }
        }
        Err(e) => {
            row.error = Some(match meta {
                Ok(meta) => format!("no locker: locker:get_meta() = {}", Brief(&meta)),
                Err(_) => format!("no locker: {e}"),
            })
        }
    }
    row
}

/// `{call, M, F, Args, GroupLeader}` for `rex`.
fn rpc(p: &Process, m: &str, f: &str, args: Vec<Term>) -> Term {
    tuple(vec![
        atom("call"),
        atom(m),
        atom(f),
        list(args),
        Term::from(p.pid().clone()),
    ])
}

/// A BEAM locker's row fields, from `get_meta` (`{Masters, Replicas, W}`),
/// `get_debug_state` (promises and leases) and `nodes(connected)`.
async fn beam_locker_fields(p: &mut Process, target: &str, meta: &Term) -> Option<StatusFields> {
    let [masters, replicas, w] = as_tuple(meta)? else {
        return None;
    };
    let names = |t: &Term| -> Vec<String> {
        list_elements(t)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| as_atom(n).map(str::to_owned))
            .collect()
    };
    let (masters, replicas) = (names(masters), names(replicas));
    let role = match (
        masters.iter().any(|m| m == target),
        replicas.iter().any(|r| r == target),
    ) {
        (true, true) => "both",
        (true, false) => "master",
        (false, true) => "replica",
        (false, false) => "neither",
    };
    let mut fields = vec![
        tuple(vec![atom("role"), atom(role)]),
        tuple(vec![atom("masters"), int(masters.len() as i64)]),
        tuple(vec![atom("replicas"), int(replicas.len() as i64)]),
        tuple(vec![atom("w"), w.clone()]),
    ];
    let count = |t: &Term| int(list_elements(t).map_or(0, |l| l.len()) as i64);
    if let Ok(debug) = p
        .call(("locker", target), atom("get_debug_state"), TIMEOUT)
        .await
    {
        if let Some([_, promises, leases, ..]) = as_tuple(&debug) {
            fields.push(tuple(vec![atom("entries"), count(leases)]));
            fields.push(tuple(vec![atom("promises"), count(promises)]));
        }
    }
    let connected = rpc(p, "erlang", "nodes", vec![atom("connected")]);
    if let Ok(peers) = p.call(("rex", target), connected, TIMEOUT).await {
        fields.push(tuple(vec![atom("connected"), count(&peers)]));
    }
    StatusFields::parse(&list(fields))
}
