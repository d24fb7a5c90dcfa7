//! The core against a model of OTP pg's scope process (pg.erl's handlers,
//! as far as the messages go), over a network that keeps each connection's
//! order, interleaves connections at random, loses what is in flight when
//! a connection drops, and reconnects. The model fails the test where the
//! real pg would crash (a `leave` for a group it does not hold for us).

use super::*;
use crate::term::{atom, int};
use std::collections::VecDeque;

const RUST: &str = "rust@h";

fn pid(node: &str, n: u32) -> Pid {
    Pid::new(node, n, 0, 1)
}

fn t0() -> Instant {
    Instant::now()
}

/// A BEAM node's pg scope process, as pg.erl handles messages.
struct ModelPg {
    me: Pid,
    local: Vec<(Term, Pid)>,
    /// peer -> group -> pids: pg's `remote` map.
    remote: HashMap<Pid, HashMap<Canon, (Term, Vec<Pid>)>>,
}

impl ModelPg {
    fn new(node: &str, n: u32) -> ModelPg {
        ModelPg {
            me: pid(node, n),
            local: Vec::new(),
            remote: HashMap::new(),
        }
    }

    fn sync_groups(&self) -> Vec<(Term, Vec<Pid>)> {
        let mut by: BTreeMap<Canon, (Term, Vec<Pid>)> = BTreeMap::new();
        for (g, p) in &self.local {
            by.entry(Canon::of(g).unwrap())
                .or_insert_with(|| (g.clone(), Vec::new()))
                .1
                .push(p.clone());
        }
        by.into_values().collect()
    }

    /// Handles one message; returns what it sends (to the Rust scope).
    fn handle(&mut self, m: PgMessage) -> Vec<PgMessage> {
        let mut out = Vec::new();
        match m {
            PgMessage::Discover { peer } => {
                out.push(PgMessage::Sync {
                    peer: self.me.clone(),
                    groups: self.sync_groups(),
                });
                if let std::collections::hash_map::Entry::Vacant(e) = self.remote.entry(peer) {
                    e.insert(HashMap::new());
                    out.push(PgMessage::Discover {
                        peer: self.me.clone(),
                    });
                }
            }
            PgMessage::Sync { peer, groups } => {
                let map = groups
                    .into_iter()
                    .map(|(g, p)| (Canon::of(&g).unwrap(), (g, p)))
                    .collect();
                self.remote.insert(peer, map);
            }
            PgMessage::Join { peer, group, pids } => {
                if let Some(map) = self.remote.get_mut(&peer) {
                    map.entry(Canon::of(&group).unwrap())
                        .or_insert_with(|| (group, Vec::new()))
                        .1
                        .extend(pids);
                }
            }
            PgMessage::Leave { peer, pids, groups } => {
                if let Some(map) = self.remote.get_mut(&peer) {
                    for g in groups {
                        let c = Canon::of(&g).unwrap();
                        // pg: maps:get(Group, Acc) -- badkey crashes the scope.
                        let entry = map.get_mut(&c).expect("a real pg would crash here");
                        for p in &pids {
                            assert!(remove_one(&mut entry.1, p), "pg: leave of a non-member");
                        }
                        if entry.1.is_empty() {
                            map.remove(&c);
                        }
                    }
                }
            }
        }
        out
    }

    fn join(&mut self, group: Term, p: Pid) -> Vec<PgMessage> {
        self.local.push((group.clone(), p.clone()));
        self.remote
            .keys()
            .map(|_| PgMessage::Join {
                peer: self.me.clone(),
                group: group.clone(),
                pids: vec![p.clone()],
            })
            .collect()
    }

    fn members(&self, group: &Term) -> Vec<Pid> {
        let c = Canon::of(group).unwrap();
        let mut out: Vec<Pid> = self
            .local
            .iter()
            .filter(|(g, _)| Canon::of(g).unwrap() == c)
            .map(|(_, p)| p.clone())
            .collect();
        for map in self.remote.values() {
            if let Some((_, pids)) = map.get(&c) {
                out.extend(pids.iter().cloned());
            }
        }
        sorted(out)
    }
}

