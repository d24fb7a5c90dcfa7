//! The operator commands of the built `erl_quorum` binary (`ping`,
//! `status`, `lock`, `read`, `release`), run as an operator runs them, as
//! separate OS processes, against three masters at W=2: `erl_quorum serve`
//! masters, and BEAM nodes running the real wooga/locker.
//!
//! locker is not in Debian's packages and CI has no network, so the BEAM
//! half is ignored unless `EQ_LOCKER_EBIN` names a directory with a compiled
//! `locker.beam` (as tests/real_locker.rs):
//!
//! ```text
//! git clone https://github.com/wooga/locker && erlc -o /tmp/locker_ebin locker/src/locker.erl
//! EQ_LOCKER_EBIN=/tmp/locker_ebin cargo test --test operator_cli -- --ignored
//! ```
//!
//! With `EQ_OTP=27` the directory must also be visible inside the erl27
//! chroot, which sees only the current directory: add
//! `OTP27_BIND=/tmp/locker_ebin`.
//!
//! `status` is checked for its exit code and for naming every node it was
//! asked about, not for its layout.

mod common;
mod quorum_support;
mod rust_node;
mod services_support;

use common::BeamNode;
use std::process::Command;

/// The binary cargo built for this test.
const BIN: &str = env!("CARGO_BIN_EXE_erl_quorum");

/// What one command printed and how it exited.
#[derive(Debug)]
struct Outcome {
    ok: bool,
    stdout: String,
    /// Shown in failure messages (through Debug).
    #[allow(dead_code)]
    stderr: String,
}

/// Runs `erl_quorum ARGS... --cookie COOKIE` (one short-lived client node)
/// off the async runtime's workers.
fn cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Outcome {
    tokio::task::block_in_place(|| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--cookie", rust_node::COOKIE])
            .output()
            .expect("run the erl_quorum binary");
        Outcome {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
}

/// The same commands and answers against any three masters, Rust or BEAM:
/// ping, status, a lock refused while held, read, a release refused for the
/// wrong value and done for the right one.
fn exercise(masters: &[String]) {
    let list = masters.join(",");
    let cluster = ["--masters", list.as_str(), "--w", "2"];
    let with = |cmd: &[&str]| -> Vec<String> {
        cmd.iter().chain(&cluster).map(|s| s.to_string()).collect()
    };

    for m in masters {
        let ping = cli(&["ping", m]);
        assert!(ping.ok && ping.stdout == "pong", "ping {m}: {ping:?}");
    }
    let missing = quorum_support::node_name("absent");
    let ping = cli(&["ping", &missing]);
    assert!(
        !ping.ok && ping.stdout == "pang",
        "ping {missing}: {ping:?}"
    );

    let status = cli(&with(&["status"]));
    assert!(status.ok, "status: {status:?}");
    for m in masters {
        assert!(
            status.stdout.contains(m.as_str()),
            "status names {m}: {status:?}"
        );
    }
    // One master that cannot be asked makes status fail, and it says which.
    let with_missing = format!("{list},{missing}");
    let status = cli(&["status", "--masters", &with_missing, "--w", "2"]);
    assert!(!status.ok, "status with {missing}: {status:?}");
    assert!(status.stdout.contains(missing.as_str()), "{status:?}");

    let key = "{job,1}";
    let lock = cli(&with(&["lock", key, "<<\"me\">>", "--lease-ms", "30000"]));
    assert!(lock.ok && lock.stdout.starts_with("ok"), "lock: {lock:?}");
    let again = cli(&with(&["lock", key, "<<\"you\">>", "--lease-ms", "30000"]));
    assert!(
        !again.ok && again.stdout.starts_with("error"),
        "second lock: {again:?}"
    );

    // `read` is a dirty read of the first master that answers, and a
    // command returns once W masters acked: the third may lag behind by
    // the masters' log push (100 ms). So a read is retried for a while.
    let read = read_until(&with(&["read", key]), |r| {
        r.ok && parse(&r.stdout) == parse("<<\"me\">>")
    });
    assert!(read.ok, "read: {read:?}");
    assert_eq!(parse(&read.stdout), parse("<<\"me\">>"));

    let wrong = cli(&with(&["release", key, "<<\"you\">>"]));
    assert!(
        !wrong.ok && wrong.stdout.starts_with("error"),
        "wrong release: {wrong:?}"
    );
    let read = read_until(&with(&["read", key]), |r| r.ok);
    assert!(read.ok, "still held after the refused release: {read:?}");

    let release = cli(&with(&["release", key, "<<\"me\">>"]));
    assert!(
        release.ok && release.stdout.starts_with("ok"),
        "release: {release:?}"
    );
    let read = read_until(&with(&["read", key]), |r| !r.ok && r.stdout == "not_found");
    assert!(
        !read.ok && read.stdout == "not_found",
        "read after release: {read:?}"
    );
    // Free again: the next lock is granted.
    let lock = cli(&with(&["lock", key, "<<\"you\">>", "--lease-ms", "30000"]));
    assert!(lock.ok, "lock after release: {lock:?}");
}

/// Runs `args` until `done` holds of its outcome, for up to 3 s; the last
/// outcome either way.
fn read_until(args: &[String], done: impl Fn(&Outcome) -> bool) -> Outcome {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let outcome = cli(args);
        if done(&outcome) || std::time::Instant::now() > deadline {
            return outcome;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A value as `read` prints it, parsed back, so the comparison does not
/// depend on how a binary is spelled (`<<"me">>` or `<<109,101>>`).
fn parse(text: &str) -> erl_quorum::term::Term {
    erl_quorum::term::parse_term(text).unwrap_or_else(|e| panic!("not a term: {text:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_against_rust_masters() {
    let cluster = services_support::start_cluster("cli", None).await;
    exercise(&cluster.master_names());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs EQ_LOCKER_EBIN: a compiled wooga/locker"]
async fn operator_commands_against_beam_locker_masters() {
    let ebin = std::env::var("EQ_LOCKER_EBIN").expect("EQ_LOCKER_EBIN");
    common::ensure_epmd().expect("epmd");
    let args = ["-pa", ebin.as_str()];
    let masters: Vec<BeamNode> = tokio::task::block_in_place(|| {
        (0..3)
            .map(|i| {
                let name = common::unique_name(&format!("cli_locker{i}"));
                BeamNode::start(&name, rust_node::COOKIE, &args).expect("start a locker node")
            })
            .collect()
    });
    // Each locker must outlive the evaluation that starts it (W=2).
    let start = "spawn(fun() -> {ok, _} = locker:start_link(2), receive never -> ok end end), \
                 eq_peer:wait_until(fun() -> whereis(locker) =/= undefined end, 5000)";
    for m in &masters {
        assert_ne!(
            m.eval_ok("code:which(locker)"),
            "non_existing",
            "no locker.beam in {ebin} as {} sees it (for EQ_OTP=27, set OTP27_BIND={ebin})",
            m.node_name()
        );
        m.eval_ok(start);
    }
    let names: Vec<String> = masters.iter().map(|m| m.node_name().to_owned()).collect();
    let erl_list = quorum_support::erl_list(&names);
    // locker's own configuration call, from one of its nodes.
    assert_eq!(
        masters[0].eval_ok(&format!("locker:set_nodes({erl_list}, {erl_list}, [])")),
        "ok"
    );
    exercise(&names);
}
