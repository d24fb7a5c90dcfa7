%%% paxtor: cluster-wide locks and singletons with Paxtor's semantics, served
%%% by the erl_quorum Rust nodes (Erlang API; Elixir code uses 'Elixir.Paxtor').
%%%
%%% Singletons: name/2,3 give a via tuple of Paxtor's via modules; a call,
%%% cast or whereis through it starts the process on first use, once in the
%%% cluster (see paxtor_singleton). lookup/1 and 'alive?'/1 never start it.
%%%
%%% A lock belongs to the process that called lock/1,2 and is released only
%%% when that process exits (there is no unlock). Locking again while holding
%%% the lock returns `acquired` at once (reentrant). If the lease of a held
%%% lock cannot be kept, the owner gets the exit signal `{lock_lost, Key}`
%%% (or that message, with on_lost = message) before anyone else can take
%%% the lock: see rust_quorum.
%%%
%%% Fencing: lock(Key, [fencing]) returns {acquired, Token} instead of
%%% acquired. Token, a positive integer, only grows per key: every later
%%% holder of Key gets a larger one (across serving nodes and their
%%% restarts; see the README for the clock assumption), and a holder that
%%% locks again gets its own token back. A resource guarded by the lock
%%% keeps the largest token it saw and refuses smaller ones.
-module(paxtor).

-export([lock/1, lock/2, whereis/1]).
-export([name/2, name/3, lookup/1, 'alive?'/1, is_alive/1]).
%% For 'Elixir.Paxtor', which shares the work.
-export([resolve/1, lookup_via/1]).

-type option() :: {block, boolean()} | block
                | {no_quorum, retry | fail | return}
                | {fencing, boolean()} | fencing.
-type token() :: pos_integer().
-type name_option() :: {restart, temporary | permanent | lock}.
-type via() :: {via, module(), term()}.
-export_type([option/0, name_option/0, via/0, token/0]).

%% Blocks until the caller holds Key; retries forever without a quorum.
-spec lock(term()) -> acquired.
lock(Key) ->
    lock(Key, []).

%% Opts, a proplist (or an Elixir keyword list):
%%   block (default true): false returns {held_by, Pid} instead of waiting;
%%   no_quorum (default retry): when the Rust nodes cannot reach a quorum,
%%     or none of them answers: retry after 50 to 200 ms, forever; fail
%%     (erlang:error(no_quorum)); or return (the atom no_quorum);
%%   fencing (default false): true returns {acquired, Token} instead of
%%     acquired (see the module doc).
%% The first occurrence of an option wins, as in proplists and Keyword.
-spec lock(term(), [option()]) ->
          acquired | {acquired, token()} | {held_by, pid()} | no_quorum.
lock(Key, Opts) ->
    {Block, NoQuorum, Fencing} = options(Opts),
    lock(Key, Block, NoQuorum, Fencing).

lock(Key, Block, NoQuorum, Fencing) ->
    Request = case Fencing of
                  true -> {lock, Key, self(), Block, [fencing]};
                  false -> {lock, Key, self(), Block}
              end,
    case request(Request) of
        acquired when not Fencing ->
            acquired;
        {acquired, Token} = Acquired when Fencing, is_integer(Token), Token > 0 ->
            Acquired;
        {held_by, Pid} = Held when is_pid(Pid) ->
            Held;
        no_quorum when NoQuorum =:= retry ->
            %% Jittered, so the callers that lost the quorum together do not
            %% all come back at the same instant.
            timer:sleep(50 + rand:uniform(151) - 1),
            lock(Key, Block, NoQuorum, Fencing);
        no_quorum when NoQuorum =:= fail ->
            erlang:error(no_quorum);
        no_quorum ->
            no_quorum;
        Other ->
            erlang:error({unexpected_reply, {lock, Key}, Other})
    end.

%%%===================================================================
%%% Singletons and names
%%%===================================================================

%% A via tuple for the singleton Key started from ChildSpec (any shape a
%% supervisor or Elixir accepts: {M, F, Args}, a child spec map or tuple,
%% Module, {Module, Arg}), restart temporary. Starts nothing.
-spec name(term(), term()) -> via().
name(Key, ChildSpec) ->
    name(Key, ChildSpec, []).

%% Opts: [{restart, temporary | permanent | lock}] (a proplist or keyword
%% list; the first occurrence wins). temporary: restarted only by the next
%% use; permanent: restarted when it exits, on a surviving node when its node
%% goes down; lock: the holder of the lock Key (ChildSpec unused). Raises
%% {badarg, _} for an unknown option and for a spec holding funs,
%% references or ports (it has to travel to whichever node starts it).
-spec name(term(), term(), [name_option()]) -> via().
name(Key, ChildSpec, Opts) ->
    case name_restart(Opts) of
        lock ->
            'Elixir.Paxtor.Lock':via(Key);
        Restart ->
            case eq_singleton:check_spec(ChildSpec) of
                ok -> ok;
                {error, Badarg} -> erlang:error(Badarg)
            end,
            case Restart of
                temporary -> 'Elixir.Paxtor.Spawn':via(Key, ChildSpec);
                permanent -> 'Elixir.Paxtor.StartChild':via(Key, ChildSpec)
            end
    end.

