%% eq_election_strict: an eq_leader callback module with no catch-all
%% handle_info/3 (tests/election.rs): any message eq_leader passes on that
%% the user did not send (e.g. its own helpers' {'EXIT', Pid, normal})
%% crashes the member with function_clause.
-module(eq_election_strict).
-behaviour(eq_leader).
-export([start/1]).
-export([init/1, elected/3, surrendered/3, handle_DOWN/3, handle_leader_call/4,
         handle_leader_cast/3, from_leader/3, handle_call/4, handle_cast/3,
         handle_info/3]).

%% A candidate of group `eq_strict`, unlinked from the eval.
start(Name) ->
    {ok, P} = eq_leader:start_link(Name, ?MODULE, [], [{resource, eq_strict}]),
    unlink(P),
    P.

init([]) -> {ok, #{}}.
elected(S, _Info, _Joiner) -> {ok, none, S}.
surrendered(S, _Sync, _Info) -> {ok, S}.
handle_DOWN(_Pid, S, _Info) -> {ok, S}.
handle_leader_call(ping, _From, S, _Info) -> {reply, pong, S}.
handle_leader_cast(_Msg, S, _Info) -> {ok, S}.
from_leader(_Msg, S, _Info) -> {ok, S}.
handle_call(_Req, _From, S, _Info) -> {reply, ok, S}.
handle_cast(_Msg, S, _Info) -> {ok, S}.
handle_info(strict_only, S, _Info) -> {ok, S}.
