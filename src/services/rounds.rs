//! The quorum operations the serving node runs (taking shards, renewing
//! and repairing its session, asking other serving nodes), on a pool of
//! worker processes so the server's loop never waits on a master.
//!
//! Each job ends in [`Event`]s on the server's channel. The calls go to
//! the `locker` processes of the masters (this node's included) with the
//! node-monitored `quorum_call`, so a lost master costs no timeout.

use super::protocol::{BadRequest, MasterReply, MasterRequest, Reply, Request};
use super::shards::{shard_key, Taken};
use crate::metrics::RoundOutcome;
use crate::node::Node;
use crate::process::{CallError, Caller, Process};
use crate::quorum::client::round;
use crate::term::Brief;
use crate::term::{Pid, Term};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

/// Work for a worker.
#[derive(Debug)]
pub(crate) enum Job {
    /// Take shard `shard` for this node under `session` (one round), then
    /// look at the masters that did not say yes: one that lacks the entry
    /// and counts for the session must get it written back.
    TakeShard {
        shard: u32,
        value: Term,
        epoch: u64,
        session: Term,
    },
    /// Hand shard `shard`'s entry from `from` to `to` under `session` (one
    /// transfer round). With `handoff` (its id, and the giver's own session
    /// to undo under): short of W, the entries moved are moved back and
    /// [`Event::Transferred`] reports it. Without (`from` = `to`: a node
    /// confirming a shard it may hold), it ends as a shard round does
    /// ([`Event::ShardTaken`]).
    TransferShard {
        shard: u32,
        from: Term,
        to: Term,
        session: Term,
        epoch: u64,
        handoff: Option<(u64, Term)>,
    },
    /// Renew (or open) the session; the lease counts from `sent_at`.
    Renew {
        session: Term,
        epoch: u64,
        lease: Duration,
        /// How long to wait for all masters' answers.
        wait: Duration,
    },
    /// Write the held `entries` (`{QKey, Value}`) back under `session` on
    /// `master`, which lost them (or never had them).
    Repair {
        master: String,
        session: Term,
        epoch: u64,
        /// Which set of entries this is (see [`Event::Repaired`]).
        generation: u64,
        entries: Vec<(Term, Term)>,
    },
    /// Answer `caller` with the holder of lock `key`: ask the node that
    /// holds its shard (`shard`, read from the masters).
    WhereIs {
        caller: Caller,
        key: Term,
        shard: Term,
    },
    /// Pass `request` on to the `erl_quorum` service of `node` and its
    /// reply back to `caller`.
    Forward {
        caller: Caller,
        node: String,
        request: Request,
    },
    /// Subscribe the server to the names a peer serves.
    SubscribePeer { peer: String, server: Pid },
}

/// What a job reports back.
#[derive(Debug)]
pub(crate) enum Event {
    /// How a shard round ended, and which masters said yes: any other
    /// master may lack the shard (refused in its restart guard, or answered
    /// after the round stopped) and must not count for the session until
    /// the entries are written back there.
    ShardTaken {
        shard: u32,
        epoch: u64,
        taken: Taken,
        ok_at: Vec<String>,
        /// The wall clock (ms since the Unix epoch) when the round started:
        /// the base of the shard's fencing tokens (`core::fencing`).
        wall_ms: u64,
    },
    /// How handoff `id`'s transfer round of `shard` ended: `ok` (W masters
    /// hold the taker's entry; `ok_at` those that said yes), or moved back
    /// (`back_at`: the masters that said they hold the giver's entry again;
    /// any other may hold the taker's).
    Transferred {
        id: u64,
        shard: u32,
        ok: bool,
        ok_at: Vec<String>,
        back_at: Vec<String>,
    },
    /// Not a job's: stop serving, handing every shard over, and say so on
    /// this channel once none is left (see [`super::Stopper`]).
    Drain(tokio::sync::oneshot::Sender<()>),
    /// Which masters renewed the session (it lived there), and which
    /// started it afresh (new to them: any entries they had are gone).
    Renewed {
        epoch: u64,
        sent_at: Instant,
        renewed: Vec<String>,
        created: Vec<String>,
    },
    Repaired {
        master: String,
        epoch: u64,
        generation: u64,
        ok: bool,
    },
    /// A peer's names when we subscribed (`None`: it could not be reached,
    /// or its grace period after it went is over).
    PeerSnapshot {
        peer: String,
        names: Option<Vec<(Term, Pid)>>,
    },
}

/// Shared settings of every worker.
#[derive(Debug, Clone)]
pub(crate) struct RoundConfig {
    pub masters: Vec<String>,
    pub w: usize,
    pub timeout: Duration,
}

