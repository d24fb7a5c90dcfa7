//! Which serving node grants each key: the key space is cut into
//! [`SHARDS`] shards, and a serving node grants locks and names in a shard
//! only while it holds that shard's quorum entry under its session.
//!
//! Why: a grant then costs no quorum round. The shard entry is taken once
//! (one round to the masters), renewed with every other entry of the
//! session, and written back to a master that lost it; from then on every
//! key in the shard is granted from this node's own table, and competing
//! requests for it are served here in arrival order. Exclusion between
//! serving nodes is the quorum's: two nodes cannot hold one shard entry.
//!
//! A request for a shard another node holds is answered with a redirect to
//! it (the caller asks that node itself, so the grant and the guard's
//! `eq_owned` travel on one connection, in order). A shard nobody is known
//! to hold parks its requests while one round takes it.
//!
//! Sans-IO: the server feeds requests and round outcomes, and does what
//! [`Route`] and [`Resolved`] say.

use super::protocol::Request;
use crate::process::Caller;
use crate::term::{atom, int, tuple, Term};
use std::time::Duration;
use tokio::time::Instant;

/// How many shards the key space has. Enough that two serving nodes in use
/// at once split the keys finely; few enough that the shard entries (one
/// per shard held) cost nothing to renew or write back.
pub(crate) const SHARDS: u32 = 64;
// A slot keeps its shard in a byte.
const _: () = assert!(SHARDS <= 256);

/// How long a redirect to another node is trusted before one round checks
/// again who holds the shard (that node may have lost it since).
pub(crate) const FOREIGN_TTL: Duration = Duration::from_secs(1);

/// The shard of a key's bytes (the slots' index key, see
/// [`super::slots::shard_of_key`]). FNV-1a: the same on every node and
/// every build (std's hasher is seeded per process).
pub(crate) fn shard_of(key: &[u8]) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(SHARDS)) as u32
}

/// The quorum key of shard `index`.
pub(crate) fn shard_key(index: u32) -> Term {
    tuple(vec![atom("$erl_quorum_shard"), int(i64::from(index))])
}

/// A request waiting for its shard to be taken.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parked {
    pub caller: Caller,
    /// Kept decoded: served as it is once the shard is held.
    pub request: Request,
}

#[derive(Debug, Default)]
enum State {
    /// Nobody known to hold it.
    #[default]
    Unknown,
    /// A round is taking it (under the session of `epoch`), or will once
    /// the session allows; `since`: when the oldest parked request came.
    Taking {
        parked: Vec<Parked>,
        epoch: u64,
        since: Instant,
    },
    /// This node holds it under the session of `epoch`.
    Held { epoch: u64 },
    /// `node` held it at `seen`.
    Foreign { node: String, seen: Instant },
    /// Held here under `epoch`, being handed to `to` (handoff `id`): frozen,
    /// its requests park until it is handed (redirected) or not (served).
    Handing {
        to: String,
        id: u64,
        epoch: u64,
        parked: Vec<Parked>,
    },
    /// `from` is handing it here (its handoff `id`): requests park until
    /// its state arrives.
    Receiving {
        from: String,
        id: u64,
        parked: Vec<Parked>,
    },
}

/// Where a request goes.
#[derive(Debug, PartialEq)]
pub(crate) enum Route {
    /// This node holds the shard: serve it here.
    Here(Parked),
    /// Tell the caller to ask `node`.
    Redirect(String, Parked),
    /// Parked. `take`: start a round for the shard (none is in flight).
    Parked { take: bool },
}

/// How a round for a shard ended, as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Taken {
    Held,
    /// Another serving node holds it.
    Foreign(String),
    /// Refused for now (a restarting master, a race, this node's own
    /// lapsing session): park on and try again soon.
    Busy,
    NoQuorum,
}

/// What to do with a shard's parked requests once a round ended.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// Serve them (the shard is held now).
    Serve(Vec<Parked>),
    /// Redirect them to the node.
    Redirect(String, Vec<Parked>),
    /// Answer "no quorum".
    NoQuorum(Vec<Parked>),
    /// Try the round again after a pause (still parked).
    Retry,
    /// A round of an old session ended: start one under the current one.
    Again,
    Nothing,
}

