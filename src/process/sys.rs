//! The `sys` protocol of the Rust gen_server: the `{system, From, Request}`
//! messages that OTP's `sys` module and `gen_server:stop` send, answered
//! as a BEAM gen_server answers them (OTP's `sys:handle_system_msg` and
//! `gen_server:format_status`), so the same shell tools work on both.
//!
//! Pure: [`answer`] returns the reply and what the loop does next; the loop
//! sends the reply.

use crate::term::{as_tuple, atom, is_atom, list, string, tuple, Pid, Term};

/// What the server loop does once the reply is sent.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SysAction {
    Continue,
    /// `sys:suspend/1`: only system messages are handled until a resume.
    Suspend,
    Resume,
    /// `sys:terminate/2,3` and `gen_server:stop/1,3`.
    Stop(Term),
}

/// What `sys:get_status/1` reports besides the state.
#[derive(Debug, Clone, Copy)]
pub(super) struct StatusView<'a> {
    pub pid: &'a Pid,
    /// The registered name, if any (the status header names it).
    pub name: Option<&'a str>,
    pub suspended: bool,
}

/// The reply to system request `request` and the loop's next step.
/// `state` is called only for the requests that report the state.
pub(super) fn answer(
    request: &Term,
    view: StatusView<'_>,
    state: impl FnOnce() -> Term,
) -> (Term, SysAction) {
    let ok = || atom("ok");
    if is_atom(request, "suspend") {
        return (ok(), SysAction::Suspend);
    }
    if is_atom(request, "resume") {
        return (ok(), SysAction::Resume);
    }
    // OTP 26.1 changed this reply from `State` to `{ok, State}` (a state
    // `{error, _}` was taken for an error), and sys:get_state/1 on 26.1+
    // takes nothing else. The caller's release is not known here, so the
    // newer form: 26.1+ shows the state, older releases `{ok, State}`.
    if is_atom(request, "get_state") {
        return (tuple(vec![ok(), state()]), SysAction::Continue);
    }
    if is_atom(request, "get_status") {
        return (status(view, state()), SysAction::Continue);
    }
    let reply = match as_tuple(request) {
        Some([kind, reason]) if is_atom(kind, "terminate") => {
            return (ok(), SysAction::Stop(reason.clone()))
        }
        // The state is Rust data: an Erlang fun cannot run on it. OTP's
        // reply for a failed callback, so sys:replace_state raises it.
        Some([kind, _fun]) if is_atom(kind, "replace_state") => error(tuple(vec![
            atom("callback_failed"),
            tuple(vec![atom("gen_server"), atom("system_replace_state")]),
            error(atom("not_supported")),
        ])),
        // OTP answers change_code only while suspended; no code to change here.
        Some([kind, _, _, _]) if is_atom(kind, "change_code") && view.suspended => {
            error(atom("not_supported"))
        }
        // No debug options are kept, so there is nothing to turn off.
        Some([kind, what]) if is_atom(kind, "debug") && is_atom(what, "no_debug") => ok(),
        Some([kind, _]) if is_atom(kind, "debug") => error(atom("not_supported")),
        _ => error(tuple(vec![atom("unknown_system_msg"), request.clone()])),
    };
    (reply, SysAction::Continue)
}

fn error(reason: Term) -> Term {
    tuple(vec![atom("error"), reason])
}

