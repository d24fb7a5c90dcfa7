//! The [`Node`] methods that need processes: starting a node with its
//! built-in `net_kernel`, and spawning a process. They live here, above the
//! node driver, so the driver never imports this layer.

use super::handle::Process;
use super::net_kernel;
use crate::node::{Node, NodeConfig, NodeError};

impl Node {
    /// Registers in EPMD (starting it if needed), listens for BEAM nodes and
    /// starts the built-in `net_kernel` responder that makes `net_adm:ping/1` work, and
    /// rpc: `rex` and the `SPAWN_REQUEST` handler that serve `rpc` and `erpc`.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let node = Node::start_driver(config).await?;
        net_kernel::start(&node);
        super::rpc::start(&node);
        Ok(node)
    }

    /// A new process with its own pid and mailbox. It lives until the
    /// handle is dropped or [`Process::exit`] is called.
    pub fn spawn_process(&self) -> Process {
        let (id, pid) = self.inner.ids.new_pid();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.inner.table().insert(id, pid.clone(), tx);
        Process::new(self.clone(), id, pid, rx)
    }
}
