//! `BeamNode`: one real `erl` process running `eq_peer`, owned by a test.

use super::{ensure_epmd, eq_peer_ebin, signal, Otp};
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long `start` waits for the node to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The timeout `eval` uses.
pub const EVAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Unframed output lines kept for error messages.
const DIAG_LINES: usize = 40;

/// Arguments every node gets besides its name, cookie and code path.
///
/// `+sbwt none` and friends stop idle schedulers from busy-waiting: with a
/// dozen nodes on a 2-core machine, the default spinning alone eats the CPU
/// that the tests' timing depends on. Crash dumps are off too (see
/// `ERL_CRASH_DUMP_SECONDS` below): a node killed on purpose must not write
/// erl_crash.dump files into the repo.
const BASE_ARGS: &[&str] = &[
    "-noshell",
    "+sbwt",
    "none",
    "+sbwtdcpu",
    "none",
    "+sbwtdio",
    "none",
];

/// A real BEAM node running `erlang_test/eq_peer.erl`, evaluating expressions
/// the test sends. Dropping it kills the node (SIGKILL) and reaps it; if the
/// test process dies without dropping it, the node halts when its stdin closes.
///
/// `eval` takes `&self` and serialises on an internal lock, so a node can be
/// shared between threads (by reference in `std::thread::scope`, or in an Arc).
pub struct BeamNode {
    node_name: String,
    cookie: String,
    otp: Otp,
    /// The beam.smp pid as the node reported it (`os:getpid()`).
    os_pid: u32,
    child: Child,
    io: Mutex<Io>,
    diag: Arc<Diag>,
    /// True once `child` has been waited for.
    reaped: bool,
}

/// What eval needs exclusively: the write end and the stream of answers.
struct Io {
    stdin: Option<ChildStdin>,
    frames: Receiver<FrameEvent>,
    /// The sequence number the next line we send will get from eq_peer (it
    /// numbers every line from 1; its startup frame is 0).
    next_seq: u64,
    /// Set once the node is known to be gone: why, for later evals' errors.
    exited: Option<&'static str>,
}

enum FrameEvent {
    Frame(Frame),
    /// stdout reached EOF: the node is gone.
    Closed,
}

struct Frame {
    seq: u64,
    ok: bool,
    term: String,
}

/// Recent unframed output from both streams, for error messages.
struct Diag {
    label: String,
    lines: Mutex<VecDeque<String>>,
    stderr_closed: AtomicBool,
}

enum NameKind {
    Long,
    Short,
}

impl BeamNode {
    /// Starts `erl -name NAME@127.0.0.1` (a `name` that already contains `@`
    /// is used as is) with `cookie`, eq_peer loaded, and `extra_args`
    /// appended (e.g. `&["-kernel", "net_ticktime", "4"]`). The node listens
    /// on 127.0.0.1 only. Returns once the node answers an eval, or an error
    /// with its output after ~20 s.
    pub fn start(name: &str, cookie: &str, extra_args: &[&str]) -> io::Result<BeamNode> {
        Self::start_with(NameKind::Long, name, cookie, extra_args)
    }

    /// Like `start` but with `-sname NAME` (node name `NAME@shorthost`).
    pub fn start_sname(name: &str, cookie: &str, extra_args: &[&str]) -> io::Result<BeamNode> {
        Self::start_with(NameKind::Short, name, cookie, extra_args)
    }

