//! A keeper: one task per child, living as long as the child. It runs the
//! service's factory, answers the serving node, and watches the child (the
//! decisions are in `decide`).

use super::decide::{after_exit, keeps_child, pause, AfterExit, Rerequests};
use super::{Services, StartContext};
use crate::node::Node;
use crate::process::{CallError, Mail, Process};
use crate::services::protocol::{Request, Start};
use crate::services::registry::{Registry, Restart, StartError, StartOptions, StartSpec, Started};
use crate::term::Brief;
use crate::term::{atom, binary, tuple, Pid, Term};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a keeper waits for the node's `yes` / `no` to `started`: the
/// node gives a start 30 s, so a longer silence is a node that is gone.
const STARTED_TIMEOUT: Duration = Duration::from_secs(35);
/// How long a keeper waits for `ok` to `start_failed` (nothing depends on it).
const FAILED_TIMEOUT: Duration = Duration::from_secs(5);

/// An `eq_start`: what to start, for which serving node.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Order {
    /// The serving node that wants it started (and gets the answer).
    pub node: String,
    pub id: u64,
    pub name: Term,
    pub start: Start,
    pub restart: Restart,
}

/// What every keeper of one host shares.
#[derive(Clone)]
pub(super) struct Keepers {
    pub node: Node,
    pub host: Pid,
    pub services: Services,
    /// The serving nodes the host announces to, for fresh `start_name`s.
    pub serving: Arc<Vec<String>>,
}

impl Keepers {
    /// Spawns the keeper of `order`; returns at once.
    pub(super) fn spawn(&self, order: Order) {
        let keepers = self.clone();
        tokio::spawn(async move { keepers.keep(order).await });
    }

    async fn keep(self, order: Order) {
        let mut process = self.node.spawn_process();
        let service = match rust_service(&order.start) {
            Ok(service) => service,
            Err(reason) => return self.report_failed(&mut process, &order, reason).await,
        };
        let child = match self.run_factory(&order, &service) {
            Ok(child) => child,
            Err(reason) => return self.report_failed(&mut process, &order, reason).await,
        };
        // Watch before answering, so no exit can slip by.
        let watch = process.monitor(&child);
        let answer = process
            .call(
                ("erl_quorum", order.node.as_str()),
                Request::Started {
                    id: order.id,
                    pid: child.clone(),
                }
                .encode(),
                STARTED_TIMEOUT,
            )
            .await;
        if !keeps_child(answer.as_ref().ok()) {
            tracing::info!(name = %Brief(&order.name), answer = ?answer.as_ref().map(Brief), "erl_quorum_host: start not taken; killing the child");
            process.exit_signal(&child, atom("kill"));
            return;
        }
        let reason = loop {
            match process.recv().await {
                Ok(Mail::Down {
                    reference, reason, ..
                }) if reference == watch => break reason,
                Ok(_) => continue,
                Err(_) => return,
            }
        };
        if after_exit(&reason, &order.name, order.restart) == AfterExit::Rerequest {
            self.rerequest(process, order, service).await;
        }
    }

    /// Runs the factory of `service`, catching a panic.
    fn run_factory(&self, order: &Order, service: &str) -> Result<Pid, Term> {
        let Some(factory) = self.services.get(service) else {
            return Err(undefined_service(service.as_bytes()));
        };
        let context = StartContext {
            node: self.node.clone(),
            name: order.name.clone(),
            service: service.to_owned(),
            restart: order.restart,
        };
        match catch_unwind(AssertUnwindSafe(|| factory(&context))) {
            Ok(result) => result,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "factory panicked".to_owned());
                tracing::warn!(service, %message, "erl_quorum_host: a factory panicked");
                Err(tuple(vec![atom("panic"), binary(message.into_bytes())]))
            }
        }
    }

    async fn report_failed(&self, process: &mut Process, order: &Order, reason: Term) {
        tracing::info!(name = %Brief(&order.name), reason = %Brief(&reason), "erl_quorum_host: start failed");
        let request = Request::StartFailed {
            id: order.id,
            reason,
        }
        .encode();
        let _ = process
            .call(("erl_quorum", order.node.as_str()), request, FAILED_TIMEOUT)
            .await;
    }

    /// The child lost its name and restarts: ask for it again, here first,
    /// through the node that ordered it and then the others, until a node
    /// answers something other than `no_quorum` / `no_host` (or
    /// `decide::RETRY_FOR` passes).
    async fn rerequest(self, process: Process, order: Order, service: String) {
        let mut nodes = vec![order.node.clone()];
        nodes.extend(self.serving.iter().filter(|n| **n != order.node).cloned());
        let options = StartOptions {
            restart: order.restart,
            meta: None,
            host: Some(self.host.clone()),
        };
        let spec = StartSpec::Rust(service);
        let mut registry = Registry::new(process);
        let run = Rerequests::new(Instant::now());
        let mut wait = pause();
        loop {
            tokio::time::sleep(wait).await;
            let mut reply: Result<Started, StartError> = Err(CallError::NoConnection.into());
            for node in &nodes {
                registry = registry.with_server(node);
                reply = registry
                    .start_name(order.name.clone(), spec.clone(), options.clone())
                    .await;
                if !matches!(&reply, Err(e) if e.is_unreachable()) {
                    break;
                }
            }
            tracing::info!(name = %Brief(&order.name), ?reply, "erl_quorum_host: name asked for again");
            match run.after(&reply, Instant::now()) {
                Some(next) => wait = next,
                None => return,
            }
        }
    }
}

/// The service of `{rust, Service}`. A BEAM start spec sent to a Rust host
/// is the serving node's mistake, reported as `{badarg, Start}` rather than
/// ignored; a service name that is not UTF-8 names no service here.
pub(super) fn rust_service(start: &Start) -> Result<String, Term> {
    match start {
        Start::Rust(bytes) => {
            String::from_utf8(bytes.clone()).map_err(|_| undefined_service(bytes))
        }
        Start::Beam(_) => Err(tuple(vec![atom("badarg"), start.encode()])),
    }
}

/// `{undefined_service, Service}`.
fn undefined_service(service: &[u8]) -> Term {
    tuple(vec![atom("undefined_service"), binary(service)])
}
