//! The store's private machinery: request handlers, log replay, and the
//! upkeep of the tables and their indexes. Every change to an entry ends in
//! `settle`, which answers the waiters the key's new state satisfies.

use super::parse::{Arg, Lease, Op, Request};
use super::{
    atom, atoms, error, int, is_atom, list, millis_term, ok_value, packed_is, timed_out, tuple,
    CallOutcome, Canon, Entry, Packed, Promise, SessionId, Store, Term, WaitKind, Waiter, WaiterId,
    Wake,
};

impl Store {
    pub(super) fn handle(&mut self, now: u64, req: Request<'_>, wake: &mut Wake) -> CallOutcome {
        let reply = match req {
            Request::GetWriteLock { key, expected, tag } => {
                self.get_write_lock(now, key, expected, tag, wake)
            }
            Request::ReleaseWriteLock { tag } => {
                self.drop_tag(&tag.canon);
                atom("ok")
            }
            Request::Write {
                tag,
                key,
                value,
                lease_ms,
            } => return self.lease_write(now, "write", tag, key, value, lease_ms, wake),
            Request::ExtendLease {
                tag,
                key,
                value,
                lease_ms,
            } => return self.lease_write(now, "extend_lease", tag, key, value, lease_ms, wake),
            Request::OneRoundLock {
                key,
                value,
                lease,
                tag,
            } => {
                if let Lease::Ms(ms) = lease {
                    if ms > self.config.max_lease_ms {
                        return self.refuse_long_lease(&tag.canon);
                    }
                }
                // The vote and the write at once: what get_write_lock with
                // `not_found` checks, then what write does.
                if self.guard_active(now) {
                    self.stats.guard_refusals += 1;
                    return CallOutcome::Reply(error("already_locked"));
                }
                if self.promise_live(now, &key.canon) {
                    return CallOutcome::Reply(error("already_locked"));
                }
                self.expire_if_due(now, &key.canon, wake);
                if self.entries.contains_key(&key.canon) {
                    return CallOutcome::Reply(error("not_expected_value"));
                }
                match lease {
                    Lease::Ms(ms) => {
                        self.log_lease_op("write", &key, &value, ms);
                        self.put(now, &key, value, ms, wake);
                    }
                    // Not logged: replicas hold no sessions (see the docs).
                    Lease::Session(session) => {
                        let id = match self.sessions.get(&session.canon) {
                            Some(&id) if self.session_live(now, id) => id,
                            _ => return CallOutcome::Reply(error("no_session")),
                        };
                        self.put_in_session(now, &key, value, id, wake);
                    }
                }
                atom("ok")
            }
            Request::Session { session, lease_ms } => {
                if lease_ms > self.config.max_lease_ms {
                    self.stats.refused_leases += 1;
                    return CallOutcome::Reply(error("lease_too_long"));
                }
                let until = now.saturating_add(lease_ms);
                // A lapsed session's entries are gone for good: never let a
                // renewal bring them back.
                self.expire_sessions(now, wake);
                match self.sessions.get(&session.canon) {
                    Some(&id) => {
                        let expiry = self.session_until.entry(id).or_insert(until);
                        *expiry = (*expiry).max(until);
                        atom("ok")
                    }
                    None => {
                        // New here (or lapsed, or this master restarted):
                        // the serving node must learn that the entries it
                        // wrote here, if any, are gone.
                        self.new_session(session.canon, session.term, until);
                        atom("created")
                    }
                }
            }
            Request::Repair {
                key,
                value,
                session,
            } => {
                // Restates a hold the serving node has on a quorum, on a
                // master that lost it: allowed during the restart guard (it
                // adds an entry, it cannot make a second owner).
                let id = match self.sessions.get(&session.canon) {
                    Some(&id) if self.session_live(now, id) => id,
                    _ => return CallOutcome::Reply(error("no_session")),
                };
                self.expire_if_due(now, &key.canon, wake);
                match self.entries.get(&key.canon) {
                    Some(entry) if packed_is(&entry.value, &value.canon) => atom("ok"),
                    Some(_) => error("not_expected_value"),
                    None => {
                        self.put_in_session(now, &key, value, id, wake);
                        atom("ok")
                    }
                }
            }
            Request::Transfer {
                key,
                from,
                to,
                session,
            } => return self.transfer(now, key, from, to, session, wake),
            Request::Update { tag, key, value } => {
                if !self.write_allowed(now, &key.canon, &tag.canon, None, wake) {
                    return self.refuse_write(&tag.canon);
                }
                self.drop_tag(&tag.canon);
                let logged = tuple(vec![atom("update"), key.term.clone(), value.term.clone()]);
                self.update(now, &key.canon, value, wake);
                self.log.push(logged);
                atom("ok")
            }
            Request::Release { key, value, tag } => {
                self.drop_tag(&tag.canon);
                self.release(now, &key, &value, wake)
            }
            Request::SetNodes { masters, replicas } => {
                self.masters = masters;
                self.replicas = replicas;
                atom("ok")
            }
            Request::SetW(w) => {
                self.w = w;
                atom("ok")
            }
            Request::WaitFor { key, timeout } => {
                self.expire_if_due(now, &key.canon, wake);
                match self.entries.get(&key.canon) {
                    Some(entry) => ok_value(&entry.value.term()),
                    None => {
                        return self.park(now, key.canon, WaitKind::Present, timeout);
                    }
                }
            }
            Request::WaitForRelease { key, timeout } => {
                self.expire_if_due(now, &key.canon, wake);
                if self.entries.contains_key(&key.canon) {
                    return self.park(now, key.canon, WaitKind::Absent, timeout);
                }
                tuple(vec![atom("ok"), atom("released")])
            }
            Request::GetDebugState => self.debug_state(now),
            Request::CatchUp => self.catch_up_answer(now, super::snapshot::MAX_CATCH_UP_BYTES),
            Request::GetMeta => tuple(vec![
                atoms(&self.masters),
                atoms(&self.replicas),
                int(i64::try_from(self.w).unwrap_or(i64::MAX)),
            ]),
            Request::Summary => {
                let count = |n: usize| int(i64::try_from(n).unwrap_or(i64::MAX));
                list(vec![
                    tuple(vec![atom("write_locks"), count(self.promises.len())]),
                    tuple(vec![atom("leases"), count(self.entries.len())]),
                ])
            }
        };
        CallOutcome::Reply(reply)
    }

