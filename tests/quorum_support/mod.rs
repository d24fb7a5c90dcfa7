//! Helpers for the fault-injection tests of the locker service: masters as
//! separate `erl_quorum serve` OS processes (so a test can SIGKILL and
//! restart them), status calls, BEAM evals from async tests, and the
//! history checker for "never the same key twice".
//!
//! Needs `mod common; mod rust_node;` next to it in the test crate.

#![allow(dead_code)]

use super::common::{self, BeamNode};
use erl_quorum::process::Process;
use erl_quorum::term::{as_int, as_tuple, atom, list_elements, tuple, Term};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub use super::rust_node::COOKIE;

/// The binary cargo built for this integration test.
const BIN: &str = env!("CARGO_BIN_EXE_erl_quorum");
/// How long `start`/`restart` wait for "serving locker".
const SERVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Output lines kept per master for failure messages.
const LOG_LINES: usize = 60;

/// The `erl_quorum serve` flags of one master or replica.
#[derive(Clone, Debug)]
pub struct ServeOpts {
    pub masters: Vec<String>,
    pub replicas: Vec<String>,
    pub w: usize,
    pub fresh: bool,
    /// `--no-catch-up`: a restart waits out its whole guard.
    pub no_catch_up: bool,
    pub max_lease_ms: Option<u64>,
    /// `--session-lease-ms` of the erl_quorum service (None: its default).
    pub session_lease_ms: Option<u64>,
    /// `--release-margin-ms` of the erl_quorum service: how long past the
    /// session lease a hold outlives its owner's node (None: its default).
    pub release_margin_ms: Option<u64>,
}

/// One `erl_quorum serve` process. Dropping it SIGKILLs and reaps it (also
/// when the test panics), so no test leaves a node behind.
pub struct MasterProcess {
    name: String,
    opts: ServeOpts,
    child: Option<Child>,
    log: Arc<Mutex<VecDeque<String>>>,
    /// Taken just before the current incarnation was spawned: a lower bound
    /// on when its service (and its restart guard) started.
    spawned_at: Instant,
    /// More `serve` flags (`start_with_args`).
    extra_args: Vec<String>,
    /// Its `--state-dir`: its own (tests stay hermetic), kept across its
    /// restarts (so a restart finds its served marker), removed on drop.
    state_dir: std::path::PathBuf,
}

/// A node name `{prefix}_…@127.0.0.1`, unique across tests and runs.
pub fn node_name(prefix: &str) -> String {
    format!("{}@127.0.0.1", common::unique_name(prefix))
}

impl MasterProcess {
    /// Spawns `erl_quorum serve --name NAME ...` and returns once it prints
    /// that it is serving (the `locker` process is registered by then).
    pub async fn start(name: &str, opts: ServeOpts) -> MasterProcess {
        Self::start_with_args(name, opts, Vec::new()).await
    }

