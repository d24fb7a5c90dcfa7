//! The node's process bookkeeping, below the node driver: pids and
//! references ([`ids`]), what a mailbox carries ([`mailbox`]), and the table
//! of mailboxes, names, aliases, links and monitors with what a death or a
//! lost connection fires ([`table`]). No I/O and no tasks: the node driver
//! and the process handles above it both sit on it.

pub(crate) mod ids;
pub(crate) mod mailbox;
pub(crate) mod table;
#[cfg(test)]
mod table_tests;

pub use mailbox::Mail;
pub use table::RegisterError;