    fn start_with(
        kind: NameKind,
        name: &str,
        cookie: &str,
        extra: &[&str],
    ) -> io::Result<BeamNode> {
        let otp = Otp::from_env();
        let ebin = eq_peer_ebin(otp)?;
        ensure_epmd()?;

        let mut cmd = Command::new(otp.erl());
        // The repo root as cwd: erl27 bind-mounts only the cwd into its
        // chroot, and the -pa directory lies under it.
        cmd.current_dir(super::repo_root()).args(BASE_ARGS);
        match kind {
            NameKind::Long => {
                let full = if name.contains('@') {
                    name.to_string()
                } else {
                    format!("{name}@127.0.0.1")
                };
                cmd.args(["-name", &full]);
                // Listen on loopback only. (Not for -sname: the short host
                // name may resolve to another local address, e.g. 127.0.1.1.)
                cmd.args(["-kernel", "inet_dist_use_interface", "{127,0,0,1}"]);
            }
            NameKind::Short => {
                cmd.args(["-sname", name]);
            }
        }
        // -run before the extra args: a stray `-extra` in them can't swallow
        // it, and eq_peer:main/0 returns at once so later -s/-eval still run.
        cmd.args(["-setcookie", cookie])
            .arg("-pa")
            .arg(&ebin)
            .args(["-run", "eq_peer", "main"])
            .args(extra)
            .env("ERL_CRASH_DUMP_SECONDS", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());

        let label = match kind {
            NameKind::Long if !name.contains('@') => {
                format!("OTP {} node {name}@127.0.0.1", otp.release())
            }
            _ => format!("OTP {} node {name}", otp.release()),
        };
        Self::launch(cmd, otp, name, cookie, label)
    }

    /// The full node name, e.g. `a_123_0_456@127.0.0.1`.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The node name quoted as an Erlang atom, ready to paste into an
    /// expression: `'a_123_0_456@127.0.0.1'`.
    pub fn node_atom(&self) -> String {
        super::atom(&self.node_name)
    }

    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    pub fn otp(&self) -> Otp {
        self.otp
    }

    /// Evaluates one expression (the trailing `.` is optional; several
    /// `.`-separated forms give the last value; newlines are turned into
    /// spaces) with `EVAL_TIMEOUT`. Bindings persist across calls.
    ///
    /// `Ok` holds the value printed with `~0p` (`pong`, `"abc"`, `{ok,<0.90.0>}`).
    /// `Err` holds either the printed error term (`{error,badarith,[...]}`,
    /// `{syntax_error,"..."}`) or, for a timeout or a dead node, a message
    /// starting with the node's label followed by its recent output.
    pub fn eval(&self, expr: &str) -> Result<String, String> {
        self.eval_timeout(expr, EVAL_TIMEOUT)
    }

