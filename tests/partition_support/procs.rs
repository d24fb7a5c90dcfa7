//! The processes on the namespace hosts: `erl_quorum serve` masters and
//! BEAM client nodes running `erlang_test/eq_partition.erl`, each started
//! under `ip netns exec`, with their output read by threads: the client's
//! `EQP` lines become [`Event`]s, the rest is kept for failure messages.

use super::check::Event;
use super::net::{addr, ns};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_erl_quorum");
pub const COOKIE: &str = "eq_partition_cookie";
const LOG_LINES: usize = 40;

pub type Log = Arc<Mutex<VecDeque<String>>>;

/// Microseconds of the system clock: the clock every node stamps with.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn read_lines(
    out: impl Read + Send + 'static,
    label: String,
    log: Log,
    lines: Option<mpsc::Sender<String>>,
    events: Option<Arc<Mutex<Vec<Event>>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("EQ_PARTITION_LOG").is_some() {
                eprintln!("[{label}] {line}");
            }
            if let (Some(events), Some(e)) = (&events, Event::parse(&label, &line)) {
                events.lock().unwrap_or_else(|e| e.into_inner()).push(e);
            } else {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line.clone());
            }
            if let Some(tx) = &lines {
                let _ = tx.send(line);
            }
        }
    });
}

fn tail(log: &Log) -> String {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.iter().cloned().collect::<Vec<_>>().join("\n")
}

/// A master: `erl_quorum serve` on host `host`.
pub struct Master {
    pub host: u8,
    pub name: String,
    masters: Vec<String>,
    lease_ms: u64,
    child: Option<Child>,
    log: Log,
}

impl Master {
    pub fn name_of(host: u8) -> String {
        format!("m{host}@{}", addr(host))
    }

    pub fn new(host: u8, masters: Vec<String>, lease_ms: u64) -> Master {
        Master {
            host,
            name: Self::name_of(host),
            masters,
            lease_ms,
            child: None,
            log: Arc::default(),
        }
    }

    /// Starts it (`fresh`: `--fresh`, the first time only) and waits until
    /// it serves.
    pub fn start(&mut self, fresh: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &ns(self.host), BIN, "serve"])
                .args(["--name", &self.name, "--cookie", COOKIE, "--w", "2"])
                .args(["--masters", &self.masters.join(",")])
                .args(["--session-lease-ms", &self.lease_ms.to_string()]);
            if fresh {
                cmd.arg("--fresh");
            }
            let mut child = cmd
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn erl_quorum serve");
            let (tx, rx) = mpsc::channel();
            let label = self.name.clone();
            read_lines(
                child.stdout.take().expect("stdout"),
                label.clone(),
                self.log.clone(),
                Some(tx),
                None,
            );
            read_lines(
                child.stderr.take().expect("stderr"),
                label,
                self.log.clone(),
                None,
                None,
            );
            self.child = Some(child);
            loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(line) if line.contains("serving locker") => return,
                    Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not serve in time:\n{}",
                    self.name,
                    tail(&self.log)
                );
            }
            // Exited before serving (its old name still in epmd): again.
            self.kill9();
            assert!(
                Instant::now() < deadline,
                "{} never served:\n{}",
                self.name,
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status();
        }
    }

    pub fn stop(&self) {
        self.signal("-STOP");
    }

    pub fn cont(&self) {
        self.signal("-CONT");
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.cont();
        self.kill9();
    }
}

/// A BEAM client node on host `host` running the workload.
pub struct Client {
    pub host: u8,
    pub name: String,
    child: Option<Child>,
    log: Log,
}

impl Client {
    /// Starts `erl -name c<host>@10.213.0.<host>` running
    /// `eq_partition:run(RustNodes, Keys, HoldMs)`, and waits for it to say
    /// it is ready. Its events go to `events`.
    pub fn start(
        host: u8,
        rust_nodes: &[String],
        keys: &str,
        hold_ms: u64,
        extra: &[&str],
        events: Arc<Mutex<Vec<Event>>>,
    ) -> Client {
        let otp = super::super::common::Otp::from_env();
        let ebin = super::super::common::eq_peer_ebin(otp).expect("compile the Erlang modules");
        let name = format!("c{host}@{}", addr(host));
        let nodes: Vec<String> = rust_nodes.iter().map(|n| format!("'{n}'")).collect();
        let eval = format!("eq_partition:run([{}], {keys}, {hold_ms})", nodes.join(","));
        let mut child = Command::new("ip")
            .current_dir(super::super::common::repo_root())
            .args(["netns", "exec", &ns(host), otp.erl()])
            .args(["-name", &name, "-setcookie", COOKIE, "-noshell", "-pa"])
            .arg(&ebin)
            .args(extra)
            .args(["-eval", &eval])
            .env("ERL_CRASH_DUMP_SECONDS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn erl");
        let log: Log = Arc::default();
        let (tx, rx) = mpsc::channel();
        read_lines(
            child.stdout.take().expect("stdout"),
            name.clone(),
            log.clone(),
            Some(tx),
            Some(events),
        );
        read_lines(
            child.stderr.take().expect("stderr"),
            name.clone(),
            log.clone(),
            None,
            None,
        );
        let client = Client {
            host,
            name,
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(" ready") => return client,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{} exited:\n{}", client.name, tail(&client.log))
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready:\n{}",
                client.name,
                tail(&client.log)
            );
        }
    }

    pub fn output(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
