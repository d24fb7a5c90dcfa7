%%% eq_leader_locker: the helper process that queues an eq_leader candidate
%%% for its group's lock (PROTOCOL.md, "Leader election"), so the candidate
%%% keeps serving while it waits. Ends with `{'$eq_leader_locked', self(),
%%% Token}` to the candidate.
-module(eq_leader_locker).

-export([run/2]).

%% Queues Candidate for Key until granted, then tells it and ends. Runs
%% as long as it waits: a grant whose reply nobody read would leave the
%% candidate leading without knowing.
run(Key, Candidate) ->
    Reply = try rust_quorum:call({lock, Key, Candidate, true, [fencing]})
            catch exit:{no_rust_node, _} -> no_quorum;
                  error:{unexpected_reply, _, _} -> no_quorum
            end,
    case Reply of
        {acquired, Token} when is_integer(Token) -> Candidate ! {'$eq_leader_locked', self(), Token};
        %% Refused for good (a group no serving node can hold: too deep or
        %% too large): the candidate stops with the reason.
        {error, Why} -> Candidate ! {'$eq_leader_refused', self(), Why};
        _ -> timer:sleep(50 + rand:uniform(150)), run(Key, Candidate)
    end.