    /// `eval` with an explicit timeout. After a timeout the node stays usable:
    /// the late answer is recognised by its sequence number and discarded.
    pub fn eval_timeout(&self, expr: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        // One lock across write and wait: another thread's eval must neither
        // send in between nor take our answer for a late one.
        let mut io = self.lock_io();
        let seq = {
            if let Some(why) = io.exited {
                return Err(format!(
                    "{}: node has exited ({why}){}",
                    self.diag.label,
                    self.diag.tail()
                ));
            }
            let seq = io.next_seq;
            // eq_peer answers every line, so exactly one line per eval keeps
            // our count in step with its count.
            let line = format!("{}\n", expr.replace(['\r', '\n'], " "));
            let write = match io.stdin.as_mut() {
                Some(stdin) => stdin
                    .write_all(line.as_bytes())
                    .and_then(|()| stdin.flush()),
                None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "stdin closed")),
            };
            if let Err(e) = write {
                return Err(format!(
                    "{}: cannot send `{expr}`: {e}{}",
                    self.diag.label,
                    self.diag.tail()
                ));
            }
            io.next_seq += 1;
            seq
        };
        self.wait_frame(&mut io, seq, deadline, timeout, expr)
    }

    /// `eval`, panicking with the node's label, the expression and the error
    /// if it fails. For test code where any error is a test failure.
    pub fn eval_ok(&self, expr: &str) -> String {
        match self.eval(expr) {
            Ok(v) => v,
            Err(e) => panic!("{}: `{expr}` failed: {e}", self.diag.label),
        }
    }

    /// Waits for the answer numbered `seq`, skipping late answers to earlier
    /// evals that timed out. The caller holds the io lock.
    fn wait_frame(
        &self,
        io: &mut Io,
        seq: u64,
        deadline: Instant,
        timeout: Duration,
        what: &str,
    ) -> Result<String, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match io.frames.recv_timeout(left) {
                Ok(FrameEvent::Frame(f)) if f.seq == seq => {
                    return if f.ok { Ok(f.term) } else { Err(f.term) };
                }
                Ok(FrameEvent::Frame(f)) => {
                    self.diag
                        .push(format!("(late answer #{} discarded: {})", f.seq, f.term));
                }
                Ok(FrameEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                    io.exited = Some("its stdout closed");
                    // Give stderr a moment to deliver the crash message.
                    self.diag.wait_stderr_closed(Duration::from_secs(1));
                    return Err(format!(
                        "{}: node exited while waiting for `{what}`{}",
                        self.diag.label,
                        self.diag.tail()
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{}: `{what}` timed out after {timeout:?}{}",
                        self.diag.label,
                        self.diag.tail()
                    ));
                }
            }
        }
    }

    /// The pid of the real beam.smp process (as `os:getpid()` reported it),
    /// not of a wrapper that erl27 may put in between.
    pub fn os_pid(&self) -> u32 {
        self.os_pid
    }

    /// The last unframed lines the node printed (stdout and stderr).
    pub fn recent_output(&self) -> Vec<String> {
        self.diag
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// SIGKILLs the BEAM (a crash, as far as other nodes can tell) and reaps
    /// it. Later evals return Err.
    pub fn kill9(&mut self) {
        self.kill_and_reap();
    }

    /// SIGSTOP: the node freezes without closing its connections (what a
    /// hung or partitioned node looks like). Returns once every thread of the
    /// BEAM is stopped: kill(2) only queues the signal, and a busy scheduler
    /// thread could otherwise still answer an eval sent right after.
    pub fn sigstop(&self) {
        signal::send(self.os_pid, signal::SIGSTOP).expect("SIGSTOP the beam");
        self.wait_threads_stopped(true);
    }

    /// SIGCONT: undoes `sigstop`; returns once the BEAM runs again.
    pub fn sigcont(&self) {
        signal::send(self.os_pid, signal::SIGCONT).expect("SIGCONT the beam");
        self.wait_threads_stopped(false);
    }

    /// Polls /proc/PID/task/*/stat until all threads are (or none is) in
    /// state T, for at most 5 s.
    fn wait_threads_stopped(&self, stopped: bool) {
        let task_dir = format!("/proc/{}/task", self.os_pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let Ok(tasks) = std::fs::read_dir(&task_dir) else {
                return;
            };
            let all_match = tasks.flatten().all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                // "pid (comm) S ...": the state follows the last ')'.
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next());
                (state == Some('T')) == stopped
            });
            if all_match {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Graceful stop: closes stdin, so eq_peer halts the node once queued
    /// lines are answered (its connections close normally). Kills it if it
    /// hasn't exited after 5 s.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        self.lock_io().stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                self.reaped = true;
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_and_reap();
        Err(io::Error::other(format!(
            "{}: did not halt within 5 s of stdin closing; killed",
            self.diag.label
        )))
    }

    fn kill_and_reap(&mut self) {
        if self.reaped {
            return;
        }
        // Kill the beam itself first (normally it *is* our child: erl, erl27,
        // unshare and chroot all exec), then the child in case a wrapper
        // stayed in between. SIGKILL works on SIGSTOPped processes too.
        let _ = signal::send(self.os_pid, signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
        if self.os_pid != self.child.id() {
            // Not our child, so we can't reap it; wait until it's gone.
            let proc_dir = format!("/proc/{}", self.os_pid);
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::path::Path::new(&proc_dir).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut io = self.lock_io();
        io.stdin = None;
        io.exited.get_or_insert("killed by the test");
    }

    fn lock_io(&self) -> MutexGuard<'_, Io> {
        // A panic in another thread mid-eval must not make the node unusable
        // (or its Drop panic).
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for BeamNode {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

impl std::fmt::Debug for BeamNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeamNode")
            .field("node_name", &self.node_name)
            .field("otp", &self.otp)
            .field("os_pid", &self.os_pid)
            .finish()
    }
}

impl Diag {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == DIAG_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// "\n--- last output of NODE ---\n..." or "" if there was none.
    fn tail(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.is_empty() {
            return " (no other output)".to_string();
        }
        let mut s = format!("\n--- last output of {} ---", self.label);
        for l in lines.iter() {
            s.push('\n');
            s.push_str(l);
        }
        s
    }

    fn wait_stderr_closed(&self, max: Duration) {
        let deadline = Instant::now() + max;
        while !self.stderr_closed.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn echo(&self, stream: &str, line: &str) {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *ON.get_or_init(|| std::env::var_os("EQ_BEAM_LOG").is_some_and(|v| v != "0")) {
            eprintln!("[{} {stream}] {line}", self.label);
        }
    }
}

/// Lines as (lossy) UTF-8 without the line end; None at EOF or on error.
fn lines_of(r: impl Read) -> impl Iterator<Item = String> {
    let mut r = BufReader::new(r);
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                Some(String::from_utf8_lossy(&buf).into_owned())
            }
        }
    })
}