    fn get_write_lock(
        &mut self,
        now: u64,
        key: Arg<'_>,
        expected: Arg<'_>,
        tag: Arg<'_>,
        wake: &mut Wake,
    ) -> Term {
        if self.guard_active(now) {
            // A client only counts `ok` votes, so any error is safe; this one
            // says "someone may hold it, retry later", which is the truth.
            self.stats.guard_refusals += 1;
            return error("already_locked");
        }
        if self.promise_live(now, &key.canon) {
            return error("already_locked");
        }
        self.expire_if_due(now, &key.canon, wake);
        let matches = match self.entries.get(&key.canon) {
            Some(entry) => packed_is(&entry.value, &expected.canon),
            None => is_atom(expected.term, "not_found"),
        };
        if !matches {
            return error("not_expected_value");
        }
        let deadline = now.saturating_add(self.config.promise_ms);
        self.promise_deadlines.insert((deadline, key.canon.clone()));
        self.promises_by_tag
            .entry(tag.canon.clone())
            .or_default()
            .insert(key.canon.clone());
        self.promises.insert(
            key.canon,
            Promise {
                key: key.term.clone(),
                tag: tag.term.clone(),
                tag_canon: tag.canon,
                deadline,
            },
        );
        atom("ok")
    }

    /// `{erl_quorum_transfer, Key, From, To, Session}`: a serving node
    /// handing a shard to another (or confirming its own, `From` = `To`).
    /// One step per master, so no third node can take the key in between
    /// (a release then a lock would let it). An entry holding `From` (or
    /// already `To`) becomes `To` under `Session`; an absent key is taken
    /// as a one-round lock would (not in the restart guard, not over a live
    /// promise: a master that lost the entry must not make a second owner);
    /// any other value is someone else's.
    fn transfer(
        &mut self,
        now: u64,
        key: Arg<'_>,
        from: Arg<'_>,
        to: Arg<'_>,
        session: Arg<'_>,
        wake: &mut Wake,
    ) -> CallOutcome {
        let id = match self.sessions.get(&session.canon) {
            Some(&id) if self.session_live(now, id) => id,
            _ => return CallOutcome::Reply(error("no_session")),
        };
        self.expire_if_due(now, &key.canon, wake);
        // What the key holds here: `Some(true)` ours to move (or moved).
        let movable = self.entries.get(&key.canon).map(|entry| {
            let moved = packed_is(&entry.value, &to.canon) && entry.session == Some(id);
            (moved, packed_is(&entry.value, &from.canon))
        });
        let reply = match movable {
            Some((true, _)) => atom("ok"),
            Some((false, true)) => {
                self.remove_entry(&key.canon);
                self.put_in_session(now, &key, to, id, wake);
                atom("ok")
            }
            Some(_) => error("not_expected_value"),
            None if self.guard_active(now) => {
                self.stats.guard_refusals += 1;
                error("already_locked")
            }
            None if self.promise_live(now, &key.canon) => error("already_locked"),
            None => {
                self.put_in_session(now, &key, to, id, wake);
                atom("ok")
            }
        };
        CallOutcome::Reply(reply)
    }

