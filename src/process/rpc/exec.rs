//! The driver: spawns the process a `SPAWN_REQUEST` asks for, sets up the
//! requester's link and monitor, answers with `SPAWN_REPLY`, runs the
//! function on a task and ends the process with the result.

use super::functions::{Call, Exception, Functions, Handler};
use super::plan::{self, Target};
use crate::node::{Node, SpawnHandler, SpawnRequest};
use crate::term::{atom, binary, tuple, Atom, Term};
use erl_dist::term::PidOrAtom;
use std::any::Any;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Calls running at once; past it a request is refused with
/// `system_limit`, as a BEAM node out of processes refuses a spawn.
const MAX_RUNNING: usize = 10_000;

/// A panic's message is cut to this many bytes in the exception.
const MAX_PANIC_TEXT: usize = 256;

/// The `SPAWN_REQUEST` handler, holding the registered functions.
pub(super) struct RpcService {
    pub(super) functions: Functions,
    running: Arc<Semaphore>,
}

impl RpcService {
    pub(super) fn new() -> Self {
        RpcService {
            functions: Functions::default(),
            running: Arc::new(Semaphore::new(MAX_RUNNING)),
        }
    }

    /// A slot for one more running call, if any is free.
    pub(super) fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.running.clone().try_acquire_owned().ok()
    }

    pub(super) fn handler(&self, target: &Target) -> Option<Handler> {
        self.functions
            .lookup(&target.module, &target.function, target.args.len())
    }
}

impl SpawnHandler for RpcService {
    fn spawn_request(&self, node: &Node, mut request: SpawnRequest) {
        // The requesting BIF names `length(Args)` as the arity; anything
        // else did not come from `spawn_request/5`.
        if usize::try_from(request.arity).ok() != Some(request.args.len()) {
            node.spawn_reply(&request, Err(Atom::from("badarg")));
            return;
        }
        let Some(slot) = self.slot() else {
            node.spawn_reply(&request, Err(Atom::from("system_limit")));
            return;
        };
        let options = plan::options(&request.options);
        let args = std::mem::take(&mut request.args);
        let (target, report) =
            plan::entry(&request.module.name, &request.function.name, args).into_run();
        let handler = target.as_ref().ok().and_then(|t| self.handler(t));

        let process = node.spawn_process();
        let pid = process.pid().clone();
        let mut flags = 0u8;
        let mut out = Vec::new();
        {
            let mut table = node.inner.table();
            if options.link {
                table.link_from_remote(
                    Some(process.id),
                    request.from.clone(),
                    pid.clone(),
                    &mut out,
                );
                flags |= 1;
            }
            if options.monitor {
                let target = PidOrAtom::Pid(pid.clone());
                table.monitor_from_remote(
                    request.from.clone(),
                    &target,
                    Some(process.id),
                    request.req_id.clone(),
                    &mut out,
                );
                flags |= 2;
            }
        }
        node.inner.send_remotes(out);
        // The reply goes out before anything the process does, on the
        // same connection, so the requester knows the pid before its exit.
        node.spawn_reply(&request, Ok((pid.clone(), flags)));

        let node = node.clone();
        let caller = request.from;
        tokio::spawn(async move {
            let result = match target {
                Ok(target) => {
                    let call = |args| Call {
                        node,
                        pid,
                        caller,
                        args,
                    };
                    run(handler, target, call).await
                }
                Err(e) => Err(e),
            };
            process.exit(report.reason(result));
            drop(slot);
        });
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Runs one function to its result: `undef` when nobody registered it, an
/// `error` exception when it panics (the node goes on). `call` makes the
/// function's [`Call`] from the arguments, which move there uncopied.
pub(super) async fn run(
    handler: Option<Handler>,
    target: Target,
    call: impl FnOnce(Vec<Term>) -> Call,
) -> Result<Term, Exception> {
    let Some(handler) = handler else {
        return Err(plan::undef(&target));
    };
    let Target {
        module,
        function,
        args,
    } = target;
    let arity = args.len();
    match tokio::spawn(handler(call(args))).await {
        Ok(result) => result.map_err(|e| plan::with_stack(e, &module, &function, arity)),
        Err(e) if e.is_panic() => {
            let text = panic_text(e.into_panic());
            tracing::warn!(
                %module,
                %function,
                panic = %text,
                "rpc function panicked; the caller gets an exception"
            );
            Err(plan::with_stack(
                Exception::error(tuple(vec![atom("rust_panic"), binary(text)])),
                &module,
                &function,
                arity,
            ))
        }
        Err(_) => Err(Exception::Exit(atom("killed"))),
    }
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    };
    let mut end = text.len().min(MAX_PANIC_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