/// Every shard's state at this node.
#[derive(Debug)]
pub(crate) struct Shards {
    shards: Vec<State>,
}

impl Default for Shards {
    fn default() -> Self {
        Shards {
            shards: (0..SHARDS).map(|_| State::Unknown).collect(),
        }
    }
}

impl Shards {
    /// Whether this node holds shard `index` under the session of `epoch`.
    pub(crate) fn held(&self, index: u32, epoch: u64) -> bool {
        matches!(self.shards[index as usize], State::Held { epoch: e } if e == epoch)
    }

    /// Whether another node held shard `index` when last asked.
    pub(crate) fn foreign(&self, index: u32) -> bool {
        matches!(self.shards[index as usize], State::Foreign { .. })
    }

    /// Whether another node held shard `index` when last asked, recently
    /// enough that requests are redirected to it without asking again.
    pub(crate) fn foreign_fresh(&self, index: u32, now: Instant) -> bool {
        matches!(&self.shards[index as usize],
            State::Foreign { seen, .. } if now.duration_since(*seen) < FOREIGN_TTL)
    }

    /// Shard `index`'s state, for a failing simulation's report.
    #[cfg(test)]
    pub(crate) fn state_of(&self, index: u32) -> String {
        format!("{:?}", self.shards[index as usize])
    }

    /// The shards this node holds under `epoch`.
    pub(crate) fn held_shards(&self, epoch: u64) -> Vec<u32> {
        (0..SHARDS).filter(|&i| self.held(i, epoch)).collect()
    }

    /// Routes a request for a key of shard `index`.
    pub(crate) fn route(&mut self, index: u32, epoch: u64, now: Instant, parked: Parked) -> Route {
        let state = &mut self.shards[index as usize];
        match state {
            State::Held { epoch: e } if *e == epoch => return Route::Here(parked),
            State::Foreign { node, seen } if now.duration_since(*seen) < FOREIGN_TTL => {
                return Route::Redirect(node.clone(), parked)
            }
            State::Handing { parked: queue, .. } | State::Receiving { parked: queue, .. } => {
                queue.push(parked);
                return Route::Parked { take: false };
            }
            State::Taking {
                parked: queue,
                since,
                ..
            } => {
                if queue.is_empty() {
                    *since = now;
                }
                queue.push(parked);
                return Route::Parked { take: false };
            }
            _ => {}
        }
        *state = State::Taking {
            parked: vec![parked],
            epoch,
            since: now,
        };
        Route::Parked { take: true }
    }

    /// Starts taking shard `index` for a reason other than a request (a
    /// lock waiting here whose shard is not held); `true` when a round
    /// should start.
    pub(crate) fn want(&mut self, index: u32, epoch: u64, now: Instant) -> bool {
        let state = &mut self.shards[index as usize];
        match state {
            State::Held { epoch: e } if *e == epoch => false,
            // A handoff decides: the slot tries again when it ends.
            State::Taking { .. } | State::Handing { .. } | State::Receiving { .. } => false,
            _ => {
                *state = State::Taking {
                    parked: Vec::new(),
                    epoch,
                    since: now,
                };
                true
            }
        }
    }

    /// The session in which the round for `index` now runs, when a round
    /// was due again: it restarts under `epoch`.
    pub(crate) fn retake(&mut self, index: u32, epoch: u64) -> bool {
        match &mut self.shards[index as usize] {
            State::Taking { epoch: e, .. } => {
                *e = epoch;
                true
            }
            _ => false,
        }
    }

