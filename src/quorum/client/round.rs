//! One quorum round and one dirty read against `locker` masters: the
//! pieces both the [`LockerClient`](super::LockerClient) and the services'
//! workers (`services::rounds`) build on, so the stop rule and the reading
//! of a master's entry live in one place.

use super::LockerError;
use crate::metrics::RoundOutcome;
use crate::process::{CallError, Process, ProcessError};
use crate::term::{as_tuple, atom, is_atom, tuple, Term};
use std::time::Duration;

/// One answer per node of a round, in call order (`None`: not called, or
/// no answer before the round stopped).
pub(crate) type Answers = [Option<Result<Term, CallError>>];

/// When a round stops: the quorum it needs and which of its nodes count
/// for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StopRule<C> {
    pub w: usize,
    /// Whether the node at this position counts (a master among the
    /// replicas of a release counts, the replicas do not).
    pub counts: C,
}

impl<C: Fn(usize) -> bool> StopRule<C> {
    /// How many counted nodes said `ok`, the yes of every locker call.
    pub(crate) fn oks(&self, answers: &Answers) -> usize {
        answers
            .iter()
            .enumerate()
            .filter(|(i, r)| (self.counts)(*i) && matches!(r, Some(Ok(t)) if is_atom(t, "ok")))
            .count()
    }

    /// Whether the round can stop: W counted nodes said yes, or too few
    /// are left unanswered for W to be reached.
    fn settled(&self, answers: &Answers) -> bool {
        let open = answers
            .iter()
            .enumerate()
            .filter(|(i, r)| (self.counts)(*i) && r.is_none())
            .count();
        let ok = self.oks(answers);
        ok >= self.w || ok + open < self.w
    }
}

/// What a round got.
#[derive(Debug)]
pub(crate) struct Round {
    /// One answer per node, as [`Answers`].
    pub answers: Vec<Option<Result<Term, CallError>>>,
    /// The counted nodes' `ok`s.
    pub oks: usize,
    /// Whether every node was called, not only the first ones.
    pub widened: bool,
}

/// Sends `request` to the `locker` of every node of `nodes`, the first
/// `first` at once and the rest when those cannot settle it or after
/// `hedge_after` (see [`Process::quorum_call_staged`]), and stops once the
/// round is settled for `rule`. With `first == nodes.len()` it is a plain
/// node-monitored quorum call.
pub(crate) async fn run<C: Fn(usize) -> bool>(
    process: &mut Process,
    nodes: &[&str],
    first: usize,
    request: Term,
    timeout: Duration,
    hedge_after: Duration,
    rule: &StopRule<C>,
) -> Result<Round, ProcessError> {
    let (op, started) = (
        crate::metrics::round_op(&request),
        std::time::Instant::now(),
    );
    let staged = process
        .quorum_call_staged(
            nodes,
            first,
            "locker",
            request,
            timeout,
            hedge_after,
            |answers| rule.settled(answers),
        )
        .await;
    let outcome = match &staged {
        Ok(s) if rule.oks(&s.results) >= rule.w => RoundOutcome::Quorum,
        Ok(_) => RoundOutcome::Short,
        Err(_) => RoundOutcome::Failed,
    };
    process
        .node()
        .metrics()
        .round(op, outcome, started.elapsed());
    let staged = staged?;
    Ok(Round {
        oks: rule.oks(&staged.results),
        answers: staged.results,
        widened: staged.widened,
    })
}

/// The value of `key` on master `node`, asked of its `locker` with
/// `{dirty_read, Key}`. Only a Rust master answers that call: never send
/// it to a BEAM locker, which crashes on calls it does not know.
pub(crate) async fn dirty_read(
    process: &mut Process,
    node: &str,
    key: Term,
    timeout: Duration,
) -> Result<Option<Term>, LockerError> {
    let request = tuple(vec![atom("dirty_read"), key]);
    let reply = process.call(("locker", node), request, timeout).await?;
    read_reply(reply)
}

/// A dirty read's answer, from either kind of master: `{ok, Value}` or
/// `{error, not_found}`.
pub(crate) fn read_reply(reply: Term) -> Result<Option<Term>, LockerError> {
    match as_tuple(&reply) {
        Some([ok, value]) if is_atom(ok, "ok") => Ok(Some(value.clone())),
        Some([e, reason]) if is_atom(e, "error") && is_atom(reason, "not_found") => Ok(None),
        _ => Err(LockerError::Reply(reply)),
    }
}
