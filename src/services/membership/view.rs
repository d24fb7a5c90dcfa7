//! Membership of one cluster as one watcher sees it: the sans-IO core of
//! what `rebar_fixture/src/eq_cluster.erl` does on the BEAM, for the Rust
//! side (a Rust watcher of a cluster, or a Rust member).
//!
//! A cluster `C` is the process group `{'$eq_cluster', C}`; a watcher reads
//! it through a group monitor (a snapshot, then join and leave events, as
//! `pg:monitor/2` gives them) and monitors every member itself, for the exit
//! reason. This core turns those inputs into the callbacks' sequence:
//! `Joined`/`Left` changes, each with the member list after it, plus the
//! monitors to take and drop. Rules (the same as eq_cluster's):
//!
//! - A pid may join a group several times (pg allows it); it stays a member
//!   until as many leaves, and only its first join and last leave are
//!   changes.
//! - A departure is reported once, by whichever comes first: the watcher's
//!   own monitor (`LeaveInfo::Exit(reason)`, `noconnection` when the node
//!   was lost) or the group's last leave (`LeaveInfo::Left`). The other is
//!   then ignored, so a pid the group still lists but that is known dead is
//!   not served, and a late leave cannot remove a pid twice. (A driver that
//!   wants the reason waits a little for the DOWN before dropping the
//!   monitor the leave's `Demonitor` names: `ClusterWatch` and eq_cluster
//!   wait up to 100 ms per leave message.)
//! - The watcher's own pid (`me`, for a member) is a member from the start
//!   and never leaves by a group event.
//! - A re-snapshot (the group monitor taken again, e.g. after the group
//!   service moved) is diffed against the current view: the differences
//!   become changes, so no change is lost or reported twice.
//! - Bounded: at most `max_members` members; joins beyond that are dropped
//!   and counted (`overflowed`), never stored.
//!
//! Pids and exit reasons are type parameters, so the core is tested with
//! plain integers; the driver uses `term::Pid` and `Term`.

use std::collections::BTreeMap;
use std::marker::PhantomData;

/// Why a member left, as the watcher learnt it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaveInfo<R> {
    /// The watcher's own monitor fired with this reason (`noconnection`
    /// when the member's node was lost).
    Exit(R),
    /// The group reported the departure and no DOWN came (in the driver's
    /// grace): the pid left the group while alive.
    Left,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<P, R> {
    /// Monitor this pid (its DOWN comes back as `View::down`).
    Monitor(P),
    /// Drop the monitor of this pid (and any DOWN of it still queued).
    Demonitor(P),
    /// A member joined (handle_join).
    Joined {
        /// The member that joined.
        pid: P,
        /// The sorted member list after the change, `pid` included.
        members: Vec<P>,
    },
    /// A member left (handle_leave).
    Left {
        /// The member that left.
        pid: P,
        /// The sorted member list after the change, `pid` excluded.
        members: Vec<P>,
        /// How the departure was learnt.
        info: LeaveInfo<R>,
    },
}

/// One watcher's view of one cluster.
#[derive(Debug)]
pub struct View<P, R> {
    me: Option<P>,
    /// Member => how many joins the group holds for it.
    members: BTreeMap<P, u32>,
    max_members: usize,
    overflowed: u64,
    /// The exit reasons' type, for the actions.
    _reason: PhantomData<fn() -> R>,
}

impl<P: Ord + Clone, R> View<P, R> {
    /// A view from the group monitor's first snapshot. `me` is the member
    /// this view belongs to (None for a watcher that is not a member). No
    /// changes for the snapshot: it is the list handle_node_joined gets;
    /// the actions are the monitors to take.
    pub fn new(
        me: Option<P>,
        snapshot: impl IntoIterator<Item = P>,
        max_members: usize,
    ) -> (Self, Vec<Action<P, R>>) {
        let mut view = View {
            me: me.clone(),
            members: BTreeMap::new(),
            max_members: max_members.max(1),
            overflowed: 0,
            _reason: PhantomData,
        };
        let mut out = Vec::new();
        if let Some(me) = me {
            view.members.insert(me, 1);
        }
        for pid in snapshot {
            view.add(pid, false, &mut out);
        }
        (view, out)
    }

    /// The sorted member list.
    pub fn members(&self) -> Vec<P> {
        self.members.keys().cloned().collect()
    }

    /// Whether `pid` is a member in this view.
    pub fn contains(&self, pid: &P) -> bool {
        self.members.contains_key(pid)
    }

