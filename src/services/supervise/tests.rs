//! The supervision component alone: host order, equal starts, a start
//! abandoned by an unregister, restart rounds that found no host.

use super::*;
use crate::term::{int, list, tuple};

fn host(node: &str) -> Pid {
    Pid::new(node, 50, 0, 1)
}

fn caller(n: u32) -> Caller {
    Caller {
        pid: Pid::new("c@h", n, 0, 1),
        tag: int(i64::from(n)),
    }
}

fn mfa(arg: i64) -> Start {
    Start::Beam(tuple(vec![atom("m"), atom("f"), list(vec![int(arg)])]))
}

#[test]
fn hosts_are_tried_first_then_on_the_preferred_node_never_on_the_avoided() {
    let mut hosts = Hosts::default();
    for node in ["a@h", "b@h", "c@h"] {
        assert!(hosts.add(host(node), HostKind::Beam));
    }
    assert!(!hosts.add(host("a@h"), HostKind::Beam), "known already");
    hosts.add(Pid::new("r@h", 1, 0, 1), HostKind::Rust);
    let prefer = Placement {
        prefer_node: Some("b@h".into()),
        ..Placement::default()
    };
    for _ in 0..3 {
        let order = hosts.order(HostKind::Beam, &prefer);
        assert_eq!(order.len(), 3);
        assert_eq!(order[0], host("b@h"));
    }
    let first = Placement {
        first: Some(host("c@h")),
        prefer_node: Some("b@h".into()),
        avoid_node: Some("a@h".into()),
    };
    let order: Vec<Pid> = hosts.order(HostKind::Beam, &first).into();
    assert_eq!(order, vec![host("c@h"), host("b@h")]);
    let rust: Vec<Pid> = hosts.order(HostKind::Rust, &Placement::default()).into();
    assert_eq!(rust, vec![Pid::new("r@h", 1, 0, 1)]);
    // An unknown `first` is skipped, and the rest rotate between calls.
    let unknown = Placement {
        first: Some(host("z@h")),
        ..Placement::default()
    };
    let a = hosts.order(HostKind::Beam, &unknown);
    let b = hosts.order(HostKind::Beam, &unknown);
    assert_eq!(a.len(), 3);
    assert_ne!(a[0], b[0], "starts spread over the hosts");
    assert!(hosts.remove(&host("a@h")));
    assert!(!hosts.remove(&host("a@h")));
}

#[test]
fn starts_are_equal_when_their_specs_are_exactly_equal() {
    assert!(same_start(&mfa(1), &mfa(1)));
    assert!(!same_start(&mfa(1), &mfa(2)));
    assert!(!same_start(&mfa(1), &Start::rust("m")));
    assert!(same_start(&Start::rust("m"), &Start::rust("m")));
}

#[test]
fn an_unregister_abandons_a_start_and_serves_what_waited_on_it() {
    let now = Instant::now();
    let mut s = Supervise::new("r@h".into(), Duration::from_secs(12));
    s.host(caller(1), host("a@h"), HostKind::Beam);
    let request = Request::start_name(atom("n"), mfa(1), Restart::Permanent);
    s.start_name(caller(2), request, None, now);
    let register = Request::RegisterName {
        name: atom("n"),
        pid: Pid::new("c@h", 9, 0, 1),
        meta: None,
    };
    assert!(s.park(caller(3), register.clone()).is_none(), "parked");
    let actions = s.take_actions();
    let id = actions
        .iter()
        .find_map(|a| match a {
            Action::ToHost(_, HostMsg::Start { id, .. }) => Some(*id),
            _ => None,
        })
        .expect("eq_start");
    s.unregister(&atom("n"));
    let actions = s.take_actions();
    assert!(actions.contains(&Action::Reply(caller(2), Reply::NoQuorum)));
    assert!(actions.contains(&Action::Serve(caller(3), register)));
    assert_eq!(s.pending_count(), 0);
    s.started(caller(4), id, Pid::new("a@h", 100, 0, 1));
    assert_eq!(s.take_actions(), vec![Action::Reply(caller(4), Reply::No)]);
}

