//! Pids and references of this node.

use crate::term::{Atom, Pid, Reference};
use std::sync::atomic::{AtomicU64, Ordering};

/// A local process's key in the node's tables: serial and number of its pid.
pub(crate) type LocalId = u64;

/// Hands out the pids and references of one node incarnation.
#[derive(Debug)]
pub(crate) struct IdGen {
    node: Atom,
    creation: u32,
    next_pid: AtomicU64,
    next_ref: AtomicU64,
    /// Random third word so references differ across restarts even if the
    /// creation repeats.
    ref_salt: u32,
}

/// The pid number is 28 bits wide in OTP; the rest of the counter goes to the serial.
const PID_NUMBER_BITS: u32 = 28;

/// The table key a local pid would have (node and creation not checked).
pub(crate) fn key_of(pid: &Pid) -> LocalId {
    (u64::from(pid.serial) << PID_NUMBER_BITS) | u64::from(pid.id)
}

impl IdGen {
    pub(crate) fn new(node: &str, creation: u32) -> Self {
        Self {
            node: Atom::from(node),
            creation,
            next_pid: AtomicU64::new(1),
            next_ref: AtomicU64::new(1),
            ref_salt: rand::random(),
        }
    }

    pub(crate) fn new_pid(&self) -> (LocalId, Pid) {
        let n = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let pid = Pid {
            node: self.node.clone(),
            id: (n & ((1 << PID_NUMBER_BITS) - 1)) as u32,
            serial: (n >> PID_NUMBER_BITS) as u32,
            creation: self.creation,
        };
        (n, pid)
    }

    pub(crate) fn new_ref(&self) -> Reference {
        let n = self.next_ref.fetch_add(1, Ordering::Relaxed);
        Reference {
            node: self.node.clone(),
            // OTP's first reference word carries 18 bits.
            id: vec![(n & 0x3_ffff) as u32, (n >> 18) as u32, self.ref_salt],
            creation: self.creation,
        }
    }

    /// The local key of `pid`, if it is a pid of this node incarnation.
    pub(crate) fn local_id(&self, pid: &Pid) -> Option<LocalId> {
        if pid.node != self.node
            || pid.creation != self.creation
            || pid.id >= (1 << PID_NUMBER_BITS)
        {
            return None;
        }
        Some(key_of(pid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_map_back_to_their_ids() {
        let ids = IdGen::new("a@h", 3);
        for _ in 0..5 {
            let (id, pid) = ids.new_pid();
            assert_eq!(ids.local_id(&pid), Some(id));
        }
        let other = Pid::new("a@h", 1, 0, 4);
        assert_eq!(ids.local_id(&other), None);
        assert_ne!(ids.new_ref(), ids.new_ref());
    }
}
