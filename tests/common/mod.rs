//! Test harness: real BEAM nodes driven from Rust tests.
//!
//! Every integration test that needs a real Erlang node does
//! `mod common;` and then
//!
//! ```ignore
//! let a = BeamNode::start(&unique_name("a"), DEFAULT_COOKIE, &[])?;
//! assert_eq!(a.eval("1 + 1").unwrap(), "2");
//! ```
//!
//! The node runs `erlang_test/eq_peer.erl`, which evaluates one Erlang
//! expression per stdin line and answers with one framed line on stdout (see
//! that file for the protocol). Which Erlang/OTP runs the nodes is chosen per
//! test run with `EQ_OTP=25` (default: Debian's `erl`) or `EQ_OTP=27` (the
//! `erl27` chroot wrapper from `shared/tools/otp27`).
//!
//! Std only, on purpose: the harness must not drag dev-dependencies into the
//! crate. Set `EQ_BEAM_LOG=1` to copy every line the nodes print to stderr.

// Each test binary compiles its own copy of this module and uses only part of
// it; unused helpers must not turn into warnings in every test crate.
#![allow(dead_code, unused_imports)]

mod beam;

pub use beam::{BeamNode, EVAL_TIMEOUT};

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A cookie for tests that don't care which one they use.
pub const DEFAULT_COOKIE: &str = "eq_test_cookie";

/// The Erlang/OTP release that runs the test nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Otp {
    /// Debian bookworm's OTP 25: `erl`, `erlc` on PATH.
    V25,
    /// Debian trixie's OTP 27 in a chroot: `erl27`, `erlc27` on PATH (root only).
    V27,
}

impl Otp {
    /// `EQ_OTP=25|27`, default 25. Panics on anything else, so a typo in a CI
    /// script can't silently test the wrong release.
    pub fn from_env() -> Otp {
        match std::env::var("EQ_OTP").as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("25") => Otp::V25,
            Ok("27") => Otp::V27,
            Ok(other) => panic!("EQ_OTP must be 25 or 27, got {other:?}"),
        }
    }

    /// "25" or "27", as `erlang:system_info(otp_release)` says it.
    pub fn release(self) -> &'static str {
        match self {
            Otp::V25 => "25",
            Otp::V27 => "27",
        }
    }

    pub fn erl(self) -> &'static str {
        match self {
            Otp::V25 => "erl",
            Otp::V27 => "erl27",
        }
    }

    pub fn erlc(self) -> &'static str {
        match self {
            Otp::V25 => "erlc",
            Otp::V27 => "erlc27",
        }
    }

    pub fn elixir(self) -> &'static str {
        match self {
            Otp::V25 => "elixir",
            Otp::V27 => "elixir27",
        }
    }

    /// What to tell a person whose machine lacks this release.
    fn install_hint(self) -> &'static str {
        match self {
            Otp::V25 => "install it with `apt-get install -y erlang-nox erlang-dev` (or run scripts/test.sh)",
            Otp::V27 => "set it up (as root) with `../shared/tools/otp27/setup` (or run scripts/test.sh)",
        }
    }
}

/// The repository root, canonical. Canonical matters for OTP 27: the erl27
/// wrapper bind-mounts `pwd -P` into the chroot, so paths we hand to the node
/// must be spelled the way the chroot sees them.
pub fn repo_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
    })
}

/// `target/erlang_test` under the repo root. Deliberately not
/// `CARGO_TARGET_DIR`: it must lie under the repo root so the erl27 chroot,
/// which only sees the current directory, can read it.
fn erlang_build_root() -> PathBuf {
    repo_root().join("target").join("erlang_test")
}

/// Compiles every `erlang_test/*.erl` (eq_peer and the modules tests load
/// next to it) and the BEAM side of erl_quorum (`rebar_fixture/src/*.erl`,
/// plus an `erl_quorum.app` so `application:ensure_all_started(erl_quorum)`
/// works, and, when this release's Elixir compiler is installed, its Elixir
/// modules `rebar_fixture/lib/**/*.ex`: `Sworm`, `ErlQuorum.Server`) for
/// `otp` (once per test process; later calls return the cached answer) and
/// returns the directory to pass to `-pa`: `target/erlang_test/otp25` or
/// `otp27`. OTP 27 .beam files don't load on OTP 25, hence one directory per
/// release. Erlang nodes need no Elixir: they never load those modules.
pub fn eq_peer_ebin(otp: Otp) -> io::Result<PathBuf> {
    static V25: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static V27: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let cell = match otp {
        Otp::V25 => &V25,
        Otp::V27 => &V27,
    };
    cell.get_or_init(|| compile_eq_peer(otp))
        .clone()
        .map_err(io::Error::other)
}

