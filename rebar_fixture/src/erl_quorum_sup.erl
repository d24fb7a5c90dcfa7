%%% erl_quorum_sup: the top supervisor of erl_quorum: the guard rust_quorum,
%%% the keepers of supervised names started here (erl_quorum_keeper_sup) and
%%% the host that serving Rust nodes ask to start them (erl_quorum_host),
%%% in that order: the host announces itself only once keepers can start.
-module(erl_quorum_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

init([]) ->
    %% A few restarts are tolerated: a restarted guard resubscribes and
    %% rebuilds the registry table. It cannot recover the owners it tracked
    %% (the protocol has no request to list them), so a crash loop must not
    %% go unnoticed: past 5 restarts in 10 s the application stops.
    SupFlags = #{strategy => one_for_one, intensity => 5, period => 10},
    Guard = #{id => rust_quorum,
              start => {rust_quorum, start_link, []},
              restart => permanent,
              shutdown => 5000,
              type => worker,
              modules => [rust_quorum]},
    Keepers = #{id => erl_quorum_keeper_sup,
                start => {erl_quorum_keeper_sup, start_link, []},
                restart => permanent,
                shutdown => infinity,
                type => supervisor,
                modules => [erl_quorum_keeper_sup]},
    Host = #{id => erl_quorum_host,
             start => {erl_quorum_host, start_link, []},
             restart => permanent,
             shutdown => 5000,
             type => worker,
             modules => [erl_quorum_host]},
    %% The default eq_pg scope (process groups), last: it reads the Rust
    %% nodes from rust_quorum's configuration.
    Groups = #{id => eq_pg,
               start => {eq_pg, start_link, []},
               restart => permanent,
               shutdown => 5000,
               type => worker,
               modules => [eq_pg, eq_pg_scope]},
    {ok, {SupFlags, [Guard, Keepers, Host, Groups]}}.
