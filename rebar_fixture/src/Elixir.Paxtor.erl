%%% 'Elixir.Paxtor': the `Paxtor` module for Elixir code, written in Erlang so
%%% that erl_quorum stays a plain rebar3 dependency. Elixir code written
%%% against the real Paxtor library (`Paxtor.lock(key)`,
%%% `Paxtor.lock(key, block: false, no_quorum: :return)`, `Paxtor.lookup(key)`)
%%% compiles unchanged against this one; the work is done by paxtor.
-module('Elixir.Paxtor').

-export([lock/1, lock/2, lookup/1]).

-spec lock(term()) -> acquired.
lock(Key) ->
    paxtor:lock(Key).

%% Opts is a keyword list: block: boolean, no_quorum: :retry | :fail | :return.
-spec lock(term(), [paxtor:option()]) -> acquired | {held_by, pid()} | no_quorum.
lock(Key, Opts) ->
    paxtor:lock(Key, Opts).

%% The holder of the lock Key, or nil (Elixir's "nothing"); never blocks.
-spec lookup(term()) -> pid() | nil.
lookup(Key) ->
    case paxtor:whereis(Key) of
        undefined -> nil;
        Pid -> Pid
    end.
