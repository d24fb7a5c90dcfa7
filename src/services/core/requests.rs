//! What each call to the service does.

use super::watches::{MonitorTarget, Watched};
use super::{Core, Output};
use crate::process::Caller;
use crate::services::protocol::{Reply, Request};
use crate::services::rounds::Job;
use crate::services::shards::shard_key;
use crate::services::slots::{shard_of_key, Kind};
use tokio::time::Instant;

impl Core {
    pub(crate) fn handle_request(&mut self, caller: Caller, request: Request, now: Instant) {
        self.now = now;
        if caller.pid.node.name != self.me.node {
            // A keepalive's answer promises its validity to that node.
            let promised = matches!(request, Request::Keepalive)
                .then(|| now + std::time::Duration::from_millis(self.valid_ms()));
            self.silence.heard(&caller.pid.node.name, now, promised);
        }
        self.serve(caller, request);
        self.settle();
    }

    /// Serves `request` (also one that was parked on its shard).
    pub(super) fn serve(&mut self, caller: Caller, request: Request) {
        let reply = match request {
            Request::Lock { ref key, .. } => {
                let key = key.clone();
                if let Some((
                    caller,
                    Request::Lock {
                        key,
                        owner,
                        block,
                        fencing,
                    },
                )) = self.route(caller, request, Kind::Lock, &key)
                {
                    self.slots.lock(caller, key, owner, block, fencing);
                }
                return;
            }
            Request::RegisterName { ref name, .. } => {
                let name = name.clone();
                if let Some((caller, request)) = self.route(caller, request, Kind::Name, &name) {
                    self.register_here(caller, request);
                }
                return;
            }
            Request::UnregisterName { name } => {
                // A name another serving node holds is released by that
                // node (it monitors the owner and renews the session).
                if !self.slots.knows(Kind::Name, &name) {
                    if let Some(peer) = self.sharing.names.peer(&name).map(str::to_owned) {
                        // Forwarded once: the peer acts on its own holds
                        // only, so two stale views cannot bounce it.
                        self.outputs.push_back(Output::Run(Job::Forward {
                            caller,
                            node: peer,
                            request: Request::UnregisterNameHere { name },
                        }));
                        return;
                    }
                }
                self.supervise.unregister(&name);
                self.slots.unregister(caller, name);
                return;
            }
            Request::UnregisterNameHere { name } => {
                self.sharing.set_changes_first();
                self.supervise.unregister(&name);
                self.slots.unregister(caller, name);
                return;
            }
            Request::WhereisName { name } => Reply::Whereis(
                self.slots
                    .whereis_name(&name)
                    .or_else(|| self.sharing.names.whereis(&name)),
            ),
            Request::WhereisLock { key } => match self.slots.holder(Kind::Lock, &key) {
                Some(holder) => Reply::Whereis(holder),
                None => match shard_of_key(Kind::Lock, &key) {
                    Some(shard) if self.routing.shards.held(shard, self.lease.session.epoch) => {
                        Reply::Whereis(None)
                    }
                    Some(shard) => {
                        let shard = shard_key(shard);
                        let job = Job::WhereIs { caller, key, shard };
                        self.outputs.push_back(Output::Run(job));
                        return;
                    }
                    None => Reply::Whereis(None),
                },
            },
            Request::Subscribe { subscriber } => {
                if self.sharing.subscribe(subscriber.clone()) {
                    let id = self.watches.watch(Watched::Subscriber(subscriber.clone()));
                    let target = MonitorTarget::Process(subscriber);
                    self.outputs.push_back(Output::Monitor(id, target));
                }
                let mut all = self.sharing.names.snapshot();
                all.extend(self.slots.held_names());
                Reply::Names(all)
            }
            Request::SubscribePeer {
                subscriber,
                version,
            } => {
                let id = self
                    .watches
                    .watch(Watched::PeerSubscriber(subscriber.clone()));
                let target = MonitorTarget::Process(subscriber.clone());
                self.outputs.push_back(Output::Monitor(id, target));
                self.sharing.subscribe_peer(subscriber, version);
                let names = self.slots.held_names();
                Reply::PeerNames { version, names }
            }
            Request::Keepalive => Reply::Valid {
                ms: self.valid_ms(),
            },
            Request::Status => Reply::Status(self.status()),
            Request::ShardOf { kind, key } => Reply::Shard(shard_of_key(kind, &key)),
            request @ Request::StartName { .. } => return self.start_name(caller, request),
            request @ Request::WhereisMeta { .. } => return self.whereis_meta(caller, request),
            Request::Host { pid, kind } => return self.supervise.host(caller, pid, kind),
            Request::Started { id, pid } => return self.supervise.started(caller, id, pid),
            Request::StartFailed { id, reason } => {
                return self.supervise.start_failed(caller, id, reason, self.now)
            }
        };
        self.outputs.push_back(Output::Reply(caller, reply));
    }

    /// The `status` counters.
    pub(crate) fn status(&self) -> Vec<(String, i64)> {
        let counters = [
            ("slots", self.slots.len() as i64),
            ("peer_names", self.sharing.names.len() as i64),
            ("subscribers", self.sharing.subscriber_count() as i64),
            ("session_valid_ms", self.valid_ms() as i64),
            ("epoch", self.lease.session.epoch as i64),
            ("supervised", self.supervise.supervised() as i64),
            ("hosts", self.supervise.host_count() as i64),
            ("pending_starts", self.supervise.pending_count() as i64),
            ("redirects", self.routing.redirects as i64),
            // Last: older readers take the counters by position.
            (
                "shards_held",
                self.routing
                    .shards
                    .held_shards(self.lease.session.epoch)
                    .len() as i64,
            ),
        ];
        counters.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }
}
