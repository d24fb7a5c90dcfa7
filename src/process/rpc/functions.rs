//! The functions rpc and erpc can call: a table by module, name and arity.

use crate::node::Node;
use crate::term::{atom, tuple, Pid, Term};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

/// One call of a registered function.
#[derive(Debug, Clone)]
pub struct Call {
    /// The node the function runs on.
    pub node: Node,
    /// The process the call runs as (a fresh one per call, as on the BEAM).
    pub pid: Pid,
    /// Who asked (the `erpc`/`rpc` caller, or the spawn requester).
    pub caller: Pid,
    /// The arguments, as many as the registered arity.
    pub args: Vec<Term>,
}

/// How a function fails, as an Erlang exception of that class.
#[derive(Debug, Clone, PartialEq)]
pub enum Exception {
    /// `error:Reason` with a stack (empty: the node fills in the function).
    Error {
        /// The reason, e.g. `badarg`.
        reason: Term,
        /// Stack frames `{M, F, ArityOrArgs, Location}`.
        stack: Vec<Term>,
    },
    /// `exit:Reason`.
    Exit(Term),
    /// `throw:Value`.
    Throw(Term),
}

impl Exception {
    /// `error:Reason`, with the failing function as its stack.
    pub fn error(reason: Term) -> Self {
        Exception::Error {
            reason,
            stack: Vec::new(),
        }
    }

    /// `error:badarg`, what a function says of arguments it cannot take.
    pub fn badarg() -> Self {
        Exception::error(atom("badarg"))
    }
}

type Reply = Pin<Box<dyn Future<Output = Result<Term, Exception>> + Send>>;
pub(super) type Handler = Arc<dyn Fn(Call) -> Reply + Send + Sync>;

/// The registered functions of a node.
#[derive(Default)]
pub struct Functions {
    table: RwLock<HashMap<(String, String, usize), Handler>>,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.table.read().map(|t| t.len()).unwrap_or(0);
        f.debug_struct("Functions").field("registered", &n).finish()
    }
}

impl Functions {
    /// Makes `module:function/arity` callable with `rpc` and `erpc` (and
    /// spawnable with `spawn_request`). A later registration of the same
    /// function replaces it.
    ///
    /// ```
    /// # fn example(node: &erl_quorum::Node) {
    /// use erl_quorum::process::rpc::Exception;
    /// use erl_quorum::term::{as_int, int};
    /// node.rpc_functions().register("calc", "add", 2, |call| async move {
    ///     match (as_int(&call.args[0]), as_int(&call.args[1])) {
    ///         (Some(a), Some(b)) => Ok(int(a + b)),
    ///         _ => Err(Exception::badarg()),
    ///     }
    /// });
    /// # }
    /// ```
    pub fn register<F, Fut>(&self, module: &str, function: &str, arity: usize, f: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Term, Exception>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |call| Box::pin(f(call)));
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((module.to_owned(), function.to_owned(), arity), handler);
    }

    /// Removes a function; true if it was registered.
    pub fn unregister(&self, module: &str, function: &str, arity: usize) -> bool {
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(module.to_owned(), function.to_owned(), arity))
            .is_some()
    }

    /// Whether `module:function/arity` is registered.
    pub fn is_registered(&self, module: &str, function: &str, arity: usize) -> bool {
        self.lookup(module, function, arity).is_some()
    }

    pub(super) fn lookup(&self, module: &str, function: &str, arity: usize) -> Option<Handler> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(module.to_owned(), function.to_owned(), arity))
            .cloned()
    }
}

/// An empty table, for a node without rpc (never the case for a started node).
pub(super) fn none() -> &'static Functions {
    static NONE: OnceLock<Functions> = OnceLock::new();
    NONE.get_or_init(Functions::default)
}

/// `{M, F, ArityOrArgs, []}`: a stack frame as the BEAM writes one.
pub(super) fn frame(module: &str, function: &str, arity_or_args: Term) -> Term {
    tuple(vec![
        atom(module),
        atom(function),
        arity_or_args,
        Term::List(eetf::List::nil()),
    ])
}
