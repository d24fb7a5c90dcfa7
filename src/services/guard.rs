//! The guard for Rust owners of locks and names granted by another node:
//! what `rust_quorum` does on a BEAM node (`rebar_fixture/PROTOCOL.md`,
//! "The guard's duty"), as a process registered `rust_quorum` on a Rust
//! node.
//!
//! Why: a serving node tells the owners it grants to through the guard on
//! the owner's node, and releases an owner's hold when only the owner's node
//! lost it, once the guard must have told the owner. Without a guard, a
//! Rust process holding a lock granted by another Rust node (a `Registry`
//! bound to that node, or sent there by a redirect) would never hear that
//! its hold was lost, and could run on while someone else holds the lock.
//!
//! The guard keeps, per serving node, its owners here and a deadline: from
//! `keepalive` answers (`{ok, ValidMs}`: sent at + ValidMs - margin), and
//! before the first answer the received time of the first `eq_owned` plus
//! what a grant always comes with (3 s) less the margin. On `eq_lost`, on
//! the node going down, or at the deadline, each owner gets the exit signal
//! `{lock_lost, Key}` or `{name_lost, Name}`.

use super::protocol::{lost_reason as reason, GuardNotice, Notice, Reply, Request};
use super::slots::Kind;
use crate::node::Node;
use crate::process::Caller;
use crate::process::{Mail, Process};
use crate::term::{as_atom, as_tuple, atom, int, Canon};
use crate::term::{Pid, Term};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long before a serving node's deadline owners are told.
const MARGIN: Duration = Duration::from_secs(2);
/// What a grant always comes with (`lost_margin`), until a keepalive says.
const FIRST_VALID: Duration = Duration::from_secs(3);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(200);

/// An owner's hold: who, and what it holds.
type Hold = (Pid, Kind, Canon);

#[derive(Debug)]
struct Guarded {
    owners: HashMap<Hold, Term>,
    deadline: Instant,
    next_keepalive: Instant,
}

/// The guard's state, sans-IO: every method returns the owners to tell
/// (`(owner, reason)`), and [`Guards::due`] the keepalives to send.
#[derive(Debug, Default)]
pub(crate) struct Guards {
    nodes: HashMap<String, Guarded>,
}

impl Guards {
    /// Until when `owner`'s hold of lock `key` is safe: the deadline of the
    /// node that granted it, if it is ahead (the election asks this before
    /// a leader acts: `services::election`).
    pub(crate) fn valid_until(&self, owner: &Pid, key: &Term, now: Instant) -> Option<Instant> {
        let hold = (owner.clone(), Kind::Lock, Canon::of(key).ok()?);
        self.nodes
            .values()
            .filter(|g| g.deadline > now && g.owners.contains_key(&hold))
            .map(|g| g.deadline)
            .max()
    }

    /// `eq_owned`; `true` when `node` is newly guarded (watch it, and send a
    /// keepalive at once).
    pub(crate) fn owned(
        &mut self,
        node: &str,
        owner: Pid,
        kind: Kind,
        key: Term,
        now: Instant,
    ) -> bool {
        let Ok(canon) = Canon::of(&key) else {
            return false;
        };
        let new = !self.nodes.contains_key(node);
        let guarded = self
            .nodes
            .entry(node.to_owned())
            .or_insert_with(|| Guarded {
                owners: HashMap::new(),
                deadline: now + FIRST_VALID - MARGIN,
                next_keepalive: now,
            });
        guarded.owners.insert((owner, kind, canon), key);
        new
    }

    /// `eq_released`.
    pub(crate) fn released(&mut self, node: &str, owner: Pid, kind: Kind, key: &Term) {
        if let (Some(g), Ok(canon)) = (self.nodes.get_mut(node), Canon::of(key)) {
            g.owners.remove(&(owner, kind, canon));
            if g.owners.is_empty() {
                self.nodes.remove(node);
            }
        }
    }

    /// `eq_lost`: that owner is told.
    pub(crate) fn lost(
        &mut self,
        node: &str,
        owner: Pid,
        kind: Kind,
        key: Term,
    ) -> Vec<(Pid, Term)> {
        self.released(node, owner.clone(), kind, &key);
        vec![(owner, reason(kind, key))]
    }