    /// A round for shard `index`, run under the session of `epoch`, ended
    /// while the session is at `current`.
    pub(crate) fn taken(
        &mut self,
        index: u32,
        epoch: u64,
        current: u64,
        taken: Taken,
        now: Instant,
    ) -> Resolved {
        let state = &mut self.shards[index as usize];
        let State::Taking {
            parked,
            epoch: e,
            since,
        } = state
        else {
            return Resolved::Nothing;
        };
        if *e != epoch || epoch != current {
            // Taken (or refused) under a session given up since: its entry
            // lapses with that session. Take it again under this one.
            *e = current;
            return Resolved::Again;
        }
        let parked = std::mem::take(parked);
        match taken {
            Taken::Held => {
                *state = State::Held { epoch };
                Resolved::Serve(parked)
            }
            Taken::Foreign(node) => {
                *state = State::Foreign {
                    node: node.clone(),
                    seen: now,
                };
                Resolved::Redirect(node, parked)
            }
            Taken::Busy => {
                let since = *since;
                *state = State::Taking {
                    parked,
                    epoch,
                    since,
                };
                Resolved::Retry
            }
            Taken::NoQuorum => {
                *state = State::Unknown;
                Resolved::NoQuorum(parked)
            }
        }
    }

    /// The requests parked on shard `index` for longer than `max` (all of
    /// them: they came in order, and the round serves them together).
    pub(crate) fn expire(&mut self, index: u32, now: Instant, max: Duration) -> Vec<Parked> {
        match &mut self.shards[index as usize] {
            State::Taking { parked, since, .. } if now.duration_since(*since) >= max => {
                *since = now;
                std::mem::take(parked)
            }
            _ => Vec::new(),
        }
    }

    /// Whether this node holds or is taking any shard under `epoch`.
    pub(crate) fn any(&self, epoch: u64) -> bool {
        self.shards.iter().any(|s| match s {
            State::Held { epoch: e } => *e == epoch,
            State::Taking { .. } | State::Handing { .. } | State::Receiving { .. } => true,
            _ => false,
        })
    }

    /// `node` is gone: what it held may be taken once its session lapses.
    pub(crate) fn forget_node(&mut self, node: &str) {
        for state in &mut self.shards {
            if matches!(state, State::Foreign { node: n, .. } if n == node) {
                *state = State::Unknown;
            }
        }
    }

    /// The session was given up: every shard held under it lapses with it.
    /// Parked requests stay parked (their rounds restart under the next
    /// session). A handoff either way ends here: its shards (returned)
    /// must be taken again, their requests parked meanwhile.
    pub(crate) fn session_lost(&mut self, now: Instant) -> Vec<u32> {
        let mut again = Vec::new();
        for (i, state) in self.shards.iter_mut().enumerate() {
            match state {
                State::Held { .. } | State::Foreign { .. } => *state = State::Unknown,
                State::Handing { parked, epoch, .. } => {
                    let (parked, epoch) = (std::mem::take(parked), *epoch);
                    *state = State::Taking {
                        parked,
                        epoch,
                        since: now,
                    };
                    again.push(i as u32);
                }
                State::Receiving { parked, .. } => {
                    let parked = std::mem::take(parked);
                    *state = State::Taking {
                        parked,
                        epoch: 0,
                        since: now,
                    };
                    again.push(i as u32);
                }
                _ => {}
            }
        }
        again
    }

    /// Freezes shard `index`, held under `epoch`, for handoff `id` to `to`.
    pub(crate) fn freeze(&mut self, index: u32, epoch: u64, to: &str, id: u64) -> bool {
        let state = &mut self.shards[index as usize];
        if !matches!(state, State::Held { epoch: e } if *e == epoch) {
            return false;
        }
        *state = State::Handing {
            to: to.to_owned(),
            id,
            epoch,
            parked: Vec::new(),
        };
        true
    }

    /// Handoff `id` of shard `index` did not happen: held here again; its
    /// parked requests are served here.
    pub(crate) fn thaw(&mut self, index: u32, id: u64) -> Option<Vec<Parked>> {
        let state = &mut self.shards[index as usize];
        match state {
            State::Handing {
                id: i,
                epoch,
                parked,
                ..
            } if *i == id => {
                let parked = std::mem::take(parked);
                *state = State::Held { epoch: *epoch };
                Some(parked)
            }
            _ => None,
        }
    }

