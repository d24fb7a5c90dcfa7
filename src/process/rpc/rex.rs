//! `rex`, the `rpc` server: `rpc:block_call`, `rpc:sbcast`, and callers
//! that send `{call, M, F, A, GroupLeader}` themselves (hidden C nodes,
//! older clients). Since OTP 23 `rpc:call` itself goes through
//! `SPAWN_REQUEST` ([`super::exec`]); both run the same functions.

use super::exec::{run, RpcService};
use super::plan::{self, Target};
use crate::node::Node;
use crate::process::{spawn_server, CallReply, Caller, Flow, GenServer, Mail, Process};
use crate::term::{as_tuple, atom, list, tuple, Term};
use std::sync::Arc;

/// A request to `rex`, decoded once.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RexRequest {
    /// `{call | block_call, M, F, A, GroupLeader}`; `Err` when `M`, `F`,
    /// `A` are not an atom, an atom and a proper list.
    Call(Result<Target, Term>),
    /// `{cast, M, F, A, GroupLeader}`.
    Cast(Result<Target, Term>),
    /// Anything else.
    Unknown,
}

impl RexRequest {
    pub(super) fn decode(request: &Term) -> RexRequest {
        match as_tuple(request) {
            Some([kind, m, f, a, _gl]) => {
                let target = plan::apply_target(vec![m.clone(), f.clone(), a.clone()])
                    .map_err(|_| atom("badarg"));
                match kind {
                    Term::Atom(k) if k.name == "call" || k.name == "block_call" => {
                        RexRequest::Call(target)
                    }
                    Term::Atom(k) if k.name == "cast" => RexRequest::Cast(target),
                    _ => RexRequest::Unknown,
                }
            }
            _ => RexRequest::Unknown,
        }
    }
}

struct Rex {
    service: Arc<RpcService>,
}

impl Rex {
    /// Runs `target` on a process of its own (as rex spawns one per call)
    /// and hands the `rpc` reply to `reply`.
    fn spawn_call(
        &self,
        process: &Process,
        target: Target,
        reply: impl FnOnce(&Process, Term) + Send + 'static,
    ) {
        let Some(slot) = self.service.slot() else {
            reply(
                process,
                plan::rpc_reply(Err(super::Exception::Exit(atom("system_limit")))),
            );
            return;
        };
        let handler = self.service.handler(&target);
        let node = process.node().clone();
        let caller = process.pid().clone();
        tokio::spawn(async move {
            let worker = node.spawn_process();
            let pid = worker.pid().clone();
            let call = |args| super::Call {
                node,
                pid,
                caller,
                args,
            };
            let result = run(handler, target, call).await;
            reply(&worker, plan::rpc_reply(result));
            drop(slot);
        });
    }
}

impl GenServer for Rex {
    async fn handle_call(
        &mut self,
        request: Term,
        from: &Caller,
        process: &mut Process,
    ) -> CallReply {
        match RexRequest::decode(&request) {
            RexRequest::Call(Ok(target)) => {
                let from = from.clone();
                self.spawn_call(process, target, move |worker, reply| {
                    from.reply(worker, reply)
                });
                CallReply::NoReply
            }
            RexRequest::Call(Err(reason)) => {
                CallReply::Reply(plan::rpc_reply(Err(super::Exception::Exit(reason))))
            }
            // rex leaves other calls unanswered; a caller here gets an answer.
            _ => CallReply::Reply(tuple(vec![atom("badrpc"), atom("notsup")])),
        }
    }

    async fn handle_cast(&mut self, request: Term, process: &mut Process) -> Flow {
        if let RexRequest::Cast(Ok(target)) = RexRequest::decode(&request) {
            self.spawn_call(process, target, |_, _| {});
        }
        Flow::Continue
    }

    async fn handle_info(&mut self, mail: Mail, process: &mut Process) -> Flow {
        let Mail::Message(message) = mail else {
            return Flow::Continue;
        };
        let node = atom(process.node().name());
        match as_tuple(&message) {
            // `rpc:sbcast/3`: deliver, and say whether the name exists.
            Some([Term::Pid(from), request]) => match as_tuple(request) {
                Some([kind, Term::Atom(name), msg]) if crate::term::is_atom(kind, "sbcast") => {
                    let answer = if process.node().whereis(&name.name).is_some() {
                        process.send(name.name.as_str(), msg.clone());
                        node.clone()
                    } else {
                        tuple(vec![atom("nonexisting_name"), Term::Atom(name.clone())])
                    };
                    process.send(from, tuple(vec![atom("rex"), node, answer]));
                }
                _ if crate::term::is_atom(request, "features_request") => {
                    let reply = tuple(vec![atom("features_reply"), node, list(vec![atom("erpc")])]);
                    process.send(from, reply);
                }
                _ => {}
            },
            _ => tracing::debug!("rex: unexpected message ignored"),
        }
        Flow::Continue
    }
}

pub(super) fn start(node: &Node, service: Arc<RpcService>) {
    if let Err(e) = spawn_server(node, Some("rex"), Rex { service }) {
        tracing::error!(error = %e, "cannot register rex");
    }
}