    fn release(&mut self, now: u64, key: &Arg<'_>, value: &Arg<'_>, wake: &mut Wake) -> Term {
        self.expire_if_due(now, &key.canon, wake);
        let reply = match self.entries.get(&key.canon) {
            Some(entry) if packed_is(&entry.value, &value.canon) => {
                self.touch(&key.canon);
                self.remove_entry(&key.canon);
                self.log
                    .push(tuple(vec![atom("release"), key.term.clone()]));
                atom("ok")
            }
            Some(_) => error("not_owner"),
            None => error("not_found"),
        };
        self.settle(now, &key.canon, wake);
        reply
    }

    pub(super) fn replay(&mut self, now: u64, op: Op<'_>, wake: &mut Wake) {
        match op {
            Op::Write {
                key,
                value,
                lease_ms,
            }
            | Op::ExtendLease {
                key,
                value,
                lease_ms,
            } => self.put(now, &key, value, lease_ms, wake),
            Op::Release { key } => {
                self.touch(&key.canon);
                self.remove_entry(&key.canon);
                self.settle(now, &key.canon, wake);
            }
            Op::Update { key, value } => self.update(now, &key.canon, value, wake),
        }
    }

    /// Upserts `key` with a lease from now, cut to `max_lease_ms`.
    fn put(&mut self, now: u64, key: &Arg<'_>, value: Arg<'_>, lease_ms: u64, wake: &mut Wake) {
        if lease_ms > self.config.max_lease_ms {
            self.stats.clamped_leases += 1;
        }
        let expires_at = now.saturating_add(lease_ms.min(self.config.max_lease_ms));
        self.insert_entry(now, key, value, expires_at, None, wake);
    }

    /// Inserts `key` (absent) held by `session`: it lives while the session
    /// does, with no expiry of its own.
    fn put_in_session(
        &mut self,
        now: u64,
        key: &Arg<'_>,
        value: Arg<'_>,
        session: SessionId,
        wake: &mut Wake,
    ) {
        self.insert_entry(now, key, value, u64::MAX, Some(session), wake);
    }

    /// Upserts `key`; an entry of its own lease goes into the expiry index.
    fn insert_entry(
        &mut self,
        now: u64,
        key: &Arg<'_>,
        value: Arg<'_>,
        expires_at: u64,
        session: Option<SessionId>,
        wake: &mut Wake,
    ) {
        self.touch(&key.canon);
        let entry = Entry {
            key: Packed::new(key.term),
            value: Packed::new(value.term),
            expires_at,
            session,
        };
        if let Some(old) = self.entries.insert(key.canon.clone(), entry) {
            self.expiry.remove(&(old.expires_at, key.canon.clone()));
        }
        if session.is_none() {
            self.expiry.insert((expires_at, key.canon.clone()));
        }
        self.settle(now, &key.canon, wake);
    }

    pub(super) fn session_live(&self, now: u64, session: SessionId) -> bool {
        self.session_until
            .get(&session)
            .is_some_and(|&until| until > now)
    }

    /// Whether `entry` holds at `now`: its own lease, and its session's.
    pub(super) fn live(&self, entry: &Entry, now: u64) -> bool {
        entry.expires_at > now
            && entry
                .session
                .as_ref()
                .is_none_or(|&s| self.session_live(now, s))
    }

