//! Supervised names in the simulation: BEAM nodes with a host each, the
//! keepers they spawn and the children those start, clients racing
//! `start_name` for a few singletons, children that crash, and a host
//! node that dies (`kill -9`) and comes back. Checked:
//!
//! - never two live instances of one singleton: an instance is alive from
//!   its start until it is told `name_lost` or an exit signal, or its
//!   node dies;
//! - a permanent singleton that ran on a node that died runs again
//!   (registered) after its node's hold was released: checked unless a
//!   serving node lost its own session meanwhile (then the record is gone
//!   with it, and only the keeper, dead with its node, or the next
//!   `start_name` could start it again: a double fault).
//!
//! Known limit, counted and reported rather than failed: a keeper whose
//! start function returns after its serving node lost its session may
//! start a child while the node that took the name over runs one; that
//! child lives until its keeper hears `no` (one round trip). Closing it
//! needs the keeper to know how long the `eq_start` stays good (a validity
//! in the message, as `keepalive` has), which the wire does not carry.
//!
//! Keepers behave as the BEAM keeper does (`SINGLETONS-SPEC.md`): a child
//! told `name_lost` is started again by its keeper with a fresh
//! `start_name` (permanent or transient), anything else ends the keeper.

use super::*;
use crate::services::protocol::{HostKind, HostMsg, Restart, Start};
use crate::term::list;

const HOST_NODES: usize = 3;
const NAMES: usize = 4;
/// Restart types of the singletons `s0..`: two permanent, then one each.
const RESTARTS: [Restart; NAMES] = [
    Restart::Permanent,
    Restart::Permanent,
    Restart::Transient,
    Restart::Temporary,
];

fn host_node(i: usize) -> String {
    format!("h{i}@h")
}

fn name_of(i: usize) -> Term {
    atom(&format!("s{i}"))
}

fn index_of(name: &Term) -> Option<usize> {
    (0..NAMES).find(|&i| name_of(i) == *name)
}

fn spec() -> Start {
    Start::Beam(tuple(vec![
        atom("counter"),
        atom("start_link"),
        list(vec![]),
    ]))
}

/// What happens on the BEAM side.
#[derive(Debug)]
pub(super) enum Event {
    /// A host node's host announces itself to every serving node.
    Announce { node: usize },
    /// An `eq_start` reaches the host on `node`.
    EqStart {
        node: usize,
        host: Pid,
        from: usize,
        msg: HostMsg,
    },
    /// A keeper's start function returns.
    KeeperRuns { keeper: Pid },
    /// A keeper whose child lost its name asks again.
    KeeperRetry { keeper: Pid },
    /// A client calls `start_name`.
    ClientStart,
    /// A running child crashes.
    Crash,
    /// A host node dies, every process on it at once.
    Kill { node: usize },
    /// It comes back (a new host).
    Revive { node: usize },
}

#[derive(Debug)]
struct Keeper {
    node: usize,
    /// The serving node that sent the `eq_start` (and its id), for a
    /// keeper that runs one.
    from: usize,
    id: u64,
    name: Term,
    restart: Restart,
    child: Option<Pid>,
    /// A keeper re-registering after `name_lost` stops trying at this time.
    retry_until: Option<Instant>,
    /// Its child holds the name (the serving node said `yes`).
    kept: bool,
    /// The session epoch of the serving node that sent the `eq_start`.
    epoch: i64,
}

#[derive(Debug, Default)]
pub(super) struct Singletons {
    /// The live host of each host node (`None` while it is down).
    hosts: [Option<Pid>; HOST_NODES],
    keepers: HashMap<Pid, Keeper>,
    /// Child -> its keeper.
    children: HashMap<Pid, Pid>,
    /// Live instances of each singleton.
    instances: [Vec<Pid>; NAMES],
    /// Singletons that have run at least once.
    ran: [bool; NAMES],
    /// When a host node died under a registered permanent singleton, and
    /// whether it was registered again after that.
    orphaned_at: [Option<Instant>; NAMES],
    back: [bool; NAMES],
    /// When a serving node was cut off from the masters, and until when.
    pub(super) cut: Option<(Instant, Instant)>,
    /// When a serving node gave its session up (its `eq_lost` notices).
    pub losses: Vec<Instant>,
    /// When a keeper of each singleton was made slower than the start
    /// deadline (its start is then abandoned and retried 30 s later).
    slow_starts: [Vec<Instant>; NAMES],
    kills: usize,
    starts: usize,
    /// Children of the known limit, started while another instance ran.
    late_overlaps: usize,
    replies: BTreeMap<String, usize>,
}

