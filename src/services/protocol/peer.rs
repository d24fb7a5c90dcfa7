//! Messages between serving nodes that are not calls (the calls are
//! `subscribe_peer` and `unregister_name_here` in [`super::Request`]).
//!
//! Versions: version 1 is the unversioned shapes of the first releases;
//! version 2 carries the version in `subscribe_peer`, its reply and every
//! change batch, so a node in a rolling upgrade can tell what a peer speaks.
//! A node accepts every version in [`PEER_VERSIONS`], answers a
//! subscriber in the version it subscribed with, and refuses any other
//! version with a typed error (never a crash).

use super::handoff::{HandoffError, HandoffMsg};
use super::{decode_changes, encode_changes, NameChange};
use crate::term::{as_atom, as_int, as_tuple, atom, int, is_atom, tuple, Term};
use std::ops::RangeInclusive;

/// The version this node speaks to its peers.
pub(crate) const PEER_VERSION: u32 = 2;
/// The versions this node understands.
pub(crate) const PEER_VERSIONS: RangeInclusive<u32> = 1..=PEER_VERSION;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PeerMsg {
    /// `{rust_registry_peer, Node, Version, Changes}` (version 1:
    /// `{rust_registry_peer, Node, Changes}`): names `Node` itself holds
    /// changed, in order.
    Changes {
        from: String,
        version: u32,
        changes: Vec<NameChange>,
    },
    /// `{erl_quorum_handoff, ...}`: a shard handed over (see
    /// [`super::handoff`]).
    Handoff(HandoffMsg),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum PeerMsgError {
    #[error("not a peer message")]
    NotPeer,
    #[error("malformed peer message")]
    Malformed,
    #[error("unsupported peer protocol version {0}")]
    UnsupportedVersion(i64),
}

impl PeerMsg {
    pub(crate) fn decode(term: &Term) -> Result<PeerMsg, PeerMsgError> {
        match HandoffMsg::decode(term) {
            Ok(msg) => return Ok(PeerMsg::Handoff(msg)),
            Err(HandoffError::NotHandoff) => {}
            Err(HandoffError::Malformed) => return Err(PeerMsgError::Malformed),
            Err(HandoffError::UnsupportedVersion(v)) => {
                return Err(PeerMsgError::UnsupportedVersion(v))
            }
        }
        let Some([tag, rest @ ..]) = as_tuple(term) else {
            return Err(PeerMsgError::NotPeer);
        };
        if !is_atom(tag, "rust_registry_peer") {
            return Err(PeerMsgError::NotPeer);
        }
        let (from, version, changes) = match rest {
            [from, changes] => (from, 1, changes),
            [from, version, changes] => {
                let version = as_int(version).ok_or(PeerMsgError::Malformed)?;
                match u32::try_from(version) {
                    Ok(v) if PEER_VERSIONS.contains(&v) => (from, v, changes),
                    _ => return Err(PeerMsgError::UnsupportedVersion(version)),
                }
            }
            _ => return Err(PeerMsgError::Malformed),
        };
        let from = as_atom(from).ok_or(PeerMsgError::Malformed)?.to_owned();
        let changes = decode_changes(changes).ok_or(PeerMsgError::Malformed)?;
        Ok(PeerMsg::Changes {
            from,
            version,
            changes,
        })
    }

    pub(crate) fn encode(&self) -> Term {
        match self {
            PeerMsg::Handoff(msg) => msg.encode(),
            PeerMsg::Changes {
                from,
                version: 1,
                changes,
            } => tuple(vec![
                atom("rust_registry_peer"),
                atom(from),
                encode_changes(changes),
            ]),
            PeerMsg::Changes {
                from,
                version,
                changes,
            } => tuple(vec![
                atom("rust_registry_peer"),
                atom(from),
                int(i64::from(*version)),
                encode_changes(changes),
            ]),
        }
    }
}
