//! What a serving node sends guards (`rust_quorum` on the owner's node) and
//! subscribers, and the exit reason an owner gets when its hold is lost.

use super::{encode_changes, NameChange};
use crate::services::slots::Kind;
use crate::term::{as_atom, as_tuple, atom, tuple, Pid, Term};

/// What happened to an owner's hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `eq_owned`: granted (sent before the reply that grants it).
    Owned,
    /// `eq_released`: the entry is gone.
    Released,
    /// `eq_lost`: the session could not be renewed; tell the owner now.
    Lost,
    /// `eq_moved`: the hold went on to another serving node (which sent
    /// its own `eq_owned`): forget it for this node, tell nobody.
    Moved,
}

impl Notice {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Notice::Owned => "eq_owned",
            Notice::Released => "eq_released",
            Notice::Lost => "eq_lost",
            Notice::Moved => "eq_moved",
        }
    }
}

/// `{eq_owned | eq_released | eq_lost, RustNode, Owner, Kind, Key}`, to the
/// registered name `rust_quorum` on the owner's node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GuardNotice {
    pub notice: Notice,
    /// The serving node.
    pub node: String,
    pub owner: Pid,
    pub kind: Kind,
    pub key: Term,
    /// With `eq_moved`: the serving node the hold went to (the guard keeps
    /// the owner under it at once: its own `eq_owned` may come later).
    pub to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a guard notice")]
pub(crate) struct NoticeError;

impl GuardNotice {
    /// `{eq_moved, RustNode, Owner, Kind, Key, ToNode}` has the taker last.
    pub(crate) fn encode(&self) -> Term {
        let mut fields = vec![
            atom(self.notice.as_str()),
            atom(&self.node),
            Term::from(self.owner.clone()),
            atom(self.kind.as_str()),
            self.key.clone(),
        ];
        fields.extend(self.to.as_deref().map(atom));
        tuple(fields)
    }

    pub(crate) fn decode(term: &Term) -> Result<GuardNotice, NoticeError> {
        let (what, node, owner, kind, key, to) = match as_tuple(term) {
            Some([what, node, Term::Pid(owner), kind, key]) => (what, node, owner, kind, key, None),
            Some([what, node, Term::Pid(owner), kind, key, to]) => {
                let to = as_atom(to).ok_or(NoticeError)?.to_owned();
                (what, node, owner, kind, key, Some(to))
            }
            _ => return Err(NoticeError),
        };
        let notice = match as_atom(what) {
            Some("eq_owned") => Notice::Owned,
            Some("eq_released") => Notice::Released,
            Some("eq_lost") => Notice::Lost,
            Some("eq_moved") if to.is_some() => Notice::Moved,
            _ if to.is_some() => return Err(NoticeError),
            _ => return Err(NoticeError),
        };
        let kind = match as_atom(kind) {
            Some("lock") => Kind::Lock,
            Some("name") => Kind::Name,
            _ => return Err(NoticeError),
        };
        Ok(GuardNotice {
            notice,
            node: as_atom(node).ok_or(NoticeError)?.to_owned(),
            owner: owner.clone(),
            kind,
            key: key.clone(),
            to,
        })
    }
}

/// `{rust_registry, RustNode, Changes}`: to a subscriber, every change of a
/// name, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NamesChanged {
    pub node: String,
    pub changes: Vec<NameChange>,
}

impl NamesChanged {
    pub(crate) fn encode(&self) -> Term {
        tuple(vec![
            atom("rust_registry"),
            atom(&self.node),
            encode_changes(&self.changes),
        ])
    }

    /// (Only the BEAM side reads these; the tests read them back.)
    #[cfg(test)]
    pub(crate) fn decode(term: &Term) -> Option<NamesChanged> {
        match as_tuple(term)? {
            [tag, node, changes] if as_atom(tag) == Some("rust_registry") => Some(NamesChanged {
                node: as_atom(node)?.to_owned(),
                changes: super::decode_changes(changes)?,
            }),
            _ => None,
        }
    }
}

/// `{lock_lost, Key}` / `{name_lost, Name}`: the exit reason (or message)
/// an owner gets when its hold may lapse.
pub(crate) fn lost_reason(kind: Kind, key: Term) -> Term {
    let what = match kind {
        Kind::Lock => "lock_lost",
        Kind::Name => "name_lost",
    };
    tuple(vec![atom(what), key])
}
