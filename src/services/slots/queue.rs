//! A slot's waiting requests, in arrival order, and what each is answered.

use crate::process::Caller;
use crate::services::protocol::Reply;
use crate::term::Pid;
use std::collections::VecDeque;

/// What a waiting request wants.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ask {
    /// `fencing`: answered `{acquired, Token}` when granted.
    Lock {
        block: bool,
        fencing: bool,
    },
    Register,
    Unregister,
}

impl Ask {
    /// The answer once the slot settled it: `granted`, or refused while
    /// `holder` holds the key (`None`: nobody known, no quorum). A lock
    /// granted is answered by [`Ask::granted`], with the hold's token.
    pub(super) fn reply(&self, granted: bool, holder: Option<&Pid>) -> Reply {
        match (self, granted) {
            (Ask::Lock { .. }, true) => Reply::Acquired,
            (Ask::Lock { .. }, false) => match holder {
                Some(pid) => Reply::HeldBy(pid.clone()),
                None => Reply::NoQuorum,
            },
            (Ask::Register, true) => Reply::Yes,
            (Ask::Register, false) => Reply::No,
            (Ask::Unregister, _) => Reply::Ok,
        }
    }

    /// The answer to a granted request, held under fencing `token`.
    pub(super) fn granted(&self, token: u64) -> Reply {
        match self {
            Ask::Lock { fencing: true, .. } => Reply::Fenced(token),
            _ => self.reply(true, None),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Waiting {
    pub caller: Caller,
    pub owner: Pid,
    pub ask: Ask,
}

/// A slot's waiters, in arrival order. Most slots (held names) have none
/// for all their life: one pointer then, not an empty `VecDeque`'s 32
/// bytes (a million names: 24 MB).
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // the box is the point: see above
pub(super) struct Queue(Option<Box<VecDeque<Waiting>>>);

impl Queue {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(super) fn front(&self) -> Option<&Waiting> {
        self.0.as_ref()?.front()
    }

    pub(super) fn push_back(&mut self, w: Waiting) {
        self.0.get_or_insert_with(Default::default).push_back(w);
    }

    pub(super) fn push_front(&mut self, w: Waiting) {
        self.0.get_or_insert_with(Default::default).push_front(w);
    }

    pub(super) fn pop_front(&mut self) -> Option<Waiting> {
        let queue = self.0.as_mut()?;
        let front = queue.pop_front();
        if queue.is_empty() {
            self.0 = None;
        }
        front
    }

    /// Takes out every lock request of `owner` (a caller that gave up on
    /// its call and asked again waits twice): answered with the grant, so
    /// none is granted again after the owner released the key.
    pub(super) fn take_locks_of(&mut self, owner: &Pid) -> Vec<Waiting> {
        let Some(queue) = self.0.as_mut() else {
            return Vec::new();
        };
        let (mine, rest): (VecDeque<Waiting>, VecDeque<Waiting>) = std::mem::take(&mut **queue)
            .into_iter()
            .partition(|w| &w.owner == owner && matches!(w.ask, Ask::Lock { .. }));
        **queue = rest;
        if queue.is_empty() {
            self.0 = None;
        }
        mine.into()
    }

    /// Every waiter, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Waiting> {
        self.0.iter().flat_map(|q| q.iter())
    }

    /// Every waiter, in order, leaving none.
    pub(super) fn take_all(&mut self) -> Vec<Waiting> {
        self.0.take().map(|q| Vec::from(*q)).unwrap_or_default()
    }

    pub(super) fn retain(&mut self, keep: impl FnMut(&Waiting) -> bool) {
        if let Some(queue) = self.0.as_mut() {
            queue.retain(keep);
            if queue.is_empty() {
                self.0 = None;
            }
        }
    }
}