impl Sim {
    /// Hosts announce themselves at the start; clients, crashes and one
    /// node's death and return during the active phase.
    pub(super) fn plan_singletons(&mut self) {
        for node in 0..HOST_NODES {
            self.sing.hosts[node] = Some(self.fresh_pid(node));
            let at = self.t0 + Duration::from_millis(self.rng.random_range(0..200));
            self.schedule(at, Delivery::Sing(Event::Announce { node }));
        }
        let active = ACTIVE.as_millis() as u64;
        for _ in 0..60 {
            let at = self.t0 + Duration::from_millis(self.rng.random_range(300..active));
            self.schedule(at, Delivery::Sing(Event::ClientStart));
        }
        for _ in 0..self.rng.random_range(0..4) {
            let at = self.t0 + Duration::from_millis(self.rng.random_range(2_000..active));
            self.schedule(at, Delivery::Sing(Event::Crash));
        }
        let node = self.rng.random_range(0..HOST_NODES);
        let at = self.rng.random_range(4_000..25_000);
        let back = at + self.rng.random_range(3_000..15_000);
        let kill = Event::Kill { node };
        self.schedule(self.t0 + Duration::from_millis(at), Delivery::Sing(kill));
        let revive = Event::Revive { node };
        self.schedule(
            self.t0 + Duration::from_millis(back),
            Delivery::Sing(revive),
        );
    }

    /// Core `core`'s session epoch (it counts lost sessions).
    fn epoch_of(&self, core: usize) -> i64 {
        let status = self.cores[core].status();
        status
            .iter()
            .find(|(k, _)| k == "epoch")
            .map_or(0, |(_, v)| *v)
    }

    fn fresh_pid(&mut self, node: usize) -> Pid {
        self.next_pid += 1;
        Pid::new(host_node(node).as_str(), self.next_pid, 0, 1)
    }

    /// A request from a process on host node `node` (its own link).
    fn call_from(&mut self, node: usize, core: usize, pid: Pid, request: Request) {
        self.next_tag += 1;
        let tag = self.next_tag;
        let caller = Caller {
            pid: pid.clone(),
            tag: int(tag),
        };
        let waiting = Waiting {
            request: request.clone(),
            hops: 0,
        };
        self.calls.insert(tag, (pid, waiting));
        let delivery = Delivery::Request {
            core,
            caller,
            request,
        };
        self.send(CORES + 1 + node, core, delivery);
    }

