//! TLS distribution against real BEAM nodes running `inet_tls_dist`
//! (`-proto_dist inet_tls -ssl_dist_optfile FILE`), with certificates the
//! test generates: both directions, TLS 1.2 and 1.3, refusals (wrong or
//! missing certificate, a peer in clear, a wrong cookie inside TLS), and
//! the services over TLS. Each cell runs on OTP 25 and 27 (`EQ_OTP`).

mod common;
mod quorum_support;
mod rust_node;
mod services_support;
mod tls_support;

use common::BeamNode;
use erl_quorum::term::{atom, tuple};
use erl_quorum::Node;
use std::io::{Read, Write};
use std::time::Duration;
use tls_support::{erl_args, Pki, Side};

const COOKIE: &str = rust_node::COOKIE;

/// Every log line of this test binary's Rust nodes (all tests share it).
static LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(bytes).into_owned();
        LOG.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured warnings that mention `what`.
fn warnings_about(what: &str) -> Vec<String> {
    LOG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains("WARN") && l.contains(what))
        .cloned()
        .collect()
}

/// A Rust node with the TLS config of `optfile`.
async fn rust_tls_node(prefix: &str, optfile: &std::path::Path) -> Node {
    // Installed before rust_node's own subscriber, whose try_init then
    // leaves this one in place.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("erl_quorum=info")
        .with_ansi(false)
        .with_writer(|| Capture)
        .try_init();
    let tls = tls_support::rust_tls(optfile);
    rust_node::start_with(prefix, |c| c.with_tls(tls)).await
}

fn beam_tls(prefix: &str, cookie: &str, optfile: Option<&std::path::Path>) -> BeamNode {
    common::ensure_epmd().expect("epmd");
    let args = optfile.map(erl_args).unwrap_or_default();
    BeamNode::start(
        &common::unique_name(prefix),
        cookie,
        &tls_support::as_strs(&args),
    )
    .expect("start erl")
}

/// One optfile where both sides use `side`.
fn optfile(pki: &Pki, name: &str, side: &Side<'_>) -> std::path::PathBuf {
    pki.optfile(name, side, side).expect("write optfile")
}