/// Starts `count` workers taking jobs from one queue.
pub(crate) fn start_pool(
    node: &Node,
    count: usize,
    config: RoundConfig,
    events: mpsc::UnboundedSender<Event>,
) -> mpsc::UnboundedSender<Job> {
    let (tx, rx) = mpsc::unbounded_channel();
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..count.max(1) {
        let worker = Worker {
            process: node.spawn_process(),
            config: config.clone(),
            events: events.clone(),
        };
        tokio::spawn(worker.run(rx.clone()));
    }
    tx
}

struct Worker {
    process: Process,
    config: RoundConfig,
    events: mpsc::UnboundedSender<Event>,
}

/// How the masters answered one round.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    /// `{error, not_expected_value}` / `not_owner`: someone else holds it.
    held: usize,
    /// Any other error reply: refused for now.
    refused: usize,
    /// Masters that answered `held`, to ask who.
    held_at: Vec<String>,
    /// Masters that said yes.
    ok_at: Vec<String>,
}

impl Worker {
    async fn run(mut self, jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
        loop {
            let job = { jobs.lock().await.recv().await };
            let Some(job) = job else { return };
            if let Some(event) = self.perform(job).await {
                if self.events.send(event).is_err() {
                    return;
                }
            }
        }
    }

    async fn perform(&mut self, job: Job) -> Option<Event> {
        match job {
            Job::TakeShard {
                shard,
                value,
                epoch,
                session,
            } => {
                self.take_shard(shard, value, epoch, session).await;
                None
            }
            Job::TransferShard {
                shard,
                from,
                to,
                session,
                epoch,
                handoff,
            } => Some(
                self.transfer_shard(shard, from, to, session, epoch, handoff)
                    .await,
            ),
            Job::Renew {
                session,
                epoch,
                lease,
                wait,
            } => {
                let sent_at = Instant::now();
                let request = MasterRequest::Session { session, lease }.encode();
                let masters: Vec<&str> = self.config.masters.iter().map(String::as_str).collect();
                // Every answer matters (a `created` from a master that had
                // the session means it lost its entries): wait for all.
                let results = self
                    .process
                    .quorum_call(&masters, "locker", request, wait, |_| false)
                    .await
                    .unwrap_or_default();
                let (mut renewed, mut created) = (Vec::new(), Vec::new());
                for (result, master) in results.iter().zip(&self.config.masters) {
                    match result.as_ref().map(|r| r.as_ref().map(MasterReply::decode)) {
                        Some(Ok(MasterReply::Ok)) => renewed.push(master.clone()),
                        Some(Ok(MasterReply::Created)) => created.push(master.clone()),
                        _ => {}
                    }
                }
                let outcome = if renewed.len() + created.len() >= self.config.w {
                    RoundOutcome::Quorum
                } else {
                    RoundOutcome::Short
                };
                let metrics = self.process.node().metrics();
                metrics.round("erl_quorum_session", outcome, sent_at.elapsed());
                Some(Event::Renewed {
                    epoch,
                    sent_at,
                    renewed,
                    created,
                })
            }
            Job::Repair {
                master,
                session,
                epoch,
                generation,
                entries,
            } => {
                let mut ok = true;
                for (key, value) in entries {
                    let request = MasterRequest::Repair {
                        key: key.clone(),
                        value,
                        session: session.clone(),
                    };
                    let reply = self
                        .process
                        .call(
                            ("locker", master.as_str()),
                            request.encode(),
                            self.config.timeout,
                        )
                        .await;
                    if !matches!(reply.as_ref().map(MasterReply::decode), Ok(MasterReply::Ok)) {
                        tracing::warn!(%master, session = %Brief(&session), key = %Brief(&key), reply = ?reply.as_ref().map(Brief), "erl_quorum: repair refused");
                        ok = false;
                        break;
                    }
                }
                Some(Event::Repaired {
                    master,
                    epoch,
                    generation,
                    ok,
                })
            }
            Job::WhereIs { caller, key, shard } => {
                // Any master: one that missed the write (W of N took it)
                // or restarted since would say "free".
                let mut holder = None;
                for master in self.config.masters.clone() {
                    holder = self.dirty_read(&master, shard.clone()).await;
                    if holder.is_some() {
                        break;
                    }
                }
                let me = self.process.node().name().to_owned();
                let reply = match holder {
                    // Held here would have been answered by the server.
                    Some(server) if server.node.name != me => {
                        let node = server.node.name.clone();
                        let request = Request::WhereisLock { key };
                        match self.ask(&node, &request).await {
                            Ok(reply @ Reply::Whereis(_)) => reply,
                            _ => Reply::Whereis(None),
                        }
                    }
                    _ => Reply::Whereis(None),
                };
                caller.reply(&self.process, reply.encode());
                None
            }
            Job::Forward {
                caller,
                node,
                request,
            } => {
                let reply = self.ask(&node, &request).await.unwrap_or_else(|e| {
                    tracing::warn!(%node, error = %e, "erl_quorum: forwarding to a peer failed");
                    Reply::ForwardFailed(node.clone())
                });
                caller.reply(&self.process, reply.encode());
                None
            }
            Job::SubscribePeer { peer, server } => {
                let mut request = Request::subscribe_peer(server.clone());
                let mut reply = self.ask(&peer, &request).await;
                if let Ok(Reply::Refused(BadRequest::Unknown(_))) = reply {
                    // A peer from before versions: it speaks version 1.
                    tracing::info!(%peer, "erl_quorum: peer speaks the unversioned protocol");
                    request = Request::SubscribePeer {
                        subscriber: server,
                        version: 1,
                    };
                    reply = self.ask(&peer, &request).await;
                }
                let names = match reply {
                    Ok(Reply::PeerNames { names, .. }) => Some(names),
                    Ok(Reply::Refused(refused)) => {
                        tracing::warn!(%peer, %refused, "erl_quorum: a peer refused our subscription");
                        None
                    }
                    _ => None,
                };
                Some(Event::PeerSnapshot { peer, names })
            }
        }
    }

