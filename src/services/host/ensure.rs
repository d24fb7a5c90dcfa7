//! Declared singletons, sans-IO: the host keeps each singleton it declared
//! ([`HostBuilder::keep`](super::HostBuilder::keep)) running somewhere.
//!
//! The record of a supervised name lives on the serving node that holds the
//! name's shard; when that node dies together with the instance, nobody
//! else knows the name is to run. A host that declared the name closes the
//! gap: it checks, at start, when a watched serving node's `erl_quorum` goes
//! down, and then every [`CHECK_MS`], whether the name is held
//! (`whereis_name`), and if not asks for it (`start_name`, `host => itself`).
//! Exactly-once stays the registry's: the name's shard holder settles
//! concurrent `start_name`s, so any number of hosts may declare one name.
//! At most one check per declared name is in flight.

use crate::services::registry::{RegistryError, Restart, StartError, Started};
use crate::term::{Canon, Term};
use std::ops::RangeInclusive;
use std::time::Duration;
use tokio::time::Instant;

/// The period between two checks of one declared name, in milliseconds:
/// the failover after a serving node died with the instance is
/// `session_lease + margin` plus at most one period; jittered so the hosts
/// that declare one name do not ask in step.
pub(crate) const CHECK_MS: RangeInclusive<u64> = 500..=1000;

/// A period drawn from [`CHECK_MS`].
pub(crate) fn check_period() -> Duration {
    Duration::from_millis(rand::random_range(CHECK_MS))
}

/// A singleton a host keeps running: `start_name(Name, {rust, Service},
/// #{restart => Restart, host => Host})` whenever it is not held.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Declared {
    pub(crate) name: Term,
    pub(crate) service: String,
    pub(crate) restart: Restart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Check at this instant.
    Due(Instant),
    /// A check is on its way; `again`: check once more as soon as it ends
    /// (a serving node went down meanwhile).
    InFlight { again: bool },
}

/// The declared names and when each is checked next.
#[derive(Debug, Default)]
pub(crate) struct Ensurer {
    names: Vec<(Declared, State)>,
}

impl Ensurer {
    /// Declares `declared` (replacing a declaration of the same name), to
    /// be checked at once.
    pub(crate) fn declare(&mut self, declared: Declared, now: Instant) {
        let same = |d: &Declared| same_term(&d.name, &declared.name);
        match self.names.iter_mut().find(|(d, _)| same(d)) {
            Some((d, state)) => {
                *d = declared;
                if let State::Due(_) = state {
                    *state = State::Due(now);
                }
            }
            None => self.names.push((declared, State::Due(now))),
        }
    }

    /// The names to check now, by index; each counts as in flight until
    /// [`Ensurer::checked`].
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(usize, Declared)> {
        let mut due = Vec::new();
        for (i, (declared, state)) in self.names.iter_mut().enumerate() {
            if matches!(state, State::Due(at) if *at <= now) {
                *state = State::InFlight { again: false };
                due.push((i, declared.clone()));
            }
        }
        due
    }

    /// The check of `index` ended (whatever it found: a name held, started,
    /// or a reply to retry such as `no_quorum`): check again after
    /// `period`, or at once if a serving node went down meanwhile.
    pub(crate) fn checked(&mut self, index: usize, now: Instant, period: Duration) {
        if let Some((_, state)) = self.names.get_mut(index) {
            *state = match state {
                State::InFlight { again: true } => State::Due(now),
                _ => State::Due(now + period),
            };
        }
    }

    /// A serving node went down: check every name now (one in flight is
    /// checked again when it ends).
    pub(crate) fn nudge(&mut self, now: Instant) {
        for (_, state) in &mut self.names {
            *state = match state {
                State::Due(_) => State::Due(now),
                State::InFlight { .. } => State::InFlight { again: true },
            };
        }
    }

    /// When [`Ensurer::due`] next has something.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.names
            .iter()
            .filter_map(|(_, s)| match s {
                State::Due(at) => Some(*at),
                State::InFlight { .. } => None,
            })
            .min()
    }

    /// The declared names, for `sys:get_state`.
    pub(crate) fn declared(&self) -> impl Iterator<Item = &Declared> {
        self.names.iter().map(|(d, _)| d)
    }
}

/// What one check does after asking a serving node `whereis_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterWhereis {
    /// Held: nothing to do until the next check.
    Held,
    /// Not held: ask for it with `start_name`.
    Start,
    /// The node did not answer: ask the next serving node.
    NextNode,
    /// Another error: give up until the next check.
    Done,
}