/// `{status, Pid, {module, gen_server}, [PDict, SysState, Parent, Debug,
/// Misc]}` with `Misc` formatted as `gen_server:format_status/2` does.
/// The process dictionary and the debug options are empty; a Rust server
/// has no parent, so it is its own, as for `gen_server:start/3`.
fn status(view: StatusView<'_>, state: Term) -> Term {
    let pid = Term::from(view.pid.clone());
    let sys_state = atom(if view.suspended {
        "suspended"
    } else {
        "running"
    });
    let tag_line = "Status for generic server";
    // gen:format_status_header/2: a string for a name, else {TagLine, Pid}.
    let header = match view.name {
        Some(name) => string(&format!("{tag_line} {name}")),
        None => tuple(vec![string(tag_line), pid.clone()]),
    };
    let field = |label: &str, value: Term| tuple(vec![string(label), value]);
    let misc = list(vec![
        tuple(vec![atom("header"), header]),
        tuple(vec![
            atom("data"),
            list(vec![
                field("Status", sys_state.clone()),
                field("Parent", pid.clone()),
                field("Logged events", list(vec![])),
            ]),
        ]),
        tuple(vec![atom("data"), list(vec![field("State", state)])]),
    ]);
    tuple(vec![
        atom("status"),
        pid.clone(),
        tuple(vec![atom("module"), atom("gen_server")]),
        list(vec![list(vec![]), sys_state, pid, list(vec![]), misc]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{int, list_elements};

    fn view(suspended: bool) -> StatusView<'static> {
        static PID: std::sync::OnceLock<Pid> = std::sync::OnceLock::new();
        StatusView {
            pid: PID.get_or_init(|| Pid::new("r@h", 7, 0, 1)),
            name: Some("locker"),
            suspended,
        }
    }

    fn ask(request: Term, suspended: bool) -> (Term, SysAction) {
        answer(&request, view(suspended), || int(42))
    }

    #[test]
    fn suspend_resume_and_state() {
        assert_eq!(
            ask(atom("suspend"), false),
            (atom("ok"), SysAction::Suspend)
        );
        assert_eq!(ask(atom("resume"), true), (atom("ok"), SysAction::Resume));
        assert_eq!(
            ask(atom("get_state"), true),
            (tuple(vec![atom("ok"), int(42)]), SysAction::Continue)
        );
        let reason = tuple(vec![atom("shutdown"), atom("x")]);
        assert_eq!(
            ask(tuple(vec![atom("terminate"), reason.clone()]), false),
            (atom("ok"), SysAction::Stop(reason))
        );
    }

    #[test]
    fn status_has_the_shape_gen_server_gives() {
        let (reply, action) = ask(atom("get_status"), true);
        assert_eq!(action, SysAction::Continue);
        let [tag, pid, module, items] = as_tuple(&reply).unwrap() else {
            panic!("{reply}")
        };
        assert!(is_atom(tag, "status"));
        assert_eq!(*pid, Term::from(view(true).pid.clone()));
        assert_eq!(*module, tuple(vec![atom("module"), atom("gen_server")]));
        let items = list_elements(items).unwrap();
        assert_eq!(items.len(), 5);
        assert!(is_atom(&items[1], "suspended"));
        assert_eq!(items[2], *pid);
        let misc = list_elements(&items[4]).unwrap();
        assert_eq!(
            misc[0],
            tuple(vec![
                atom("header"),
                string("Status for generic server locker")
            ])
        );
        assert_eq!(
            misc[2],
            tuple(vec![
                atom("data"),
                list(vec![tuple(vec![string("State"), int(42)])])
            ])
        );
    }

    #[test]
    fn what_cannot_be_done_is_an_error_reply() {
        let is_error = |t: &Term| matches!(as_tuple(t), Some([e, _]) if is_atom(e, "error"));
        let fun = atom("a_fun_stand_in");
        for (request, suspended) in [
            (tuple(vec![atom("replace_state"), fun]), false),
            (
                tuple(vec![atom("change_code"), atom("m"), atom("v"), atom("e")]),
                true,
            ),
            (
                tuple(vec![atom("change_code"), atom("m"), atom("v"), atom("e")]),
                false,
            ),
            (
                tuple(vec![atom("debug"), tuple(vec![atom("log"), atom("true")])]),
                false,
            ),
            (atom("whatever"), false),
        ] {
            let (reply, action) = ask(request.clone(), suspended);
            assert!(is_error(&reply), "{request} -> {reply}");
            assert_eq!(action, SysAction::Continue);
        }
        assert_eq!(
            ask(tuple(vec![atom("debug"), atom("no_debug")]), false).0,
            atom("ok")
        );
    }
}
