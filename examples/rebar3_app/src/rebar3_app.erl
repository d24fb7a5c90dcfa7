%% The sample's API: what a user project does with erl_quorum.
-module(rebar3_app).
-export([start/2, call/2, holder/1]).

%% Starts a greeter that takes the cluster-wide lock Key (Paxtor's: held
%% until the greeter exits) and registers under Name on the Rust nodes, so
%% any Erlang, Elixir or Rust process in the cluster can call it by name.
start(Name, Key) ->
    gen_server:start({via, rust_registry, Name}, rebar3_app_greeter, Key, []).

%% Calls whatever process is registered under Name (BEAM or Rust).
call(Name, Request) ->
    gen_server:call({via, rust_registry, Name}, Request, 5000).

%% Who holds the lock Key, as any node sees it.
holder(Key) ->
    paxtor:whereis(Key).