fn sorted(mut v: Vec<Pid>) -> Vec<Pid> {
    v.sort_by_key(|p| (p.node.name.clone(), p.id));
    v
}

/// One Rust core and BEAM models, one connection each.
struct Sim {
    core: Core,
    now: Instant,
    beams: Vec<ModelPg>,
    up: Vec<bool>,
    to_beam: Vec<VecDeque<PgMessage>>,
    to_rust: Vec<VecDeque<PgMessage>>,
    monitored: HashSet<Pid>,
    rust_pids: Vec<Pid>,
    next_rust: u32,
    seed: u64,
}

impl Sim {
    fn new(beams: usize, seed: u64) -> Sim {
        let names: Vec<String> = (0..beams).map(|i| format!("b{i}@h")).collect();
        let now = t0();
        let mut core = Core::new(pid(RUST, 1), names.clone(), false, now);
        core.connections(names.clone(), now);
        Sim {
            core,
            now,
            beams: names.iter().map(|n| ModelPg::new(n, 1)).collect(),
            up: vec![true; beams],
            to_beam: vec![VecDeque::new(); beams],
            to_rust: vec![VecDeque::new(); beams],
            monitored: HashSet::new(),
            rust_pids: (0..4).map(|i| pid(RUST, 100 + i)).collect(),
            next_rust: 200,
            seed,
        }
    }

