//! Membership of gen_cluster-style clusters (`rebar_fixture/src/eq_cluster.erl`)
//! for the Rust side: the sans-IO [`View`] of one cluster (what a member's
//! callbacks see) and [`ClusterWatch`], its driver over a process's mailbox
//! and any group monitor that speaks OTP pg's messages.

mod view;
mod watch;

pub use view::{Action, LeaveInfo, View};
pub use watch::{ClusterWatch, MemberPid, MembershipEvent, WatchError, DEFAULT_MAX_MEMBERS};
