//! Processes and names: Rust processes with real pids, mailboxes, registered
//! names, links and monitors, and gen_server in both directions.

mod calls;
pub mod gen_server;
#[cfg(test)]
mod gen_server_tests;
mod handle;
pub(crate) mod ids;
pub mod mailbox;
mod server_loop;
mod sys;
pub(crate) mod table;

pub use calls::Staged;
pub use gen_server::{
    spawn_server, start_event_server, CallReply, Caller, EventServer, Flow, GenServer,
};
pub use handle::{CallError, Dest, Process, ProcessError};
pub use mailbox::Mail;
pub use table::RegisterError;
