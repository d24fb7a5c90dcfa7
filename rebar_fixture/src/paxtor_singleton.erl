%%% paxtor_singleton: what Paxtor's two singleton via modules,
%%% 'Elixir.Paxtor.Spawn' (restart temporary) and 'Elixir.Paxtor.StartChild'
%%% (restart permanent), have in common. Their names are `{Key, ChildSpec}`;
%%% the process is the registry name `{'$eq_scope', paxtor, Key}`, started
%%% from ChildSpec by a serving Rust node on first use (eq_singleton).
%%%
%%% Key, not the spec, names the singleton: a via tuple with another spec for
%%% a key already running resolves to the running process, as in the real
%%% Paxtor (where the key is the child's id on its supervisor).
-module(paxtor_singleton).

-export([name/1, ensure/2, whereis_name/2, send/3, lookup/1]).

-spec name(term()) -> {'$eq_scope', paxtor, term()}.
name(Key) ->
    eq_singleton:scoped(paxtor, Key).

%% {ok, Pid}, starting it if needed, or {error, Reason}: {start_failed, R},
%% no_host, no_quorum or {badarg, ChildSpec}.
-spec ensure(eq_singleton:restart(), {term(), term()}) ->
          {ok, pid()} | {error, eq_singleton:start_error()}.
ensure(Restart, {Key, ChildSpec}) ->
    case eq_singleton:ensure(name(Key), ChildSpec, Restart) of
        {ok, Pid} -> {ok, Pid};
        {error, {conflict, Pid}} -> {ok, Pid};
        {error, _} = Error -> Error
    end;
ensure(_Restart, Name) ->
    erlang:error({badarg, Name}).

%% The via callback: the pid, started on first use, or undefined when it
%% cannot be started (so a gen call through the via tuple exits noproc).
-spec whereis_name(eq_singleton:restart(), {term(), term()}) -> pid() | undefined.
whereis_name(Restart, Name) ->
    case ensure(Restart, Name) of
        {ok, Pid} -> Pid;
        {error, {badarg, _} = Badarg} -> erlang:error(Badarg);
        {error, _} -> undefined
    end.

-spec send(eq_singleton:restart(), {term(), term()}, term()) -> pid().
send(Restart, Name, Msg) ->
    case whereis_name(Restart, Name) of
        undefined ->
            exit({badarg, {Name, Msg}});
        Pid ->
            Pid ! Msg,
            Pid
    end.

%% The running instance of Key, from the local table; never starts it.
-spec lookup(term()) -> pid() | undefined.
lookup(Key) ->
    eq_singleton:holder(name(Key)).
