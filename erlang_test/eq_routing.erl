%% eq_routing: the BEAM side of tests/shard_routing.rs.
%%
%%  * cross_check/3: thousands of varied keys, each one's shard as
%%    rust_quorum_shard computes it against a Rust node's `shard_of` answer;
%%  * seed/1: puts shard S on Rust node S rem 3 (each node takes the shards
%%    it is asked for first), so keys spread over 3 holders;
%%  * lock_batch/2: locks through rust_quorum:call/1, as paxtor does;
%%  * redirects/1: the sum of the nodes' `redirects` counters.
-module(eq_routing).

-export([cross_check/3, fixed/0, seed/1, lock_batch/2, lock_all_shards/2,
         redirects/1, expected_holders/1, shard_cost/0]).

%% Compares rust_quorum_shard:shard/2 with Node's `{shard_of, Kind, Key}`
%% on N random keys (seeded: the same keys every run) plus fixed edge
%% cases, both kinds. Returns #{checked, unknown, shards, mismatches}:
%% `unknown` counts the keys holding a pid, reference or fun (the BEAM does
%% not compute those), `shards` the distinct shards seen.
cross_check(Node, N, Seed) ->
    _ = rand:seed(exsss, {Seed, Seed + 1, Seed + 2}),
    Keys = fixed() ++ [key(4) || _ <- lists:seq(1, N)],
    Results = [check(Node, Kind, Key) || Key <- Keys, Kind <- [lock, name]],
    #{checked => length([1 || {ok, _} <- Results]),
      unknown => length([1 || unknown <- Results]),
      shards => length(lists:usort([S || {ok, S} <- Results])),
      mismatches => lists:sublist([M || {mismatch, _, _, _, _} = M <- Results], 5)}.

check(Node, Kind, Key) ->
    Theirs = gen_server:call({erl_quorum, Node}, {shard_of, Kind, Key}, 5000),
    case rust_quorum_shard:shard(Kind, Key) of
        unknown -> unknown;
        Ours when Theirs =:= {shard, Ours} -> {ok, Ours};
        Ours -> {mismatch, Kind, Key, Ours, Theirs}
    end.

