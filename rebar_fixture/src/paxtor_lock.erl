%%% paxtor_lock: the via module that names a process by the Paxtor lock it
%%% holds: `{via, paxtor_lock, Key}` resolves to the holder of Key.
%%%
%%% Starting a gen_server (gen_statem, ...) under `{via, paxtor_lock, Key}`
%%% takes the lock for the new process without blocking: the start returns
%%% `{error, {already_started, Holder}}` when another process holds it.
%%%
%%% unregister_name/1 cannot release the lock: a Paxtor lock is released only
%%% by its owner's exit. gen calls it when init/1 fails, just before the
%%% process exits, so the lock goes away then anyway.
-module(paxtor_lock).

-export([register_name/2, unregister_name/1, whereis_name/1, send/2]).

%% yes when Pid (which must be the caller: a lock belongs to the process that
%% takes it) now holds Key; no otherwise, also when no quorum is reachable
%% (blocking a start, and the supervisor above it, for a quorum is worse).
-spec register_name(term(), pid()) -> yes | no.
register_name(Key, Pid) when Pid =:= self() ->
    case paxtor:lock(Key, [{block, false}, {no_quorum, return}]) of
        acquired -> yes;
        _ -> no
    end;
register_name(_Key, _Pid) ->
    no.

%% Returns ok and changes nothing: see the module comment.
-spec unregister_name(term()) -> ok.
unregister_name(_Key) ->
    ok.

%% A round trip to a Rust node: lock holders are not cached locally.
-spec whereis_name(term()) -> pid() | undefined.
whereis_name(Key) ->
    case rust_quorum:call({whereis_lock, Key}) of
        Pid when is_pid(Pid) -> Pid;
        undefined -> undefined;
        Other -> erlang:error({unexpected_reply, {whereis_lock, Key}, Other})
    end.

-spec send(term(), term()) -> pid().
send(Key, Msg) ->
    case whereis_name(Key) of
        undefined ->
            exit({badarg, {Key, Msg}});
        Pid ->
            Pid ! Msg,
            Pid
    end.