fn spawn_stdout_reader(out: impl Read + Send + 'static, tx: Sender<FrameEvent>, diag: Arc<Diag>) {
    std::thread::spawn(move || {
        for line in lines_of(out) {
            diag.echo("out", &line);
            match parse_frame(&line) {
                Some((before, frame)) => {
                    // Text another process printed without a newline ends up
                    // in front of our frame; keep it as output.
                    if !before.is_empty() {
                        diag.push(before.to_string());
                    }
                    if tx.send(FrameEvent::Frame(frame)).is_err() {
                        return;
                    }
                }
                None => diag.push(line),
            }
        }
        let _ = tx.send(FrameEvent::Closed);
    });
}

fn spawn_stderr_reader(err: impl Read + Send + 'static, diag: Arc<Diag>) {
    std::thread::spawn(move || {
        for line in lines_of(err) {
            diag.echo("err", &line);
            diag.push(format!("stderr: {line}"));
        }
        diag.stderr_closed.store(true, Ordering::Release);
    });
}

/// `...<<EQ>>SEQ ok|error TERM<<END>>` -> (text before the frame, frame).
fn parse_frame(line: &str) -> Option<(&str, Frame)> {
    let start = line.find("<<EQ>>")?;
    let body = line[start + "<<EQ>>".len()..].strip_suffix("<<END>>")?;
    let (seq, rest) = body.split_once(' ')?;
    let (status, term) = rest.split_once(' ')?;
    let ok = match status {
        "ok" => true,
        "error" => false,
        _ => return None,
    };
    Some((
        &line[..start],
        Frame {
            seq: seq.parse().ok()?,
            ok,
            term: term.to_string(),
        },
    ))
}

/// `{eq_peer_ready,"1234",'a@127.0.0.1',"27"}` -> (1234, "a@127.0.0.1").
/// An sname node prints without quotes: `{eq_peer_ready,"1234",a@vm,"25"}`.
fn parse_ready(term: &str) -> Option<(u32, String)> {
    let rest = term.strip_prefix("{eq_peer_ready,\"")?;
    let (pid, rest) = rest.split_once("\",")?;
    let (node, _release) = rest.rsplit_once(",\"")?;
    let node = node
        .strip_prefix('\'')
        .and_then(|n| n.strip_suffix('\''))
        .unwrap_or(node);
    Some((pid.parse().ok()?, node.to_string()))
}

// ---- Elixir nodes ------------------------------------------------------------
//
// Added beside `start`/`start_sname` without touching them: `start_elixir`
// builds its own command line and then waits for the node exactly as
// `start_with` does (`launch` repeats that tail; the two could share it).

