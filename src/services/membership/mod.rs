//! Membership of gen_cluster-style clusters (`rebar_fixture/src/eq_cluster.erl`)
//! for the Rust side: the sans-IO [`View`] of one cluster (what a member's
//! callbacks see) and [`ClusterWatch`], its driver: a Rust watcher or a Rust
//! member of a cluster through this node's groups hub, or a watcher of a
//! BEAM node's `eq_pg` (or `pg`) scope.

mod view;
mod watch;

pub use view::{Action, LeaveInfo, View};
pub use watch::{ClusterWatch, MemberPid, MembershipEvent, WatchError, DEFAULT_MAX_MEMBERS};