    /// Calls the `erl_quorum` service of `node`.
    async fn ask(&mut self, node: &str, request: &Request) -> Result<Reply, AskError> {
        let reply = self
            .process
            .call(("erl_quorum", node), request.encode(), self.config.timeout)
            .await?;
        Ok(Reply::decode(request, &reply)?)
    }

    /// Sends `request` to every master and counts the answers, stopping
    /// once W said `ok` or W can no longer be reached.
    async fn round(&mut self, request: &MasterRequest, timeout: Duration) -> Tally {
        let masters: Vec<&str> = self.config.masters.iter().map(String::as_str).collect();
        let rule = round::StopRule {
            w: self.config.w,
            counts: |_| true,
        };
        let all = masters.len();
        let request = request.encode();
        let answers = match round::run(
            &mut self.process,
            &masters,
            all,
            request,
            timeout,
            timeout,
            &rule,
        )
        .await
        {
            Ok(round) => round.answers,
            Err(_) => return Tally::default(),
        };
        let mut tally = Tally::default();
        for (result, master) in answers.iter().zip(&self.config.masters) {
            match result.as_ref().map(|r| r.as_ref().map(MasterReply::decode)) {
                Some(Ok(MasterReply::Ok)) => {
                    tally.ok += 1;
                    tally.ok_at.push(master.clone());
                }
                Some(Ok(MasterReply::Held)) => {
                    tally.held += 1;
                    tally.held_at.push(master.clone());
                }
                Some(Ok(_)) => tally.refused += 1,
                _ => {}
            }
        }
        tally
    }

    /// One-round lock of a shard entry under the session; short of W, the
    /// masters that took it are released (the release follows the lock on
    /// each connection).
    async fn take_shard(&mut self, shard: u32, value: Term, epoch: u64, session: Term) {
        // Before the round: see `core::fencing` for why the start.
        let started_ms = wall_ms();
        let qkey = shard_key(shard);
        let tag = Term::from(self.process.node().make_ref());
        let request = MasterRequest::LockShard {
            key: qkey.clone(),
            value: value.clone(),
            session,
            tag: tag.clone(),
        };
        let tally = self.round(&request, self.config.timeout).await;
        let taken = self.outcome(&qkey, &value, &tag, &tally).await;
        let _ = self.events.send(Event::ShardTaken {
            shard,
            epoch,
            taken,
            ok_at: tally.ok_at,
            wall_ms: started_ms,
        });
    }