#[test]
fn a_restart_round_without_any_host_does_not_count_against_intensity() {
    let now = Instant::now();
    let mut s = Supervise::new("r@h".into(), Duration::from_secs(12));
    s.host(caller(1), host("a@h"), HostKind::Beam);
    s.start_name(
        caller(2),
        Request::start_name(atom("n"), mfa(1), Restart::Permanent),
        None,
        now,
    );
    let child = Pid::new("a@h", 100, 0, 1);
    let id = s.next_id;
    s.started(caller(3), id, child.clone());
    s.registered(&caller(3), true, None);
    s.owner_down(&child, None);
    s.take_actions();
    s.released(&atom("n"), now);
    // Its only host is on the lost node: the round finds none, and waits.
    let actions = s.take_actions();
    assert!(
        matches!(actions.as_slice(), [Action::RetryAt { .. }]),
        "{actions:?}"
    );
    for n in 1..=20u64 {
        s.retry(&atom("n"), now + Duration::from_secs(n));
        assert!(matches!(
            s.take_actions().as_slice(),
            [Action::RetryAt { .. }]
        ));
    }
    s.host(caller(4), host("b@h"), HostKind::Beam);
    s.take_actions();
    s.retry(&atom("n"), now + Duration::from_secs(21));
    let actions = s.take_actions();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::ToHost(h, _) if *h == host("b@h"))),
        "{actions:?}"
    );
}

/// A start of `n` on host `a@h` whose keeper said `started` for `child`:
/// its registration is in flight. Returns the keeper.
fn registering(s: &mut Supervise, child: &Pid, now: Instant) -> Caller {
    s.host(caller(1), host("a@h"), HostKind::Beam);
    let request = Request::start_name(atom("n"), mfa(1), Restart::Permanent);
    s.start_name(caller(2), request, None, now);
    let keeper = caller(3);
    s.started(keeper.clone(), s.next_id, child.clone());
    let actions = s.take_actions();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Register { pid, .. } if pid == child)),
        "{actions:?}"
    );
    keeper
}

#[test]
fn a_lost_session_tells_a_registering_keeper_no_once_and_waits_for_its_child() {
    let now = Instant::now();
    let mut s = Supervise::new("r@h".into(), Duration::from_secs(12));
    let child = Pid::new("a@h", 100, 0, 1);
    let keeper = registering(&mut s, &child, now);
    s.session_lost();
    let actions = s.take_actions();
    assert!(actions.contains(&Action::Reply(keeper.clone(), Reply::No)));
    assert!(actions.contains(&Action::Reply(caller(2), Reply::NoQuorum)));
    assert!(actions.contains(&Action::MonitorChild(child.clone())));
    // The slots' own answer, when it comes, is not sent; only once.
    assert!(s.swallow_reply(&keeper));
    assert!(!s.swallow_reply(&keeper));
    // A start_name meanwhile waits for the child's end.
    let again = Request::start_name(atom("n"), mfa(1), Restart::Permanent);
    s.start_name(caller(4), again.clone(), None, now);
    assert!(s.take_actions().is_empty());
    s.child_gone(&child, false, now);
    assert_eq!(s.take_actions(), vec![Action::Serve(caller(4), again)]);
    assert_eq!(s.pending_count(), 0);
}

#[test]
fn a_child_dying_before_its_registration_ends_tells_its_keeper_no() {
    let now = Instant::now();
    let mut s = Supervise::new("r@h".into(), Duration::from_secs(12));
    let child = Pid::new("a@h", 100, 0, 1);
    let keeper = registering(&mut s, &child, now);
    s.registering_child_down(&child, Some(atom("crash")), now);
    let actions = s.take_actions();
    assert_eq!(actions[0], Action::Reply(keeper, Reply::No));
    // Its only host failed it: the caller hears why.
    assert!(
        actions.contains(&Action::Reply(caller(2), Reply::StartFailed(atom("crash")))),
        "{actions:?}"
    );
    // Cut off instead: the next attempt waits out the grace.
    let mut s = Supervise::new("r@h".into(), Duration::from_secs(12));
    let keeper = registering(&mut s, &child, now);
    s.registering_child_down(&child, None, now);
    let actions = s.take_actions();
    assert_eq!(actions[0], Action::Reply(keeper, Reply::No));
    let Action::ResumeAt { id, at } = actions[1] else {
        panic!("{actions:?}");
    };
    assert_eq!(at, now + Duration::from_secs(12));
    s.resume(id, at);
    let actions = s.take_actions();
    // Its one host was tried: the caller is told.
    assert_eq!(
        actions,
        vec![Action::Reply(caller(2), Reply::StartFailed(atom("noproc")))]
    );
}