impl BeamNode {
    /// Starts an Elixir node: `elixir --erl "<the erl arguments of start>"
    /// --no-halt -e :ok` (`elixir27` for `EQ_OTP=27`), named
    /// `NAME@127.0.0.1` (a `name` with `@` is used as is), with `cookie`,
    /// eq_peer and the erl_quorum modules on the code path and `extra_args`
    /// appended to the erl arguments. Evals are Erlang expressions, as on
    /// any node; Elixir code runs through `'Elixir.Code':eval_string/1,2`.
    /// Returns once the node answers `'Elixir.System':version()` with a
    /// binary, i.e. once it really is an Elixir node.
    pub fn start_elixir(name: &str, cookie: &str, extra_args: &[&str]) -> io::Result<BeamNode> {
        let otp = Otp::from_env();
        let ebin = eq_peer_ebin(otp)?;
        ensure_epmd()?;
        let full = if name.contains('@') {
            name.to_string()
        } else {
            format!("{name}@127.0.0.1")
        };
        let ebin_str = ebin.to_string_lossy().into_owned();
        let mut erl_args: Vec<&str> = BASE_ARGS.to_vec();
        erl_args.extend([
            "-name",
            &full,
            "-kernel",
            "inet_dist_use_interface",
            "{127,0,0,1}",
            "-setcookie",
            cookie,
            "-pa",
            &ebin_str,
            "-run",
            "eq_peer",
            "main",
        ]);
        erl_args.extend_from_slice(extra_args);
        // The elixir script splits the --erl string on whitespace.
        if let Some(bad) = erl_args
            .iter()
            .find(|a| a.is_empty() || a.contains(char::is_whitespace))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("start_elixir: erl argument {bad:?} is empty or holds whitespace"),
            ));
        }
        let mut cmd = Command::new(otp.elixir());
        // The repo root as cwd, for the same reason as in start_with.
        cmd.current_dir(super::repo_root())
            .arg("--erl")
            .arg(erl_args.join(" "))
            .args(["--no-halt", "-e", ":ok"])
            .env("ERL_CRASH_DUMP_SECONDS", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let label = format!("Elixir (OTP {}) node {full}", otp.release());
        let node = Self::launch(cmd, otp, &full, cookie, label)?;
        match node.eval("'Elixir.System':version()") {
            Ok(v) if v.starts_with("<<\"") => Ok(node),
            other => Err(io::Error::other(format!(
                "{}: 'Elixir.System':version() returned {other:?}; not an Elixir node?{}",
                node.diag.label,
                node.diag.tail()
            ))),
        }
    }

    /// Spawns `cmd` (a command that runs eq_peer) and waits for the node
    /// the way `start_with` does: the ready frame, then a trivial eval.
    fn launch(
        mut cmd: Command,
        otp: Otp,
        name: &str,
        cookie: &str,
        label: String,
    ) -> io::Result<BeamNode> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot run `{program}` for {label}: {e}; {}",
                    otp.install_hint()
                ),
            )
        })?;
        let diag = Arc::new(Diag {
            label,
            lines: Mutex::new(VecDeque::new()),
            stderr_closed: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        spawn_stdout_reader(child.stdout.take().expect("piped stdout"), tx, diag.clone());
        spawn_stderr_reader(child.stderr.take().expect("piped stderr"), diag.clone());
        // From here on the node is owned by `node`: any early return drops it,
        // which kills and reaps the process.
        let mut node = BeamNode {
            node_name: name.to_string(),
            cookie: cookie.to_string(),
            otp,
            os_pid: child.id(),
            io: Mutex::new(Io {
                stdin: child.stdin.take(),
                frames: rx,
                next_seq: 1,
                exited: None,
            }),
            child,
            diag,
            reaped: false,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let ready = node
            .wait_frame(&mut node.lock_io(), 0, deadline, START_TIMEOUT, "startup")
            .map_err(io::Error::other)?;
        let (os_pid, full_name) = parse_ready(&ready).ok_or_else(|| {
            io::Error::other(format!(
                "{}: unexpected ready frame {ready}",
                node.diag.label
            ))
        })?;
        node.os_pid = os_pid;
        node.node_name = full_name;
        // The node said hello; make sure the evaluator answers too.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        match node.eval_timeout("ok", left) {
            Ok(v) if v == "ok" => Ok(node),
            other => Err(io::Error::other(format!(
                "{}: trivial eval returned {other:?}{}",
                node.diag.label,
                node.diag.tail()
            ))),
        }
    }
}
