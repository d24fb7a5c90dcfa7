//! The locker client's staged rounds ([`FanOut::W`]): a one-round lock
//! calls the first W masters only, and the others when those cannot make
//! W. Masters are `erl_quorum serve` OS processes, so they can be stopped
//! and killed.
//!
//! - `w_fan_out_locks_on_w_masters_and_releases_there`: the third master
//!   never sees a lock (shown by reading it), and the release frees the key.
//! - `w_fan_out_survives_a_stopped_and_a_killed_master`: a SIGSTOPped first
//!   master costs the hedge delay, not the call timeout; a killed one
//!   costs nothing; exclusion holds throughout, and the widened lock's
//!   release reaches every master that took it.
//! - `idle_clients_call_every_master`: [`FanOut::WWhenBusy`] calls all
//!   masters while nothing else is in flight.

mod common;
mod quorum_support;
mod rust_node;

use erl_quorum::quorum::client::{FanOut, LockerClient, LockerError, Quorum};
use erl_quorum::term::{atom, int, tuple, Term};
use quorum_support::Cluster;
use std::time::{Duration, Instant};

const W: usize = 2;
const LEASE: Duration = Duration::from_secs(10);
const HEDGE: Duration = Duration::from_millis(20);

/// `FanOut::WWhenBusy` depends on the rounds in flight in this OS process,
/// so the tests here take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn key(i: usize) -> Term {
    tuple(vec![atom("fan_out"), int(i as i64)])
}

fn narrow_client(node: &erl_quorum::Node, masters: &[String]) -> LockerClient {
    LockerClient::new(node.spawn_process(), masters.to_vec(), W)
        .with_one_round_lock(true)
        .with_fan_out(FanOut::W { hedge_after: HEDGE })
        .with_timeout(Duration::from_secs(3))
}

/// A lock or release that W = 2 masters acknowledged.
const TWO_OF_THREE: Quorum = Quorum {
    w: 2,
    votes: 2,
    acks: 2,
};

/// What each master holds for `key`, once it is `expected` (masters that
/// were not waited for catch up within a second), or as last read.
async fn settled(
    reader: &mut LockerClient,
    masters: &[String],
    key: &Term,
    expected: &[Option<Term>],
) -> Vec<Option<Term>> {
    let mut held = Vec::new();
    for _ in 0..50 {
        held = values(reader, masters, key).await;
        if held == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held
}

/// What each master holds for `key`.
async fn values(reader: &mut LockerClient, masters: &[String], key: &Term) -> Vec<Option<Term>> {
    let mut out = Vec::new();
    for m in masters {
        out.push(reader.dirty_read(m, key.clone()).await.expect("dirty_read"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w_fan_out_locks_on_w_masters_and_releases_there() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start("fo1", 3, 0, W, None).await;
    let node = rust_node::start("c_fo1").await;
    let masters = cluster.master_names();
    let mut a = narrow_client(&node, &masters);
    let mut reader = LockerClient::new(node.spawn_process(), masters.clone(), W);

    let q = a.lock(key(1), atom("a"), LEASE).await;
    assert_eq!(q, Ok(TWO_OF_THREE), "{}", cluster.logs());
    assert_eq!(
        values(&mut reader, &masters, &key(1)).await,
        vec![Some(atom("a")), Some(atom("a")), None],
        "only the first W masters were called"
    );
    // The key is taken: another client gets the third master at most.
    let mut b = narrow_client(&node, &masters);
    assert!(matches!(
        b.lock(key(1), atom("b"), LEASE).await,
        Err(LockerError::NoQuorum { .. })
    ));
    a.release(key(1), atom("a")).await.expect("release");
    assert_eq!(
        values(&mut reader, &masters, &key(1)).await,
        vec![None, None, None]
    );
    let q = b.lock(key(1), atom("b"), LEASE).await;
    assert!(q.is_ok(), "{q:?}{}", cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w_fan_out_survives_a_stopped_and_a_killed_master() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start("fo2", 3, 0, W, None).await;
    let node = rust_node::start("c_fo2").await;
    let masters = cluster.master_names();
    let mut a = narrow_client(&node, &masters);
    let mut b = narrow_client(&node, &masters);
    let mut reader = LockerClient::new(node.spawn_process(), masters.clone(), W);

    // A hung first master: the third is called after the hedge delay.
    cluster.masters[0].sigstop();
    let started = Instant::now();
    let q = a.lock(key(2), atom("a"), LEASE).await;
    let took = started.elapsed();
    assert_eq!(q, Ok(TWO_OF_THREE), "{}", cluster.logs());
    assert!(
        took >= HEDGE && took < Duration::from_secs(1),
        "a lock with a stopped master took {took:?}"
    );
    let live = &masters[1..];
    let held: Vec<Option<Term>> = values(&mut reader, live, &key(2)).await;
    assert_eq!(held, vec![Some(atom("a")), Some(atom("a"))]);
    assert!(matches!(
        b.lock(key(2), atom("b"), LEASE).await,
        Err(LockerError::NoQuorum { .. })
    ));
    // The lock went wide, so its release does too (W answers suffice).
    a.release(key(2), atom("a")).await.expect("release");
    assert_eq!(values(&mut reader, live, &key(2)).await, vec![None, None]);
    cluster.masters[0].sigcont();
    // The stopped master gets the lock and then its release, in order: it
    // holds nothing once it runs again.
    let left = settled(&mut reader, &masters[..1], &key(2), &[None]).await;
    assert_eq!(left, vec![None], "the stopped master kept the key");

    // A dead first-stage master: the others are called at once.
    cluster.masters[1].kill9();
    let started = Instant::now();
    let q = b.lock(key(3), atom("b"), LEASE).await;
    let took = started.elapsed();
    assert_eq!(q, Ok(TWO_OF_THREE), "{}", cluster.logs());
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(matches!(
        a.lock(key(3), atom("a"), LEASE).await,
        Err(LockerError::NoQuorum { .. })
    ));
    b.release(key(3), atom("b")).await.expect("release");
    assert!(a.lock(key(3), atom("a"), LEASE).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_call_every_master() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start("fo3", 3, 0, W, None).await;
    let node = rust_node::start("c_fo3").await;
    let masters = cluster.master_names();
    let mut a = LockerClient::new(node.spawn_process(), masters.clone(), W)
        .with_one_round_lock(true)
        .with_fan_out(FanOut::WWhenBusy { hedge_after: HEDGE });
    let mut reader = LockerClient::new(node.spawn_process(), masters.clone(), W);
    a.lock(key(4), atom("a"), LEASE).await.expect("lock");
    // W answers end the call; the third master's write lands just after.
    let every = vec![Some(atom("a")); 3];
    assert_eq!(settled(&mut reader, &masters, &key(4), &every).await, every);
    a.release(key(4), atom("a")).await.expect("release");
    assert_eq!(
        settled(&mut reader, &masters, &key(4), &[None, None, None]).await,
        vec![None; 3],
        "the release went to every master"
    );
}