    /// See [`Job::TransferShard`].
    async fn transfer_shard(
        &mut self,
        shard: u32,
        from: Term,
        to: Term,
        session: Term,
        epoch: u64,
        handoff: Option<(u64, Term)>,
    ) -> Event {
        let started_ms = wall_ms();
        let qkey = shard_key(shard);
        let request = MasterRequest::Transfer {
            key: qkey.clone(),
            from: from.clone(),
            to: to.clone(),
            session,
        };
        let tally = self.round(&request, self.config.timeout).await;
        let ok = tally.ok >= self.config.w;
        match handoff {
            Some((id, own_session)) => {
                let mut back_at = Vec::new();
                if !ok {
                    // Back everywhere (a late `ok` may have landed where
                    // no answer came), so the giver holds W again; every
                    // answer is awaited (the call timeout bounds it): the
                    // giver must know where its entry is back.
                    let back = MasterRequest::Transfer {
                        key: qkey,
                        from: to,
                        to: from,
                        session: own_session,
                    }
                    .encode();
                    let masters: Vec<&str> =
                        self.config.masters.iter().map(String::as_str).collect();
                    let answers = self
                        .process
                        .quorum_call(&masters, "locker", back, self.config.timeout, |r| {
                            r.iter().all(Option::is_some)
                        })
                        .await
                        .unwrap_or_default();
                    for (master, answer) in masters.iter().zip(answers) {
                        if let Some(Ok(reply)) = answer {
                            if MasterReply::decode(&reply) == MasterReply::Ok {
                                back_at.push((*master).to_owned());
                            }
                        }
                    }
                }
                Event::Transferred {
                    id,
                    shard,
                    ok,
                    ok_at: tally.ok_at,
                    back_at,
                }
            }
            None => {
                let tag = Term::from(self.process.node().make_ref());
                let taken = self.outcome(&qkey, &to, &tag, &tally).await;
                Event::ShardTaken {
                    shard,
                    epoch,
                    taken,
                    ok_at: tally.ok_at,
                    wall_ms: started_ms,
                }
            }
        }
    }

    /// What a shard round's tally means; short of W, undoes it.
    async fn outcome(&mut self, qkey: &Term, value: &Term, tag: &Term, tally: &Tally) -> Taken {
        if tally.ok >= self.config.w {
            return Taken::Held;
        }
        // Undo everywhere, not only where an `ok` came in: the round may
        // have stopped before a late `ok`, and an entry left under this
        // node's session would be renewed for ever. The release is
        // value-checked and follows the lock on each connection.
        let undo = MasterRequest::Release {
            key: qkey.clone(),
            value: value.clone(),
            tag: tag.clone(),
        }
        .encode();
        let masters: Vec<&str> = self.config.masters.iter().map(String::as_str).collect();
        let _ = self
            .process
            .quorum_call(&masters, "locker", undo, self.config.timeout, |_| true)
            .await;
        let me = self.process.node().name().to_owned();
        let mut named = Vec::new();
        for master in &tally.held_at {
            if let Some(holder) = self.dirty_read(master, qkey.clone()).await {
                named.push(holder.node.name.clone());
            }
        }
        if let Some(taken) = taken_by(&named, &me, self.config.w) {
            return taken;
        }
        if tally.held > 0 || tally.ok + tally.refused >= self.config.w {
            Taken::Busy
        } else {
            Taken::NoQuorum
        }
    }

    /// The owner pid in `node`'s entry for `qkey`, if any.
    async fn dirty_read(&mut self, node: &str, qkey: Term) -> Option<Pid> {
        let value = round::dirty_read(&mut self.process, node, qkey, self.config.timeout)
            .await
            .ok()??;
        // The same reading of a shard entry as the simulation's.
        MasterReply::Value(Some(value)).shard_holder().cloned()
    }
}

/// Who holds a shard a round of `me`'s fell short for, from the nodes
/// `named` in the entries of the masters that refused it: a node named by
/// W of them holds it (`Foreign`); else this node's own old entry, of a
/// session given up, lapses soon (`Busy`: ask again, rather than send
/// callers to a node that may bounce them back); else the first named.
pub(crate) fn taken_by(named: &[String], me: &str, w: usize) -> Option<Taken> {
    let count = |node: &String| named.iter().filter(|n| *n == node).count();
    if let Some(node) = named.iter().find(|n| *n != me && count(n) >= w) {
        return Some(Taken::Foreign(node.clone()));
    }
    if named.iter().any(|n| n == me) {
        return Some(Taken::Busy);
    }
    named.first().map(|node| Taken::Foreign(node.clone()))
}

/// Why a call to a peer's service gave no reply.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Reply(#[from] super::protocol::ReplyError),
}

/// The wall clock in ms since the Unix epoch (0 if set before it).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::{taken_by, Taken};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_holder_is_the_node_w_masters_name_else_our_old_entry_else_the_first() {
        // A giver's entry on two masters, ours (of a session given up) on
        // one: the giver holds it.
        let named = names(&["me@h", "g@h", "g@h"]);
        assert_eq!(
            taken_by(&named, "me@h", 2),
            Some(Taken::Foreign("g@h".into()))
        );
        // No node on W: our own entry lapses soon; ask again.
        let named = names(&["g@h", "me@h"]);
        assert_eq!(taken_by(&named, "me@h", 2), Some(Taken::Busy));
        // Only others: the first named.
        let named = names(&["g@h", "t@h"]);
        assert_eq!(
            taken_by(&named, "me@h", 2),
            Some(Taken::Foreign("g@h".into()))
        );
        assert_eq!(taken_by(&[], "me@h", 2), None);
    }
}
