%%% 'Elixir.Paxtor.Spawn': Paxtor's via module for temporary singletons:
%%% started on first use, restarted only by the next use
%%% (`{:via, Paxtor.Spawn, {key, child_spec}}`, as `Paxtor.name/3` builds it).
%%% The work is paxtor_singleton's, with restart temporary.
-module('Elixir.Paxtor.Spawn').

-export([via/2, lookup/1, 'alive?'/1,
         register_name/2, unregister_name/1, whereis_name/1, send/2]).

-define(RESTART, temporary).

-spec via(term(), term()) -> {via, 'Elixir.Paxtor.Spawn', {term(), term()}}.
via(Key, ChildSpec) ->
    {via, ?MODULE, {Key, ChildSpec}}.

%% The running process of Key, or nil; never starts it.
-spec lookup(term()) -> pid() | nil.
lookup(Key) ->
    nil_for_undefined(paxtor_singleton:lookup(Key)).

-spec 'alive?'(term()) -> boolean().
'alive?'(Key) ->
    is_pid(paxtor_singleton:lookup(Key)).

%% Via callbacks. A process cannot register itself under a singleton's name
%% (gen's start then answers {error, {already_started, Pid}}, starting the
%% singleton): the name belongs to the instance Paxtor starts.
-spec register_name({term(), term()}, pid()) -> no.
register_name(_Name, _Pid) ->
    no.

-spec unregister_name({term(), term()}) -> ok.
unregister_name(_Name) ->
    ok.

%% The pid, started on first use; undefined (never nil: gen and GenServer
%% expect the atom) when it cannot be started.
%% The running instance is read straight from the local table (gen calls
%% this on every call and cast through the via tuple: no layers on that
%% path); only a miss goes on to start it.
-spec whereis_name({term(), term()}) -> pid() | undefined.
whereis_name({Key, _ChildSpec} = Name) ->
    case rust_registry:whereis_name({'$eq_scope', paxtor, Key}) of
        undefined -> paxtor_singleton:whereis_name(?RESTART, Name);
        Pid -> Pid
    end;
whereis_name(Name) ->
    paxtor_singleton:whereis_name(?RESTART, Name).

-spec send({term(), term()}, term()) -> pid().
send(Name, Msg) ->
    paxtor_singleton:send(?RESTART, Name, Msg).

nil_for_undefined(undefined) -> nil;
nil_for_undefined(Pid) -> Pid.
