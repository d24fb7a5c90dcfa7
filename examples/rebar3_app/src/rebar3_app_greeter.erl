%% A gen_server that owns a cluster-wide lock and answers calls by name.
-module(rebar3_app_greeter).
-behaviour(gen_server).
-export([init/1, handle_call/3, handle_cast/2]).

init(Key) ->
    %% Blocks until the lock is ours; `no_quorum` is retried by default.
    acquired = paxtor:lock(Key),
    {ok, Key}.

handle_call({hello, Who}, _From, Key) ->
    {reply, {hello, Who, from, node(), holding, Key}, Key};
handle_call(_Other, _From, Key) ->
    {reply, {error, unknown_call}, Key}.

handle_cast(_Msg, Key) ->
    {noreply, Key}.
