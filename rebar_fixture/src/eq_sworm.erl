%%% eq_sworm: a Sworm-shaped registry with supervised names, on the erl_quorum
%%% name registry (Erlang API; Elixir code uses `Sworm`, lib/sworm.ex).
%%%
%%% A scope (Sworm's "sworm": any term, typically a module atom) is a separate
%%% set of names: Name of Scope is the registry name
%%% `{'$eq_scope', Scope, Name}`, so no setup is needed and scopes never
%%% collide. Names registered with an MFA are supervised: a serving Rust
%%% node starts the process on a BEAM host (this node's first), restarts it
%%% when it fails (transient by default, as Sworm), and on a surviving node
%%% when its node goes down. Names registered with a pid are neither moved
%%% nor restarted: they go when the process exits.
%%%
%%% Lookups (whereis_name/2, registered/1) read the local table, no round
%%% trip; lookup/2 (metadata) asks a Rust node. `{via, eq_sworm, {Scope,
%%% Name}}` works as a process name in gen_server, gen_statem, GenServer.
-module(eq_sworm).

-export([register_name/5, register_name/6, register_name/3, register_name/4,
         whereis_or_register_name/5, whereis_or_register_name/6, unregister_name/2, whereis_name/2,
         lookup/2, registered/1]).
%% Groups (in the default eq_pg scope, as {'$eq_sworm', Scope, Group}).
-export([join/3, leave/3, members/2]).
%% Via callbacks, on {Scope, Name}.
-export([register_name/2, unregister_name/1, whereis_name/1, send/2]).

-type option() :: {restart, eq_singleton:restart()} | {meta, term()}.
-export_type([option/0]).

%% Starts M:F(A...) as Name of Scope, supervised with restart transient:
%% {ok, Pid}; {error, {already_registered, Pid}} when Name is taken;
%% {error, {start_failed, Reason}} when the start returned {error, Reason},
%% ignore (Reason = ignore) or crashed (Reason = {Class, Reason}), and then
%% nothing stays registered; {error, no_host}, {error, no_quorum};
%% {error, {badarg, MFA}} for an MFA that is not one or holds funs,
%% references or ports.
-spec register_name(term(), term(), module(), atom(), [term()]) ->
          {ok, pid()} | {error, term()}.
register_name(Scope, Name, M, F, A) ->
    register_name(Scope, Name, M, F, A, []).

%% Opts: {restart, permanent | transient | temporary} (default transient),
%% {meta, Meta} (kept with the name, see lookup/2).
-spec register_name(term(), term(), module(), atom(), [term()], [option()]) ->
          {ok, pid()} | {error, term()}.
register_name(Scope, Name, M, F, A, Opts) ->
    case start(Scope, Name, M, F, A, Opts) of
        {started, Pid} -> {ok, Pid};
        {already_started, Pid} -> {error, {already_registered, Pid}};
        {conflict, Pid} -> {error, {already_registered, Pid}};
        {error, _} = Error -> Error
    end.

%% Registers an existing process (not moved, not restarted): yes | no.
-spec register_name(term(), term(), pid()) -> yes | no.
register_name(Scope, Name, Pid) when is_pid(Pid) ->
    rust_registry:register_name(eq_singleton:scoped(Scope, Name), Pid).

%% As register_name/3, with metadata kept while Pid holds the name. Raises
%% {badarg, Meta} for metadata holding funs, references or ports (it is
%% kept by the Rust nodes).
-spec register_name(term(), term(), pid(), term()) -> yes | no.
register_name(Scope, Name, Pid, Meta) when is_pid(Pid) ->
    case eq_singleton:check_spec(Meta) of
        ok -> rust_registry:register_name(eq_singleton:scoped(Scope, Name), Pid, Meta);
        {error, Badarg} -> erlang:error(Badarg)
    end.

%% The holder of Name, started as register_name/5 does if there is none:
%% {ok, Pid} (whoever started it, with whatever MFA) or the errors of
%% register_name/5 other than already_registered.
-spec whereis_or_register_name(term(), term(), module(), atom(), [term()]) ->
          {ok, pid()} | {error, term()}.
whereis_or_register_name(Scope, Name, M, F, A) ->
    whereis_or_register_name(Scope, Name, M, F, A, []).

%% Opts as for register_name/6, used only when it starts the process.
-spec whereis_or_register_name(term(), term(), module(), atom(), [term()], [option()]) ->
          {ok, pid()} | {error, term()}.
whereis_or_register_name(Scope, Name, M, F, A, Opts) ->
    case whereis_name(Scope, Name) of
        Pid when is_pid(Pid) ->
            {ok, Pid};
        undefined ->
            case start(Scope, Name, M, F, A, Opts) of
                {error, _} = Error -> Error;
                {_Started, Pid} -> {ok, Pid}
            end
    end.

%% Releases Name; a supervised process is stopped (exit shutdown) and not
%% restarted. ok also when Name was not registered.
-spec unregister_name(term(), term()) -> ok.
unregister_name(Scope, Name) ->
    rust_registry:unregister_name(eq_singleton:scoped(Scope, Name)).

%% The local table's holder of Name, or undefined.
-spec whereis_name(term(), term()) -> pid() | undefined.
whereis_name(Scope, Name) ->
    eq_singleton:holder(eq_singleton:scoped(Scope, Name)).

%% {Pid, Meta} (Meta undefined when none was given), or undefined. A round
%% trip: metadata is not cached.
-spec lookup(term(), term()) -> {pid(), term()} | undefined.
lookup(Scope, Name) ->
    rust_registry:whereis_meta(eq_singleton:scoped(Scope, Name)).

%% [{Name, Pid}] of Scope, each name once, from the local table.
-spec registered(term()) -> [{term(), pid()}].
registered(Scope) ->
    eq_singleton:registered(Scope).

%%%===================================================================
%%% Groups: Sworm's join/leave/members, on eq_pg (any term as Scope; no
%%% setup: a group of Scope is the group {'$eq_sworm', Scope, Group} of the
%%% default eq_pg scope, so scopes never collide)
%%%===================================================================

%% Pid (a process of this node) joins Group of Scope: ok. Joins count, as
%% in pg: a pid joined twice is a member twice until it leaves twice.
-spec join(term(), term(), pid()) -> ok.
join(Scope, Group, Pid) ->
    eq_pg:join(eq_pg, {'$eq_sworm', Scope, Group}, Pid).

%% Pid leaves Group of Scope (one join): ok | not_joined.
-spec leave(term(), term(), pid()) -> ok | not_joined.
leave(Scope, Group, Pid) ->
    eq_pg:leave(eq_pg, {'$eq_sworm', Scope, Group}, Pid).

%% The members of Group of Scope on every node, BEAM and Rust (a local read).
-spec members(term(), term()) -> [pid()].
members(Scope, Group) ->
    eq_pg:get_members(eq_pg, {'$eq_sworm', Scope, Group}).

%%%===================================================================
%%% Via callbacks: {via, eq_sworm, {Scope, Name}}
%%%===================================================================

-spec register_name({term(), term()}, pid()) -> yes | no.
register_name({Scope, Name}, Pid) ->
    register_name(Scope, Name, Pid).

-spec unregister_name({term(), term()}) -> ok.
unregister_name({Scope, Name}) ->
    unregister_name(Scope, Name).

-spec whereis_name({term(), term()}) -> pid() | undefined.
whereis_name({Scope, Name}) ->
    whereis_name(Scope, Name).

-spec send({term(), term()}, term()) -> pid().
send(ScopedName, Msg) ->
    case whereis_name(ScopedName) of
        undefined ->
            exit({badarg, {ScopedName, Msg}});
        Pid ->
            Pid ! Msg,
            Pid
    end.

%%%===================================================================
%%% Internals
%%%===================================================================

start(Scope, Name, M, F, A, Opts) when is_atom(M), is_atom(F), is_list(A) ->
    case options(Opts) of
        {ok, StartOpts} ->
            eq_singleton:start(eq_singleton:scoped(Scope, Name), {M, F, A}, StartOpts);
        {error, _} = Error ->
            Error
    end;
start(_Scope, _Name, M, F, A, _Opts) ->
    {error, {badarg, {M, F, A}}}.

options(Opts) when is_list(Opts) ->
    lists:foldr(fun({restart, R}, {ok, Acc})
                      when R =:= permanent; R =:= transient; R =:= temporary ->
                        {ok, Acc#{restart => R}};
                   ({meta, Meta}, {ok, Acc}) ->
                        case eq_singleton:check_spec(Meta) of
                            ok -> {ok, Acc#{meta => Meta}};
                            Error -> Error
                        end;
                   (_, {error, _} = Error) ->
                        Error;
                   (Opt, _) ->
                        {error, {badarg, Opt}}
                end, {ok, #{restart => transient}}, Opts);
options(Opts) ->
    {error, {badarg, Opts}}.