    pub(super) fn singleton_event(&mut self, event: Event) {
        match event {
            Event::Announce { node } => {
                let Some(host) = self.sing.hosts[node].clone() else {
                    return;
                };
                for core in 0..CORES {
                    let request = Request::Host {
                        pid: host.clone(),
                        kind: HostKind::Beam,
                    };
                    self.call_from(node, core, host.clone(), request);
                }
            }
            Event::EqStart {
                node,
                host,
                from,
                msg,
            } => {
                if self.sing.hosts[node].as_ref() != Some(&host) {
                    return;
                }
                let HostMsg::Start {
                    id, name, restart, ..
                } = msg;
                let keeper = self.fresh_pid(node);
                let epoch = self.epoch_of(from);
                let index = index_of(&name);
                self.sing.keepers.insert(
                    keeper.clone(),
                    Keeper {
                        node,
                        from,
                        id,
                        name,
                        restart,
                        child: None,
                        retry_until: None,
                        kept: false,
                        epoch,
                    },
                );
                // Mostly quick; sometimes past the 30 s deadline.
                let ms = if self.rng.random_bool(0.03) {
                    if let Some(i) = index {
                        self.sing.slow_starts[i].push(self.now);
                    }
                    self.rng.random_range(29_000..32_000)
                } else {
                    self.rng.random_range(1..40)
                };
                let at = self.now + Duration::from_millis(ms);
                self.schedule(at, Delivery::Sing(Event::KeeperRuns { keeper }));
            }
            Event::KeeperRuns { keeper } => self.keeper_runs(keeper),
            Event::KeeperRetry { keeper } => {
                let Some(k) = self.sing.keepers.get(&keeper) else {
                    return;
                };
                let (node, name, restart) = (k.node, k.name.clone(), k.restart);
                let request = Request::StartName {
                    name,
                    start: spec(),
                    restart,
                    meta: atom("undefined"),
                    host: self.sing.hosts[node].clone(),
                };
                let core = self.rng.random_range(0..CORES);
                self.call_from(node, core, keeper, request);
            }
            Event::ClientStart => {
                let owner = self.owners[self.rng.random_range(0..self.owners.len())].clone();
                if self.dead.contains(&owner) {
                    return;
                }
                let i = self.rng.random_range(0..NAMES);
                let request = Request::start_name(name_of(i), spec(), RESTARTS[i]);
                let core = self.rng.random_range(0..CORES);
                self.call(core, owner, Waiting { request, hops: 0 });
            }
            Event::Crash => {
                let running: Vec<Pid> = self.sing.instances.iter().flatten().cloned().collect();
                if running.is_empty() {
                    return;
                }
                let child = running[self.rng.random_range(0..running.len())].clone();
                self.child_ends(&child, atom("crash"));
            }
            Event::Kill { node } => {
                let t = self.now - self.t0;
                self.log.push(format!("{t:?} kill -9 {}", host_node(node)));
                self.sing.kills += 1;
                let on_node: Vec<Pid> = self
                    .sing
                    .keepers
                    .keys()
                    .chain(self.sing.children.keys())
                    .chain(self.sing.hosts[node].iter())
                    .filter(|p| p.node.name == host_node(node))
                    .cloned()
                    .collect();
                self.sing.hosts[node] = None;
                for (child, keeper) in &self.sing.children {
                    let kept = self.sing.keepers.get(keeper).is_some_and(|k| k.kept);
                    let Some(i) = self
                        .sing
                        .keepers
                        .get(keeper)
                        .and_then(|k| index_of(&k.name))
                    else {
                        continue;
                    };
                    if kept
                        && child.node.name == host_node(node)
                        && RESTARTS[i] == Restart::Permanent
                    {
                        self.sing.orphaned_at[i] = Some(self.now);
                        self.sing.back[i] = false;
                    }
                }
                for pid in on_node {
                    self.sing.keepers.remove(&pid);
                    self.sing.children.remove(&pid);
                    for live in &mut self.sing.instances {
                        live.retain(|c| *c != pid);
                    }
                    self.exit_with(&pid, atom("noconnection"));
                }
            }
            Event::Revive { node } => {
                self.sing.hosts[node] = Some(self.fresh_pid(node));
                self.singleton_event(Event::Announce { node });
            }
        }
    }

    /// The keeper's start function returns: mostly a child.
    fn keeper_runs(&mut self, keeper: Pid) {
        let Some(k) = self.sing.keepers.get(&keeper) else {
            return;
        };
        let (node, from, id, epoch) = (k.node, k.from, k.id, k.epoch);
        let Some(i) = index_of(&k.name) else { return };
        if self.rng.random_bool(0.05) {
            self.sing.keepers.remove(&keeper);
            let request = Request::StartFailed {
                id,
                reason: atom("boom"),
            };
            self.call_from(node, from, keeper, request);
            return;
        }
        let child = self.fresh_pid(node);
        if !self.sing.instances[i].is_empty() && self.epoch_of(from) != epoch {
            // The known limit (see the module doc): a keeper slower than
            // its serving node's session, which was lost meanwhile. Its
            // child lives until its keeper hears `no`.
            self.sing.late_overlaps += 1;
        } else if let Some(other) = self.sing.instances[i].first() {
            self.dump_log();
            panic!(
                "seed {}: s{i} started as {child:?} while {other:?} runs",
                self.seed
            );
        }
        let t = self.now - self.t0;
        self.log.push(format!("{t:?} s{i} starts as {child:?}"));
        self.sing.starts += 1;
        self.sing.ran[i] = true;
        self.sing.instances[i].push(child.clone());
        self.sing.children.insert(child.clone(), keeper.clone());
        if let Some(k) = self.sing.keepers.get_mut(&keeper) {
            k.child = Some(child.clone());
        }
        let request = Request::Started { id, pid: child };
        self.call_from(node, from, keeper, request);
    }

