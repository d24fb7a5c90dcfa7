//! gen_server on the Rust side: a trait for servers that BEAM code (or Rust
//! code) calls with `gen_server:call/cast` and inspects with `sys`, and the
//! functions that start one (the loop itself is in `server_loop`).
//!
//! Calling a gen_server anywhere is [`Process::call`].

use super::handle::Process;
use super::server_loop::{run, NoEvents, ViaEventServer};
use crate::node::Node;
use crate::proc_table::{Mail, RegisterError};
use crate::term::{as_tuple, atom, is_atom, tuple, Pid, Term};
use std::future::Future;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// Who made a call: the `From` of `{'$gen_call', From, Request}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The calling process.
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
    ///
    /// A reply a remote caller could never receive (nested deeper than the
    /// distribution's term limit, an atom over 255 characters, a NaN...)
    /// is replaced by `{error, {reply_unencodable, Why}}` (see
    /// [`unencodable_reply`]), so the caller is answered instead of waiting
    /// for its timeout. Local callers get any term.
    pub fn reply(&self, process: &Process, reply: Term) {
        let mut message = tuple(vec![self.tag.clone(), reply]);
        if !process.node.inner.is_local(&self.pid.node) {
            if let Err(e) = crate::dist::etf::peek::check_encodable(&message) {
                tracing::warn!(caller = ?self.pid, error = %e, "reply cannot be sent; replying with an error");
                message = tuple(vec![self.tag.clone(), unencodable_reply(&e)]);
            }
        }
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

/// `{error, {reply_unencodable, Why}}`: what a remote caller gets instead
/// of a reply that cannot be sent. `Why` is `{too_deep, MaxDepth}` for a
/// reply nested deeper than the distribution's term limit, otherwise a
/// short binary saying what the reply holds that cannot be encoded.
pub(crate) fn unencodable_reply(e: &crate::dist::etf::TermError) -> Term {
    let why = if crate::dist::etf::peek::is_too_deep(e) {
        tuple(vec![
            atom("too_deep"),
            crate::term::int(crate::dist::etf::peek::MAX_DEPTH as i64),
        ])
    } else {
        Term::from(eetf::Binary::from(e.to_string().into_bytes()))
    };
    tuple(vec![
        atom("error"),
        tuple(vec![atom("reply_unencodable"), why]),
    ])
}

/// What `handle_call` wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum CallReply {
    /// Reply now (`{reply, Reply, State}`).
    Reply(Term),
    /// Reply later with [`Caller::reply`].
    NoReply,
    /// Stop the server with `reason`, replying first if `reply` is set.
    Stop {
        /// The exit reason; [`GenServer::terminate`] gets it.
        reason: Term,
        /// Sent to the caller before stopping, if set.
        reply: Option<Term>,
    },
}

/// Whether the server goes on after a cast or an info message.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    /// Go on (`{noreply, State}`).
    Continue,
    /// Stop with this exit reason (`{stop, Reason, State}`).
    Stop(Term),
}

/// A Rust gen_server. Implement with `async fn` methods; everything but
/// `handle_call` has a default.
///
/// The loop takes one input at a time, in this order of priority (like a
/// `biased` select): mail (calls, casts, system messages, info), then
/// events (an [`EventServer`]'s channel), then the [`deadline`], then
/// [`handle_idle`]. While `sys:suspend/1` holds it, only system messages are
/// handled; other mail waits in order.
///
/// [`deadline`]: GenServer::deadline
/// [`handle_idle`]: GenServer::handle_idle
pub trait GenServer: Send + 'static {
    /// A `gen_server:call/2,3` (`{'$gen_call', From, Request}`); answer with
    /// [`CallReply`], or later with [`Caller::reply`].
    fn handle_call(
        &mut self,
        request: Term,
        from: &Caller,
        process: &mut Process,
    ) -> impl Future<Output = CallReply> + Send;

    /// A `gen_server:cast/2` (`{'$gen_cast', Request}`). The default ignores it.
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

    /// The state as an Erlang term: what `sys:get_state/1` returns and the
    /// `"State"` of `sys:get_status/1`. The default is the atom `undefined`
    /// (the state is Rust data that has no Erlang form until one is given).
    /// The reply has the form OTP 26.1+ expects, so `sys:get_state/1` on an
    /// older release returns `{ok, State}` instead of `State`.
    fn state_term(&self) -> Term {
        atom("undefined")
    }

    /// When [`handle_timeout`](GenServer::handle_timeout) is due; `None`
    /// for never. Read again after every input, so a server moves it by
    /// changing its own fields.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Called when the deadline has passed and no mail or event is waiting.
    /// It must move or clear the deadline, or it is called again at once.
    fn handle_timeout(&mut self, _process: &mut Process) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }

    /// Whether [`handle_idle`](GenServer::handle_idle) is wanted: work
    /// batched across inputs is pending.
    fn wants_idle(&self) -> bool {
        false
    }

    /// Called when no input is ready, only while [`wants_idle`] is true (it
    /// must become false once the batched work is done, or the loop spins):
    /// for example to flush messages gathered from a burst of calls once the
    /// mailbox is momentarily empty.
    ///
    /// [`wants_idle`]: GenServer::wants_idle
    fn handle_idle(&mut self, _process: &mut Process) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }
}

/// A gen_server that also takes inputs from Rust code through a channel
/// (see [`start_event_server`]); they rank after mail, before the deadline.
pub trait EventServer: GenServer {
    /// What Rust code sends on the channel.
    type Event: Send + 'static;

    /// One event from the channel.
    fn handle_event(
        &mut self,
        event: Self::Event,
        process: &mut Process,
    ) -> impl Future<Output = Flow> + Send;
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
    tokio::spawn(run::<S, NoEvents>(process, server, None));
    Ok(pid)
}

/// Runs `server` on `process` (already registered, or not, as the caller
/// chose), taking events from `events` as well as mail. Once every sender
/// of `events` is gone the server goes on with mail alone.
pub fn start_event_server<S: EventServer>(
    process: Process,
    server: S,
    events: UnboundedReceiver<S::Event>,
) -> Pid {
    let pid = process.pid().clone();
    tokio::spawn(run::<S, ViaEventServer>(process, server, Some(events)));
    pid
}
