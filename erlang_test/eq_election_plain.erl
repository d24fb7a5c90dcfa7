%% eq_election_plain: the plain gen_server benches/election.rs compares
%% eq_leader:leader_call with (answers `ping` with `pong`).
-module(eq_election_plain).
-behaviour(gen_server).
-export([init/1, handle_call/3, handle_cast/2]).

init([]) -> {ok, plain}.
handle_call(ping, _From, S) -> {reply, pong, S}.
handle_cast(_, S) -> {noreply, S}.
