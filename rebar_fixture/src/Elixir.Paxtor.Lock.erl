%%% 'Elixir.Paxtor.Lock': the via module behind `{:via, Paxtor.Lock, key}` for
%%% Elixir code (the same as paxtor_lock), plus the real library's via/1 and
%%% lock/2. whereis_name/1 returns the atom undefined when nobody holds the
%%% lock: that is what gen and GenServer expect of a via module (the real
%%% library returns :unknown, which they would take for a process name).
-module('Elixir.Paxtor.Lock').

-export([via/1, lock/2]).
-export([register_name/2, unregister_name/1, whereis_name/1, send/2]).

%% `{:via, Paxtor.Lock, key}`: a name for the holder of the lock Key.
-spec via(term()) -> {via, 'Elixir.Paxtor.Lock', term()}.
via(Key) ->
    {via, ?MODULE, Key}.

%% As Paxtor.lock/2.
-spec lock(term(), [paxtor:option()]) ->
          acquired | {acquired, paxtor:token()} | {held_by, pid()} | no_quorum.
lock(Key, Opts) ->
    paxtor:lock(Key, Opts).

-spec register_name(term(), pid()) -> yes | no.
register_name(Key, Pid) ->
    paxtor_lock:register_name(Key, Pid).

%% Cannot release the lock: only its owner's exit does (see paxtor_lock).
-spec unregister_name(term()) -> ok.
unregister_name(Key) ->
    paxtor_lock:unregister_name(Key).

-spec whereis_name(term()) -> pid() | undefined.
whereis_name(Key) ->
    paxtor_lock:whereis_name(Key).

-spec send(term(), term()) -> pid().
send(Key, Msg) ->
    paxtor_lock:send(Key, Msg).
