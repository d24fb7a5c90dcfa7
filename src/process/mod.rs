//! Processes and names: Rust processes with real pids, mailboxes, registered
//! names, links and monitors, and gen_server in both directions.
//!
//! The upper layer: the handles, calls and servers here sit on the node
//! driver ([`crate::node`]), which sits on the process table
//! (`crate::proc_table`); neither imports from here.

mod calls;
mod gen_server;
#[cfg(test)]
mod gen_server_tests;
mod handle;
mod net_kernel;
mod node_methods;
pub mod rpc;
mod server_loop;
mod sys;

pub use crate::proc_table::{Mail, RegisterError};
pub use calls::Staged;
pub use gen_server::{
    spawn_server, start_event_server, CallReply, Caller, EventServer, Flow, GenServer,
};
pub use handle::{CallError, Dest, Process, ProcessError};
