//! The loop that runs a [`GenServer`] (and an [`EventServer`]): picks the
//! next input by priority, dispatches it, answers the `sys` protocol, and
//! holds everything but system messages while suspended.

use super::gen_server::{CallReply, Caller, EventServer, Flow, GenServer};
use super::handle::{Process, ProcessError};
use super::sys::{self, StatusView, SysAction};
use crate::proc_table::Mail;
use crate::term::{is_atom, Term};
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// How the loop hands a server the events of its channel: one loop serves
/// plain servers ([`NoEvents`]) and event servers ([`ViaEventServer`]).
pub(super) trait EventSource<S>: Send {
    type Event: Send + 'static;

    fn handle(
        server: &mut S,
        event: Self::Event,
        process: &mut Process,
    ) -> impl Future<Output = Flow> + Send;
}

/// A plain [`GenServer`]: it has no channel, so no event ever arrives.
pub(super) struct NoEvents(PhantomData<Infallible>);

impl<S: GenServer> EventSource<S> for NoEvents {
    type Event = Infallible;

    async fn handle(_server: &mut S, event: Infallible, _process: &mut Process) -> Flow {
        match event {}
    }
}

/// An [`EventServer`]: events go to its `handle_event`.
pub(super) struct ViaEventServer(PhantomData<Infallible>);

impl<S: EventServer> EventSource<S> for ViaEventServer {
    type Event = S::Event;

    fn handle(
        server: &mut S,
        event: S::Event,
        process: &mut Process,
    ) -> impl Future<Output = Flow> + Send {
        server.handle_event(event, process)
    }
}

enum Incoming {
    Call(Caller, Term),
    Cast(Term),
    /// `{system, From, Msg}` from `sys` and `proc_lib:stop`.
    System(Caller, Term),
    Info(Mail),
}

/// `{system, From, Msg}` with a well-formed `From`: what `sys` sends, and
/// what a suspended server still takes.
fn system_message(mail: &Mail) -> Option<(Caller, &Term)> {
    match mail {
        Mail::Message(Term::Tuple(t)) => match t.elements.as_slice() {
            [kind, from, message] if is_atom(kind, "system") => {
                Caller::from_term(from).map(|caller| (caller, message))
            }
            _ => None,
        },
        _ => None,
    }
}

fn classify(mail: Mail) -> Incoming {
    if let Some((caller, message)) = system_message(&mail) {
        return Incoming::System(caller, message.clone());
    }
    if let Mail::Message(Term::Tuple(t)) = &mail {
        match t.elements.as_slice() {
            [kind, from, request] if is_atom(kind, "$gen_call") => {
                if let Some(caller) = Caller::from_term(from) {
                    return Incoming::Call(caller, request.clone());
                }
                tracing::warn!(from = %crate::term::Brief(from), "$gen_call with a malformed From; treated as info");
            }
            [kind, message] if is_atom(kind, "$gen_cast") => {
                return Incoming::Cast(message.clone())
            }
            _ => {}
        }
    }
    Incoming::Info(mail)
}

fn is_system(mail: &Mail) -> bool {
    system_message(mail).is_some()
}

/// One input for the server, in the order the loop prefers them.
enum Input<E> {
    Mail(Mail),
    Event(E),
    /// Every sender of the event channel is gone.
    EventsClosed,
    Timeout,
    Idle,
}

/// Runs `server` on `process` until it stops or the process is killed.
pub(super) async fn run<S: GenServer, H: EventSource<S>>(
    mut process: Process,
    mut server: S,
    mut events: Option<UnboundedReceiver<H::Event>>,
) {
    let mut suspended = false;
    let reason = loop {
        let input = if suspended {
            next_system_message(&mut process).await
        } else {
            let (deadline, wants_idle) = (server.deadline(), server.wants_idle());
            next_input(&mut process, &mut events, deadline, wants_idle).await
        };
        let input = match input {
            Ok(input) => input,
            Err(ProcessError::Exited(reason)) => {
                server.terminate(&reason);
                return;
            }
        };
        let flow = match input {
            Input::Mail(mail) => match classify(mail) {
                Incoming::Call(caller, request) => {
                    call(&mut server, &caller, request, &mut process).await
                }
                Incoming::Cast(message) => server.handle_cast(message, &mut process).await,
                Incoming::System(caller, message) => {
                    system(&server, &caller, &message, &process, &mut suspended)
                }
                Incoming::Info(mail) => server.handle_info(mail, &mut process).await,
            },
            Input::Event(event) => H::handle(&mut server, event, &mut process).await,
            Input::EventsClosed => {
                events = None;
                Flow::Continue
            }
            Input::Timeout => server.handle_timeout(&mut process).await,
            Input::Idle => server.handle_idle(&mut process).await,
        };
        if let Flow::Stop(reason) = flow {
            break reason;
        }
    };
    server.terminate(&reason);
    process.exit(reason);
}

/// Answers a system message; `suspended` follows suspend and resume.
fn system<S: GenServer>(
    server: &S,
    caller: &Caller,
    message: &Term,
    process: &Process,
    suspended: &mut bool,
) -> Flow {
    let name = process.registered_name();
    let view = StatusView {
        pid: process.pid(),
        name: name.as_deref(),
        suspended: *suspended,
    };
    let (reply, action) = sys::answer(message, view, || server.state_term());
    caller.reply(process, reply);
    match action {
        SysAction::Continue => {}
        SysAction::Suspend => *suspended = true,
        SysAction::Resume => *suspended = false,
        SysAction::Stop(reason) => return Flow::Stop(reason),
    }
    Flow::Continue
}

async fn call<S: GenServer>(
    server: &mut S,
    caller: &Caller,
    request: Term,
    process: &mut Process,
) -> Flow {
    match server.handle_call(request, caller, process).await {
        CallReply::Reply(reply) => {
            caller.reply(process, reply);
            Flow::Continue
        }
        CallReply::NoReply => Flow::Continue,
        CallReply::Stop { reason, reply } => {
            if let Some(reply) = reply {
                caller.reply(process, reply);
            }
            Flow::Stop(reason)
        }
    }
}

/// The next input of a running server: mail first, then events, then the
/// deadline, then idle (only while the server wants it, so it never spins).
async fn next_input<E>(
    process: &mut Process,
    events: &mut Option<UnboundedReceiver<E>>,
    deadline: Option<Instant>,
    wants_idle: bool,
) -> Result<Input<E>, ProcessError> {
    let has_events = events.is_some();
    if !has_events && deadline.is_none() && !wants_idle {
        // A plain server: nothing to race the mailbox against.
        return process.recv().await.map(Input::Mail);
    }
    // Every branch is cancel-safe: a selective receive keeps skipped mail,
    // and an unbounded channel's recv loses nothing when dropped.
    tokio::select! {
        biased;
        mail = process.recv() => mail.map(Input::Mail),
        event = next_event(events), if has_events => {
            Ok(event.map_or(Input::EventsClosed, Input::Event))
        }
        () = sleep_until(deadline), if deadline.is_some() => Ok(Input::Timeout),
        () = std::future::ready(()), if wants_idle => Ok(Input::Idle),
    }
}

/// The next system message of a suspended server; other mail stays queued
/// in order for after the resume.
async fn next_system_message<E>(process: &mut Process) -> Result<Input<E>, ProcessError> {
    loop {
        if let Some(mail) = process.recv_match(None, is_system).await? {
            return Ok(Input::Mail(mail));
        }
    }
}

async fn next_event<E>(events: &mut Option<UnboundedReceiver<E>>) -> Option<E> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