fn ping(b: &BeamNode, node: &Node) -> String {
    b.eval_ok(&format!("net_adm:ping({})", common::atom(node.name())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_beam_dials() {
    let pki = tls_support::pki("beam_dials");
    let conf = optfile(&pki, "good.conf", &pki.good());
    let node = rust_tls_node("rs_tls_in", &conf).await;
    rust_node::start_echo(&node, "echo");
    let b = beam_tls("b_tls_in", COOKIE, Some(&conf));
    let r = common::atom(node.name());
    assert_eq!(ping(&b, &node), "pong");
    assert_eq!(
        b.eval_ok(&format!(
            "gen_server:call({{echo, {r}}}, {{hello, <<\"tls\">>}})"
        )),
        "{hello,<<\"tls\">>}"
    );
    assert_eq!(
        b.eval_ok(&format!(
            "{{echo, {r}}} ! {{self(), ping}}, receive {{echo, X}} -> X after 5000 -> timeout end"
        )),
        "ping"
    );
    // A large message crosses several TLS records.
    assert_eq!(
        b.eval_ok(&format!(
            "B = binary:copy(<<\"x\">>, 300000), B =:= gen_server:call({{echo, {r}}}, B)"
        )),
        "true"
    );
    assert!(node.connected_nodes().contains(&b.node_name().to_owned()));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_rust_dials() {
    let pki = tls_support::pki("rust_dials");
    let conf = optfile(&pki, "good.conf", &pki.good());
    let node = rust_tls_node("rs_tls_out", &conf).await;
    let b = beam_tls("b_tls_out", COOKIE, Some(&conf));
    b.eval_ok("eq_peer:start_echo(echo)");
    node.connect(b.node_name()).await.expect("connect over TLS");
    let mut p = node.spawn_process();
    let auth = tuple(vec![atom("is_auth"), atom(node.name())]);
    let answer = p
        .call(("net_kernel", b.node_name()), auth, Duration::from_secs(5))
        .await;
    assert_eq!(answer, Ok(atom("yes")));
    let hello = tuple(vec![atom("hello"), atom("tls")]);
    let answer = p
        .call(
            ("echo", b.node_name()),
            hello.clone(),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(answer, Ok(hello));
    let r = common::atom(node.name());
    assert_eq!(
        b.eval_ok(&format!("lists:member({r}, nodes(hidden))")),
        "true"
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_peer_is_served() {
    let pki = tls_support::pki("tls12");
    let conf = optfile(&pki, "good.conf", &pki.good());
    let tls12 = Side {
        versions: Some("['tlsv1.2']"),
        ..pki.good()
    };
    let conf12 = optfile(&pki, "tls12.conf", &tls12);
    let node = rust_tls_node("rs_tls12", &conf).await;
    rust_node::start_echo(&node, "echo");
    // The BEAM dials (the Rust node serves TLS 1.2) ...
    let b = beam_tls("b_tls12_in", COOKIE, Some(&conf12));
    assert_eq!(ping(&b, &node), "pong");
    let r = common::atom(node.name());
    assert_eq!(
        b.eval_ok(&format!("gen_server:call({{echo, {r}}}, v12)")),
        "v12"
    );
    // ... and the Rust node dials a BEAM that only speaks TLS 1.2.
    let b2 = beam_tls("b_tls12_out", COOKIE, Some(&conf12));
    b2.eval_ok("eq_peer:start_echo(echo)");
    node.connect(b2.node_name())
        .await
        .expect("connect over TLS 1.2");
    let mut p = node.spawn_process();
    let answer = p
        .call(
            ("echo", b2.node_name()),
            atom("v12"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(answer, Ok(atom("v12")));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_certificate_is_refused() {
    let pki = tls_support::pki("wrong_cert");
    let good = optfile(&pki, "good.conf", &pki.good());
    let wrong = optfile(&pki, "wrong.conf", &pki.wrong());
    let node = rust_tls_node("rs_tls_wrong", &good).await;
    let r = common::atom(node.name());
    // A BEAM with a certificate from another CA cannot reach us ...
    let b = beam_tls("b_tls_wrong", COOKIE, Some(&wrong));
    assert_eq!(ping(&b, &node), "pang");
    assert_eq!(
        b.eval_ok(&format!("lists:member({r}, nodes(connected))")),
        "false"
    );
    assert!(!node.connected_nodes().contains(&b.node_name().to_owned()));
    // ... nor we it, and one warning names it.
    assert!(node.connect(b.node_name()).await.is_err());
    let warned = warnings_about(b.node_name());
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("cannot connect") && warned[0].contains("TLS handshake with 127.0.0.1:"),
        "{warned:?}"
    );
    assert_eq!(
        b.eval_ok(&format!("lists:member({r}, nodes(connected))")),
        "false"
    );
    // A good BEAM node still gets through.
    let ok = beam_tls("b_tls_right", COOKIE, Some(&good));
    assert_eq!(ping(&ok, &node), "pong");
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_certificate_is_refused_when_fail_if_no_peer_cert() {
    let pki = tls_support::pki("no_client_cert");
    let good = optfile(&pki, "good.conf", &pki.good());
    let anonymous = Side {
        cert: None,
        key: None,
        ..pki.good()
    };
    let no_cert = pki
        .optfile("no_cert.conf", &pki.good(), &anonymous)
        .expect("optfile");
    let node = rust_tls_node("rs_tls_nocert", &good).await;
    let b = beam_tls("b_tls_nocert", COOKIE, Some(&no_cert));
    assert_eq!(ping(&b, &node), "pang");
    assert!(!node.connected_nodes().contains(&b.node_name().to_owned()));
    // The same client is served where a certificate is optional: the
    // refusal above is fail_if_no_peer_cert's.
    let optional = Side {
        fail_if_no_peer_cert: false,
        ..pki.good()
    };
    let lenient = optfile(&pki, "lenient.conf", &optional);
    let node2 = rust_tls_node("rs_tls_optcert", &lenient).await;
    assert_eq!(ping(&b, &node2), "pong");
    node.shutdown();
    node2.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_peer_cannot_reach_a_tls_node() {
    let pki = tls_support::pki("plain_peer");
    let good = optfile(&pki, "good.conf", &pki.good());
    let node = rust_tls_node("rs_tls_plain", &good).await;
    let r = common::atom(node.name());
    let plain = beam_tls("b_plain", COOKIE, None);
    assert_eq!(ping(&plain, &node), "pang");
    assert!(node.connect(plain.node_name()).await.is_err());
    assert_eq!(
        plain.eval_ok(&format!("lists:member({r}, nodes(connected))")),
        "false"
    );
    // Nothing in clear: a plain handshake's send_name gets a TLS alert (or
    // a close), never a distribution status.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", node.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hs = erl_quorum::dist::handshake::Handshake::client(
        erl_quorum::dist::handshake::LocalIdentity {
            name: "plain@127.0.0.1".into(),
            cookie: COOKIE.into(),
            flags: erl_quorum::dist::flags::ADVERTISED,
            creation: 1,
        },
        node.name(),
        7,
    );
    s.write_all(&hs.take_output()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "a TLS node answered a plain handshake with {answer:?}"
    );
    assert!(!answer.windows(3).any(|w| w == b"sok"), "{answer:?}");
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cookie_inside_tls_is_refused() {
    let pki = tls_support::pki("tls_cookie");
    let good = optfile(&pki, "good.conf", &pki.good());
    let node = rust_tls_node("rs_tls_cookie", &good).await;
    let r = common::atom(node.name());
    let bad = beam_tls("b_tls_badcookie", "not_the_cookie", Some(&good));
    assert_eq!(ping(&bad, &node), "pang");
    assert!(node.connect(bad.node_name()).await.is_err());
    assert_eq!(
        bad.eval_ok(&format!("lists:member({r}, nodes(connected))")),
        "false"
    );
    let ok = beam_tls("b_tls_goodcookie", COOKIE, Some(&good));
    assert_eq!(ping(&ok, &node), "pong");
    node.shutdown();
}

/// Three `erl_quorum serve` masters and a BEAM node running the
/// erl_quorum application, all over TLS: a lock and a registered name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_work_over_tls() {
    let pki = tls_support::pki("services");
    let good = optfile(&pki, "good.conf", &pki.good());
    // The masters read their optfile from the environment (clap's `env`),
    // since this is the only test of this binary that starts them.
    std::env::set_var("ERL_QUORUM_SSL_DIST_OPTFILE", &good);
    let cluster = services_support::start_cluster("tls_svc", None).await;
    let masters = cluster.master_names();
    let args = erl_args(&good);
    let app = services_support::start_app_node_with(
        "b_tls_svc",
        services_support::Lang::Erlang,
        &masters,
        args,
    )
    .await;
    let log = || cluster.masters[0].log_tail();
    assert_eq!(
        app.eval_ok("K = {tls, k}, {R, H} = eq_services:holder(fun() -> paxtor:lock(K) end), R"),
        "acquired",
        "{}",
        log()
    );
    assert_eq!(app.eval_ok("paxtor:whereis(K) =:= H"), "true", "{}", log());
    assert_eq!(
        app.eval_ok(
            "N = {tls, name}, {R1, P} = eq_services:holder(fun() -> rust_registry:register_name(N, self()) end), R1"
        ),
        "yes",
        "{}",
        log()
    );
    assert_eq!(app.eval_ok("rust_registry:whereis_name(N) =:= P"), "true");
    // Nothing in clear: a plain BEAM node cannot reach the masters.
    let plain = beam_tls("b_tls_svc_plain", COOKIE, None);
    assert_eq!(
        plain.eval_ok(&format!("net_adm:ping({})", common::atom(&masters[0]))),
        "pang"
    );
}