    /// A singleton's instance ends with `reason`; its keeper reacts.
    fn child_ends(&mut self, child: &Pid, reason: Term) {
        let Some(keeper) = self.sing.children.remove(child) else {
            return;
        };
        for live in &mut self.sing.instances {
            live.retain(|c| c != child);
        }
        let t = self.now - self.t0;
        self.log.push(format!("{t:?} {child:?} ends {reason}"));
        self.exit_with(child, reason.clone());
        let lost = matches!(crate::term::as_tuple(&reason), Some([tag, _]) if crate::term::is_atom(tag, "name_lost"));
        let Some(k) = self.sing.keepers.get_mut(&keeper) else {
            return;
        };
        k.child = None;
        if lost && k.restart != Restart::Temporary {
            k.retry_until = Some(self.now + Duration::from_secs(60));
            let at = self.now + Duration::from_millis(self.rng.random_range(100..300));
            self.schedule(at, Delivery::Sing(Event::KeeperRetry { keeper }));
        } else {
            self.sing.keepers.remove(&keeper);
        }
    }

    /// `eq_lost` reached the guard of `owner`: it is told at once.
    /// The guards of the live hosts' nodes (pid 0 there).
    pub(super) fn live_host_guards(&self) -> Vec<Pid> {
        (0..HOST_NODES)
            .filter(|&n| self.sing.hosts[n].is_some())
            .map(|n| Pid::new(host_node(n).as_str(), 0, 0, 1))
            .collect()
    }

    /// `core` dropped `node`, a host's node, for silence: every call and
    /// monitor across that connection fails. Modelled as the node dying
    /// and coming back (what its processes see is the same: `noconnection`
    /// everywhere, their holds released once told, a host announcing
    /// itself again).
    pub(super) fn host_dropped(&mut self, node: &str) {
        let Some(n) = (0..HOST_NODES).find(|&n| host_node(n) == node) else {
            return;
        };
        if self.sing.hosts[n].is_none() {
            return; // already down
        }
        self.singleton_event(Event::Kill { node: n });
        let at = self.now + Duration::from_secs(2);
        self.schedule(at, Delivery::Sing(Event::Revive { node: n }));
    }

    pub(super) fn told_lost(&mut self, owner: &Pid, key: &Term) {
        self.sing.losses.push(self.now);
        if self.sing.children.contains_key(owner) {
            let reason = tuple(vec![atom("name_lost"), key.clone()]);
            self.child_ends(owner, reason);
        }
    }

    /// An exit signal from a serving node.
    pub(super) fn exit_signal(&mut self, owner: Pid, reason: Term) {
        assert!(
            self.sing.children.contains_key(&owner) || self.dead.contains(&owner),
            "an exit signal to {owner:?}, which is no singleton"
        );
        self.child_ends(&owner, reason);
    }

    /// An `eq_start` for a host: delivered if that host still runs.
    pub(super) fn send_to_host(&mut self, from: usize, host: Pid, msg: HostMsg) {
        let Some(node) = (0..HOST_NODES).find(|&n| self.sing.hosts[n].as_ref() == Some(&host))
        else {
            return;
        };
        let event = Event::EqStart {
            node,
            host,
            from,
            msg,
        };
        self.send(from, CORES + 1 + node, Delivery::Sing(event));
    }