    /// Joins dropped because the view was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// `{Ref, join, Group, Pids}`.
    pub fn joined(&mut self, pids: impl IntoIterator<Item = P>) -> Vec<Action<P, R>> {
        let mut out = Vec::new();
        for pid in pids {
            self.add(pid, true, &mut out);
        }
        out
    }

    /// `{Ref, leave, Group, Pids}`.
    pub fn left(&mut self, pids: impl IntoIterator<Item = P>) -> Vec<Action<P, R>> {
        let mut out = Vec::new();
        for pid in pids {
            if self.me.as_ref() == Some(&pid) {
                continue;
            }
            match self.members.get_mut(&pid) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    self.members.remove(&pid);
                    out.push(Action::Demonitor(pid.clone()));
                    out.push(Action::Left {
                        pid,
                        members: self.members(),
                        info: LeaveInfo::Left,
                    });
                }
                None => {} // already gone through its DOWN
            }
        }
        out
    }

    /// The watcher's monitor of `pid` fired. Not a member (any more): not
    /// ours, nothing to do.
    pub fn down(&mut self, pid: P, reason: R) -> Vec<Action<P, R>> {
        if self.me.as_ref() == Some(&pid) || self.members.remove(&pid).is_none() {
            return Vec::new();
        }
        vec![Action::Left {
            pid,
            members: self.members(),
            info: LeaveInfo::Exit(reason),
        }]
    }

    /// A new snapshot of the group (its monitor taken again): pids it lacks
    /// leave (`Left`), pids it adds join. Join counts restart from it.
    pub fn resync(&mut self, snapshot: impl IntoIterator<Item = P>) -> Vec<Action<P, R>> {
        let mut fresh: BTreeMap<P, u32> = BTreeMap::new();
        for pid in snapshot {
            if fresh.len() < self.max_members || fresh.contains_key(&pid) {
                *fresh.entry(pid).or_insert(0) += 1;
            } else {
                self.overflowed += 1;
            }
        }
        let gone: Vec<P> = self
            .members
            .keys()
            .filter(|p| !fresh.contains_key(*p) && self.me.as_ref() != Some(*p))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for pid in gone {
            self.members.remove(&pid);
            out.push(Action::Demonitor(pid.clone()));
            out.push(Action::Left {
                pid,
                members: self.members(),
                info: LeaveInfo::Left,
            });
        }
        for (pid, n) in fresh {
            if let Some(count) = self.members.get_mut(&pid) {
                if self.me.as_ref() != Some(&pid) {
                    *count = n;
                }
                continue;
            }
            self.add(pid.clone(), true, &mut out);
            if let Some(count) = self.members.get_mut(&pid) {
                *count = n;
            }
        }
        out
    }

    fn add(&mut self, pid: P, announce: bool, out: &mut Vec<Action<P, R>>) {
        if self.me.as_ref() == Some(&pid) {
            return;
        }
        if let Some(n) = self.members.get_mut(&pid) {
            *n = n.saturating_add(1);
            return;
        }
        if self.members.len() >= self.max_members {
            self.overflowed += 1;
            return;
        }
        self.members.insert(pid.clone(), 1);
        out.push(Action::Monitor(pid.clone()));
        if announce {
            out.push(Action::Joined {
                pid,
                members: self.members(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type A = Action<u32, &'static str>;

    fn view(me: Option<u32>, snap: &[u32]) -> (View<u32, &'static str>, Vec<A>) {
        View::new(me, snap.iter().copied(), 100)
    }

    fn changes(actions: Vec<A>) -> Vec<A> {
        actions
            .into_iter()
            .filter(|a| !matches!(a, Action::Monitor(_) | Action::Demonitor(_)))
            .collect()
    }

    #[test]
    fn snapshot_is_silent_and_monitors_everyone_but_me() {
        let (v, out) = view(Some(1), &[2, 3, 1]);
        assert_eq!(out, vec![Action::Monitor(2), Action::Monitor(3)]);
        assert_eq!(v.members(), vec![1, 2, 3]);
    }

    #[test]
    fn joins_and_leaves_with_the_list_after_each() {
        let (mut v, _) = view(Some(1), &[]);
        assert_eq!(
            v.joined([3, 2]),
            vec![
                Action::Monitor(3),
                Action::Joined {
                    pid: 3,
                    members: vec![1, 3]
                },
                Action::Monitor(2),
                Action::Joined {
                    pid: 2,
                    members: vec![1, 2, 3]
                },
            ]
        );
        assert_eq!(
            v.down(3, "boom"),
            vec![Action::Left {
                pid: 3,
                members: vec![1, 2],
                info: LeaveInfo::Exit("boom")
            }]
        );
        assert_eq!(
            v.left([2]),
            vec![
                Action::Demonitor(2),
                Action::Left {
                    pid: 2,
                    members: vec![1],
                    info: LeaveInfo::Left
                },
            ]
        );
    }

    #[test]
    fn a_pid_joined_twice_leaves_on_its_last_leave() {
        let (mut v, _) = view(None, &[5]);
        assert!(changes(v.joined([5])).is_empty());
        assert!(v.left([5]).is_empty());
        assert!(v.contains(&5));
        assert_eq!(
            changes(v.left([5])),
            vec![Action::Left {
                pid: 5,
                members: vec![],
                info: LeaveInfo::Left
            }]
        );
    }

    #[test]
    fn down_then_leave_and_leave_then_down_report_once() {
        let (mut v, _) = view(None, &[7, 8]);
        // DOWN first (the usual order for an exit): the leave is ignored.
        assert_eq!(changes(v.down(7, "killed")).len(), 1);
        assert!(v.left([7]).is_empty());
        // Leave first: the DOWN that follows is ignored.
        assert_eq!(changes(v.left([8])).len(), 1);
        assert!(v.down(8, "killed").is_empty());
        assert!(v.members().is_empty());
        // A DOWN of a pid never seen: nothing.
        assert!(v.down(9, "noproc").is_empty());
    }

    #[test]
    fn me_never_leaves_by_a_group_event() {
        let (mut v, _) = view(Some(1), &[]);
        assert!(v.left([1]).is_empty());
        assert!(v.down(1, "x").is_empty());
        assert!(v.joined([1]).is_empty());
        assert_eq!(v.members(), vec![1]);
    }

    #[test]
    fn a_member_cut_off_and_back_leaves_then_joins_again() {
        let (mut v, _) = view(Some(1), &[2]);
        assert_eq!(
            changes(v.down(2, "noconnection")),
            vec![Action::Left {
                pid: 2,
                members: vec![1],
                info: LeaveInfo::Exit("noconnection")
            }]
        );
        // The group's own leave for the lost node arrives late: ignored.
        assert!(v.left([2]).is_empty());
        // Reconnected: the group re-syncs it.
        assert_eq!(
            changes(v.joined([2])),
            vec![Action::Joined {
                pid: 2,
                members: vec![1, 2]
            }]
        );
    }

    #[test]
    fn resync_reports_the_differences_once() {
        let (mut v, _) = view(Some(1), &[2, 3]);
        let out = v.resync([1, 3, 4, 4]);
        assert_eq!(
            changes(out),
            vec![
                Action::Left {
                    pid: 2,
                    members: vec![1, 3],
                    info: LeaveInfo::Left
                },
                Action::Joined {
                    pid: 4,
                    members: vec![1, 3, 4]
                },
            ]
        );
        // 4 was in the snapshot twice: two leaves to go.
        assert!(v.left([4]).is_empty());
        assert_eq!(changes(v.left([4])).len(), 1);
        // The same snapshot again: nothing.
        let again = v.resync([1, 3]);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn reordered_and_lost_inputs_converge_on_a_resync() {
        // Events for 2, 3 and 4 arrive out of order and one leave is lost;
        // the resync brings the view to the group's list.
        let (mut v, _) = view(None, &[]);
        let _ = v.left([3]); // leave before its join: ignored
        let _ = v.joined([3, 2, 4]);
        let _ = v.down(2, "normal");
        // (the leave of 4 was lost)
        let out = v.resync([3]);
        assert_eq!(v.members(), vec![3]);
        assert_eq!(
            changes(out),
            vec![Action::Left {
                pid: 4,
                members: vec![3],
                info: LeaveInfo::Left
            }]
        );
    }

    #[test]
    fn bounded_by_max_members() {
        let (mut v, _): (View<u32, &str>, Vec<A>) = View::new(Some(0), [1, 2], 3);
        assert_eq!(changes(v.joined([3, 4, 5])), vec![]);
        assert_eq!(v.members(), vec![0, 1, 2]);
        assert_eq!(v.overflowed(), 3);
        let _ = v.down(1, "x");
        assert_eq!(
            changes(v.joined([6])),
            vec![Action::Joined {
                pid: 6,
                members: vec![0, 2, 6]
            }]
        );
    }
}
