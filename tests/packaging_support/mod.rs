//! Building the sample user projects of `examples/` (a rebar3 project and a
//! mix project, each depending on `rebar_fixture` by path) the way their
//! users do, offline, with the release's own rebar3 or mix.
//!
//! Each build runs in a temporary copy under `target/packaging/` that
//! mirrors the repository's layout (`examples/<project>` next to
//! `rebar_fixture`), so the relative paths of the projects resolve, no
//! `_build` is left in the tree, and nothing is cached between runs. Under
//! `target/` rather than `/tmp` because the OTP 27 tools run in a chroot that
//! sees only the current directory and `OTP27_BIND`, and the test's BEAM
//! nodes (started from the repository root) load the result from there.
//!
//! Needs `mod common;` next to it.

#![allow(dead_code)]

use super::common::{self, Otp};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The build tool a sample project uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `rebar3 compile`; the dependency comes from `_checkouts/`.
    Rebar3,
    /// `mix compile`; the dependency is a `path:` dep with its own mix.exs.
    Mix,
}

/// A sample project built in a temporary copy; dropping it removes the copy.
pub struct Built {
    /// The temporary root (`target/packaging/<unique>`).
    root: PathBuf,
    /// The project's directory in the copy.
    pub project: PathBuf,
    /// Every application's `ebin` the build produced (the project's and its
    /// dependencies'), for `code:add_pathsa/1`.
    pub ebins: Vec<PathBuf>,
}

impl Drop for Built {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Entries never copied: build output and lock files of an earlier local
/// build.
const SKIP: &[&str] = &["_build", "deps", "rebar.lock", "mix.lock"];

/// Copies `from` into `to` recursively, recreating symlinks as symlinks
/// (`_checkouts/erl_quorum` must stay a relative link into the copy).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if SKIP.iter().any(|s| name == *s) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// `name` on PATH, as a full path.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The command that runs rebar3 for `otp` in `root`'s copy. OTP 27's chroot
/// has rebar3 only when it was set up with `WITH_REBAR3=1`; otherwise the
/// machine's rebar3 (an escript: OTP 25 beams, which OTP 27 loads) runs on
/// OTP 27's runtime, as `escript` would start it, so the project is still
/// compiled by OTP 27's compiler.
fn rebar3_command(otp: Otp, root: &Path) -> Result<Command, String> {
    match otp {
        Otp::V25 => Ok(Command::new("rebar3")),
        Otp::V27 => {
            let native = Command::new("rebar3-27")
                .arg("version")
                .stdin(Stdio::null())
                .output();
            if native.is_ok_and(|o| o.status.success()) {
                return Ok(Command::new("rebar3-27"));
            }
            let host = which("rebar3").ok_or("no rebar3 on PATH (apt-get install rebar3)")?;
            let copy = root.join("rebar3");
            std::fs::copy(&host, &copy)
                .map_err(|e| format!("cannot copy {} into the build: {e}", host.display()))?;
            let mut cmd = Command::new(otp.erl());
            cmd.args(["+sbtu", "+A1", "-noshell", "-boot", "no_dot_erlang"])
                .args(["-run", "escript", "start", "-extra"])
                .arg(copy);
            Ok(cmd)
        }
    }
}

fn mix_command(otp: Otp) -> Command {
    Command::new(match otp {
        Otp::V25 => "mix",
        Otp::V27 => "mix27",
    })
}

/// The `ebin` directories of the applications under `dir` (`dir/*/ebin`).
fn ebins_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path().join("ebin")))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found
}

/// Copies `examples/<project>` and `rebar_fixture` into a fresh temporary
/// root and builds the project there with `tool` for `otp`. Offline: HOME,
/// rebar3's cache and MIX_HOME point into the copy, so neither a global
/// config nor a cache of the machine takes part. Errors carry the tool's
/// output.
pub fn build(otp: Otp, project: &str, tool: Tool) -> Result<Built, String> {
    let repo = common::repo_root();
    let root = repo
        .join("target")
        .join("packaging")
        .join(common::unique_name(&format!(
            "{project}_otp{}",
            otp.release()
        )));
    // From here on `built` owns the copy: an early return removes it.
    let mut built = Built {
        project: root.join("examples").join(project),
        root,
        ebins: Vec::new(),
    };
    let copy = |from: PathBuf, to: &Path| {
        copy_tree(&from, to).map_err(|e| format!("cannot copy {}: {e}", from.display()))
    };
    copy(
        repo.join("rebar_fixture"),
        &built.root.join("rebar_fixture"),
    )?;
    copy(repo.join("examples").join(project), &built.project)?;
    let home = built.root.join("home");
    std::fs::create_dir_all(&home).map_err(|e| format!("cannot create {home:?}: {e}"))?;

    let mut cmd = match tool {
        Tool::Rebar3 => rebar3_command(otp, &built.root)?,
        Tool::Mix => mix_command(otp),
    };
    let out = cmd
        .arg("compile")
        .current_dir(&built.project)
        // The OTP 27 tools see the copy (it is not their current directory).
        .env("OTP27_BIND", &built.root)
        .env("HOME", &home)
        .env("REBAR_CACHE_DIR", home.join("rebar3_cache"))
        .env("MIX_HOME", home.join("mix"))
        .env("HEX_OFFLINE", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {tool:?} for OTP {}: {e}", otp.release()))?;
    check(&out, tool, otp, &built.project)?;

    built.ebins = match tool {
        Tool::Rebar3 => {
            let b = built.project.join("_build").join("default");
            let mut v = ebins_under(&b.join("lib"));
            v.extend(ebins_under(&b.join("checkouts")));
            v
        }
        Tool::Mix => ebins_under(&built.project.join("_build").join("dev").join("lib")),
    };
    Ok(built)
}

fn check(out: &Output, tool: Tool, otp: Otp, dir: &Path) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{tool:?} compile (OTP {}) in {} failed ({}):\n{}{}",
        otp.release(),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// `s` as an Erlang string literal.
pub fn erl_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