    fn rand(&mut self, n: u64) -> u64 {
        // xorshift64*: deterministic per seed.
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        (self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }

    fn beam_index(&self, node: &str) -> Option<usize> {
        self.beams.iter().position(|b| b.me.node.name == node)
    }

    /// Executes the core's actions.
    fn flush(&mut self) {
        for action in self.core.take_actions() {
            match action {
                Action::Send { to, message } => {
                    let node = match &to {
                        Target::Pid(p) => p.node.name.clone(),
                        Target::Scope(n) => n.clone(),
                    };
                    if let Some(i) = self.beam_index(&node) {
                        if let Target::Pid(p) = &to {
                            assert_eq!(*p, self.beams[i].me, "sent to a stale pid");
                        }
                        if self.up[i] {
                            self.to_beam[i].push_back(message);
                        }
                    }
                }
                Action::Monitor(p) => {
                    // A monitor of a peer whose node is down fires at once.
                    match self.beam_index(&p.node.name) {
                        Some(i) if !self.up[i] || p != self.beams[i].me => {
                            self.core.down(&p, self.now)
                        }
                        _ => {
                            self.monitored.insert(p);
                        }
                    }
                }
                Action::Demonitor(p) => {
                    self.monitored.remove(&p);
                }
            }
        }
    }

    fn deliver_to_beam(&mut self, i: usize) {
        if let Some(m) = self.to_beam[i].pop_front() {
            let out = self.beams[i].handle(m);
            self.to_rust[i].extend(out);
        }
    }

    fn deliver_to_rust(&mut self, i: usize) {
        if let Some(m) = self.to_rust[i].pop_front() {
            self.core.on_message(m);
            self.flush();
        }
    }

    fn disconnect(&mut self, i: usize) {
        if !self.up[i] {
            return;
        }
        self.up[i] = false;
        self.to_beam[i].clear();
        self.to_rust[i].clear();
        let me = self.core.me.clone();
        self.beams[i].remote.remove(&me); // pg's DOWN of our scope process
        let peer = self.beams[i].me.clone();
        if self.monitored.remove(&peer) {
            self.core.down(&peer, self.now);
        }
        self.connections();
    }

    fn connections(&mut self) {
        let up: Vec<String> = (0..self.beams.len())
            .filter(|&i| self.up[i])
            .map(|i| self.beams[i].me.node.name.clone())
            .collect();
        self.core.connections(up, self.now);
        self.flush();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.core.tick(self.now);
        self.flush();
    }

    fn group(&mut self) -> Term {
        [atom("a"), atom("b"), int(3)][self.rand(3) as usize].clone()
    }

    fn step(&mut self) {
        let n = self.beams.len();
        match self.rand(12) {
            0..=3 => {
                let i = self.rand(n as u64) as usize;
                self.deliver_to_beam(i)
            }
            4..=6 => {
                let i = self.rand(n as u64) as usize;
                self.deliver_to_rust(i)
            }
            7 => {
                let g = self.group();
                let k = self.rand(4) as usize;
                let p = self.rust_pids[k].clone();
                self.core.join(g, p).unwrap();
                self.flush();
            }
            8 => {
                let g = self.group();
                let k = self.rand(4) as usize;
                let p = self.rust_pids[k].clone();
                self.core.leave(g, &p).unwrap();
                self.flush();
            }
            9 => {
                // A Rust member exits; a fresh pid takes its slot.
                let k = self.rand(4) as usize;
                let p = self.rust_pids[k].clone();
                if self.monitored.remove(&p) {
                    self.core.down(&p, self.now);
                    self.flush();
                }
                self.next_rust += 1;
                self.rust_pids[k] = pid(RUST, self.next_rust);
            }
            10 => {
                let i = self.rand(n as u64) as usize;
                let g = self.group();
                let p = pid(
                    &self.beams[i].me.node.name.clone(),
                    1000 + self.rand(3) as u32,
                );
                if self.up[i] {
                    let out = self.beams[i].join(g, p);
                    self.to_rust[i].extend(out);
                } else {
                    self.beams[i].join(g, p);
                }
            }
            _ => match self.rand(4) {
                0 => {
                    let i = self.rand(n as u64) as usize;
                    self.disconnect(i)
                }
                1 => {
                    let i = self.rand(n as u64) as usize;
                    self.up[i] = true;
                    self.connections();
                }
                _ => {
                    let by = Duration::from_millis(self.rand(700));
                    self.advance(by)
                }
            },
        }
    }

    /// Everything reconnected, and delivered, with time for retries.
    fn settle(&mut self) {
        for i in 0..self.up.len() {
            self.up[i] = true;
        }
        self.connections();
        for _ in 0..20 {
            self.advance(MAX_RETRY);
            for _ in 0..1000 {
                for i in 0..self.beams.len() {
                    self.deliver_to_beam(i);
                    self.deliver_to_rust(i);
                }
            }
        }
    }

    fn check_converged(&mut self) {
        for g in [atom("a"), atom("b"), int(3)] {
            let mut expected: Vec<Pid> = self.core.get_local_members(&g);
            for b in &self.beams {
                expected.extend(
                    b.local
                        .iter()
                        .filter(|(x, _)| *x == g)
                        .map(|(_, p)| p.clone()),
                );
            }
            let expected = sorted(expected);
            assert_eq!(
                sorted(self.core.get_members(&g).to_vec()),
                expected,
                "rust view of {g}"
            );
            // A BEAM node sees its own and ours (BEAM-to-BEAM is not modelled).
            for b in &self.beams {
                let mut own: Vec<Pid> = self.core.get_local_members(&g);
                own.extend(
                    b.local
                        .iter()
                        .filter(|(x, _)| *x == g)
                        .map(|(_, p)| p.clone()),
                );
                assert_eq!(b.members(&g), sorted(own), "{} view of {g}", b.me.node.name);
            }
        }
        assert_eq!(self.core.peers().len(), self.beams.len());
    }
}

#[test]
fn discovery_syncs_both_ways() {
    let mut s = Sim::new(1, 1);
    s.beams[0].join(atom("g"), pid("b0@h", 7));
    s.core.join(atom("g"), pid(RUST, 5)).unwrap();
    s.advance(Duration::ZERO);
    // The configured node gets a discover to its scope name.
    assert_eq!(s.to_beam[0].len(), 1);
    s.settle();
    s.check_converged();
    assert_eq!(s.core.get_members(&atom("g")).len(), 2);
    // Later joins and leaves follow the sync.
    s.core.join(atom("h"), pid(RUST, 5)).unwrap();
    s.flush();
    s.deliver_to_beam(0);
    assert_eq!(s.beams[0].members(&atom("h")), vec![pid(RUST, 5)]);
    assert!(s.core.leave(atom("h"), &pid(RUST, 5)).unwrap());
    assert!(!s.core.leave(atom("h"), &pid(RUST, 5)).unwrap());
    s.flush();
    s.deliver_to_beam(0);
    assert!(s.beams[0].members(&atom("h")).is_empty());
}

#[test]
fn a_member_that_exits_leaves_every_group_it_joined() {
    let mut s = Sim::new(1, 2);
    s.settle();
    let p = pid(RUST, 9);
    for g in [atom("a"), atom("a"), atom("b")] {
        s.core.join(g, p.clone()).unwrap();
    }
    s.flush();
    assert!(s.monitored.contains(&p));
    s.settle();
    assert_eq!(s.beams[0].members(&atom("a")), vec![p.clone(), p.clone()]);
    s.monitored.remove(&p);
    s.core.down(&p, s.now);
    s.flush();
    s.settle();
    s.check_converged();
    assert!(s.beams[0].members(&atom("a")).is_empty());
    assert!(s.core.which_groups().is_empty());
}

#[test]
fn a_lost_connection_forgets_and_a_new_one_rediscovers() {
    let mut s = Sim::new(2, 3);
    s.core.join(atom("a"), pid(RUST, 5)).unwrap();
    s.beams[1].join(atom("a"), pid("b1@h", 50));
    s.settle();
    s.check_converged();
    s.disconnect(1);
    assert_eq!(s.core.get_members(&atom("a")).to_vec(), vec![pid(RUST, 5)]);
    // Back: discovered again without any message from the BEAM side first.
    s.up[1] = true;
    s.connections();
    s.advance(Duration::ZERO);
    assert_eq!(s.to_beam[1].len(), 1, "a discover on reconnect");
    s.settle();
    s.check_converged();
}

#[test]
fn a_restarted_beam_scope_is_found_again() {
    let mut s = Sim::new(1, 4);
    s.core.join(atom("a"), pid(RUST, 5)).unwrap();
    s.settle();
    // The BEAM node restarts: a new scope pid, nothing of the old kept.
    s.disconnect(0);
    s.beams[0] = ModelPg::new("b0@h", 2);
    s.beams[0].join(atom("a"), pid("b0@h", 77));
    s.settle();
    s.check_converged();
    assert_eq!(s.core.peers(), vec![pid("b0@h", 2)]);
}

#[test]
fn discover_retries_back_off_and_stop_once_a_peer_answers() {
    let mut s = Sim::new(1, 5);
    let mut sent = Vec::new();
    for _ in 0..8 {
        let at = s.core.deadline().unwrap();
        s.now = at;
        s.core.tick(at);
        s.flush();
        sent.push(at);
        s.to_beam[0].clear(); // lost: the BEAM node runs no scope yet
    }
    let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[0], FIRST_RETRY);
    assert!(gaps.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(*gaps.last().unwrap(), MAX_RETRY);
    s.settle();
    assert_eq!(s.core.deadline(), None);
}

#[test]
fn random_schedules_converge_and_never_crash_pg() {
    for seed in 1..300u64 {
        let mut s = Sim::new(2, seed * 0x9E37_79B9 + 1);
        for _ in 0..300 {
            s.step();
        }
        s.settle();
        s.check_converged();
    }
}

#[test]
fn hostile_peers_are_bounded() {
    let mut s = Sim::new(1, 6);
    s.settle();
    let peer = s.beams[0].me.clone();
    // Pids of another node, a group too large: dropped.
    let big = crate::term::binary(vec![0u8; MAX_GROUP_BYTES + 1]);
    s.core.on_message(PgMessage::Sync {
        peer: peer.clone(),
        groups: vec![
            (atom("x"), vec![pid("other@h", 1)]),
            (big.clone(), vec![pid("b0@h", 2)]),
            (atom("ok"), vec![pid("b0@h", 3)]),
        ],
    });
    assert_eq!(s.core.which_groups(), vec![atom("ok")]);
    // Joins past the member bound are refused.
    let many: Vec<Pid> = (0..MAX_PEER_MEMBERS as u32)
        .map(|i| pid("b0@h", i))
        .collect();
    s.core.on_message(PgMessage::Join {
        peer: peer.clone(),
        group: atom("y"),
        pids: many,
    });
    assert!(s.core.get_members(&atom("y")).is_empty());
    // A leave of a group it never joined, a message from a stranger, a
    // discover naming a node not connected: ignored, nothing dialled.
    s.core.on_message(PgMessage::Leave {
        peer: peer.clone(),
        pids: vec![pid("b0@h", 3)],
        groups: vec![atom("nope")],
    });
    s.core.on_message(PgMessage::Join {
        peer: pid("stranger@h", 1),
        group: atom("z"),
        pids: vec![pid("stranger@h", 2)],
    });
    s.core.on_message(PgMessage::Discover {
        peer: pid("far@h", 1),
    });
    s.core.on_message(PgMessage::Join {
        peer: peer.clone(),
        group: atom("empty"),
        pids: vec![],
    });
    assert!(s.core.take_actions().is_empty());
    assert_eq!(s.core.which_groups(), vec![atom("ok")]);
    // Peers past MAX_PEERS are refused.
    let nodes: Vec<String> = (0..=MAX_PEERS).map(|i| format!("n{i}@h")).collect();
    s.core
        .connections(nodes.iter().cloned().chain(["b0@h".to_owned()]), s.now);
    for n in &nodes {
        s.core.on_message(PgMessage::Discover { peer: pid(n, 1) });
    }
    assert_eq!(s.core.peers().len(), MAX_PEERS);
}

#[test]
fn only_this_node_s_processes_join() {
    let mut core = Core::new(pid(RUST, 1), Vec::<String>::new(), true, t0());
    assert_eq!(
        core.join(atom("g"), pid("b@h", 1)),
        Err(OtpPgError::NotLocal)
    );
    let big = crate::term::binary(vec![0u8; MAX_GROUP_BYTES + 1]);
    assert_eq!(core.join(big, pid(RUST, 2)), Err(OtpPgError::GroupTooLarge));
    // Following connections: a node that connects is discovered at once.
    core.connections(["b@h".to_owned()], t0());
    core.tick(t0() + Duration::from_millis(1));
    assert!(matches!(
        core.take_actions().as_slice(),
        [Action::Send { to: Target::Scope(n), .. }] if n == "b@h"
    ));
}

#[test]
fn the_generation_counts_changes_and_only_changes() {
    let mut s = Sim::new(1, 7);
    s.settle();
    let g0 = s.core.generation();
    // Ignored: a stranger's join, a leave of nothing, a leave not joined.
    s.core.on_message(PgMessage::Join {
        peer: pid("stranger@h", 1),
        group: atom("z"),
        pids: vec![pid("stranger@h", 2)],
    });
    s.core.on_message(PgMessage::Leave {
        peer: s.beams[0].me.clone(),
        pids: vec![pid("b0@h", 9)],
        groups: vec![atom("z")],
    });
    assert!(!s.core.leave(atom("z"), &pid(RUST, 5)).unwrap());
    assert_eq!(s.core.generation(), g0);
    // Changes: a local join, a peer's join, a member's exit.
    s.core.join(atom("a"), pid(RUST, 5)).unwrap();
    assert_eq!(s.core.generation(), g0 + 1);
    let out = s.beams[0].join(atom("a"), pid("b0@h", 9));
    s.to_rust[0].extend(out);
    s.deliver_to_rust(0);
    assert_eq!(s.core.generation(), g0 + 2);
    // The cached answer went with the change.
    assert_eq!(s.core.get_members(&atom("a")).len(), 2);
    s.core.down(&pid(RUST, 5), s.now);
    assert_eq!(s.core.generation(), g0 + 3);
    assert_eq!(
        s.core.get_members(&atom("a")).to_vec(),
        vec![pid("b0@h", 9)]
    );
}
