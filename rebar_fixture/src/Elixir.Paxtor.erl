%%% 'Elixir.Paxtor': the `Paxtor` module for Elixir code, written in Erlang so
%%% that erl_quorum stays a plain rebar3 dependency. Elixir code written
%%% against the real Paxtor library (`Paxtor.lock(key)`,
%%% `Paxtor.lock(key, block: false, no_quorum: :return)`,
%%% `Paxtor.name(key, child_spec, restart: :permanent)`, `Paxtor.whereis/1`,
%%% `Paxtor.lookup/1`, `Paxtor.alive?/1`) compiles unchanged against this
%%% one; the work is done by paxtor. "Nothing" is nil here, undefined there.
-module('Elixir.Paxtor').

-export([lock/1, lock/2, name/2, name/3, via/2, lookup/1, 'alive?'/1, whereis/1]).
-compile({no_auto_import, [whereis/1]}).

-spec lock(term()) -> acquired.
lock(Key) ->
    paxtor:lock(Key).

%% Opts is a keyword list: block: boolean, no_quorum: :retry | :fail | :return,
%% fencing: boolean (true: {:acquired, token} instead of :acquired; see paxtor).
-spec lock(term(), [paxtor:option()]) ->
          acquired | {acquired, paxtor:token()} | {held_by, pid()} | no_quorum.
lock(Key, Opts) ->
    paxtor:lock(Key, Opts).

%% A via tuple for a cluster-wide singleton; see paxtor:name/3.
-spec name(term(), term()) -> paxtor:via().
name(Key, ChildSpec) ->
    paxtor:name(Key, ChildSpec).

%% `Paxtor.via(key, child_spec)`, as the real library's README writes it
%% (its code calls it name/2): the same as name/2.
-spec via(term(), term()) -> paxtor:via().
via(Key, ChildSpec) ->
    paxtor:name(Key, ChildSpec).

%% Opts: restart: :temporary (default) | :permanent | :lock.
-spec name(term(), term(), [paxtor:name_option()]) -> paxtor:via().
name(Key, ChildSpec, Opts) ->
    paxtor:name(Key, ChildSpec, Opts).

%% The pid behind a via tuple of name/2,3, or nil; never starts anything,
%% never blocks on a lock. A bare key is a lock key (the holder of that
%% lock), as before singletons existed.
-spec lookup(term()) -> pid() | nil.
lookup(Via) ->
    nil_for_undefined(paxtor:lookup_via(Via)).

-spec 'alive?'(term()) -> boolean().
'alive?'(Via) ->
    is_pid(paxtor:lookup_via(Via)).

%% A pid, a via tuple of any module (a singleton is started if needed), a
%% locally registered name or {name, node} resolved to the pid (or port), or
%% nil. Raises when a singleton cannot be started. As in the real library,
%% {:global, name} is not supported: use {:via, :global, name}.
-spec whereis(term()) -> pid() | port() | nil.
whereis(Pid) when is_pid(Pid) ->
    Pid;
whereis(Name) when is_atom(Name) ->
    nil_for_undefined(erlang:whereis(Name));
whereis({via, _, _} = Via) ->
    {ok, Found} = paxtor:resolve(Via),
    nil_for_undefined(Found);
whereis({Name, Node}) when Node =:= node() ->
    whereis(Name);
whereis({Name, Node}) when is_atom(Node) ->
    erpc:call(Node, ?MODULE, whereis, [Name]).

nil_for_undefined(undefined) -> nil;
nil_for_undefined(Other) -> Other.
