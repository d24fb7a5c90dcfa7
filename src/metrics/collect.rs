//! Reads a [`Snapshot`] from a running node: its peer table, and the
//! status calls both services answer (`{erl_quorum, status}` to `locker`,
//! `status` to `erl_quorum`), the same answers `erl_quorum status` prints.
//! Nothing is counted in the services for this: they are asked.

use super::exposition::Snapshot;
use super::fields::StatusFields;
use super::names::Service;
use crate::process::Process;
use crate::term::{atom, tuple, Term};
use std::time::Duration;

/// How long a scrape waits for each service (a busy service costs the
/// scrape this, then shows as down).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The request that asks `service` for its status.
pub fn status_request(service: Service) -> Term {
    match service {
        Service::Locker => tuple(vec![atom("erl_quorum"), atom("status")]),
        Service::Services => atom("status"),
    }
}

/// The node's state now; `process` (a process of the node) makes the calls.
pub async fn snapshot(process: &mut Process) -> Snapshot {
    let node = process.node().clone();
    let peers = node.peer_traffic();
    let mut ask = async |service: Service| {
        // Not running: `noproc` at once, not a timeout.
        node.whereis(service.process())?;
        let reply = process
            .call(
                (service.process(), node.name()),
                status_request(service),
                CALL_TIMEOUT,
            )
            .await;
        match reply {
            Ok(term) => StatusFields::parse(&term),
            Err(e) => {
                tracing::debug!(service = service.process(), error = %e, "metrics: no status");
                None
            }
        }
    };
    let locker = ask(Service::Locker).await;
    let services = ask(Service::Services).await;
    Snapshot {
        peers,
        locker,
        services,
    }
}