    /// Handoff `id` of shard `index` happened: the taker's now (taken as
    /// such until `until`); its parked requests go there.
    pub(crate) fn handed(
        &mut self,
        index: u32,
        id: u64,
        until: Instant,
    ) -> Option<(String, Vec<Parked>)> {
        let state = &mut self.shards[index as usize];
        match state {
            State::Handing {
                id: i, to, parked, ..
            } if *i == id => {
                let (to, parked) = (to.clone(), std::mem::take(parked));
                // Seen as if at `until` less the TTL: foreign until `until`.
                *state = State::Foreign {
                    node: to.clone(),
                    seen: until.checked_sub(FOREIGN_TTL).unwrap_or(until),
                };
                Some((to, parked))
            }
            _ => None,
        }
    }

    /// `from` asks to hand shard `index` here (its handoff `id`): yes when
    /// this node neither holds nor takes it, or waits for an earlier
    /// handoff of it from `from` (which gave that one up: a giver hands a
    /// shard once at a time; its late state is ignored now).
    pub(crate) fn receive(&mut self, index: u32, from: &str, id: u64) -> bool {
        let state = &mut self.shards[index as usize];
        if let State::Receiving { from: f, id: i, .. } = state {
            if f == from && *i < id {
                *i = id;
                return true;
            }
        }
        if !matches!(state, State::Unknown | State::Foreign { .. }) {
            return false;
        }
        *state = State::Receiving {
            from: from.to_owned(),
            id,
            parked: Vec::new(),
        };
        true
    }

    /// Whether shard `index` waits for handoff `id` of `from`.
    pub(crate) fn receiving(&self, index: u32, from: &str, id: u64) -> bool {
        matches!(&self.shards[index as usize],
            State::Receiving { from: f, id: i, .. } if f == from && *i == id)
    }

    /// The giver abandoned handoff `id` of `from`: the shard is its again,
    /// and taken as such (requests for it redirected there, no round of
    /// this node's own for it) until `until`; the requests parked
    /// meanwhile go there.
    pub(crate) fn receive_cancelled(
        &mut self,
        index: u32,
        from: &str,
        id: u64,
        until: Instant,
    ) -> Option<Vec<Parked>> {
        if !self.receiving(index, from, id) {
            return None;
        }
        let state = &mut self.shards[index as usize];
        let State::Receiving { parked, .. } = state else {
            return None;
        };
        let parked = std::mem::take(parked);
        // Seen as if at `until` less the TTL: foreign until `until`.
        *state = State::Foreign {
            node: from.to_owned(),
            seen: until.checked_sub(FOREIGN_TTL).unwrap_or(until),
        };
        Some(parked)
    }

    /// The state of handoff `id` arrived: held here under `epoch`; its
    /// parked requests are served here.
    pub(crate) fn received(&mut self, index: u32, epoch: u64) -> Vec<Parked> {
        let state = &mut self.shards[index as usize];
        let parked = match state {
            State::Receiving { parked, .. } => std::mem::take(parked),
            _ => Vec::new(),
        };
        *state = State::Held { epoch };
        parked
    }

