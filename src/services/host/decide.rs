//! What a keeper decides, sans-IO ("Keeper duties" in the design): whether
//! the child is kept after the node's answer to `started`, whether its exit
//! calls for a fresh `start_name`, and how long such requests are retried.

use crate::services::registry::{RegistryError, Restart, StartError, Started};
use crate::term::{as_tuple, is_atom, Canon, Term};
use std::ops::RangeInclusive;
use std::time::Duration;
use tokio::time::Instant;

/// The pause before a keeper asks again, in milliseconds: long enough for
/// the serving node to settle the name, jittered so the keepers of many
/// names (or of one name on several nodes) do not ask in step.
pub(crate) const PAUSE_MS: RangeInclusive<u64> = 100..=300;
/// How long a keeper keeps asking through `no_quorum` and `no_host`.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(60);

/// A pause drawn from [`PAUSE_MS`].
pub(crate) fn pause() -> Duration {
    Duration::from_millis(rand::random_range(PAUSE_MS))
}

/// The serving node's answer to `{started, Id, Pid}`: only `yes` keeps the
/// child. `no`, an unexpected reply and a failed call all kill it: if the
/// node registered the name after all, the child's death releases it (and
/// the node restarts it as its record says), whereas a child the node does
/// not know of would run unsupervised beside a later instance.
pub(crate) fn keeps_child(answer: Option<&Term>) -> bool {
    answer.is_some_and(|t| is_atom(t, "yes"))
}

/// What a keeper does when its child has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterExit {
    /// The child lost its name (`{name_lost, Name}`) and is to be restarted:
    /// ask for it again with `start_name` after a [`pause`], since the node
    /// that serves the name may not have seen the exit (it lost us, or
    /// could not renew the name).
    Rerequest,
    /// Nothing: the serving node monitors the child and restarts it as its
    /// record says.
    End,
}

/// The decision on the child's exit `reason`.
pub(crate) fn after_exit(reason: &Term, name: &Term, restart: Restart) -> AfterExit {
    let lost_this_name = match as_tuple(reason) {
        Some([tag, lost]) if is_atom(tag, "name_lost") => same_term(lost, name),
        _ => false,
    };
    match restart {
        Restart::Permanent | Restart::Transient if lost_this_name => AfterExit::Rerequest,
        _ => AfterExit::End,
    }
}

/// `=:=`, which `eetf`'s `==` is not (a name that came over the wire as a
/// byte list and one built as a list are the same name).
fn same_term(a: &Term, b: &Term) -> bool {
    match (Canon::of(a), Canon::of(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A keeper's run of `start_name` requests after its child lost its name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rerequests {
    since: Instant,
}

impl Rerequests {
    pub(crate) fn new(now: Instant) -> Rerequests {
        Rerequests { since: now }
    }

    /// After `reply` to a request: `Some(pause)` to ask again, `None` to
    /// end. `no_quorum`, `no_host` and an unreachable serving node are
    /// retried for [`RETRY_FOR`]; any other answer (started somewhere,
    /// already running, a conflict, a failed start) ends the keeper: the
    /// serving node owns the name's fate from there.
    pub(crate) fn after(
        &self,
        reply: &Result<Started, StartError>,
        now: Instant,
    ) -> Option<Duration> {
        let retry = matches!(
            reply,
            Err(StartError::NoQuorum
                | StartError::NoHost
                | StartError::Registry(RegistryError::Call(_)))
        );
        (retry && now.duration_since(self.since) < RETRY_FOR).then(pause)
    }
}
