//! The help text of the metrics made from status fields (see
//! [`super::fields`]): the known keys of each service's status. A key not
//! listed still becomes a metric, with a generic help text.

/// `erl_quorum_locker_<key>`: the `locker` service's `{erl_quorum, status}`.
const LOCKER: &[(&str, &str)] = &[
    (
        "role",
        "This node's role in the locker cluster (master, replica, both, neither)",
    ),
    ("masters", "Master nodes the locker service knows"),
    ("replicas", "Replica nodes the locker service knows"),
    ("w", "Quorum size W of the locker service"),
    (
        "entries",
        "Keys the locker store holds (leases: Paxtor/BEAM locks, shard and session entries)",
    ),
    (
        "promises",
        "Write locks (phase-1 promises) the locker store holds",
    ),
    ("waiters", "Callers parked in wait_for / wait_for_release"),
    (
        "guard_remaining_ms",
        "Milliseconds the restart guard still refuses promises (0: serving)",
    ),
    ("connected", "Nodes the locker's node is connected to"),
];

/// `erl_quorum_services_<key>`: the `erl_quorum` service's `status`.
const SERVICES: &[(&str, &str)] = &[
    (
        "slots",
        "Locks and names this node serves (held, or with requests waiting)",
    ),
    (
        "shards_held",
        "Shards this node holds on W masters under its session",
    ),
    (
        "peer_names",
        "Names other serving nodes hold, as this node's subscription sees them",
    ),
    (
        "subscribers",
        "Processes subscribed to this node's name changes",
    ),
    (
        "session_valid_ms",
        "Milliseconds every hold is safe for from now (the session's margin; 0: not confirmed)",
    ),
    ("epoch", "The session's epoch (grows with each new session)"),
    ("supervised", "Supervised names this node keeps running"),
    ("hosts", "Host processes that start supervised names"),
    ("pending_starts", "Supervised starts under way"),
];

/// Which service a status field comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The process registered as `locker`.
    Locker,
    /// The process registered as `erl_quorum`.
    Services,
}

impl Service {
    /// The metric name prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Service::Locker => "erl_quorum_locker_",
            Service::Services => "erl_quorum_services_",
        }
    }

    /// The registered name of the process that answers.
    pub fn process(self) -> &'static str {
        match self {
            Service::Locker => "locker",
            Service::Services => "erl_quorum",
        }
    }

    /// The help text of `key`'s metric.
    pub fn help(self, key: &str) -> String {
        let table = match self {
            Service::Locker => LOCKER,
            Service::Services => SERVICES,
        };
        match table.iter().find(|(k, _)| *k == key) {
            Some((_, help)) => (*help).to_owned(),
            None => format!("Status field {key} of the {} service", self.process()),
        }
    }
}
