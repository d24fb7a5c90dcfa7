//! The transaction log: what is logged, in which order, and its replay.

use super::tests::*;
use super::*;
use eetf::{ByteList, ImproperList};

#[test]
fn log_keeps_order_and_original_terms() {
    let mut s = fresh();
    let string_key = Term::from(ByteList::from("key"));
    let _ = s.call(0, &write(tag(1), string_key.clone(), int(1), 1000));
    let _ = s.call(0, &gwl(string_key.clone(), int(1), tag(2)));
    let _ = s.call(0, &update(tag(2), string_key.clone(), int(2)));
    let _ = s.call(0, &extend(tag(1), string_key.clone(), int(2), 2000));
    let _ = s.call(0, &release(string_key.clone(), int(1), tag(1))); // not_owner: not logged
    let _ = s.call(0, &gwl(atom("x"), atom("not_found"), tag(2))); // not logged
    let _ = s.call(0, &release(string_key.clone(), int(2), tag(1)));
    let _ = s
        .cast(
            0,
            &trans_log(vec![t("write", vec![atom("r"), ok(), int(5)])]),
        )
        .unwrap(); // replays are not
    assert_eq!(
        s.take_log(),
        vec![
            t("write", vec![string_key.clone(), int(1), int(1000)]),
            t("update", vec![string_key.clone(), int(2)]),
            t("extend_lease", vec![string_key.clone(), int(2), int(2000)]),
            t("release", vec![string_key]),
        ]
    );
    assert_eq!(s.stats(0).pending_log, 0);
}

#[test]
fn master_log_replays_into_a_replica() {
    let mut master = fresh();
    let mut replica = fresh();
    let _ = master.call(0, &write(tag(1), atom("a"), int(1), 1000));
    let _ = master.call(0, &write(tag(1), atom("b"), int(1), 1000));
    let _ = master.call(0, &gwl(atom("a"), int(1), tag(2)));
    let _ = master.call(0, &update(tag(2), atom("a"), int(2)));
    let _ = master.call(0, &extend(tag(1), atom("b"), int(1), 3000));
    let _ = master.call(0, &release(atom("a"), int(2), tag(1)));
    let _ = master.call(0, &write(tag(1), atom("c"), int(3), 500));
    let ops = master.take_log();
    let result = replica.cast(10, &trans_log(ops)).unwrap();
    check(&replica);
    assert_eq!(result, CastResult::default());
    assert_eq!(replica.dirty_read(10, &atom("a")), None);
    assert_eq!(replica.dirty_read(3009, &atom("b")), Some(int(1)));
    assert_eq!(replica.dirty_read(3010, &atom("b")), None);
    assert_eq!(replica.dirty_read(509, &atom("c")), Some(int(3)));
    assert!(replica.take_log().is_empty());
    assert_eq!(replica.stats(10).replayed_ops, 6);
    // Update keeps the replica's expiry; release and update of absent keys do nothing.
    let ops = vec![
        t("update", vec![atom("c"), int(4)]),
        t("update", vec![atom("zz"), int(4)]),
        t("release", vec![atom("zz")]),
    ];
    let _ = replica.cast(20, &trans_log(ops)).unwrap();
    assert_eq!(replica.dirty_read(509, &atom("c")), Some(int(4)));
    assert_eq!(replica.dirty_read(510, &atom("c")), None);
    assert_eq!(replica.stats(20).entries, 2);
}

#[test]
fn trans_log_skips_malformed_ops() {
    let mut s = fresh();
    let ops = vec![
        t("write", vec![atom("a"), int(1), int(100)]),
        t("write", vec![atom("b"), int(1)]),
        atom("write"),
        t("write", vec![atom("c"), int(1), int(-5)]),
        t("delete", vec![atom("a")]),
        t("release", vec![atom("a")]),
        t("write", vec![atom("d"), int(1), int(100)]),
    ];
    let result = s.cast(0, &trans_log(ops.clone())).unwrap();
    let skipped: Vec<usize> = result.skipped.iter().map(|o| o.index).collect();
    assert_eq!(skipped, vec![1, 2, 3, 4]);
    assert_eq!(result.skipped[0].op, ops[1]);
    assert_eq!(s.dirty_read(0, &atom("a")), None);
    assert_eq!(s.dirty_read(0, &atom("d")), Some(int(1)));
    assert_eq!(s.stats(0).skipped_ops, 4);
    // A string as the op list: every element skipped.
    let bytes = t(
        "trans_log",
        vec![atom("m@h"), Term::from(ByteList::from("ab"))],
    );
    assert_eq!(s.cast(0, &bytes).unwrap().skipped.len(), 2);
    let empty = t("trans_log", vec![atom("m@h"), list(vec![])]);
    assert_eq!(s.cast(0, &empty), Ok(CastResult::default()));
}

#[test]
fn bad_casts_are_errors_and_change_nothing() {
    let mut s = fresh();
    let improper = Term::from(ImproperList::from((
        vec![t("release", vec![atom("a")])],
        atom("x"),
    )));
    for (cast, malformed) in [
        (t("trans_log", vec![atom("m@h"), improper]), true),
        (t("trans_log", vec![atom("m@h")]), true),
        (t("trans_log", vec![atom("m@h"), atom("ops")]), true),
        (
            t("trans_log", vec![atom("m@h"), list(vec![]), int(1)]),
            true,
        ),
        (atom("trans_log"), false),
        (t("something", vec![]), false),
        (list(vec![]), false),
    ] {
        let err = s.cast(0, &cast).unwrap_err();
        match err {
            StoreError::MalformedTransLog(m) => assert!(malformed && m == cast),
            StoreError::UnknownCast(m) => assert!(!malformed && m == cast),
            StoreError::NotFromMaster(n) => panic!("{n}: m@h is a master"),
        }
    }
    assert_eq!(s.stats(0).bad_casts, 7);
}

#[test]
fn only_another_masters_log_is_replayed() {
    let mut s = fresh();
    let op = || list(vec![t("write", vec![atom("k"), atom("forged"), int(5000)])]);
    for from in [atom(NODE), atom("stranger@h"), atom("r@h"), int(1)] {
        let cast = t("trans_log", vec![from.clone(), op()]);
        assert!(
            matches!(s.cast(0, &cast), Err(StoreError::NotFromMaster(_))),
            "{from} was accepted"
        );
        assert_eq!(s.dirty_read(0, &atom("k")), None, "{from}");
    }
    let _ = s.cast(0, &t("trans_log", vec![atom("m@h"), op()])).unwrap();
    assert_eq!(s.dirty_read(0, &atom("k")), Some(atom("forged")));
}