/// The `.ex` files under `dir` (recursively), sorted; none if `dir` is missing.
fn ex_sources(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    for path in entries.filter_map(|entry| entry.ok().map(|e| e.path())) {
        if path.is_dir() {
            found.extend(ex_sources(&path)?);
        } else if path.extension().is_some_and(|x| x == "ex") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Compiles `sources` (Elixir) into `out_dir` with `otp`'s Elixir compiler
/// (`elixirc`; `elixir27 +elixirc`, which is what elixirc runs, for OTP 27),
/// with `out_dir` on the code path for the Erlang modules they call. Ok and
/// nothing compiled when that compiler is not installed: Erlang nodes do
/// without these modules.
fn compile_elixir(otp: Otp, sources: &[PathBuf], out_dir: &Path) -> Result<(), String> {
    if sources.is_empty() {
        return Ok(());
    }
    let mut cmd = match otp {
        Otp::V25 => Command::new("elixirc"),
        Otp::V27 => {
            let mut cmd = Command::new(otp.elixir());
            cmd.arg("+elixirc");
            cmd
        }
    };
    // The current directory must be the repo root: elixir27 only sees it.
    let result = cmd
        .current_dir(repo_root())
        .arg("-pa")
        .arg(out_dir)
        .arg("-o")
        .arg(out_dir)
        .args(sources)
        .stdin(Stdio::null())
        .output();
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "cannot run the Elixir compiler for OTP {}: {e}",
            otp.release()
        )),
        Ok(out) if !out.status.success() => Err(format!(
            "compiling {} with Elixir (OTP {}) failed ({}):\n{}{}",
            sources
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            otp.release(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Ok(_) => Ok(()),
    }
}

/// The `.beam` files in `dir`, by file name.
fn beam_files(dir: &Path) -> Result<Vec<String>, String> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".beam"))
        .collect())
}

/// The `.erl` files of `dir`, sorted.
fn erl_sources(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "erl"))
        .collect();
    sources.sort();
    Ok(sources)
}

/// `erl_quorum.app` from `rebar_fixture/src/erl_quorum.app.src`: the same
/// term with the modules list filled in (rebar3 does that in a real build).
/// The .app.src must spell the entry `{modules, []}`, exactly once.
fn erl_quorum_app(app_src: &Path, modules: &[String]) -> Result<String, String> {
    let text = std::fs::read_to_string(app_src)
        .map_err(|e| format!("cannot read {}: {e}", app_src.display()))?;
    const EMPTY: &str = "{modules, []}";
    if text.matches(EMPTY).count() != 1 {
        return Err(format!(
            "{} must contain `{EMPTY}` exactly once (the harness fills it in)",
            app_src.display()
        ));
    }
    let list: Vec<String> = modules.iter().map(|m| atom(m)).collect();
    Ok(text.replacen(EMPTY, &format!("{{modules, [{}]}}", list.join(", ")), 1))
}

