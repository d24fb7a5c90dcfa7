//! The server loop on an offline node: input priority, deadlines, idle
//! work, events, and the `sys` protocol (suspend holds everything else).
//! A current-thread runtime runs the server only when the test awaits, so
//! whatever a test sends before awaiting is all in the mailbox at once.

use super::*;
use crate::node::Node;
use crate::term::{as_tuple, atom, int, list, tuple, Term};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Records its inputs; `{batch, X}` casts are flushed to `sink` when idle.
#[derive(Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
    batch: Vec<Term>,
    sink: Option<crate::term::Pid>,
    deadline: Option<Instant>,
    terminated: Arc<Mutex<Option<Term>>>,
}

impl Recorder {
    fn note(&self, what: String) {
        self.seen.lock().unwrap().push(what);
    }
}

impl GenServer for Recorder {
    async fn handle_call(&mut self, request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        self.note(format!("call {request}"));
        CallReply::Reply(request)
    }

    async fn handle_cast(&mut self, request: Term, _p: &mut Process) -> Flow {
        self.note(format!("cast {request}"));
        match as_tuple(&request) {
            Some([kind, x]) if crate::term::is_atom(kind, "batch") => self.batch.push(x.clone()),
            Some([kind, ms]) if crate::term::is_atom(kind, "timeout_in") => {
                let ms = crate::term::as_int(ms).unwrap_or(0) as u64;
                self.deadline = Some(Instant::now() + Duration::from_millis(ms));
            }
            _ => {}
        }
        Flow::Continue
    }

    async fn handle_info(&mut self, mail: Mail, _p: &mut Process) -> Flow {
        self.note(format!("info {}", mail.into_term()));
        Flow::Continue
    }

    fn terminate(&mut self, reason: &Term) {
        *self.terminated.lock().unwrap() = Some(reason.clone());
    }

    fn state_term(&self) -> Term {
        tuple(vec![
            atom("recorder"),
            int(self.seen.lock().unwrap().len() as i64),
        ])
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    async fn handle_timeout(&mut self, _p: &mut Process) -> Flow {
        self.note("timeout".into());
        self.deadline = None;
        Flow::Continue
    }

    fn wants_idle(&self) -> bool {
        !self.batch.is_empty()
    }

    async fn handle_idle(&mut self, p: &mut Process) -> Flow {
        self.note("idle".into());
        if let Some(sink) = &self.sink {
            p.send(sink, list(std::mem::take(&mut self.batch)));
        }
        self.batch.clear();
        Flow::Continue
    }
}

impl EventServer for Recorder {
    type Event = i64;