    /// [`start`](Self::start) with more `serve` flags (`--metrics-addr`).
    pub async fn start_with_args(name: &str, opts: ServeOpts, extra: Vec<String>) -> MasterProcess {
        let mut m = MasterProcess {
            name: name.to_owned(),
            opts,
            child: None,
            log: Arc::new(Mutex::new(VecDeque::new())),
            spawned_at: Instant::now(),
            extra_args: extra,
            state_dir: std::env::temp_dir().join(common::unique_name("eq_state")),
        };
        m.spawn_until_serving().await;
        m
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this master has served (its marker file exists).
    pub fn has_served_marker(&self) -> bool {
        self.state_dir
            .join(format!("{}.served", self.name))
            .exists()
    }

    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// Whether the OS process is still running.
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL (`Child::kill` sends SIGKILL on Unix) and reap: a crash, as
    /// far as every other node can tell.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.push_log(format!(
                "--- killed (SIGKILL) by the test: {} ---",
                self.name
            ));
        }
    }

    /// SIGSTOP: the process hangs with its connections open (a stalled
    /// master: calls to it time out instead of failing at once).
    pub fn sigstop(&self) {
        if let Some(c) = &self.child {
            common::signal::send(c.id(), common::signal::SIGSTOP).expect("SIGSTOP");
        }
    }

    /// SIGTERM (a graceful stop), then waits up to `within` for the exit;
    /// how long it took, or `None` if it still runs.
    pub async fn sigterm(&mut self, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        let child = self.child.as_mut()?;
        common::signal::send(child.id(), common::signal::SIGTERM).expect("SIGTERM");
        while start.elapsed() < within {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                self.push_log(format!(
                    "--- stopped (SIGTERM) by the test: {} ---",
                    self.name
                ));
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// SIGCONT: undoes `sigstop`.
    pub fn sigcont(&self) {
        if let Some(c) = &self.child {
            common::signal::send(c.id(), common::signal::SIGCONT).expect("SIGCONT");
        }
    }

    /// Kills the current incarnation (if any) and starts a new one under the
    /// same name, with `fresh` and `max_lease_ms` replaced.
    pub async fn restart(&mut self, fresh: bool, max_lease_ms: Option<u64>) {
        self.kill9();
        self.opts.fresh = fresh;
        self.opts.max_lease_ms = max_lease_ms;
        self.spawn_until_serving().await;
    }

    /// As [`MasterProcess::restart`] without `--fresh`, and without
    /// catching up from peers: the new incarnation waits out its guard.
    pub async fn restart_guarded(&mut self) {
        self.kill9();
        self.opts.fresh = false;
        self.opts.no_catch_up = true;
        self.spawn_until_serving().await;
        self.opts.no_catch_up = false;
    }

    /// The last lines the process printed (stdout and stderr).
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = format!("\n--- last output of {} ---", self.name);
        for line in log.iter() {
            s.push('\n');
            s.push_str(line);
        }
        s
    }

    fn push_log(&self, line: String) {
        push_line(&self.log, &self.name, line);
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "serve".to_owned(),
            "--name".to_owned(),
            self.name.clone(),
            "--cookie".to_owned(),
            COOKIE.to_owned(),
            "--w".to_owned(),
            self.opts.w.to_string(),
            "--state-dir".to_owned(),
            self.state_dir.display().to_string(),
        ];
        if !self.opts.masters.is_empty() {
            args.push("--masters".to_owned());
            args.push(self.opts.masters.join(","));
        }
        if !self.opts.replicas.is_empty() {
            args.push("--replicas".to_owned());
            args.push(self.opts.replicas.join(","));
        }
        if self.opts.fresh {
            args.push("--fresh".to_owned());
        }
        if self.opts.no_catch_up {
            args.push("--no-catch-up".to_owned());
        }
        if let Some(ms) = self.opts.max_lease_ms {
            args.push("--max-lease-ms".to_owned());
            args.push(ms.to_string());
        }
        if let Some(ms) = self.opts.session_lease_ms {
            args.push("--session-lease-ms".to_owned());
            args.push(ms.to_string());
        }
        if let Some(ms) = self.opts.release_margin_ms {
            args.push("--release-margin-ms".to_owned());
            args.push(ms.to_string());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Spawns until one incarnation says it is serving. A restart right
    /// after a kill can lose the race with EPMD dropping the old
    /// registration (the name is still taken): that attempt exits at once
    /// and is retried.
    async fn spawn_until_serving(&mut self) {
        let deadline = Instant::now() + SERVE_TIMEOUT;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.spawned_at = Instant::now();
            let mut child = Command::new(BIN)
                .args(self.args())
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
            let (tx, rx) = mpsc::channel();
            read_lines(
                child.stdout.take().expect("stdout"),
                self.log.clone(),
                self.name.clone(),
                Some(tx),
            );
            read_lines(
                child.stderr.take().expect("stderr"),
                self.log.clone(),
                self.name.clone(),
                None,
            );
            // Owned by `self` from here on: a panic below still kills it.
            self.child = Some(child);
            loop {
                match rx.try_recv() {
                    Ok(line) if line.contains("serving locker") => return,
                    Ok(_) => continue,
                    Err(mpsc::TryRecvError::Empty) => {}
                    // stdout closed: the process is gone (or going).
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
                if !self.alive() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not start serving within {SERVE_TIMEOUT:?}{}",
                    self.name,
                    self.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.kill9();
            assert!(
                attempt < 30 && Instant::now() < deadline,
                "{} exited before serving ({attempt} attempts){}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

fn push_line(log: &Mutex<VecDeque<String>>, name: &str, line: String) {
    static ECHO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ECHO.get_or_init(|| std::env::var_os("EQ_BEAM_LOG").is_some_and(|v| v != "0")) {
        eprintln!("[{name}] {line}");
    }
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    if log.len() == LOG_LINES {
        log.pop_front();
    }
    log.push_back(line);
}

fn read_lines(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<VecDeque<String>>>,
    name: String,
    tx: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &tx {
                let _ = tx.send(line.clone());
            }
            push_line(&log, &name, line);
        }
    });
}

/// A locker cluster of `erl_quorum serve` processes.
pub struct Cluster {
    pub masters: Vec<MasterProcess>,
    pub replicas: Vec<MasterProcess>,
}

impl Cluster {
    /// `n_masters` masters and `n_replicas` replicas, all told the full
    /// membership, quorum `w`, started `--fresh` (a brand-new cluster).
    pub async fn start(
        prefix: &str,
        n_masters: usize,
        n_replicas: usize,
        w: usize,
        max_lease_ms: Option<u64>,
    ) -> Cluster {
        Cluster::start_with(prefix, n_masters, n_replicas, w, max_lease_ms, true).await
    }

    /// As [`Cluster::start`], with or without `--fresh` (without it, the
    /// masters, started one after another, find each other starting and
    /// serve once the last one is up).
    pub async fn start_with(
        prefix: &str,
        n_masters: usize,
        n_replicas: usize,
        w: usize,
        max_lease_ms: Option<u64>,
        fresh: bool,
    ) -> Cluster {
        let masters: Vec<String> = (0..n_masters)
            .map(|i| node_name(&format!("m{i}_{prefix}")))
            .collect();
        let replicas: Vec<String> = (0..n_replicas)
            .map(|i| node_name(&format!("r{i}_{prefix}")))
            .collect();
        let opts = ServeOpts {
            masters: masters.clone(),
            replicas: replicas.clone(),
            w,
            fresh,
            no_catch_up: false,
            max_lease_ms,
            session_lease_ms: None,
            release_margin_ms: None,
        };
        let mut cluster = Cluster {
            masters: Vec::new(),
            replicas: Vec::new(),
        };
        for name in &masters {
            cluster
                .masters
                .push(MasterProcess::start(name, opts.clone()).await);
        }
        for name in &replicas {
            cluster
                .replicas
                .push(MasterProcess::start(name, opts.clone()).await);
        }
        cluster
    }

    pub fn master_names(&self) -> Vec<String> {
        self.masters.iter().map(|m| m.name().to_owned()).collect()
    }

    pub fn replica_names(&self) -> Vec<String> {
        self.replicas.iter().map(|m| m.name().to_owned()).collect()
    }

    /// The masters as an Erlang list literal, for BEAM evals.
    pub fn masters_erl(&self) -> String {
        erl_list(&self.master_names())
    }

    /// Every process's recent output, for failure messages.
    pub fn logs(&self) -> String {
        self.masters
            .iter()
            .chain(&self.replicas)
            .map(MasterProcess::log_tail)
            .collect()
    }
}

/// `['a@h','b@h']`.
pub fn erl_list(nodes: &[String]) -> String {
    format!(
        "[{}]",
        nodes
            .iter()
            .map(|n| common::atom(n))
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// `{erl_quorum, status}` on `node`'s locker: the proplist as pairs.
pub async fn status(p: &mut Process, node: &str) -> Vec<(String, Term)> {
    let reply = p
        .call(
            ("locker", node),
            tuple(vec![atom("erl_quorum"), atom("status")]),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|e| panic!("status of {node}: {e}"));
    list_elements(&reply)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| match as_tuple(item) {
            Some([k, v]) => Some((erl_quorum::term::as_atom(k)?.to_owned(), v.clone())),
            _ => None,
        })
        .collect()
}

/// One integer field of a status reply.
pub fn status_int(status: &[(String, Term)], field: &str) -> i64 {
    status
        .iter()
        .find(|(k, _)| k == field)
        .and_then(|(_, v)| as_int(v))
        .unwrap_or_else(|| panic!("no integer {field} in {status:?}"))
}

/// Starts a BEAM node off the async runtime's worker threads.
pub async fn start_beam(prefix: &str) -> BeamNode {
    common::ensure_epmd().expect("epmd");
    let name = common::unique_name(prefix);
    tokio::task::spawn_blocking(move || BeamNode::start(&name, COOKIE, &[]))
        .await
        .expect("join")
        .expect("start the BEAM node")
}

/// `eval_ok` from an async test (the eval blocks this worker thread only).
pub fn beval(b: &BeamNode, expr: &str) -> String {
    tokio::task::block_in_place(|| b.eval_ok(expr))
}

/// `eval` from an async test.
pub fn beval_result(b: &BeamNode, expr: &str) -> Result<String, String> {
    tokio::task::block_in_place(|| b.eval(expr))
}

// ---- the history checker ---------------------------------------------------

/// One successful grant, on the test process's clock. `start` must be no
/// earlier than the moment the grant really began and `end` no later than
/// the moment it could really have ended (see the test for how each client
/// kind guarantees that), so a correct cluster never produces an overlap.
#[derive(Clone, Debug)]
pub struct Grant {
    pub key: String,
    pub owner: String,
    pub start: Instant,
    pub end: Instant,
}

/// Pairs of grants of the same key whose intervals overlap: the later one's
/// start lies before the end of some earlier one. Empty when the history is
/// safe. (Grants whose conservative interval is empty, end <= start, cannot
/// overlap anything and are skipped.)
pub fn overlaps(grants: &[Grant]) -> Vec<(Grant, Grant)> {
    let mut sorted: Vec<&Grant> = grants.iter().filter(|g| g.end > g.start).collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key).then(a.start.cmp(&b.start)));
    let mut bad = Vec::new();
    // Per key: the grant seen so far whose interval reaches furthest.
    let mut reach: Option<&Grant> = None;
    for g in sorted {
        match reach {
            Some(r) if r.key == g.key => {
                if g.start < r.end {
                    bad.push((r.clone(), g.clone()));
                }
                if g.end > r.end {
                    reach = Some(g);
                }
            }
            _ => reach = Some(g),
        }
    }
    bad
}