/// Compiles into a private temporary directory and renames the .beam files
/// (and erl_quorum.app) into place, so parallel test binaries never load a
/// half-written file.
fn compile_eq_peer(otp: Otp) -> Result<PathBuf, String> {
    let root = repo_root();
    let src_dir = root.join("erlang_test");
    let fixture_dir = root.join("rebar_fixture").join("src");
    let fixture_sources = erl_sources(&fixture_dir)?;
    let mut sources = erl_sources(&src_dir)?;
    sources.extend(fixture_sources.iter().cloned());
    let out_dir = erlang_build_root().join(format!("otp{}", otp.release()));
    let tmp_dir = erlang_build_root().join(format!(
        "tmp-otp{}-{}-{}",
        otp.release(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mkdir = |d: &Path| {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))
    };
    mkdir(&out_dir)?;
    mkdir(&tmp_dir)?;
    let stem = |src: &PathBuf| src.file_stem().map(|s| s.to_string_lossy().into_owned());
    let app = "erl_quorum.app";
    // The current directory must be the repo root: erlc27 only sees it.
    let result = Command::new(otp.erlc())
        .current_dir(root)
        .arg("-o")
        .arg(&tmp_dir)
        .args(&sources)
        .stdin(Stdio::null())
        .output();
    let outcome = match result {
        Err(e) => Err(format!(
            "cannot run `{}` for OTP {}: {e}; {}",
            otp.erlc(),
            otp.release(),
            otp.install_hint()
        )),
        Ok(out) if !out.status.success() => Err(format!(
            "`{} -o {} {}/*.erl {}/*.erl` failed ({}):\n{}{}",
            otp.erlc(),
            tmp_dir.display(),
            src_dir.display(),
            fixture_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Ok(_) => {
            let modules: Vec<String> = fixture_sources.iter().filter_map(stem).collect();
            ex_sources(&root.join("rebar_fixture").join("lib"))
                .and_then(|ex| compile_elixir(otp, &ex, &tmp_dir))
                .and_then(|()| erl_quorum_app(&fixture_dir.join("erl_quorum.app.src"), &modules))
                .and_then(|text| {
                    std::fs::write(tmp_dir.join(app), text)
                        .map_err(|e| format!("cannot write {app}: {e}"))
                })
                .and_then(|()| beam_files(&tmp_dir))
                .and_then(|beams| {
                    beams
                        .into_iter()
                        .chain(std::iter::once(app.to_string()))
                        .try_for_each(|file| {
                            std::fs::rename(tmp_dir.join(&file), out_dir.join(&file)).map_err(|e| {
                                format!("cannot move {file} into {}: {e}", out_dir.display())
                            })
                        })
                })
                .map(|()| out_dir.clone())
        }
    };
    let _ = std::fs::remove_dir_all(&tmp_dir);
    outcome
}

const EPMD_PORT: u16 = 4369;

fn epmd_listening() -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], EPMD_PORT));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Starts `epmd -daemon` unless something already listens on 127.0.0.1:4369,
/// and waits (up to 5 s) until it does. Uses the host's epmd even for OTP 27:
/// an epmd started inside the erl27 chroot would keep that mount namespace
/// alive. Two threads racing here is harmless: the second epmd exits when it
/// finds the port taken.
pub fn ensure_epmd() -> io::Result<()> {
    if epmd_listening() {
        return Ok(());
    }
    // Null stdio: the daemon must not inherit (and hold open) the pipes that
    // cargo or scripts/test.sh read our output from.
    let status = Command::new("epmd")
        .arg("-daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `epmd -daemon`: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if epmd_listening() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(io::Error::other(format!(
        "`epmd -daemon` ({status}) but nothing listens on 127.0.0.1:{EPMD_PORT} after 5 s"
    )))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A node name unique across threads, test binaries and runs:
/// `{prefix}_{pid}_{counter}_{time}`. Characters an Erlang node name can't
/// hold are replaced by `_`. Keep `prefix` short and lowercase, so the full
/// name stays readable in failure messages.
pub fn unique_name(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() % 1_000_000_000)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{clean}_{}_{n}_{micros}", std::process::id())
}

/// Quotes `s` as an Erlang atom: `a@127.0.0.1` -> `'a@127.0.0.1'`. Node names
/// are atoms that always need the quotes.
pub fn atom(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Signals to a process by pid, through libc's kill(2), which std already
/// links (so no `libc` crate). Linux numbering.
pub(crate) mod signal {
    pub const SIGKILL: i32 = 9;
    pub const SIGTERM: i32 = 15;
    pub const SIGCONT: i32 = 18;
    pub const SIGSTOP: i32 = 19;

    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }

    pub fn send(pid: u32, sig: i32) -> std::io::Result<()> {
        // pid 0 or one that overflows i32 would signal a process group: refuse.
        let pid = i32::try_from(pid)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad pid"))?;
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        if unsafe { kill(pid, sig) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
