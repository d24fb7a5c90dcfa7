//! The protocol's decisions, without I/O: which spawn options count, what a
//! spawn request runs, and how a result travels back to each kind of
//! caller. Mirrors OTP's `erpc:execute_call/4`, `erpc:execute_cast/3` and
//! `rpc`'s `rex`, so a caller cannot tell this node from a BEAM one.

use super::functions::{frame, Exception};
use crate::term::{atom, list_elements, tuple, Term};

/// The options of a spawn request this node acts on. The rest are the
/// requester's own (`{reply, _}`, `{reply_tag, _}`) or tune a BEAM process
/// (`priority`, heap sizes), and are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Options {
    pub link: bool,
    pub monitor: bool,
}

pub(super) fn options(opts: &[Term]) -> Options {
    let mut o = Options::default();
    for opt in opts {
        match opt {
            Term::Atom(a) if a.name == "link" => o.link = true,
            Term::Atom(a) if a.name == "monitor" => o.monitor = true,
            // `{monitor, MonitorOpts}` (OTP 24+: aliases, tags) is still a monitor.
            Term::Tuple(t)
                if t.elements.len() == 2
                    && matches!(&t.elements[0], Term::Atom(a) if a.name == "monitor") =>
            {
                o.monitor = true
            }
            _ => {}
        }
    }
    o
}

/// The function a spawned process applies.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Target {
    pub module: String,
    pub function: String,
    pub args: Vec<Term>,
}

/// What a spawned process runs, and so how it reports its result.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Entry {
    /// `erpc:execute_call(Res, M, F, A)`: the result is the exit reason
    /// `{Res, return | throw | exit | error, ...}` the caller's monitor sees.
    ErpcCall {
        res: Term,
        target: Result<Target, Exception>,
    },
    /// `erpc:execute_cast(M, F, A)`: nobody waits for the result.
    ErpcCast { target: Result<Target, Exception> },
    /// Any other `M:F(Args...)`, spawned as is.
    Direct(Target),
}

/// How a spawned process reports what its function returned.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Report {
    /// As `erpc:execute_call/4` exits: `{Res, Class, ...}`.
    Erpc { res: Term },
    /// As a plain process exits: `normal` or the failure.
    ExitReason,
}

impl Report {
    /// The exit reason carrying `result`.
    pub(super) fn reason(self, result: Result<Term, Exception>) -> Term {
        match self {
            Report::Erpc { res } => erpc_reason(&res, result),
            Report::ExitReason => exit_reason(result),
        }
    }
}

impl Entry {
    /// What to run (or the exception `apply` raises instead), and how its
    /// result leaves the process.
    pub(super) fn into_run(self) -> (Result<Target, Exception>, Report) {
        match self {
            Entry::ErpcCall { res, target } => (target, Report::Erpc { res }),
            Entry::ErpcCast { target } => (target, Report::ExitReason),
            Entry::Direct(target) => (Ok(target), Report::ExitReason),
        }
    }
}

/// What a `SPAWN_REQUEST` for `module:function(args...)` runs.
pub(super) fn entry(module: &str, function: &str, mut args: Vec<Term>) -> Entry {
    match (module, function, args.len()) {
        ("erpc", "execute_call", 4) => {
            let res = args.remove(0);
            Entry::ErpcCall {
                res,
                target: apply_target(args),
            }
        }
        ("erpc", "execute_cast", 3) => Entry::ErpcCast {
            target: apply_target(args),
        },
        _ => Entry::Direct(Target {
            module: module.to_owned(),
            function: function.to_owned(),
            args,
        }),
    }
}