    /// `node` went down: every owner of it is told.
    pub(crate) fn node_down(&mut self, node: &str) -> Vec<(Pid, Term)> {
        self.nodes
            .remove(node)
            .map(|g| tell_all(g.owners))
            .unwrap_or_default()
    }

    /// A keepalive sent at `sent_at` answered `{ok, ValidMs}`.
    pub(crate) fn valid(&mut self, node: &str, sent_at: Instant, valid: Duration) {
        if let Some(g) = self.nodes.get_mut(node) {
            let until = (sent_at + valid).checked_sub(MARGIN).unwrap_or(sent_at);
            g.deadline = g.deadline.max(until);
        }
    }

    /// Owners of nodes past their deadline (told, and forgotten), and the
    /// nodes due a keepalive.
    pub(crate) fn due(&mut self, now: Instant) -> (Vec<(Pid, Term)>, Vec<String>) {
        let late: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, g)| g.deadline <= now)
            .map(|(n, _)| n.clone())
            .collect();
        let mut tell = Vec::new();
        for node in late {
            tracing::warn!(%node, "erl_quorum guard: no keepalive in time; telling its owners here");
            tell.extend(self.node_down(&node));
        }
        let mut keepalives = Vec::new();
        for (node, g) in &mut self.nodes {
            if g.next_keepalive <= now {
                g.next_keepalive = now + KEEPALIVE_EVERY;
                keepalives.push(node.clone());
            }
        }
        (tell, keepalives)
    }
}

fn tell_all(owners: HashMap<Hold, Term>) -> Vec<(Pid, Term)> {
    owners
        .into_iter()
        .map(|((owner, kind, _), key)| (owner, reason(kind, key)))
        .collect()
}

/// Starts the guard on `node` unless one runs there already.
pub(crate) fn ensure_started(node: &Node) {
    if node.whereis("rust_quorum").is_some() {
        return;
    }
    let process = node.spawn_process();
    if process.register("rust_quorum").is_err() {
        return; // started meanwhile by someone else
    }
    tokio::spawn(run(process));
}

async fn run(mut process: Process) {
    let mut guards = Guards::default();
    let (answers_tx, mut answers) = mpsc::unbounded_channel::<(String, Instant, Duration)>();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        let tell = tokio::select! {
            mail = process.recv() => match mail {
                Ok(Mail::Message(message)) => on_message(&mut guards, &process, &message),
                Ok(Mail::NodeDown { node }) => guards.node_down(&node),
                Ok(_) => Vec::new(),
                Err(_) => return,
            },
            Some((node, sent_at, valid)) = answers.recv() => {
                guards.valid(&node, sent_at, valid);
                Vec::new()
            }
            _ = ticker.tick() => {
                let (tell, keepalives) = guards.due(Instant::now());
                for node in keepalives {
                    keepalive(process.node(), node, answers_tx.clone());
                }
                tell
            }
        };
        for (owner, reason) in tell {
            process.exit_signal(&owner, reason);
        }
    }
}

/// Asks `node` how long its holds are safe, without holding up the guard.
fn keepalive(
    node: &Node,
    serving: String,
    answers: mpsc::UnboundedSender<(String, Instant, Duration)>,
) {
    let mut asker = node.spawn_process();
    tokio::spawn(async move {
        let sent_at = Instant::now();
        let request = Request::Keepalive;
        let reply = asker
            .call(
                ("erl_quorum", serving.as_str()),
                request.encode(),
                KEEPALIVE_EVERY,
            )
            .await;
        if let Ok(Ok(Reply::Valid { ms })) = reply.map(|r| Reply::decode(&request, &r)) {
            let _ = answers.send((serving, sent_at, Duration::from_millis(ms)));
        }
    });
}

