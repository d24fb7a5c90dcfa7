%%% erl_quorum_keeper_sup: the keepers of this node's supervised names (one
%%% erl_quorum_keeper per child a serving Rust node had started here), so
%%% that stopping the application stops them and their children.
%%%
%%% It also owns the table erl_quorum_keepers ({Child, Keeper}), through which
%%% the guard tells a keeper that its child lost its name.
-module(erl_quorum_keeper_sup).
-behaviour(supervisor).

-export([start_link/0, start_keeper/1, init/1]).

start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

%% Starts a keeper for one `eq_start`; returns at once (the keeper runs the
%% start after its init has returned).
-spec start_keeper(map()) -> {ok, pid()} | {error, term()}.
start_keeper(Start) ->
    supervisor:start_child(?MODULE, [Start]).

init([]) ->
    %% Public: each keeper adds and removes its own child.
    erl_quorum_keepers = ets:new(erl_quorum_keepers,
                                 [named_table, public, set, {read_concurrency, true}]),
    %% Keepers are never restarted: a keeper that crashed is a child whose
    %% owner exit the serving node sees and acts on (restart or not).
    SupFlags = #{strategy => simple_one_for_one, intensity => 10, period => 10},
    Keeper = #{id => erl_quorum_keeper,
               start => {erl_quorum_keeper, start_link, []},
               restart => temporary,
               %% The keeper gives its child 5 s to stop, then kills it.
               shutdown => 10000,
               type => worker,
               modules => [erl_quorum_keeper]},
    {ok, {SupFlags, [Keeper]}}.
