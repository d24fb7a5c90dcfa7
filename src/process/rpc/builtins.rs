//! The functions every node answers, registered when the node starts: what
//! operators type and libraries call (`erlang:node/0`, `nodes/0,1`,
//! `whereis/1`, `is_process_alive/1`, `registered/0`, a few
//! `system_info/1` items). Arguments are checked as the BIFs check them:
//! `error:badarg` otherwise.

use super::functions::{Call, Exception, Functions};
use crate::term::{atom, int, list, string, Term};

/// The oldest OTP release whose distribution protocol this node speaks
/// (peers lacking OTP 25's mandatory flags are refused).
const OTP_RELEASE: &str = "25";

pub(super) fn register(functions: &Functions) {
    functions.register("erlang", "node", 0, |c: Call| async move {
        Ok(atom(c.node.name()))
    });
    functions.register("erlang", "nodes", 0, |c: Call| async move {
        Ok(names(c.node.connected_nodes_by_kind().0))
    });
    functions.register("erlang", "nodes", 1, |c: Call| async move { nodes(&c) });
    functions.register("erlang", "whereis", 1, |c: Call| async move {
        match &c.args[0] {
            Term::Atom(name) => Ok(c
                .node
                .whereis(&name.name)
                .map(Term::from)
                .unwrap_or_else(|| atom("undefined"))),
            _ => Err(Exception::badarg()),
        }
    });
    functions.register("erlang", "registered", 0, |c: Call| async move {
        let mut registered = c.node.registered();
        registered.sort();
        Ok(names(registered))
    });
    functions.register("erlang", "is_process_alive", 1, |c: Call| async move {
        match &c.args[0] {
            // Like the BIF: only a pid of this node may be asked about.
            Term::Pid(pid) if pid.node.name == c.node.name() => {
                Ok(atom(if c.node.is_process_alive(pid) {
                    "true"
                } else {
                    "false"
                }))
            }
            _ => Err(Exception::badarg()),
        }
    });
    functions.register("erlang", "system_info", 1, |c: Call| async move {
        match &c.args[0] {
            Term::Atom(a) if a.name == "otp_release" => Ok(string(OTP_RELEASE)),
            Term::Atom(a) if a.name == "version" => Ok(string(env!("CARGO_PKG_VERSION"))),
            Term::Atom(a) if a.name == "system_version" => Ok(string(&format!(
                "erl_quorum {} (Rust), distribution as Erlang/OTP {OTP_RELEASE}+\n",
                env!("CARGO_PKG_VERSION")
            ))),
            Term::Atom(a) if a.name == "process_count" => Ok(int(c.node.process_count() as i64)),
            _ => Err(Exception::badarg()),
        }
    });
}

fn names(nodes: Vec<String>) -> Term {
    list(nodes.iter().map(|n| atom(n)).collect())
}

/// `erlang:nodes(Arg)`: `visible`, `hidden`, `connected`, `this`, `known`,
/// or a list of them.
fn nodes(c: &Call) -> Result<Term, Exception> {
    let kinds: Vec<String> = match &c.args[0] {
        Term::Atom(a) => vec![a.name.clone()],
        l => crate::term::list_elements(l)
            .ok_or_else(Exception::badarg)?
            .iter()
            .map(|k| {
                crate::term::as_atom(k)
                    .map(str::to_owned)
                    .ok_or_else(Exception::badarg)
            })
            .collect::<Result<_, _>>()?,
    };
    let (visible, hidden) = c.node.connected_nodes_by_kind();
    let (mut this, mut vis, mut hid) = (false, false, false);
    for kind in kinds {
        match kind.as_str() {
            "this" => this = true,
            "visible" => vis = true,
            "hidden" => hid = true,
            "connected" | "known" => (vis, hid) = (true, true),
            _ => return Err(Exception::badarg()),
        }
    }
    let mut out = Vec::new();
    if this {
        out.push(c.node.name().to_owned());
    }
    if vis {
        out.extend(visible);
    }
    if hid {
        out.extend(hidden);
    }
    Ok(names(out))
}