%% Edge cases a random draw may miss: integer boundaries of the 64-bit and
%% minimal-bytes forms, -0.0, empty containers, keys `==` but not `=:=`,
%% non-ASCII atoms, and the terms the BEAM answers `unknown` for.
fixed() ->
    Ints = [0, 1, -1, 127, 128, -128, -129, 255, 256,
            (1 bsl 63) - 1, 1 bsl 63, -(1 bsl 63), -(1 bsl 63) - 1,
            1 bsl 64, -(1 bsl 64), (1 bsl 71) - 1, 1 bsl 71, -(1 bsl 71),
            -(1 bsl 71) - 1, 1 bsl 1000, -(1 bsl 1000)],
    NegZero = 0.0 * -1.0,
    Ints ++ [1.0, NegZero, 0.0, 1.0e300, -2.5e-300,
             [], {}, #{}, <<>>, <<0:1>>, <<255:7>>, <<1, 2, 3:5>>,
             "abc", [1 | 2], [a, b | c], [[]], {[]}, #{1 => a, 1.0 => b},
             #{#{a => 1} => [x], {1} => <<"v">>, "s" => 2.0},
             'ä', 'Ωμέγα', '日本', list_to_atom([16#1F600]),
             {self(), k}, make_ref(), [fun erlang:self/0], #{k => self()}].

%% A random term at most Depth levels deep.
key(0) ->
    leaf();
key(Depth) ->
    Many = fun() -> [key(Depth - 1) || _ <- lists:seq(1, rand:uniform(4) - 1)] end,
    case rand:uniform(12) of
        1 -> list_to_tuple(Many());
        2 -> Many();
        3 -> Many() ++ [key(Depth - 1) | non_list_leaf()];
        4 -> maps:from_list([{key(Depth - 1), key(Depth - 1)}
                             || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        5 -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(8))];
        6 -> [rand:uniform(16#2FFF) || _ <- lists:seq(1, rand:uniform(5))];
        _ -> leaf()
    end.

non_list_leaf() ->
    case leaf() of
        L when is_list(L) -> tail;
        L -> L
    end.

leaf() ->
    case rand:uniform(13) of
        1 -> rand:uniform(2001) - 1001;
        2 -> rand:uniform(1 bsl 64) - (1 bsl 63) - 1;
        3 -> rand:uniform(1 bsl 200);
        4 -> -rand:uniform(1 bsl 100) - (1 bsl 63);
        5 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(40));
        6 -> list_to_atom("k" ++ integer_to_list(rand:uniform(2000)));
        7 -> list_to_atom([rand:uniform(16#2FFF) + 255 || _ <- lists:seq(1, rand:uniform(6))]);
        8 -> rand:bytes(rand:uniform(40) - 1);
        9 -> Bits = rand:uniform(7),
             <<(rand:bytes(rand:uniform(5) - 1))/binary, (rand:uniform(1 bsl Bits) - 1):Bits>>;
        10 -> lists:nth(rand:uniform(5), [[], {}, #{}, <<>>, true]);
        11 -> rand:bytes(300 + rand:uniform(700));
        12 -> float(rand:uniform(1000));
        13 -> rand:uniform(1 bsl 62)
    end.

%% A lock key of shard S: {Prefix, I} for the first I landing there.
shard_key(Prefix, S) ->
    shard_key(Prefix, S, 0).

shard_key(Prefix, S, I) ->
    case rust_quorum_shard:shard(lock, {Prefix, I}) of
        S -> {Prefix, I};
        _ -> shard_key(Prefix, S, I + 1)
    end.

%% Asks node S rem 3 of Masters (directly, not through rust_quorum) for a
%% lock in shard S, for every S: a node takes the shards it is asked for
%% first. The owner exits after, releasing the locks; the shards stay.
%% Returns `ok` or the first unexpected reply.
seed(Masters) ->
    Self = self(),
    {Owner, Ref} = spawn_monitor(
                     fun() ->
                             Replies = [{S, gen_server:call({erl_quorum, lists:nth(S rem 3 + 1, Masters)},
                                                            {lock, shard_key(eq_routing, S), self(), false}, 10000)}
                                        || S <- lists:seq(0, 63)],
                             Self ! {self(), Replies}
                     end),
    receive
        {Owner, Replies} ->
            receive {'DOWN', Ref, process, Owner, _} -> ok end,
            case [R || {_, Reply} = R <- Replies, Reply =/= acquired] of
                [] -> ok;
                [Bad | _] -> {unexpected, Bad}
            end;
        {'DOWN', Ref, process, Owner, Reason} ->
            {owner_crashed, Reason}
    end.

%% What rust_quorum_route should learn after seed/1.
expected_holders(Masters) ->
    [{S, lists:nth(S rem 3 + 1, Masters)} || S <- lists:seq(0, 63)].

%% One process locks N fresh keys {Tag, I} through rust_quorum:call/1, then
%% exits (releasing them). Returns how many were acquired.
lock_batch(Tag, N) ->
    run_owner(fun() ->
                      length([1 || I <- lists:seq(1, N),
                                   rust_quorum:call({lock, {Tag, I}, self(), false}) =:= acquired])
              end).

%% Locks a key in every shard through rust_quorum:call/1, again and again
%% (each round a fresh owner) until every shard grants or TimeoutMs passes.
%% Returns {ok, Ms} or {timeout, ShardsNotGranted}.
lock_all_shards(Tag, TimeoutMs) ->
    Start = erlang:monotonic_time(millisecond),
    lock_all_shards(Tag, lists:seq(0, 63), Start, TimeoutMs, 0).

lock_all_shards(_Tag, [], Start, _TimeoutMs, _Round) ->
    {ok, erlang:monotonic_time(millisecond) - Start};
lock_all_shards(Tag, Left, Start, TimeoutMs, Round) ->
    case erlang:monotonic_time(millisecond) - Start > TimeoutMs of
        true ->
            {timeout, Left};
        false ->
            Missed = run_owner(
                       fun() ->
                               [S || S <- Left,
                                     rust_quorum:call({lock, shard_key({Tag, Round}, S), self(), false})
                                         =/= acquired]
                       end),
            Missed =/= [] andalso timer:sleep(100),
            lock_all_shards(Tag, Missed, Start, TimeoutMs, Round + 1)
    end.

run_owner(Fun) ->
    Self = self(),
    {Owner, Ref} = spawn_monitor(fun() -> Self ! {self(), Fun()} end),
    receive
        {Owner, Result} ->
            receive {'DOWN', Ref, process, Owner, _} -> ok end,
            Result;
        {'DOWN', Ref, process, Owner, Reason} ->
            erlang:error({owner_crashed, Reason})
    end.

%% The sum of the `redirects` counters of the nodes of Masters that answer.
redirects(Masters) ->
    lists:sum([proplists:get_value(redirects, Status, 0)
               || M <- Masters,
                  Status <- [catch gen_server:call({erl_quorum, M}, status, 5000)],
                  is_list(Status)]).

%% What rust_quorum_shard:shard/2 costs per call, in ns, on key shapes of
%% the bench and of real use (for benches/services.rs; never asserted).
shard_cost() ->
    Keys = [{small_tuple, {eq_services_fresh, 123456}},
            {atom, some_lock_name},
            {binary_32, binary:copy(<<"k">>, 32)},
            {binary_1k, binary:copy(<<"k">>, 1024)},
            {map, #{tenant => <<"acme">>, id => 42, tags => [a, b]}}],
    [{Label, shard_ns(Key)} || {Label, Key} <- Keys].

shard_ns(Key) ->
    N = 20000,
    T0 = erlang:monotonic_time(nanosecond),
    shard_loop(Key, N),
    round((erlang:monotonic_time(nanosecond) - T0) / N).

shard_loop(_Key, 0) -> ok;
shard_loop(Key, N) -> _ = rust_quorum_shard:shard(lock, Key), shard_loop(Key, N - 1).
