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
        acquired -> Candidate ! {'$eq_leader_locked', self(), undefined};
        {error, {unknown_request, _}} -> locker_plain(Key, Candidate);
        {error, {badarg, _}} -> locker_plain(Key, Candidate);
        _ -> timer:sleep(50 + rand:uniform(150)), run(Key, Candidate)
    end.

%% Serving nodes without fencing tokens: the plain lock.
locker_plain(Key, Candidate) ->
    Reply = try rust_quorum:call({lock, Key, Candidate, true})
            catch exit:{no_rust_node, _} -> no_quorum
            end,
    case Reply of
        acquired -> Candidate ! {'$eq_leader_locked', self(), undefined};
        _ -> timer:sleep(50 + rand:uniform(150)), locker_plain(Key, Candidate)
    end.
