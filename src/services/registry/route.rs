//! Where a [`super::Registry`] sends a request first: the serving node last
//! seen holding the key's shard, as `rust_quorum_route` does on BEAM nodes
//! (PROTOCOL.md, "Redirects"), so that in steady state no call pays a
//! redirect.
//!
//! Learned from answers only: a redirect names the holder; a grant or a
//! refusal for a holder (not "no quorum") says the node that answered
//! holds it. A stale entry costs one redirect, which corrects it.

use crate::process::CallError;
use crate::services::protocol::{Reply, Request};
use crate::services::shards::SHARDS;
use crate::services::slots::{shard_of_key, Kind};

/// Shard -> the serving node last seen holding it (at most [`SHARDS`]
/// entries, each a node name a serving node gave or this client was set to).
#[derive(Debug, Default, Clone)]
pub(crate) struct ShardMap {
    holders: Vec<Option<String>>,
}

impl ShardMap {
    /// The shard `request` is routed by: its key's, for a keyed request.
    pub(crate) fn shard(request: &Request) -> Option<u32> {
        let (kind, key) = match request {
            Request::Lock { key, .. } | Request::WhereisLock { key } => (Kind::Lock, key),
            Request::RegisterName { name, .. }
            | Request::StartName { name, .. }
            | Request::WhereisMeta { name }
            | Request::UnregisterName { name } => (Kind::Name, name),
            _ => return None,
        };
        shard_of_key(kind, key)
    }

    /// The node known to hold `shard`.
    pub(crate) fn holder(&self, shard: Option<u32>) -> Option<&str> {
        self.holders.get(shard? as usize)?.as_deref()
    }

    /// `node` holds `shard`.
    pub(crate) fn learn(&mut self, shard: Option<u32>, node: &str) {
        let Some(shard) = shard.filter(|&s| s < SHARDS) else {
            return;
        };
        if self.holders.is_empty() {
            self.holders = vec![None; SHARDS as usize];
        }
        let entry = &mut self.holders[shard as usize];
        if entry.as_deref() != Some(node) {
            *entry = Some(node.to_owned());
        }
    }

    /// `node` answered `request` with `reply` (not a redirect): learned
    /// when the reply shows it served the key (see `served`).
    pub(crate) fn answered(
        &mut self,
        shard: Option<u32>,
        request: &Request,
        reply: &Reply,
        node: &str,
    ) {
        if served(request, reply) {
            self.learn(shard, node);
        }
    }

    /// The call to `node` failed with `error`: what the caller does next.
    /// `from_map`: `node` was asked only because this map named it;
    /// `redirected`: a serving node sent the caller there.
    ///
    /// A mapped node that is gone, or does not answer (hung, or cut off
    /// with no nodedown until net_ticktime), is forgotten and the client's
    /// own server asked instead, which redirects to the shard's holder now:
    /// without this, every call for its shards would wait the full timeout
    /// on it, for ever (no reply ever corrects the map). A node redirected
    /// to that is gone means its shards cannot be granted until its
    /// session lapses: no quorum yet, as `rust_quorum` answers.
    pub(crate) fn failed(
        &mut self,
        node: &str,
        error: &CallError,
        from_map: bool,
        redirected: bool,
    ) -> AfterFailure {
        let gone = matches!(error, CallError::NoProc | CallError::NoConnection);
        let silent = matches!(error, CallError::Timeout);
        if gone || silent {
            self.forget_node(node);
        }
        match () {
            _ if (gone || silent) && from_map => AfterFailure::AskOwnServer,
            _ if gone && redirected => AfterFailure::NoQuorum,
            _ => AfterFailure::Fail,
        }
    }

    /// `node` failed a call: it holds nothing we know of any more.
    pub(crate) fn forget_node(&mut self, node: &str) {
        for entry in &mut self.holders {
            if entry.as_deref() == Some(node) {
                *entry = None;
            }
        }
    }
}

/// What a [`super::Registry`] call does after a failed call (see
/// [`ShardMap::failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Ask this client's own server (once).
    AskOwnServer,
    /// Answer "no quorum" for the request.
    NoQuorum,
    /// Return the error.
    Fail,
}

