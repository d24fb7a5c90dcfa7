//! The taker's side of a graceful handoff (see the parent module for the
//! protocol): answering an `ask`, installing the `state`, a cancel, and
//! the confirm round when the state never came.

use super::*;

impl Core {
    /// Taker: will this node take `shard`?
    pub(super) fn asked(&mut self, from: String, id: u64, shard: u32) {
        let willing = !self.handoffs.stopping && self.may_grant();
        if !(willing && self.routing.shards.receive(shard, &from, id)) {
            self.send_handoff(&from, id, HandoffBody::No { shard });
            return;
        }
        let value = self.shard_value();
        let session = self.lease.session.term.clone();
        let valid_ms = self.lease.valid_ms(self.now);
        self.send_handoff(&from, id, HandoffBody::Valid { shard, valid_ms });
        self.send_handoff(
            &from,
            id,
            HandoffBody::Ready {
                shard,
                value,
                session,
            },
        );
        let at = self.now + self.receive_wait();
        self.timers.at(at, Timer::Receive(shard, from, id));
    }

    /// How long a taker waits for the state before it confirms the shard
    /// and serves it empty: past the giver's last moment ([`RECEIVE_WAIT`])
    /// and, beyond it, a session lease and the margin. A hold whose
    /// owner's node lost the giver while the shard's transfer round ran
    /// (orphaned) is moved without a notice;
    /// its guard may keep it until the validity the giver last promised
    /// it (at most a lease), which the giver cannot shorten: were the state
    /// lost, the taker would otherwise grant its key to another owner too
    /// soon (the simulation found it with transfers delayed by seconds).
    pub(super) fn receive_wait(&self) -> Duration {
        GIVER_LAST + self.config.session_lease + self.config.margin
    }

    /// Taker: the giver abandoned handoff `id` (`no`): the shard is the
    /// giver's again; the requests parked for it go there. (A round of the
    /// giver's moved back to fewer than W masters is not abandoned this
    /// way: the giver gives the shard up and says nothing, and this node
    /// confirms after its receive wait.)
    pub(super) fn receive_cancelled(&mut self, from: &str, id: u64, shard: u32) {
        let until = self.now + FOREIGN_TTL;
        let Some(parked) = self
            .routing
            .shards
            .receive_cancelled(shard, from, id, until)
        else {
            return;
        };
        tracing::info!(shard, peer = %from, "erl_quorum: handoff abandoned by the giver");
        self.redirect(from, parked);
        self.wake_shard_waiters(shard);
    }

    /// Taker: the state of handoff `id` of `from`.
    pub(super) fn install(
        &mut self,
        from: String,
        id: u64,
        shard: u32,
        next_token: u64,
        ok_at: Vec<String>,
        slots: Vec<MovedSlot>,
    ) {
        let again = self
            .handoffs
            .installed
            .iter()
            .any(|(f, i, s)| *f == from && *i == id && *s == shard);
        if again {
            self.send_handoff(&from, id, HandoffBody::Done { shard });
            return;
        }
        if !self.routing.shards.receiving(shard, &from, id) {
            tracing::warn!(shard, peer = %from, "erl_quorum: handoff state not waited for; ignored");
            return;
        }
        let epoch = self.lease.session.epoch;
        let parked = self.routing.shards.received(shard, epoch);
        self.routing.fences.adopt(shard, next_token);
        // Held now (a repair writes it); a master that did not say yes may
        // lack it: it stops counting until repaired.
        for master in self.lease.shard_taken(&ok_at, self.config.w) {
            self.repair(master);
        }
        // Grants may now wait for a renewal: it starts now, not in 1 s.
        self.renew_if_due();
        // The giver may have promised the owners' guards validity up to a
        // lease from now (its keepalive answers): an owner's node that
        // falls silent from here is released no sooner than that.
        let until = self.now + self.config.session_lease;
        let nodes: BTreeSet<String> = slots
            .iter()
            .filter(|s| !s.orphaned)
            .filter_map(|s| s.holder.as_ref().map(|(o, _)| o.node.name.clone()))
            .filter(|node| *node != self.me.node)
            .collect();
        for node in nodes {
            self.silence.taken_over(&node, until);
        }
        let count = slots.len();
        for slot in slots {
            self.slots.import(slot);
        }
        tracing::info!(shard, peer = %from, slots = count, "erl_quorum: shard taken over");
        self.handoffs.installed.push_back((from.clone(), id, shard));
        if self.handoffs.installed.len() > INSTALLED_KEPT {
            self.handoffs.installed.pop_front();
        }
        // The guards' `eq_owned` (in the slots' actions) go out before any
        // grant: settle carries the actions out in order.
        self.settle();
        self.wake_shard_waiters(shard);
        for p in parked {
            self.serve(p.caller, p.request);
        }
        // The names announced as this node's go out before `done`: the
        // giver exits soon after, and subscribers of a third node must not
        // miss them when they resubscribe there.
        self.flush_changes();
        self.send_handoff(&from, id, HandoffBody::Done { shard });
    }

    /// [`Timer::Receive`]: the state never came; whether this node holds
    /// the shard is found out by a confirm round.
    pub(in crate::services::core) fn receive_due(&mut self, shard: u32, from: String, id: u64) {
        let epoch = self.lease.session.epoch;
        if !self
            .routing
            .shards
            .receive_failed(shard, &from, id, epoch, self.now)
        {
            return;
        }
        tracing::warn!(shard, peer = %from, "erl_quorum: handoff state never came; confirming the shard");
        let value = self.shard_value();
        let job = Job::TransferShard {
            shard,
            from: value.clone(),
            to: value,
            session: self.lease.session.term.clone(),
            epoch,
            handoff: None,
        };
        self.outputs.push_back(Output::Run(job));
    }
}
