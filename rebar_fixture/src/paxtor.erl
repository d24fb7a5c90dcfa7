%%% paxtor: cluster-wide locks with Paxtor's semantics, served by the
%%% erl_quorum Rust nodes (Erlang API; Elixir code uses 'Elixir.Paxtor').
%%%
%%% A lock belongs to the process that called lock/1,2 and is released only
%%% when that process exits (there is no unlock). Locking again while holding
%%% the lock returns `acquired` at once (reentrant). If the lease of a held
%%% lock cannot be kept, the owner gets the exit signal `{lock_lost, Key}`
%%% (or that message, with on_lost = message) before anyone else can take
%%% the lock: see rust_quorum.
-module(paxtor).

-export([lock/1, lock/2, whereis/1]).

-type option() :: {block, boolean()} | block
                | {no_quorum, retry | fail | return}.
-export_type([option/0]).

%% Blocks until the caller holds Key; retries forever without a quorum.
-spec lock(term()) -> acquired.
lock(Key) ->
    lock(Key, []).

%% Opts, a proplist (or an Elixir keyword list):
%%   block (default true): false returns {held_by, Pid} instead of waiting;
%%   no_quorum (default retry): when the Rust nodes cannot reach a quorum,
%%     or none of them answers: retry after 50 to 200 ms, forever; fail
%%     (erlang:error(no_quorum)); or return (the atom no_quorum).
%% The first occurrence of an option wins, as in proplists and Keyword.
-spec lock(term(), [option()]) -> acquired | {held_by, pid()} | no_quorum.
lock(Key, Opts) ->
    {Block, NoQuorum} = options(Opts),
    lock(Key, Block, NoQuorum).

lock(Key, Block, NoQuorum) ->
    case request({lock, Key, self(), Block}) of
        acquired ->
            acquired;
        {held_by, Pid} = Held when is_pid(Pid) ->
            Held;
        no_quorum when NoQuorum =:= retry ->
            %% Jittered, so the callers that lost the quorum together do not
            %% all come back at the same instant.
            timer:sleep(50 + rand:uniform(151) - 1),
            lock(Key, Block, NoQuorum);
        no_quorum when NoQuorum =:= fail ->
            erlang:error(no_quorum);
        no_quorum ->
            no_quorum;
        Other ->
            erlang:error({unexpected_reply, {lock, Key}, Other})
    end.

%% The pid holding Key, or undefined. A round trip to a Rust node.
-spec whereis(term()) -> pid() | undefined.
whereis(Key) ->
    case rust_quorum:call({whereis_lock, Key}) of
        Pid when is_pid(Pid) -> Pid;
        undefined -> undefined;
        Other -> erlang:error({unexpected_reply, {whereis_lock, Key}, Other})
    end.

%% No Rust node answering at all is, to the caller, a quorum it cannot reach.
request(Request) ->
    try
        rust_quorum:call(Request)
    catch
        exit:{no_rust_node, _} -> no_quorum
    end.

options(Opts) when is_list(Opts) ->
    lists:foldr(fun option/2, {true, retry}, Opts);
options(Opts) ->
    erlang:error({badarg, Opts}).

option({block, Block}, {_, NoQuorum}) when is_boolean(Block) ->
    {Block, NoQuorum};
option(block, {_, NoQuorum}) ->
    {true, NoQuorum};
option({no_quorum, NoQuorum}, {Block, _})
  when NoQuorum =:= retry; NoQuorum =:= fail; NoQuorum =:= return ->
    {Block, NoQuorum};
option(Opt, _) ->
    erlang:error({badarg, Opt}).
