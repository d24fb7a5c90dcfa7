//! The store's counters, as an operator's `status` shows them.

/// Counts for an operator's `status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Stats {
    pub entries: usize,
    /// erl_quorum sessions kept (live or not yet swept).
    pub sessions: usize,
    /// Promises not yet dropped (expired ones count until the next sweep).
    pub promises: usize,
    pub wait_for_waiters: usize,
    pub release_waiters: usize,
    /// Ops logged since the last [`Store::take_log`](super::Store::take_log).
    pub pending_log: usize,
    pub masters: usize,
    pub replicas: usize,
    pub w: usize,
    /// Milliseconds the restart guard still refuses promises (0: off).
    pub guard_remaining_ms: u64,
    pub calls: u64,
    /// Calls answered `{error, {unknown_request, _}}`.
    pub bad_requests: u64,
    /// Promises refused because of the restart guard.
    pub guard_refusals: u64,
    /// Leases cut to `max_lease_ms` in replayed log ops.
    pub clamped_leases: u64,
    /// `write` / `extend_lease` calls refused for a lease over `max_lease_ms`.
    pub refused_leases: u64,
    /// Writes refused for lack of a live promise (see the module docs).
    pub refused_writes: u64,
    pub replayed_ops: u64,
    pub skipped_ops: u64,
    pub bad_casts: u64,
}
