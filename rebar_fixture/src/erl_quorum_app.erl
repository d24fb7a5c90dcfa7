%%% erl_quorum_app: the application callback of erl_quorum.
%%%
%%% Starting the application starts the guard (rust_quorum), the keepers'
%%% supervisor and the host of supervised names under erl_quorum_sup;
%%% everything else in erl_quorum is plain function calls made by the
%%% caller's own process.
-module(erl_quorum_app).
-behaviour(application).

-export([start/2, stop/1]).

start(_Type, _Args) ->
    erl_quorum_sup:start_link().

stop(_State) ->
    ok.
