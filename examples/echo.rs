//! A node with one gen_server registered as `echo`.
//!
//! ```text
//! cargo run --release --example echo -- --name echo@127.0.0.1 --cookie secret
//! ```
//! From an Erlang shell started with the same cookie:
//! ```erlang
//! gen_server:call({echo, 'echo@127.0.0.1'}, hello).   %% -> hello
//! {echo, 'echo@127.0.0.1'} ! {self(), hi}, flush().   %% -> {echo, hi}
//! ```

use erl_quorum::process::{spawn_server, CallReply, Caller, Flow, GenServer, Mail, Process};
use erl_quorum::term::{as_tuple, atom, tuple, Term};
use erl_quorum::{Node, NodeConfig};

struct Echo;

impl GenServer for Echo {
    async fn handle_call(
        &mut self,
        request: Term,
        _from: &Caller,
        _process: &mut Process,
    ) -> CallReply {
        CallReply::Reply(request)
    }

    async fn handle_info(&mut self, mail: Mail, process: &mut Process) -> Flow {
        // `{Pid, X}` gets `{echo, X}` back.
        if let Mail::Message(message) = mail {
            if let Some([Term::Pid(pid), x]) = as_tuple(&message) {
                process.send(pid, tuple(vec![atom("echo"), x.clone()]));
            }
        }
        Flow::Continue
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

// One thread: on small machines the BEAM peers need the other cores, and a
// single-threaded runtime never pays for cross-thread wakeups.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let name = match (arg("--name"), arg("--sname")) {
        (Some(n), _) => erl_quorum::node::full_node_name(&n, true)?,
        (None, Some(n)) => erl_quorum::node::full_node_name(&n, false)?,
        (None, None) => "echo@127.0.0.1".to_owned(),
    };
    let cookie = erl_quorum::node::resolve_cookie(arg("--cookie").as_deref())?;
    let node = Node::start(NodeConfig::new(name, cookie)).await?;
    spawn_server(&node, Some("echo"), Echo)?;
    println!(
        "{} is up; try gen_server:call({{echo, '{}'}}, hello).",
        node.name(),
        node.name()
    );
    tokio::signal::ctrl_c().await?;
    node.shutdown();
    Ok(())
}
