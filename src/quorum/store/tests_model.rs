//! The store against a naive model of locker's master: plain vectors, lazy
//! expiry, no indexes. Random well-formed call sequences must give the same
//! replies, the same reads and the same log.

use super::tests::{check, config, fresh, tag};
use super::*;
use crate::term::as_int;
use eetf::ByteList;

struct Model {
    /// (key, value, value's canonical form, expires at)
    entries: Vec<(Canon, Term, Canon, u64)>,
    /// (key, tag, deadline)
    promises: Vec<(Canon, Canon, u64)>,
    log: Vec<Term>,
}

fn c(t: &Term) -> Canon {
    Canon::of(t).unwrap()
}

fn fields(req: &Term) -> (&str, &[Term]) {
    let e = as_tuple(req).unwrap();
    (crate::term::as_atom(&e[0]).unwrap(), &e[1..])
}

impl Model {
    fn live(&self, now: u64, key: &Canon) -> Option<usize> {
        self.entries.iter().position(|e| &e.0 == key && e.3 > now)
    }

    fn drop_tag(&mut self, t: &Term) {
        let t = c(t);
        self.promises.retain(|p| p.1 != t);
    }

    fn put(&mut self, now: u64, key: &Term, value: &Term, lease: &Term, name: &str) {
        let ms = u64::try_from(as_int(lease).unwrap()).unwrap();
        self.entries.retain(|e| e.0 != c(key));
        self.entries
            .push((c(key), value.clone(), c(value), now + ms));
        let op = vec![atom(name), key.clone(), value.clone(), int(ms as i64)];
        self.log.push(tuple(op));
    }

    /// The store's rule for writes without a live promise of their own.
    fn allowed(&self, now: u64, key: &Term, tag: &Term, value: Option<&Term>) -> bool {
        let key = c(key);
        if let Some(p) = self.promises.iter().find(|p| p.0 == key && p.2 > now) {
            return p.1 == c(tag);
        }
        match (self.live(now, &key), value) {
            (None, _) => true,
            (Some(i), Some(v)) => self.entries[i].2 == c(v),
            (Some(_), None) => false,
        }
    }

    fn call(&mut self, now: u64, req: &Term) -> Term {
        let ok = atom("ok");
        let error = |r: &str| tuple(vec![atom("error"), atom(r)]);
        match fields(req) {
            ("get_write_lock", [k, e, t]) => {
                let key = c(k);
                if self.promises.iter().any(|p| p.0 == key && p.2 > now) {
                    return error("already_locked");
                }
                let matches = match self.live(now, &key) {
                    Some(i) => self.entries[i].2 == c(e),
                    None => crate::term::is_atom(e, "not_found"),
                };
                if !matches {
                    return error("not_expected_value");
                }
                self.promises.retain(|p| p.0 != key);
                self.promises.push((key, c(t), now + config().promise_ms));
                ok
            }
            ("release_write_lock", [t]) => {
                self.drop_tag(t);
                ok
            }
            ("write", [t, k, v, l]) | ("extend_lease", [t, k, v, l]) => {
                if as_int(l).unwrap() as u64 > config().max_lease_ms {
                    self.drop_tag(t);
                    return error("lease_too_long");
                }
                let allowed = self.allowed(now, k, t, Some(v));
                self.drop_tag(t);
                if !allowed {
                    return error("no_promise");
                }
                self.put(now, k, v, l, fields(req).0);
                ok
            }
            ("update", [t, k, v]) => {
                let allowed = self.allowed(now, k, t, None);
                self.drop_tag(t);
                if !allowed {
                    return error("no_promise");
                }
                if let Some(i) = self.live(now, &c(k)) {
                    self.entries[i].1 = v.clone();
                    self.entries[i].2 = c(v);
                }
                self.log
                    .push(tuple(vec![atom("update"), k.clone(), v.clone()]));
                ok
            }
            ("release", [k, v, t]) => {
                self.drop_tag(t);
                match self.live(now, &c(k)) {
                    Some(i) if self.entries[i].2 == c(v) => {
                        self.entries.remove(i);
                        self.log.push(tuple(vec![atom("release"), k.clone()]));
                        ok
                    }
                    Some(_) => error("not_owner"),
                    None => error("not_found"),
                }
            }
            other => panic!("not modelled: {other:?}"),
        }
    }

    fn read(&self, now: u64, key: &Term) -> Option<Term> {
        self.live(now, &c(key)).map(|i| self.entries[i].1.clone())
    }
}

#[test]
fn store_matches_a_naive_model() {
    let keys = [
        atom("a"),
        atom("b"),
        Term::from(ByteList::from("k")),
        list(vec![int(107)]),
    ];
    let values = [atom("x"), atom("y"), atom("not_found")];
    let mut seed = 0x0123_4567_89AB_CDEFu64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut s = fresh();
    let mut m = Model {
        entries: Vec::new(),
        promises: Vec::new(),
        log: Vec::new(),
    };
    let mut now = 0;
    let (mut oks, mut errors) = (0, 0);
    for _ in 0..20_000 {
        now += next(700);
        let k = keys[next(4) as usize].clone();
        let v = values[next(3) as usize].clone();
        let t = tag(next(3) as u32);
        let lease = int(*[0, 500, 2000, 9000, 70_000].get(next(5) as usize).unwrap());
        let req = match next(7) {
            0 | 1 => {
                let expected = if next(2) == 0 { atom("not_found") } else { v };
                tuple(vec![atom("get_write_lock"), k.clone(), expected, t])
            }
            2 => tuple(vec![atom("release_write_lock"), t]),
            3 => tuple(vec![atom("write"), t, k.clone(), v, lease]),
            4 => tuple(vec![atom("update"), t, k.clone(), v]),
            5 => tuple(vec![atom("extend_lease"), t, k.clone(), v, lease]),
            _ => tuple(vec![atom("release"), k.clone(), v, t]),
        };
        if next(10) == 0 {
            let _ = s.sweep(now);
        }
        let expected = m.call(now, &req);
        let got = match s.call(now, &req).outcome {
            CallOutcome::Reply(r) => r,
            CallOutcome::Wait(id) => panic!("{req} parked as {id:?}"),
        };
        assert_eq!(got, expected, "{req} at {now}");
        if got == atom("ok") {
            oks += 1;
        } else {
            errors += 1;
        }
        for key in &keys {
            assert_eq!(s.dirty_read(now, key), m.read(now, key), "{key} at {now}");
        }
        assert_eq!(s.take_log(), std::mem::take(&mut m.log));
        check(&s);
    }
    assert!(oks > 5000 && errors > 2000, "{oks} ok, {errors} errors");
}
