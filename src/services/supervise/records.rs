//! Records of supervised names held here: their owners' ends, restart
//! decisions when the slot releases a name, unregister, and meta.

use super::*;

impl Supervise {
    /// A monitored owner went (`None`: its node's connection was lost).
    pub(crate) fn owner_down(&mut self, pid: &Pid, reason: Option<Term>) {
        let Some(keys) = self.by_owner.get(pid) else {
            return;
        };
        let gone = reason.map_or(Gone::NodeLost, Gone::Exited);
        for key in keys {
            if let Some(record) = self.records.get_mut(key) {
                record.gone = Some(gone.clone());
            }
        }
    }

    fn drop_record(&mut self, key: &Canon) -> Option<Record> {
        let record = self.records.remove(key)?;
        if let Some(keys) = self.by_owner.get_mut(&record.owner) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_owner.remove(&record.owner);
            }
        }
        Some(record)
    }

    /// The slot released `name` (its `NameChanged` to `undefined`). A
    /// recorded name whose owner went is restarted as its Restart says;
    /// released for any other reason (session lost), it is forgotten.
    pub(crate) fn released(&mut self, name: &Term, now: Instant) {
        let Some(key) = name_key(name) else { return };
        self.metas.remove(&key);
        let Some(mut record) = self.drop_record(&key) else {
            return;
        };
        let (reason, placement) = match record.gone.take() {
            Some(Gone::Exited(reason)) => {
                let node = record.owner.node.name.clone();
                let placement = Placement {
                    first: Some(record.host.clone()).filter(|h| h.node.name == node),
                    prefer_node: Some(node),
                    avoid_node: None,
                };
                (Some(reason), placement)
            }
            Some(Gone::NodeLost) => {
                let placement = Placement {
                    avoid_node: Some(record.owner.node.name.clone()),
                    ..Placement::default()
                };
                (None, placement)
            }
            None => return,
        };
        if !record.restart.restarts_after(reason.as_ref()) {
            return;
        }
        if !record.intensity.allow(now) {
            tracing::error!(%name, "erl_quorum: a supervised name restarted too often; giving up");
            return;
        }
        tracing::info!(%name, keeper = %record.keeper, "erl_quorum: restarting a supervised name");
        let to_try = self.hosts.order(record.start.kind(), &placement);
        let pending = Pending {
            id: 0,
            name: record.name,
            start: record.start,
            restart: record.restart,
            meta: record.meta,
            phase: Phase::Waiting,
            to_try,
            placement,
            trigger: None,
            parked: Vec::new(),
            intensity: record.intensity,
            is_restart: true,
            attempted: false,
            held_since: None,
        };
        self.pending.insert(key.clone(), pending);
        self.next_host(key, atom("no_host"), now);
    }

    /// `unregister_name` of a name held here: its record goes (no restart)
    /// and its owner gets exit signal `shutdown`; a start in flight is
    /// abandoned and what waited on it is served again.
    pub(crate) fn unregister(&mut self, name: &Term) {
        let Some(key) = name_key(name) else { return };
        self.metas.remove(&key);
        if let Some(record) = self.drop_record(&key) {
            self.actions.push(Action::Exit {
                owner: record.owner,
                reason: atom("shutdown"),
            });
        }
        if let Some(mut pending) = self.pending.remove(&key) {
            self.by_id.remove(&pending.id);
            if let Some(caller) = pending.trigger.take() {
                self.actions.push(Action::Reply(caller, Reply::NoQuorum));
            }
            for (caller, request) in pending.parked {
                self.actions.push(Action::Serve(caller, request));
            }
        }
    }

    /// `{register_name, Name, Pid, Meta}`: Meta is kept for the name while
    /// `pid` holds it.
    pub(crate) fn set_meta(&mut self, name: &Term, pid: Pid, meta: Term) {
        if let Some(key) = name_key(name) {
            self.metas.insert(key, (pid, meta));
        }
    }

    /// The meta of `name`, held by `holder`.
    pub(crate) fn meta(&self, name: &Term, holder: &Pid) -> Term {
        let Some(key) = name_key(name) else {
            return atom("undefined");
        };
        if let Some(record) = self.records.get(&key).filter(|r| r.owner == *holder) {
            return record.meta.clone();
        }
        match self.metas.get(&key) {
            Some((pid, meta)) if pid == holder => meta.clone(),
            _ => atom("undefined"),
        }
    }
}