/// A [`GuardNotice`], or the election's `{valid_until, Owner, Key}` call
/// (answered with the milliseconds left, or `undefined`); anything else is
/// ignored.
fn on_message(guards: &mut Guards, process: &Process, message: &Term) -> Vec<(Pid, Term)> {
    if let Some([tag, from, request]) = as_tuple(message) {
        if as_atom(tag) == Some("$gen_call") {
            if let (Some(caller), Some([what, Term::Pid(owner), key])) =
                (Caller::from_term(from), as_tuple(request))
            {
                if as_atom(what) == Some("valid_until") {
                    let now = Instant::now();
                    let left = match guards.valid_until(owner, key, now) {
                        Some(d) => int(i64::try_from((d - now).as_millis()).unwrap_or(i64::MAX)),
                        None => atom("undefined"),
                    };
                    caller.reply(process, left);
                }
            }
            return Vec::new();
        }
    }
    let Ok(GuardNotice {
        notice,
        node,
        owner,
        kind,
        key,
        to,
    }) = GuardNotice::decode(message)
    else {
        tracing::debug!("erl_quorum guard: unexpected message ignored");
        return Vec::new();
    };
    match notice {
        Notice::Owned => {
            if guards.owned(&node, owner, kind, key, Instant::now()) {
                process.monitor_node(&node);
            }
            Vec::new()
        }
        // Moved: guarded under the new serving node from now on (its own
        // `eq_owned` may come later, on another connection).
        Notice::Moved => {
            if let Some(to) = &to {
                if guards.owned(to, owner.clone(), kind, key.clone(), Instant::now()) {
                    process.monitor_node(to);
                }
            }
            guards.released(&node, owner, kind, &key);
            Vec::new()
        }
        Notice::Released => {
            guards.released(&node, owner, kind, &key);
            Vec::new()
        }
        Notice::Lost => guards.lost(&node, owner, kind, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::atom;

    fn pid(n: u32) -> Pid {
        Pid::new("rust@host", n, 0, 1)
    }

    #[test]
    fn owners_are_told_at_the_deadline_on_loss_and_on_node_down() {
        let mut g = Guards::default();
        let t0 = Instant::now();
        assert!(g.owned("a@h", pid(1), Kind::Lock, atom("k"), t0));
        assert!(!g.owned("a@h", pid(2), Kind::Name, atom("n"), t0));
        assert!(g.owned("b@h", pid(3), Kind::Lock, atom("j"), t0));
        // Keepalives go out at once; nobody is told before the deadline.
        let (tell, keepalives) = g.due(t0);
        assert!(tell.is_empty());
        assert_eq!(keepalives.len(), 2);
        // a@h answers: safe for 10 s; b@h does not.
        g.valid("a@h", t0, Duration::from_secs(10));
        let (tell, _) = g.due(t0 + FIRST_VALID - MARGIN);
        assert_eq!(tell, vec![(pid(3), reason(Kind::Lock, atom("j")))]);
        // eq_lost tells one owner; node down the rest.
        assert_eq!(
            g.lost("a@h", pid(1), Kind::Lock, atom("k")),
            vec![(pid(1), reason(Kind::Lock, atom("k")))]
        );
        assert_eq!(
            g.node_down("a@h"),
            vec![(pid(2), reason(Kind::Name, atom("n")))]
        );
        assert!(g.node_down("a@h").is_empty());
    }

    #[test]
    fn a_released_hold_is_forgotten() {
        let mut g = Guards::default();
        let t0 = Instant::now();
        g.owned("a@h", pid(1), Kind::Lock, atom("k"), t0);
        g.released("a@h", pid(1), Kind::Lock, &atom("k"));
        assert!(g.due(t0 + Duration::from_secs(60)).0.is_empty());
    }

    #[test]
    fn valid_until_is_the_granting_nodes_deadline_while_it_is_ahead() {
        let mut g = Guards::default();
        let t0 = Instant::now();
        g.owned("a@h", pid(1), Kind::Lock, atom("k"), t0);
        let first = t0 + FIRST_VALID - MARGIN;
        assert_eq!(g.valid_until(&pid(1), &atom("k"), t0), Some(first));
        assert_eq!(g.valid_until(&pid(2), &atom("k"), t0), None);
        assert_eq!(g.valid_until(&pid(1), &atom("other"), t0), None);
        // A keepalive moves it; past it, nothing is valid.
        g.valid("a@h", t0, Duration::from_secs(5));
        assert_eq!(
            g.valid_until(&pid(1), &atom("k"), t0),
            Some(t0 + Duration::from_secs(5) - MARGIN)
        );
        assert_eq!(
            g.valid_until(&pid(1), &atom("k"), t0 + Duration::from_secs(4)),
            None
        );
        g.released("a@h", pid(1), Kind::Lock, &atom("k"));
        assert_eq!(g.valid_until(&pid(1), &atom("k"), t0), None);
    }
}