    /// Drops every session whose lease is up, with its entries. Sessions
    /// end rarely (a serving node stopped renewing), so one scan of the
    /// entries per ended session costs less than an index per key.
    pub(super) fn expire_sessions(&mut self, now: u64, wake: &mut Wake) {
        let ended: Vec<SessionId> = self
            .session_until
            .iter()
            .filter(|(_, &until)| until <= now)
            .map(|(&id, _)| id)
            .collect();
        if ended.is_empty() {
            return;
        }
        for id in &ended {
            self.session_until.remove(id);
            self.session_names.remove(id);
        }
        self.sessions.retain(|_, id| !ended.contains(id));
        let keys: Vec<Canon> = self
            .entries
            .iter()
            .filter(|(_, e)| e.session.as_ref().is_some_and(|s| ended.contains(s)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.remove_entry(&key);
            self.settle(now, &key, wake);
        }
    }

    /// Replaces the value of a live entry, keeping its expiry.
    fn update(&mut self, now: u64, key: &Canon, value: Arg<'_>, wake: &mut Wake) {
        self.expire_if_due(now, key, wake);
        if let Some(entry) = self.entries.get_mut(key) {
            entry.value = Packed::new(value.term);
        }
        self.settle(now, key, wake);
    }

    /// Logs `{Name, Key, Value, LeaseMs}` with the lease as applied.
    fn log_lease_op(&mut self, name: &str, key: &Arg<'_>, value: &Arg<'_>, lease_ms: u64) {
        self.log.push(tuple(vec![
            atom(name),
            key.term.clone(),
            value.term.clone(),
            millis_term(lease_ms.min(self.config.max_lease_ms)),
        ]));
    }

    fn remove_entry(&mut self, key: &Canon) {
        if let Some(old) = self.entries.remove(key) {
            self.expiry.remove(&(old.expires_at, key.clone()));
        }
    }

    /// Drops `key`'s entry if its lease is up.
    pub(super) fn expire_if_due(&mut self, now: u64, key: &Canon, wake: &mut Wake) {
        if self.entries.get(key).is_some_and(|e| !self.live(e, now)) {
            self.remove_entry(key);
            self.settle(now, key, wake);
        }
    }

    /// After any change to `key`: answer the waiters its new state satisfies.
    pub(super) fn settle(&mut self, now: u64, key: &Canon, wake: &mut Wake) {
        if self.entries.get(key).is_some_and(|e| !self.live(e, now)) {
            // Born expired (a zero lease): gone at once.
            self.remove_entry(key);
        }
        let Some(ids) = self.waiters_by_key.get(key) else {
            return;
        };
        let (kind, reply) = match self.entries.get(key) {
            Some(entry) => (WaitKind::Present, ok_value(&entry.value.term())),
            None => (WaitKind::Absent, tuple(vec![atom("ok"), atom("released")])),
        };
        let due: Vec<WaiterId> = ids
            .iter()
            .copied()
            .filter(|id| {
                self.waiters.get(id).is_some_and(|w| {
                    w.kind == kind && w.deadline.is_none_or(|deadline| deadline > now)
                })
            })
            .collect();
        for id in due {
            self.remove_waiter(id);
            wake.push((id, reply.clone()));
        }
    }

    /// Whether a `write`, `extend_lease` or `update` under `tag` may change
    /// `key` here. The original applies them unconditionally; but a write
    /// that arrives after its promise expired (a client stalled between the
    /// two phases for longer than `promise_ms`) would then replace a lease
    /// granted meanwhile to someone else, and both would own the key. So:
    /// with the key's live promise held by `tag`, yes; with a live promise
    /// held by another tag, no; during the restart guard, no; with no live
    /// promise otherwise (the promise expired), only if
    /// the write changes nothing that someone could hold: the key is absent,
    /// or already holds `value` (`None` for `update`, which has no expected
    /// value to compare). At every master either the late write or the
    /// competing promise comes first, so at most one of them reaches W.
    fn write_allowed(
        &mut self,
        now: u64,
        key: &Canon,
        tag: &Canon,
        value: Option<&Canon>,
        wake: &mut Wake,
    ) -> bool {
        if self.promise_live(now, key) {
            return self.promises.get(key).is_some_and(|p| p.tag_canon == *tag);
        }
        // A master in its restart guard may have forgotten a lease: a write
        // that no promise of its own backs must not count as an ack there.
        if self.guard_active(now) {
            return false;
        }
        self.expire_if_due(now, key, wake);
        match (self.entries.get(key), value) {
            (None, _) => true,
            (Some(entry), Some(value)) => packed_is(&entry.value, value),
            (Some(_), None) => false,
        }
    }

    /// The answer to a write [`Store::write_allowed`] refused; clients count
    /// only `ok` acknowledgements, so this is not one.
    fn refuse_write(&mut self, tag: &Canon) -> CallOutcome {
        self.drop_tag(tag);
        self.stats.refused_writes += 1;
        CallOutcome::Reply(error("no_promise"))
    }

    /// `write` and `extend_lease` (logged as `op`): the same checks, then an
    /// upsert with a new expiry.
    #[allow(clippy::too_many_arguments)]
    fn lease_write(
        &mut self,
        now: u64,
        op: &str,
        tag: Arg<'_>,
        key: Arg<'_>,
        value: Arg<'_>,
        lease_ms: u64,
        wake: &mut Wake,
    ) -> CallOutcome {
        if lease_ms > self.config.max_lease_ms {
            return self.refuse_long_lease(&tag.canon);
        }
        if !self.write_allowed(now, &key.canon, &tag.canon, Some(&value.canon), wake) {
            return self.refuse_write(&tag.canon);
        }
        self.drop_tag(&tag.canon);
        self.log_lease_op(op, &key, &value, lease_ms);
        self.put(now, &key, value, lease_ms, wake);
        CallOutcome::Reply(atom("ok"))
    }

    /// A lease longer than `max_lease_ms` is refused, not shortened: a
    /// client told `ok` believes it holds the key for the whole lease, and
    /// the restart guard only covers leases up to `max_lease_ms`.
    fn refuse_long_lease(&mut self, tag: &Canon) -> CallOutcome {
        self.drop_tag(tag);
        self.stats.refused_leases += 1;
        CallOutcome::Reply(error("lease_too_long"))
    }

    pub(super) fn promise_live(&mut self, now: u64, key: &Canon) -> bool {
        match self.promises.get(key) {
            Some(p) if p.deadline > now => true,
            Some(_) => {
                self.remove_promise(key);
                false
            }
            None => false,
        }
    }

    pub(super) fn remove_promise(&mut self, key: &Canon) {
        let Some(p) = self.promises.remove(key) else {
            return;
        };
        self.promise_deadlines.remove(&(p.deadline, key.clone()));
        if let Some(keys) = self.promises_by_tag.get_mut(&p.tag_canon) {
            keys.remove(key);
            if keys.is_empty() {
                self.promises_by_tag.remove(&p.tag_canon);
            }
        }
    }

    /// Drops every promise held under `tag` (locker's `del_lock(Tag)`).
    fn drop_tag(&mut self, tag: &Canon) {
        for key in self.promises_by_tag.remove(tag).unwrap_or_default() {
            if let Some(p) = self.promises.remove(&key) {
                self.promise_deadlines.remove(&(p.deadline, key));
            }
        }
    }

    fn park(&mut self, now: u64, key: Canon, kind: WaitKind, timeout: Option<u64>) -> CallOutcome {
        if timeout == Some(0) {
            // Nothing can happen before a deadline that is already here.
            return CallOutcome::Reply(timed_out());
        }
        let id = WaiterId(self.next_waiter);
        self.next_waiter += 1;
        let deadline = timeout.map(|t| now.saturating_add(t));
        if let Some(d) = deadline {
            self.waiter_deadlines.insert((d, id));
        }
        self.waiters_by_key
            .entry(key.clone())
            .or_default()
            .insert(id);
        self.waiters.insert(
            id,
            Waiter {
                key,
                kind,
                deadline,
            },
        );
        CallOutcome::Wait(id)
    }

    pub(super) fn remove_waiter(&mut self, id: WaiterId) -> Option<Waiter> {
        let waiter = self.waiters.remove(&id)?;
        if let Some(ids) = self.waiters_by_key.get_mut(&waiter.key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.waiters_by_key.remove(&waiter.key);
            }
        }
        if let Some(d) = waiter.deadline {
            self.waiter_deadlines.remove(&(d, id));
        }
        Some(waiter)
    }

    /// `{ok, Promises, Entries, undefined, undefined, undefined}`: the
    /// original's three timer references have no counterpart here. Times
    /// are on the store's clock, in milliseconds; both lists are sorted by
    /// canonical key and hold only what is live at `now`.
    fn debug_state(&self, now: u64) -> Term {
        let mut promises: Vec<(&Canon, &Promise)> = self
            .promises
            .iter()
            .filter(|(_, p)| p.deadline > now)
            .collect();
        promises.sort_by(|a, b| a.0.cmp(b.0));
        let mut entries: Vec<(&Canon, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| self.live(e, now))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let promises = promises
            .into_iter()
            .map(|(_, p)| tuple(vec![p.key.clone(), p.tag.clone(), millis_term(p.deadline)]))
            .collect();
        let entries = entries
            .into_iter()
            .map(|(_, e)| {
                tuple(vec![
                    e.key.term(),
                    e.value.term(),
                    millis_term(e.expires_at),
                ])
            })
            .collect();
        tuple(vec![
            atom("ok"),
            list(promises),
            list(entries),
            atom("undefined"),
            atom("undefined"),
            atom("undefined"),
        ])
    }
}