    /// A reply to a keeper or a singleton client.
    pub(super) fn singleton_replied(&mut self, owner: Pid, waiting: Waiting, reply: Reply) {
        let kind = format!("{reply:?}");
        let kind = kind.split(['(', ' ']).next().unwrap_or_default().to_owned();
        match &waiting.request {
            Request::StartName { .. } => {
                *self.sing.replies.entry(kind).or_default() += 1;
            }
            Request::Started { .. } => {
                *self
                    .sing
                    .replies
                    .entry(format!("started {kind}"))
                    .or_default() += 1;
            }
            _ => {}
        }
        let Some(k) = self.sing.keepers.get(&owner) else {
            return;
        };
        match (&waiting.request, reply) {
            (Request::Started { .. }, Reply::Yes) => {
                if let Some(i) = index_of(&k.name) {
                    self.sing.back[i] = true;
                }
                if let Some(k) = self.sing.keepers.get_mut(&owner) {
                    k.kept = true;
                }
            }
            // Not this keeper's to keep: the child is killed.
            (Request::Started { .. }, Reply::No) => {
                if let Some(child) = k.child.clone() {
                    self.child_ends(&child, atom("killed"));
                }
                self.sing.keepers.remove(&owner);
            }
            (Request::StartName { .. }, Reply::NoQuorum | Reply::NoHost | Reply::Redirect(_))
                if k.retry_until.is_some_and(|until| self.now < until) =>
            {
                let at = self.now + Duration::from_millis(self.rng.random_range(100..300));
                let keeper = owner;
                self.schedule(at, Delivery::Sing(Event::KeeperRetry { keeper }));
            }
            (Request::StartName { .. }, _) => {
                self.sing.keepers.remove(&owner);
            }
            _ => {}
        }
    }

    /// After the run: every permanent singleton orphaned by a dead node
    /// was registered again (unless a serving node lost its session
    /// around then, see the module doc). Returns how many were checked.
    pub(super) fn check_singletons(&mut self) -> usize {
        let mut checked = 0;
        for i in 0..NAMES {
            let Some(at) = self.sing.orphaned_at[i] else {
                continue;
            };
            let window = (at - Duration::from_secs(1), at + Duration::from_secs(20));
            let double_fault = self
                .sing
                .cut
                .is_some_and(|(from, until)| from < window.1 && until > window.0)
                || self
                    .sing
                    .losses
                    .iter()
                    .any(|&t| t > window.0 && t < window.1)
                // A start that waits out the deadline comes back later.
                || self.sing.slow_starts[i]
                    .iter()
                    .any(|&t| t > window.0 && t < window.1);
            if double_fault {
                continue;
            }
            checked += 1;
            if !self.sing.back[i] {
                self.dump_log();
            }
            assert!(
                self.sing.back[i],
                "seed {}: permanent s{i}, orphaned at {:?}, never came back",
                self.seed,
                at - self.t0
            );
        }
        checked
    }
}

#[test]
fn many_seeds_a_singleton_never_runs_twice_and_a_permanent_one_comes_back() {
    let (first, seeds) = seed_range(32);
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    let (mut starts, mut kills, mut checked, mut late) = (0, 0, 0, 0);
    for seed in first..first + seeds {
        let mut sim = Sim::new(seed);
        sim.run();
        checked += sim.check_singletons();
        sim.assert_live_calls_answered(seed);
        for (kind, n) in sim.sing.replies {
            *totals.entry(kind).or_default() += n;
        }
        starts += sim.sing.starts;
        late += sim.sing.late_overlaps;
        kills += sim.sing.kills;
    }
    // The runs exercised what they should.
    assert!(kills >= seeds as usize);
    assert!(
        checked >= seeds as usize / 4,
        "only {checked} restarts checked"
    );
    assert!(starts >= 2 * seeds as usize, "{starts} starts");
    for kind in ["Started", "AlreadyStarted", "started Yes"] {
        let n = totals.get(kind).copied().unwrap_or(0);
        assert!(n >= seeds as usize, "only {n} {kind}: {totals:?}");
    }
    eprintln!(
        "singletons over {seeds} seeds: {starts} starts, {kills} node deaths, \
         {checked} restarts after one checked, {late} late children of the known limit; \
         replies {totals:?}"
    );
}
