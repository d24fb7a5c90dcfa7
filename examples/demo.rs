//! The README's first command runs this: a Rust node and a real BEAM node
//! on this machine, calling each other and taking turns on one lock served
//! by the Rust node's locker service.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//! It needs `erl` on the PATH (scripts/demo.sh installs it).

use erl_quorum::process::{spawn_server, CallReply, Caller, GenServer, Process};
use erl_quorum::quorum::client::LockerClient;
use erl_quorum::quorum::service::{self, ServiceConfig};
use erl_quorum::term::{atom, int, tuple, Term};
use erl_quorum::{Node, NodeConfig};
use std::process::Stdio;
use std::time::{Duration, Instant};

const COOKIE: &str = "erl_quorum_demo";

/// A Rust gen_server that BEAM code calls like any other.
struct Greeter;

impl GenServer for Greeter {
    async fn handle_call(
        &mut self,
        request: Term,
        from: &Caller,
        _process: &mut Process,
    ) -> CallReply {
        println!("  [rust] greeter got {request} from {}", from.pid);
        CallReply::Reply(tuple(vec![atom("hello_from_rust"), request]))
    }
}

/// The BEAM side: ping the Rust node, call its greeter, take a lock with
/// locker's own calls, serve `beam_counter`, release the lock when told.
const BEAM_SCRIPT: &str = r#"
    Rust = list_to_atom(os:getenv("RUST_NODE")),
    io:format("  [beam] net_adm:ping(~p) -> ~p~n", [Rust, net_adm:ping(Rust)]),
    io:format("  [beam] nodes() = ~p, nodes(hidden) = ~p~n", [nodes(), nodes(hidden)]),
    io:format("  [beam] gen_server:call({greeter, Rust}, hi) -> ~p~n", [gen_server:call({greeter, Rust}, hi)]),
    Loop = fun Loop(N) ->
        receive
            {'$gen_call', {_, _} = From, bump} -> gen_server:reply(From, N + 1), Loop(N + 1);
            stop -> ok
        end
    end,
    Counter = spawn(fun() -> Loop(0) end),
    register(beam_counter, Counter),
    Tag = make_ref(),
    ok = gen_server:call({locker, Rust}, {get_write_lock, job_42, not_found, Tag}),
    ok = gen_server:call({locker, Rust}, {write, Tag, job_42, beam_owner, 10000}),
    io:format("  [beam] took the lock job_42 (locker's get_write_lock + write)~n"),
    {ready, Rust} ! {beam_ready, self()},
    receive release -> ok after 30000 -> ok end,
    io:format("  [beam] release job_42 -> ~p~n",
              [gen_server:call({locker, Rust}, {release, job_42, beam_owner, make_ref()})]),
    receive done -> ok after 30000 -> ok end,
    io:format("  [beam] done~n"),
    halt().
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stamp = std::process::id();
    let rust_name = format!("demo_rust_{stamp}@127.0.0.1");
    let beam_name = format!("demo_beam_{stamp}@127.0.0.1");
    let node = Node::start(NodeConfig::new(rust_name.clone(), COOKIE)).await?;
    println!(
        "Rust node {} is up (hidden, creation {})",
        node.name(),
        node.creation()
    );
    spawn_server(&node, Some("greeter"), Greeter)?;
    // A locker master of its own (a cluster of one, W=1; new, so no
    // restart guard to wait out).
    let locker_config = ServiceConfig {
        fresh_cluster: true,
        ..ServiceConfig::default()
    };
    service::start(&node, locker_config)?;
    let mut ready = node.spawn_process();
    ready.register("ready")?;

    println!("Starting BEAM node {beam_name} ...");
    let mut erl = tokio::process::Command::new("erl")
        .args([
            "-noshell",
            "-name",
            &beam_name,
            "-setcookie",
            COOKIE,
            "-eval",
            BEAM_SCRIPT,
        ])
        .env("RUST_NODE", &rust_name)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run erl (install Erlang/OTP: scripts/demo.sh does): {e}"))?;

    let beam_pid = match ready.recv_timeout(Duration::from_secs(30)).await? {
        Some(mail) => match erl_quorum::term::as_tuple(&mail.into_term()) {
            Some([_, Term::Pid(pid)]) => pid.clone(),
            other => return Err(format!("unexpected message {other:?}").into()),
        },
        None => return Err("the BEAM node did not report in".into()),
    };
    println!("  [rust] the BEAM node reported in from {beam_pid}");

    let mut caller = node.spawn_process();
    let started = Instant::now();
    let mut last = int(0);
    for _ in 0..1000 {
        last = caller
            .call(
                ("beam_counter", beam_name.as_str()),
                atom("bump"),
                Duration::from_secs(5),
            )
            .await?;
    }
    println!(
        "  [rust] 1000 gen_server calls into the BEAM node: last reply {last}, {:.1} us per call",
        started.elapsed().as_secs_f64() * 1e6 / 1000.0
    );
    let missing = caller
        .call(
            ("no_such_server", beam_name.as_str()),
            atom("x"),
            Duration::from_secs(5),
        )
        .await;
    println!("  [rust] calling a name nobody holds -> {missing:?}");

    // One lock, two languages: the BEAM process holds job_42.
    let mut locker = LockerClient::new(node.spawn_process(), vec![rust_name.clone()], 1);
    let taken = locker
        .lock(atom("job_42"), atom("rust_owner"), Duration::from_secs(5))
        .await;
    println!("  [rust] lock job_42 while the BEAM process holds it -> {taken:?}");
    caller.send(&beam_pid, atom("release"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let taken = locker
        .lock_until(
            atom("job_42"),
            atom("rust_owner"),
            Duration::from_secs(5),
            deadline,
        )
        .await?;
    println!(
        "  [rust] lock job_42 once released -> ok ({} of W={} masters)",
        taken.acks, taken.w
    );
    locker.release(atom("job_42"), atom("rust_owner")).await?;

    caller.send(&beam_pid, atom("done"));
    erl.wait().await?;
    node.shutdown();
    println!("Demo finished.");
    Ok(())
}
