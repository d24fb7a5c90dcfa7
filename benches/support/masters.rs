//! Three `erl_quorum serve` masters as child processes of the bench, shared
//! by the quorum and services benches. Included by each bench with `#[path]`;
//! expects the bench to have `mod common` (tests/common) at its root.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

/// Every master is started with W = 2 of 3.
pub const W: usize = 2;

/// Three `erl_quorum serve` processes, killed on drop.
pub struct MasterProcs {
    names: Vec<String>,
    children: Vec<(Child, ChildStdout)>,
}

impl MasterProcs {
    /// Starts the three masters, `--fresh` (no restart guard: a new cluster)
    /// and W = 2, and returns once each has printed that it serves.
    /// `workers`: the runtime threads of each (`--workers`); None: one per
    /// core.
    pub fn start(prefix: &str, cookie: &str, workers: Option<usize>) -> MasterProcs {
        Self::start_with(prefix, cookie, workers, 3, &[])
    }

    /// `count` masters of a cluster whose other masters are `others`
    /// (nodes the caller runs, e.g. a client node that is also a master).
    pub fn start_with(
        prefix: &str,
        cookie: &str,
        workers: Option<usize>,
        count: usize,
        others: &[String],
    ) -> MasterProcs {
        Self::start_with_args(prefix, cookie, workers, count, others, &[])
    }

    /// [`MasterProcs::start_with`], with `extra` appended to every
    /// master's `erl_quorum serve` command line (e.g. the session lease).
    pub fn start_with_args(
        prefix: &str,
        cookie: &str,
        workers: Option<usize>,
        count: usize,
        others: &[String],
        extra: &[String],
    ) -> MasterProcs {
        let names: Vec<String> = (0..count)
            .map(|i| {
                format!(
                    "{}@127.0.0.1",
                    crate::common::unique_name(&format!("{prefix}{i}"))
                )
            })
            .collect();
        let mut procs = MasterProcs {
            names: names.clone(),
            children: Vec::new(),
        };
        let cluster: Vec<String> = others.iter().chain(&names).cloned().collect();
        for name in &names {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_erl_quorum"));
            cmd.args(["serve", "--name", name, "--cookie", cookie])
                .arg("--masters")
                .arg(cluster.join(","))
                .args(["--w", &W.to_string(), "--fresh"])
                // Problems only: info lines for every connection would be noise.
                .env("RUST_LOG", "erl_quorum=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            let workers = workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            cmd.args(["--workers", &workers.to_string()]);
            if let Some(us) = crate::setup::busy_poll_us() {
                cmd.args(["--busy-poll-us", &us.to_string()]);
            }
            if let Some(us) = crate::setup::coalesce_us() {
                cmd.args(["--coalesce-us", &us.to_string()]);
            }
            cmd.args(extra);
            let mut child = cmd.spawn().expect("start `erl_quorum serve`");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            // "NAME serving locker (W=2); Ctrl-C stops it"
            let read = reader.read_line(&mut line);
            // Kept open (not read further): the master prints nothing else.
            procs.children.push((child, reader.into_inner()));
            assert!(
                matches!(read, Ok(n) if n > 0) && line.contains("serving locker"),
                "`erl_quorum serve --name {name}` did not start: {read:?} {line:?}"
            );
        }
        procs
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn os_pids(&self) -> Vec<u32> {
        self.children.iter().map(|(c, _)| c.id()).collect()
    }
}

impl Drop for MasterProcs {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            // Our own children, by pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
