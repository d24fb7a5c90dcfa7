%%% 'Elixir.Paxtor.Lock': the via module behind `{:via, Paxtor.Lock, key}` for
%%% Elixir code; the same as paxtor_lock. whereis_name/1 keeps returning the
%%% atom undefined, not nil: that is what gen and GenServer expect of a via
%%% module.
-module('Elixir.Paxtor.Lock').

-export([register_name/2, unregister_name/1, whereis_name/1, send/2]).

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