/// `apply(M, F, A)`'s arguments; what `apply` raises when they are not an
/// atom, an atom and a proper list (erpc reports it as `{erpc, badarg}`).
pub(super) fn apply_target(mfa: Vec<Term>) -> Result<Target, Exception> {
    let mut mfa = mfa.into_iter();
    match (mfa.next(), mfa.next(), mfa.next()) {
        // (A list of small integers arrives as a string: `list_elements`
        // reads both forms.)
        (Some(Term::Atom(m)), Some(Term::Atom(f)), Some(a)) => match list_elements(&a) {
            Some(args) => Ok(Target {
                module: m.name,
                function: f.name,
                args,
            }),
            None => Err(erpc_badarg()),
        },
        _ => Err(erpc_badarg()),
    }
}

fn erpc_badarg() -> Exception {
    Exception::Error {
        reason: tuple(vec![atom("erpc"), atom("badarg")]),
        stack: Vec::new(),
    }
}

/// `error:undef` for a function nobody registered, with the stack a BEAM
/// node gives: `[{M, F, Args, []}]`.
pub(super) fn undef(target: &Target) -> Exception {
    Exception::Error {
        reason: atom("undef"),
        stack: vec![frame(
            &target.module,
            &target.function,
            crate::term::list(target.args.clone()),
        )],
    }
}

/// An exception from registered function `module:function/arity`, with
/// the function as its stack when it gave none.
pub(super) fn with_stack(e: Exception, module: &str, function: &str, arity: usize) -> Exception {
    match e {
        Exception::Error { reason, stack } if stack.is_empty() => Exception::Error {
            reason,
            stack: vec![frame(module, function, crate::term::int(arity as i64))],
        },
        other => other,
    }
}

/// The exit reason of an `erpc:execute_call/4` process.
pub(super) fn erpc_reason(res: &Term, result: Result<Term, Exception>) -> Term {
    let res = res.clone();
    match result {
        Ok(value) => tuple(vec![res, atom("return"), value]),
        Err(Exception::Throw(v)) => tuple(vec![res, atom("throw"), v]),
        Err(Exception::Exit(r)) => tuple(vec![res, atom("exit"), r]),
        // erpc's own argument errors travel without a stack.
        Err(Exception::Error { reason, stack }) if is_erpc_error(&reason) && stack.is_empty() => {
            tuple(vec![res, atom("error"), reason])
        }
        Err(Exception::Error { reason, stack }) => {
            tuple(vec![res, atom("error"), reason, crate::term::list(stack)])
        }
    }
}

fn is_erpc_error(reason: &Term) -> bool {
    matches!(reason, Term::Tuple(t) if t.elements.len() == 2
        && matches!(&t.elements[0], Term::Atom(a) if a.name == "erpc"))
}

/// What `rex` answers a `{call, M, F, A, GL}` with (`rpc:execute_call/3`):
/// the value, a thrown value as is, or `{badrpc, {'EXIT', ...}}`.
pub(super) fn rpc_reply(result: Result<Term, Exception>) -> Term {
    let badrpc = |r: Term| tuple(vec![atom("badrpc"), tuple(vec![atom("EXIT"), r])]);
    match result {
        Ok(value) | Err(Exception::Throw(value)) => value,
        Err(Exception::Exit(r)) => badrpc(r),
        Err(Exception::Error { reason, stack }) if stack.is_empty() => badrpc(reason),
        Err(Exception::Error { reason, stack }) => {
            badrpc(tuple(vec![reason, crate::term::list(stack)]))
        }
    }
}

/// The exit reason of a process that ran `Direct` or a cast: `normal`, or
/// what the BEAM gives a process that raised (`{Reason, Stack}`,
/// `{{nocatch, V}, Stack}`, or the exit reason).
pub(super) fn exit_reason(result: Result<Term, Exception>) -> Term {
    match result {
        Ok(_) => atom("normal"),
        Err(Exception::Exit(r)) => r,
        Err(Exception::Throw(v)) => tuple(vec![
            tuple(vec![atom("nocatch"), v]),
            Term::List(eetf::List::nil()),
        ]),
        Err(Exception::Error { reason, stack }) => tuple(vec![reason, crate::term::list(stack)]),
    }
}