/// Whether `reply` shows the node that sent it holds the request's shard:
/// it granted, or refused for a holder. Not "no quorum" (a node that could
/// not take the shard answers so; `no` to a registration is that too),
/// and not `whereis_lock` or `unregister_name`, which any node answers.
fn served(request: &Request, reply: &Reply) -> bool {
    match request {
        Request::Lock { .. } => {
            matches!(reply, Reply::Acquired | Reply::Fenced(_) | Reply::HeldBy(_))
        }
        Request::RegisterName { .. } => matches!(reply, Reply::Yes),
        Request::StartName { .. } => matches!(
            reply,
            Reply::Started(_) | Reply::AlreadyStarted(_) | Reply::Conflict(_)
        ),
        Request::WhereisMeta { .. } => matches!(reply, Reply::WhereisMeta(Some(_))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, int, tuple, Pid, Term};

    fn pid() -> Pid {
        Pid::new("a@h", 1, 0, 1)
    }

    fn lock(key: Term) -> Request {
        Request::Lock {
            key,
            owner: pid(),
            block: false,
            fencing: false,
        }
    }

    #[test]
    fn a_keyed_request_has_its_keys_shard() {
        let key = tuple(vec![atom("k"), int(7)]);
        assert_eq!(
            ShardMap::shard(&lock(key.clone())),
            shard_of_key(Kind::Lock, &key)
        );
        let name = Request::WhereisMeta { name: key.clone() };
        assert_eq!(ShardMap::shard(&name), shard_of_key(Kind::Name, &key));
        assert_eq!(ShardMap::shard(&Request::Status), None);
        assert_eq!(ShardMap::shard(&Request::WhereisName { name: key }), None);
    }

    #[test]
    fn learns_from_grants_and_redirects_not_from_no_quorum() {
        let mut map = ShardMap::default();
        let req = lock(atom("k"));
        let shard = ShardMap::shard(&req);
        assert_eq!(map.holder(shard), None);
        map.answered(shard, &req, &Reply::NoQuorum, "a@h");
        assert_eq!(map.holder(shard), None, "no_quorum says nothing");
        map.answered(shard, &req, &Reply::Acquired, "a@h");
        assert_eq!(map.holder(shard), Some("a@h"));
        map.learn(shard, "b@h");
        assert_eq!(map.holder(shard), Some("b@h"), "a redirect corrects it");
        let reg = Request::RegisterName {
            name: atom("k"),
            pid: pid(),
            meta: None,
        };
        let name_shard = ShardMap::shard(&reg);
        map.answered(name_shard, &reg, &Reply::No, "c@h");
        assert_ne!(map.holder(name_shard), Some("c@h"), "`no` may be no quorum");
        map.forget_node("b@h");
        assert_eq!(map.holder(shard), None);
        map.learn(Some(SHARDS), "x@h");
        assert_eq!(map.holder(Some(SHARDS)), None, "out of range is ignored");
    }

    /// Review #6: a mapped node that times out is forgotten and the own
    /// server asked, as for one that is gone; only mapped nodes are
    /// retried elsewhere.
    #[test]
    fn a_mapped_node_that_fails_is_forgotten_and_the_own_server_asked() {
        let req = lock(atom("k"));
        let shard = ShardMap::shard(&req);
        for error in [
            CallError::Timeout,
            CallError::NoProc,
            CallError::NoConnection,
        ] {
            let mut map = ShardMap::default();
            map.learn(shard, "hung@h");
            assert_eq!(
                map.failed("hung@h", &error, true, false),
                AfterFailure::AskOwnServer,
                "{error:?}"
            );
            assert_eq!(map.holder(shard), None, "{error:?} left the row");
        }
        // Redirected to a node that is gone: no quorum yet, row forgotten.
        let mut map = ShardMap::default();
        map.learn(shard, "gone@h");
        assert_eq!(
            map.failed("gone@h", &CallError::NoConnection, false, true),
            AfterFailure::NoQuorum
        );
        assert_eq!(map.holder(shard), None);
        // Redirected to a node that does not answer: the error, but the row
        // goes, so the next call asks the own server first.
        map.learn(shard, "hung@h");
        assert_eq!(
            map.failed("hung@h", &CallError::Timeout, false, true),
            AfterFailure::Fail
        );
        assert_eq!(map.holder(shard), None);
        // The own server failing is the caller's error; it is not in the map.
        map.learn(shard, "other@h");
        assert_eq!(
            map.failed("own@h", &CallError::Timeout, false, false),
            AfterFailure::Fail
        );
        assert_eq!(map.holder(shard), Some("other@h"));
    }
}
