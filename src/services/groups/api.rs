//! The Rust API of process groups: [`Groups`], with OTP `pg`'s operations.

use super::core::JoinRefused;
use super::driver::HubEvent;
use super::shared::{lookup, GroupEvent, Shared};
use super::wire::Group;
use crate::node::Node;
use crate::term::{Pid, Term};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Why a [`Groups`] operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GroupsError {
    /// No hub runs on this node (`services::start` starts one).
    #[error("no groups hub runs on this node")]
    NotStarted,
    /// The hub stopped while asked.
    #[error("the groups hub stopped")]
    HubStopped,
    /// The group is larger than 1024 bytes encoded, or too deep.
    #[error("group too large")]
    GroupTooLarge,
    /// A scope is an atom: at most 255 characters.
    #[error("bad scope name")]
    BadScope,
    /// The hub refused the join.
    #[error(transparent)]
    Refused(#[from] JoinRefused),
}

/// What `leave` found, as `pg:leave/3` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// At least one of the pids was a member (`ok`).
    Ok,
    /// None was (`not_joined`).
    NotJoined,
}

/// A stream of one group's (or one scope's) changes, after the snapshot
/// its `monitor` call returned. It ends (`next` gives `None`) when dropped
/// by the hub: the hub stopped, or the consumer fell 4096 events behind;
/// monitor again then. Dropping it demonitors.
pub struct GroupMonitor {
    rx: mpsc::Receiver<GroupEvent>,
}

impl GroupMonitor {
    /// The next change, in the order the hub applied them.
    pub async fn next(&mut self) -> Option<GroupEvent> {
        self.rx.recv().await
    }

    /// The next change if one is waiting.
    pub fn try_next(&mut self) -> Option<GroupEvent> {
        self.rx.try_recv().ok()
    }
}

/// Process groups as one node's hub sees them: Rust processes of this
/// node join and leave groups of a scope; reads come from the hub's local
/// table, which holds BEAM and Rust members of every node. Cheap to clone.
#[derive(Clone)]
pub struct Groups {
    shared: Arc<Shared>,
    node: String,
}

fn scope_ok(scope: &str) -> Result<(), GroupsError> {
    if scope.is_empty() || scope.chars().count() > 255 {
        return Err(GroupsError::BadScope);
    }
    Ok(())
}

fn group_of(group: Term) -> Result<Group, GroupsError> {
    Group::new(group).ok_or(GroupsError::GroupTooLarge)
}

impl Groups {
    /// The groups of `node`'s hub.
    pub fn new(node: &Node) -> Result<Groups, GroupsError> {
        let shared = lookup(node.name()).ok_or(GroupsError::NotStarted)?;
        Ok(Groups {
            shared,
            node: node.name().to_owned(),
        })
    }

    /// `pids` (processes of this node) join `group` of `scope`, once more
    /// each; they leave every group when they exit. As `pg:join/3`.
    pub async fn join(&self, scope: &str, group: Term, pids: &[Pid]) -> Result<(), GroupsError> {
        scope_ok(scope)?;
        let group = group_of(group)?;
        let pids = pids.to_vec();
        let scope = scope.to_owned();
        self.ask(|reply| HubEvent::Join {
            scope,
            group,
            pids,
            reply,
        })
        .await?
        .map_err(GroupsError::from)
    }

    /// `pids` leave `group` (one join each). As `pg:leave/3`.
    pub async fn leave(&self, scope: &str, group: Term, pids: &[Pid]) -> Result<Left, GroupsError> {
        scope_ok(scope)?;
        let group = group_of(group)?;
        let pids = pids.to_vec();
        let scope = scope.to_owned();
        let left = self
            .ask(|reply| HubEvent::Leave {
                scope,
                group,
                pids,
                reply,
            })
            .await?;
        Ok(if left { Left::Ok } else { Left::NotJoined })
    }

    /// Sends the hub the event `make` builds around a reply channel, and
    /// waits for the answer: one path for every request the hub answers.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> HubEvent,
    ) -> Result<T, GroupsError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .events
            .send(make(reply))
            .map_err(|_| GroupsError::HubStopped)?;
        answer.await.map_err(|_| GroupsError::HubStopped)
    }

    /// Every member of `group`, BEAM and Rust, of every node (a pid once
    /// per join, newest first). A local read.
    pub fn members(&self, scope: &str, group: &Term) -> Vec<Pid> {
        let Some(group) = Group::new(group.clone()) else {
            return Vec::new();
        };
        self.shared.lock().table.members(scope, &group.key).to_vec()
    }

    /// The members of `group` that are processes of this node.
    pub fn local_members(&self, scope: &str, group: &Term) -> Vec<Pid> {
        let mut members = self.members(scope, group);
        members.retain(|p| p.node.name == self.node);
        members
    }

    /// Every group of `scope` with a member.
    pub fn which_groups(&self, scope: &str) -> Vec<Term> {
        let state = self.shared.lock();
        state.table.scope(scope).map_or_else(Vec::new, |t| {
            t.entries().map(|(_, e)| e.group.clone()).collect()
        })
    }

    /// Every group of `scope` with a member of this node.
    pub fn which_local_groups(&self, scope: &str) -> Vec<Term> {
        let state = self.shared.lock();
        state.table.scope(scope).map_or_else(Vec::new, |t| {
            t.entries()
                .filter(|(_, e)| e.pids.iter().any(|p| p.node.name == self.node))
                .map(|(_, e)| e.group.clone())
                .collect()
        })
    }

    /// The members of `group` now, and every later change of it, in order
    /// (as `pg:monitor/2`).
    pub fn monitor(
        &self,
        scope: &str,
        group: &Term,
    ) -> Result<(Vec<Pid>, GroupMonitor), GroupsError> {
        let group = Group::new(group.clone()).ok_or(GroupsError::GroupTooLarge)?;
        let (members, rx) = self.shared.watch(scope, Some(group.key.clone()), |table| {
            table.members(scope, &group.key).to_vec()
        });
        Ok((members, GroupMonitor { rx }))
    }

    /// Every group of `scope` with its members now, and every later change
    /// (as `pg:monitor_scope/1`).
    pub fn monitor_scope(&self, scope: &str) -> (Vec<(Term, Vec<Pid>)>, GroupMonitor) {
        let (groups, rx) = self.shared.watch(scope, None, |table| {
            table.scope(scope).map_or_else(Vec::new, |t| {
                t.entries()
                    .map(|(_, e)| (e.group.clone(), e.pids.clone()))
                    .collect()
            })
        });
        (groups, GroupMonitor { rx })
    }
}