    /// The state of handoff `id` of `from` never came: whether this node
    /// holds the shard is found out by a round (`true`: start it), its
    /// requests parked meanwhile.
    pub(crate) fn receive_failed(
        &mut self,
        index: u32,
        from: &str,
        id: u64,
        epoch: u64,
        now: Instant,
    ) -> bool {
        if !self.receiving(index, from, id) {
            return false;
        }
        let state = &mut self.shards[index as usize];
        let State::Receiving { parked, .. } = state else {
            return false;
        };
        let parked = std::mem::take(parked);
        *state = State::Taking {
            parked,
            epoch,
            since: now,
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::Canon;
    use crate::term::Pid;

    fn parked(n: u32) -> Parked {
        Parked {
            caller: Caller {
                pid: Pid::new("beam@host", n, 0, 1),
                tag: int(i64::from(n)),
            },
            request: Request::Keepalive,
        }
    }

    #[test]
    fn shard_of_is_stable_and_spread() {
        let a = Canon::of(&atom("key")).unwrap();
        let b = Canon::of(&atom("key")).unwrap();
        assert_eq!(shard_of(a.as_bytes()), shard_of(b.as_bytes()));
        let used: std::collections::HashSet<u32> = (0..1000)
            .map(|i| shard_of(Canon::of(&int(i)).unwrap().as_bytes()))
            .collect();
        assert_eq!(used.len(), SHARDS as usize);
    }

    #[test]
    fn requests_park_while_one_round_takes_the_shard() {
        let mut s = Shards::default();
        let now = Instant::now();
        assert_eq!(s.route(3, 0, now, parked(1)), Route::Parked { take: true });
        assert_eq!(s.route(3, 0, now, parked(2)), Route::Parked { take: false });
        match s.taken(3, 0, 0, Taken::Held, now) {
            Resolved::Serve(p) => assert_eq!(p.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.route(3, 0, now, parked(3)), Route::Here(parked(3)));
        assert_eq!(s.held_shards(0), vec![3]);
        // A new session: held shards must be taken again.
        s.session_lost(now);
        assert_eq!(s.route(3, 1, now, parked(4)), Route::Parked { take: true });
    }

    #[test]
    fn a_foreign_shard_redirects_until_its_node_goes_or_the_ttl_passes() {
        let mut s = Shards::default();
        let now = Instant::now();
        s.route(5, 0, now, parked(1));
        match s.taken(5, 0, 0, Taken::Foreign("b@h".into()), now) {
            Resolved::Redirect(node, p) => assert_eq!((node.as_str(), p.len()), ("b@h", 1)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.route(5, 0, now, parked(2)),
            Route::Redirect("b@h".into(), parked(2))
        );
        let later = now + FOREIGN_TTL;
        assert_eq!(
            s.route(5, 0, later, parked(3)),
            Route::Parked { take: true }
        );
        s.taken(5, 0, 0, Taken::Foreign("b@h".into()), later);
        s.forget_node("b@h");
        assert_eq!(
            s.route(5, 0, later, parked(4)),
            Route::Parked { take: true }
        );
    }

    #[test]
    fn requests_parked_too_long_are_given_back() {
        let mut s = Shards::default();
        let now = Instant::now();
        s.route(9, 0, now, parked(1));
        assert!(s.any(0));
        let max = Duration::from_secs(2);
        assert!(s.expire(9, now + Duration::from_secs(1), max).is_empty());
        assert_eq!(s.expire(9, now + max, max), vec![parked(1)]);
        // Still being taken; a request parked now waits its own time.
        s.route(9, 0, now + max, parked(2));
        assert!(s
            .expire(9, now + max + Duration::from_secs(1), max)
            .is_empty());
        assert_eq!(s.expire(9, now + max * 2, max), vec![parked(2)]);
    }

    #[test]
    fn a_round_of_an_old_session_is_taken_again() {
        let mut s = Shards::default();
        let now = Instant::now();
        s.route(7, 0, now, parked(1));
        s.session_lost(now);
        assert!(matches!(
            s.taken(7, 0, 1, Taken::Held, now),
            Resolved::Again
        ));
        assert!(!s.held(7, 0) && !s.held(7, 1));
        match s.taken(7, 1, 1, Taken::Busy, now) {
            Resolved::Retry => {}
            other => panic!("{other:?}"),
        }
        match s.taken(7, 1, 1, Taken::NoQuorum, now) {
            Resolved::NoQuorum(p) => assert_eq!(p.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_later_ask_of_the_same_giver_replaces_the_one_it_gave_up() {
        let mut s = Shards::default();
        assert!(s.receive(3, "g@h", 1));
        assert!(!s.receive(3, "other@h", 5), "another giver waits");
        assert!(!s.receive(3, "g@h", 1), "the same ask twice");
        assert!(s.receive(3, "g@h", 2));
        assert!(
            !s.receiving(3, "g@h", 1),
            "the first one's state is ignored"
        );
        assert!(s.receiving(3, "g@h", 2));
    }
}