name_restart(Opts) when is_list(Opts) ->
    lists:foldr(fun({restart, R}, _) when R =:= temporary; R =:= permanent; R =:= lock -> R;
                   (Opt, _) -> erlang:error({badarg, Opt})
                end, temporary, Opts);
name_restart(Opts) ->
    erlang:error({badarg, Opts}).

%% The pid behind Via, or undefined; never starts anything. Via: a via tuple
%% of name/2,3 or any other via tuple; anything else is taken as a lock key
%% (the holder of that lock), as before singletons existed.
-spec lookup(term()) -> pid() | undefined.
lookup(Via) ->
    lookup_via(Via).

-spec 'alive?'(term()) -> boolean().
'alive?'(Via) ->
    is_pid(lookup_via(Via)).

%% 'alive?'/1 under a name Erlang code can call without quotes.
-spec is_alive(term()) -> boolean().
is_alive(Via) ->
    'alive?'(Via).

lookup_via({via, Module, {Key, _ChildSpec}})
  when Module =:= 'Elixir.Paxtor.Spawn'; Module =:= 'Elixir.Paxtor.StartChild' ->
    %% Straight to the table: a lookup must cost no more than an ETS read
    %% (paxtor_singleton:name/1 spells the same name).
    rust_registry:whereis_name({'$eq_scope', paxtor, Key});
lookup_via({via, Module, Key})
  when Module =:= 'Elixir.Paxtor.Lock'; Module =:= paxtor_lock ->
    paxtor_lock:whereis_name(Key);
lookup_via({via, Module, Name}) when is_atom(Module) ->
    undefined_for_nil(Module:whereis_name(Name));
lookup_via(LockKey) ->
    paxtor_lock:whereis_name(LockKey).

%% Resolves Name to a pid (or undefined), starting a singleton if needed:
%% a pid; a via tuple of any module; a locally registered name; {Name, Node}
%% (Node an atom with an @, as node names have; resolved on that node).
%% Raises the reason when a singleton cannot be started ({start_failed, R},
%% no_host, no_quorum; {badarg, Spec} for a spec that cannot travel).
%% For compatibility with the lock-only API it replaced, an atom that names
%% no local process and any other term are taken as lock keys.
-spec whereis(term()) -> pid() | port() | undefined.
whereis(Name) ->
    case resolve(Name) of
        {ok, Found} -> Found;
        {lock_key, Key} -> paxtor_lock:whereis_name(Key);
        {remote, Node, Remote} when is_atom(Remote) -> erpc:call(Node, erlang, whereis, [Remote]);
        {remote, Node, Remote} -> erpc:call(Node, ?MODULE, whereis, [Remote])
    end.

%% The shared part of whereis/1 here and in 'Elixir.Paxtor'.
-spec resolve(term()) -> {ok, pid() | port() | undefined} | {lock_key, term()}
                             | {remote, node(), term()}.
resolve(Pid) when is_pid(Pid) ->
    {ok, Pid};
resolve({via, Module, Name})
  when Module =:= 'Elixir.Paxtor.Spawn'; Module =:= 'Elixir.Paxtor.StartChild' ->
    Restart = case Module of
                  'Elixir.Paxtor.Spawn' -> temporary;
                  'Elixir.Paxtor.StartChild' -> permanent
              end,
    case paxtor_singleton:ensure(Restart, Name) of
        {ok, Pid} -> {ok, Pid};
        {error, Reason} -> erlang:error(Reason)
    end;
resolve({via, Module, Name}) when is_atom(Module) ->
    {ok, undefined_for_nil(Module:whereis_name(Name))};
resolve(Name) when is_atom(Name) ->
    case erlang:whereis(Name) of
        undefined -> {lock_key, Name};
        Found -> {ok, Found}
    end;
resolve({Name, Node} = Key) when is_atom(Node) ->
    case node_name(Node) of
        false -> {lock_key, Key};
        true when Node =:= node() ->
            case resolve(Name) of
                {lock_key, _} -> {ok, undefined};
                Local -> Local
            end;
        true -> {remote, Node, Name}
    end;
resolve(Key) ->
    {lock_key, Key}.

node_name(Node) ->
    lists:member($@, atom_to_list(Node)).

undefined_for_nil(nil) -> undefined;
undefined_for_nil(Other) -> Other.

%% No Rust node answering at all is, to the caller, a quorum it cannot reach.
request(Request) ->
    try
        rust_quorum:call(Request)
    catch
        exit:{no_rust_node, _} -> no_quorum
    end.

options(Opts) when is_list(Opts) ->
    lists:foldr(fun option/2, {true, retry, false}, Opts);
options(Opts) ->
    erlang:error({badarg, Opts}).

option({block, Block}, {_, NoQuorum, Fencing}) when is_boolean(Block) ->
    {Block, NoQuorum, Fencing};
option(block, {_, NoQuorum, Fencing}) ->
    {true, NoQuorum, Fencing};
option({no_quorum, NoQuorum}, {Block, _, Fencing})
  when NoQuorum =:= retry; NoQuorum =:= fail; NoQuorum =:= return ->
    {Block, NoQuorum, Fencing};
option({fencing, Fencing}, {Block, NoQuorum, _}) when is_boolean(Fencing) ->
    {Block, NoQuorum, Fencing};
option(fencing, {Block, NoQuorum, _}) ->
    {Block, NoQuorum, true};
option(Opt, _) ->
    erlang:error({badarg, Opt}).