/// The decision on a `whereis_name` reply.
pub(crate) fn after_whereis<P>(reply: &Result<Option<P>, RegistryError>) -> AfterWhereis {
    match reply {
        Ok(Some(_)) => AfterWhereis::Held,
        Ok(None) => AfterWhereis::Start,
        Err(RegistryError::Call(e)) if is_unreachable(e) => AfterWhereis::NextNode,
        Err(_) => AfterWhereis::Done,
    }
}

/// Whether a `start_name` reply calls for asking the next serving node
/// (this one did not answer). Every other reply ends the check: the name
/// runs (`started`, `already_started`, `conflict`: held by someone), or the
/// next check retries (`no_quorum`, `no_host`, a failed start).
pub(crate) fn start_next_node(reply: &Result<Started, StartError>) -> bool {
    matches!(reply, Err(StartError::Registry(RegistryError::Call(e))) if is_unreachable(e))
}

fn is_unreachable(e: &crate::process::CallError) -> bool {
    use crate::process::CallError;
    matches!(
        e,
        CallError::NoConnection | CallError::NoProc | CallError::Timeout
    )
}

/// `=:=` (see `decide::same_term`).
fn same_term(a: &Term, b: &Term) -> bool {
    match (Canon::of(a), Canon::of(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::CallError;
    use crate::term::{atom, Pid};

    fn counter(name: &str) -> Declared {
        Declared {
            name: atom(name),
            service: "counter".into(),
            restart: Restart::Permanent,
        }
    }

    const P: Duration = Duration::from_millis(700);

    #[test]
    fn a_declared_name_is_checked_at_once_then_every_period() {
        let t0 = Instant::now();
        let mut e = Ensurer::default();
        e.declare(counter("a"), t0);
        assert_eq!(e.next_due(), Some(t0));
        assert_eq!(e.due(t0), vec![(0, counter("a"))]);
        assert_eq!(e.next_due(), None, "in flight: not due again");
        assert!(e.due(t0 + P * 10).is_empty(), "one check in flight at most");
        e.checked(0, t0 + P, P);
        assert_eq!(e.next_due(), Some(t0 + P * 2));
        assert!(e.due(t0 + P).is_empty());
        assert_eq!(e.due(t0 + P * 2).len(), 1);
    }

    #[test]
    fn a_node_down_checks_idle_names_now_and_busy_ones_when_they_end() {
        let t0 = Instant::now();
        let mut e = Ensurer::default();
        e.declare(counter("a"), t0);
        e.declare(counter("b"), t0);
        assert_eq!(e.due(t0).len(), 2);
        e.checked(0, t0, P);
        let t1 = t0 + Duration::from_millis(100);
        e.nudge(t1);
        assert_eq!(e.next_due(), Some(t1));
        assert_eq!(e.due(t1), vec![(0, counter("a"))]);
        e.checked(1, t1, P);
        assert_eq!(e.next_due(), Some(t1), "b was in flight: again at once");
        e.checked(0, t1, P);
        assert_eq!(e.due(t1), vec![(1, counter("b"))]);
        assert_eq!(e.next_due(), Some(t1 + P));
    }

    #[test]
    fn declaring_a_name_again_replaces_it() {
        let t0 = Instant::now();
        let mut e = Ensurer::default();
        e.declare(counter("a"), t0);
        let mut other = counter("a");
        other.service = "other".into();
        e.declare(other.clone(), t0);
        assert_eq!(e.declared().cloned().collect::<Vec<_>>(), vec![other]);
    }

    #[test]
    fn whereis_and_start_replies_decide_the_next_step() {
        let pid = Pid::new("n@h", 1, 0, 0);
        assert_eq!(after_whereis(&Ok(Some(pid.clone()))), AfterWhereis::Held);
        assert_eq!(after_whereis::<Pid>(&Ok(None)), AfterWhereis::Start);
        let down: Result<Option<Pid>, _> = Err(RegistryError::Call(CallError::NoConnection));
        assert_eq!(after_whereis(&down), AfterWhereis::NextNode);
        let odd: Result<Option<Pid>, _> = Err(RegistryError::Reply(atom("what")));
        assert_eq!(after_whereis(&odd), AfterWhereis::Done);

        assert!(start_next_node(&Err(StartError::Registry(
            RegistryError::Call(CallError::Timeout)
        ))));
        assert!(!start_next_node(&Err(StartError::NoQuorum)));
        assert!(!start_next_node(&Err(StartError::NoHost)));
        assert!(!start_next_node(&Ok(Started::Started(pid))));
    }
}
