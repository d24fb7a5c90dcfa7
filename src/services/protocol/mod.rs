//! Every term the services put on the wire, defined once: what BEAM and
//! Rust callers send the `erl_quorum` process ([`Request`]) and what it
//! answers ([`Reply`]), what serving nodes send each other ([`PeerMsg`],
//! and the peer calls in [`Request`]), and what guards and subscribers are
//! sent ([`GuardNotice`], [`NamesChanged`]), and what it asks the masters
//! ([`MasterRequest`], decoded by `quorum::store`), and what it asks a
//! host of supervised names ([`HostMsg`]). Each has one decoder and one
//! encoder; `rebar_fixture/PROTOCOL.md` documents the same shapes for the
//! BEAM side.
//!
//! Decoding never panics: a malformed request is a [`BadRequest`], which
//! has its own OTP-style reply, so a caller always gets an answer.

pub(crate) mod handoff;
mod masters;
mod notices;
pub(crate) mod peer;
mod reply;
mod request;
#[cfg(test)]
mod singleton_tests;
mod singletons;
#[cfg(test)]
mod tests;

pub(crate) use masters::{MasterReply, MasterRequest};
pub(crate) use notices::{lost_reason, GuardNotice, NamesChanged, Notice};
pub(crate) use peer::{PeerMsg, PeerMsgError, PEER_VERSIONS};
pub(crate) use reply::{Reply, ReplyError};
pub(crate) use request::{BadRequest, Request};
pub(crate) use singletons::{HostKind, HostMsg, Restart, Start};

use crate::term::{atom, tuple, Pid, Term};

/// One entry of a name change list: `{Name, Pid}` or `{Name, undefined}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NameChange {
    pub name: Term,
    pub pid: Option<Pid>,
}

impl NameChange {
    pub(crate) fn new(name: Term, pid: Option<Pid>) -> NameChange {
        NameChange { name, pid }
    }

    pub(crate) fn encode(&self) -> Term {
        tuple(vec![
            self.name.clone(),
            self.pid.clone().map_or(atom("undefined"), Term::from),
        ])
    }

    /// `None` for anything but `{Name, Pid}` / `{Name, undefined}`.
    pub(crate) fn decode(term: &Term) -> Option<NameChange> {
        match crate::term::as_tuple(term)? {
            [name, Term::Pid(pid)] => Some(NameChange::new(name.clone(), Some(pid.clone()))),
            [name, none] if crate::term::is_atom(none, "undefined") => {
                Some(NameChange::new(name.clone(), None))
            }
            _ => None,
        }
    }
}

/// A change list; malformed entries are skipped (one bad entry from a peer
/// costs only itself). `None` when `term` is no list at all.
fn decode_changes(term: &Term) -> Option<Vec<NameChange>> {
    let elements = crate::term::list_elements(term)?;
    Some(elements.iter().filter_map(NameChange::decode).collect())
}

fn encode_changes(changes: &[NameChange]) -> Term {
    crate::term::list(changes.iter().map(NameChange::encode).collect())
}

/// `[{Name, Pid}]`, as a snapshot of names; `None` if any entry is not one.
fn decode_names(term: &Term) -> Option<Vec<(Term, Pid)>> {
    crate::term::list_elements(term)?
        .iter()
        .map(|pair| match crate::term::as_tuple(pair)? {
            [name, Term::Pid(pid)] => Some((name.clone(), pid.clone())),
            _ => None,
        })
        .collect()
}

fn encode_names(names: &[(Term, Pid)]) -> Term {
    crate::term::list(
        names
            .iter()
            .map(|(n, p)| tuple(vec![n.clone(), Term::from(p.clone())]))
            .collect(),
    )
}