    async fn handle_event(&mut self, event: i64, _p: &mut Process) -> Flow {
        self.note(format!("event {event}"));
        Flow::Continue
    }
}

/// Sends `{system, {Pid, Tag}, Request}` as `sys` does; returns the tag.
fn send_system(me: &Process, to: &crate::term::Pid, request: Term) -> Term {
    let tag: Term = me.node().make_ref().into();
    let from = tuple(vec![me.pid().clone().into(), tag.clone()]);
    me.send(to, tuple(vec![atom("system"), from, request]));
    tag
}

/// The reply `{Tag, Reply}` for `tag`, if one comes within a second.
async fn reply_to(me: &mut Process, tag: &Term) -> Option<Term> {
    let mail = me
        .recv_match(Some(Instant::now() + Duration::from_secs(1)), |m| {
            matches!(m, Mail::Message(Term::Tuple(t)) if t.elements.len() == 2 && t.elements[0] == *tag)
        })
        .await
        .unwrap()?;
    match mail {
        Mail::Message(Term::Tuple(mut t)) => t.elements.pop(),
        _ => None,
    }
}

fn gen_call(me: &Process, to: &crate::term::Pid, request: Term) -> Term {
    let tag: Term = me.node().make_ref().into();
    let from = tuple(vec![me.pid().clone().into(), tag.clone()]);
    me.send(to, tuple(vec![atom("$gen_call"), from, request]));
    tag
}

#[tokio::test]
async fn suspended_servers_answer_only_system_messages_and_keep_the_rest_in_order() {
    let node = Node::offline("t@h");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = Recorder {
        seen: seen.clone(),
        ..Recorder::default()
    };
    let pid = spawn_server(&node, Some("rec"), server).unwrap();
    let mut me = node.spawn_process();

    let suspend = send_system(&me, &pid, atom("suspend"));
    assert_eq!(reply_to(&mut me, &suspend).await, Some(atom("ok")));
    let call = gen_call(&me, &pid, atom("held"));
    me.cast(&pid, atom("later"));
    let state = send_system(&me, &pid, atom("get_state"));
    assert_eq!(
        reply_to(&mut me, &state).await,
        Some(tuple(vec![
            atom("ok"),
            tuple(vec![atom("recorder"), int(0)])
        ]))
    );
    let status = send_system(&me, &pid, atom("get_status"));
    let status = reply_to(&mut me, &status).await.unwrap();
    let items = crate::term::list_elements(&as_tuple(&status).unwrap()[3]).unwrap();
    assert_eq!(items[1], atom("suspended"));
    // The call waits for the resume.
    assert_eq!(
        me.recv_match(Some(Instant::now() + Duration::from_millis(50)), |m| {
            matches!(m, Mail::Message(Term::Tuple(t)) if t.elements[0] == call)
        })
        .await
        .unwrap(),
        None
    );
    assert!(seen.lock().unwrap().is_empty());

    let resume = send_system(&me, &pid, atom("resume"));
    assert_eq!(reply_to(&mut me, &resume).await, Some(atom("ok")));
    assert_eq!(reply_to(&mut me, &call).await, Some(atom("held")));
    let state = send_system(&me, &pid, atom("get_state"));
    assert_eq!(
        reply_to(&mut me, &state).await,
        Some(tuple(vec![
            atom("ok"),
            tuple(vec![atom("recorder"), int(2)])
        ]))
    );
    assert_eq!(*seen.lock().unwrap(), vec!["call 'held'", "cast 'later'"]);
}

#[tokio::test]
async fn sys_terminate_stops_the_server_with_its_reason() {
    let node = Node::offline("t@h");
    let terminated = Arc::new(Mutex::new(None));
    let server = Recorder {
        terminated: terminated.clone(),
        ..Recorder::default()
    };
    let pid = spawn_server(&node, Some("rec"), server).unwrap();
    let mut me = node.spawn_process();
    let mref = me.monitor(&pid);
    let reason = tuple(vec![atom("shutdown"), atom("x")]);
    let stop = send_system(&me, &pid, tuple(vec![atom("terminate"), reason.clone()]));
    assert_eq!(reply_to(&mut me, &stop).await, Some(atom("ok")));
    match me.recv().await.unwrap() {
        Mail::Down {
            reference,
            reason: r,
            ..
        } => assert_eq!((reference, r), (mref, reason.clone())),
        other => panic!("{other:?}"),
    }
    assert_eq!(*terminated.lock().unwrap(), Some(reason));
    assert_eq!(node.whereis("rec"), None);
}

#[tokio::test]
async fn idle_work_runs_once_the_mailbox_is_empty() {
    let node = Node::offline("t@h");
    let mut me = node.spawn_process();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = Recorder {
        seen: seen.clone(),
        sink: Some(me.pid().clone()),
        ..Recorder::default()
    };
    let pid = spawn_server(&node, None, server).unwrap();
    for i in 1..=3 {
        me.cast(&pid, tuple(vec![atom("batch"), int(i)]));
    }
    let flushed = me.recv().await.unwrap();
    assert_eq!(flushed, Mail::Message(list(vec![int(1), int(2), int(3)])));
    me.cast(&pid, tuple(vec![atom("batch"), int(4)]));
    let flushed = me.recv().await.unwrap();
    assert_eq!(flushed, Mail::Message(list(vec![int(4)])));
    // Nothing batched: no idle calls in between (the loop does not spin).
    let idles = seen.lock().unwrap().iter().filter(|s| *s == "idle").count();
    assert_eq!(idles, 2);
}

#[tokio::test]
async fn the_deadline_fires_after_waiting_mail_and_is_read_after_every_input() {
    let node = Node::offline("t@h");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = Recorder {
        seen: seen.clone(),
        deadline: Some(Instant::now()),
        ..Recorder::default()
    };
    let pid = spawn_server(&node, None, server).unwrap();
    let mut me = node.spawn_process();
    // Already due, but mail sent before the server first runs comes first.
    me.cast(&pid, atom("first"));
    me.cast(&pid, tuple(vec![atom("timeout_in"), int(30)]));
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["cast 'first'", "cast {'timeout_in',30}"]
    );
    let call = gen_call(&me, &pid, atom("sync"));
    assert!(reply_to(&mut me, &call).await.is_some());
    while !seen.lock().unwrap().contains(&"timeout".to_string()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(seen.lock().unwrap().last().unwrap(), "timeout");
}

#[tokio::test]
async fn events_rank_after_mail_and_a_closed_channel_leaves_mail() {
    let node = Node::offline("t@h");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = Recorder {
        seen: seen.clone(),
        ..Recorder::default()
    };
    let process = node.spawn_process();
    process.register("ev").unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    let pid = start_event_server(process, server, rx);
    let mut me = node.spawn_process();
    me.cast("ev", atom("a"));
    me.send(&pid, atom("b"));
    let call = gen_call(&me, &pid, atom("c"));
    assert_eq!(reply_to(&mut me, &call).await, Some(atom("c")));
    drop(tx);
    let call = gen_call(&me, &pid, atom("d"));
    assert_eq!(reply_to(&mut me, &call).await, Some(atom("d")));
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["cast 'a'", "info 'b'", "call 'c'", "event 1", "event 2", "call 'd'"]
    );
}

#[test]
fn unencodable_replies_become_error_replies() {
    use super::gen_server::unencodable_reply;
    use crate::dist::etf::{peek, TermError};
    let deep = (0..peek::MAX_DEPTH + 1).fold(atom("x"), |t, _| tuple(vec![t]));
    let e = peek::check_encodable(&deep).unwrap_err();
    let reply = unencodable_reply(&e);
    assert_eq!(
        reply,
        tuple(vec![
            atom("error"),
            tuple(vec![
                atom("reply_unencodable"),
                tuple(vec![atom("too_deep"), int(peek::MAX_DEPTH as i64)]),
            ]),
        ])
    );
    assert!(peek::check_encodable(&reply).is_ok());
    let other = unencodable_reply(&TermError::Unencodable("float is NaN or infinite".into()));
    assert!(matches!(
        crate::term::as_tuple(&other),
        Some([_, t]) if matches!(crate::term::as_tuple(t), Some([_, Term::Binary(_)]))
    ));
}
