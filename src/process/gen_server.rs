//! gen_server on the Rust side: a trait for servers that BEAM code (or Rust
//! code) calls with `gen_server:call/cast`, and the loop that runs one.
//!
//! Calling a gen_server anywhere is [`Process::call`].

use super::handle::{Process, ProcessError};
use super::mailbox::Mail;
use super::table::RegisterError;
use crate::node::Node;
use crate::term::{as_tuple, atom, is_atom, tuple, Pid, Term};
use std::future::Future;

/// Who made a call: the `From` of `{'$gen_call', From, Request}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub pid: Pid,
    /// `[alias | Mref]` from OTP 24+ `gen_server:call`, `{Ref, Node}` from
    /// `multi_call`, or a plain reference from older callers.
    pub tag: Term,
}

impl Caller {
    /// Parses `{Pid, Tag}`.
    pub fn from_term(from: &Term) -> Option<Caller> {
        match as_tuple(from)? {
            [Term::Pid(pid), tag] => Some(Caller {
                pid: pid.clone(),
                tag: tag.clone(),
            }),
            _ => None,
        }
    }

    /// Sends `{Tag, Reply}` the way `gen:reply/2` does: to the alias when the
    /// tag carries one, otherwise to the caller's pid.
    pub fn reply(&self, process: &Process, reply: Term) {
        let message = tuple(vec![self.tag.clone(), reply]);
        match &self.tag {
            Term::ImproperList(l) if l.elements.len() == 1 && is_atom(&l.elements[0], "alias") => {
                match &*l.last {
                    Term::Reference(alias) => process.send_alias(alias, message),
                    _ => process.send(&self.pid, message),
                }
            }
            _ => process.send(&self.pid, message),
        }
    }
}

/// What `handle_call` wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum CallReply {
    Reply(Term),
    /// Reply later with [`Caller::reply`].
    NoReply,
    /// Stop the server with `reason`, replying first if `reply` is set.
    Stop {
        reason: Term,
        reply: Option<Term>,
    },
}

/// Whether the server goes on after a cast or an info message.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    Continue,
    Stop(Term),
}

/// A Rust gen_server. Implement with `async fn` methods.
pub trait GenServer: Send + 'static {
    fn handle_call(
        &mut self,
        request: Term,
        from: &Caller,
        process: &mut Process,
    ) -> impl Future<Output = CallReply> + Send;

    fn handle_cast(
        &mut self,
        _request: Term,
        _process: &mut Process,
    ) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }

    /// Any other mail: plain messages, DOWNs, trapped exits.
    fn handle_info(
        &mut self,
        _mail: Mail,
        _process: &mut Process,
    ) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }

    /// Called once when the server stops, with the reason.
    fn terminate(&mut self, _reason: &Term) {}
}

/// Starts `server` in a new process, registered as `name` if given.
pub fn spawn_server<S: GenServer>(
    node: &Node,
    name: Option<&str>,
    server: S,
) -> Result<Pid, RegisterError> {
    let process = node.spawn_process();
    if let Some(name) = name {
        process.register(name)?;
    }
    let pid = process.pid().clone();
    tokio::spawn(run(process, server));
    Ok(pid)
}

enum Incoming {
    Call(Caller, Term),
    Cast(Term),
    /// `{system, From, Msg}` from `sys` and `proc_lib:stop`.
    System(Caller, Term),
    Info(Mail),
}

fn classify(mail: Mail) -> Incoming {
    if let Mail::Message(Term::Tuple(t)) = &mail {
        match t.elements.as_slice() {
            [kind, from, request] if is_atom(kind, "$gen_call") => {
                if let Some(caller) = Caller::from_term(from) {
                    return Incoming::Call(caller, request.clone());
                }
                tracing::warn!(from = ?from, "$gen_call with a malformed From; treated as info");
            }
            [kind, message] if is_atom(kind, "$gen_cast") => {
                return Incoming::Cast(message.clone())
            }
            [kind, from, message] if is_atom(kind, "system") => {
                if let Some(caller) = Caller::from_term(from) {
                    return Incoming::System(caller, message.clone());
                }
            }
            _ => {}
        }
    }
    Incoming::Info(mail)
}

async fn run<S: GenServer>(mut process: Process, mut server: S) {
    let reason = loop {
        let mail = match process.recv().await {
            Ok(mail) => mail,
            Err(ProcessError::Exited(reason)) => {
                server.terminate(&reason);
                return;
            }
        };
        let flow = match classify(mail) {
            Incoming::Call(caller, request) => {
                match server.handle_call(request, &caller, &mut process).await {
                    CallReply::Reply(reply) => {
                        caller.reply(&process, reply);
                        Flow::Continue
                    }
                    CallReply::NoReply => Flow::Continue,
                    CallReply::Stop { reason, reply } => {
                        if let Some(reply) = reply {
                            caller.reply(&process, reply);
                        }
                        Flow::Stop(reason)
                    }
                }
            }
            Incoming::Cast(message) => server.handle_cast(message, &mut process).await,
            Incoming::System(caller, message) => system_message(&process, &caller, &message),
            Incoming::Info(mail) => server.handle_info(mail, &mut process).await,
        };
        if let Flow::Stop(reason) = flow {
            break reason;
        }
    };
    server.terminate(&reason);
    process.exit(reason);
}

/// Enough of the `sys` protocol for `gen_server:stop/1,3` to work.
fn system_message(process: &Process, caller: &Caller, message: &Term) -> Flow {
    match as_tuple(message) {
        Some([kind, reason]) if is_atom(kind, "terminate") => {
            caller.reply(process, atom("ok"));
            Flow::Stop(reason.clone())
        }
        _ => {
            caller.reply(process, tuple(vec![atom("error"), atom("not_supported")]));
            Flow::Continue
        }
    }
}
