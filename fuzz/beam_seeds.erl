%% Seeds written by a real BEAM (term_to_binary): terms, pass-through
%% control bodies and frames, services and locker requests. From the repo root:
%%   erlc -o /tmp fuzz/beam_seeds.erl && erl -noshell -pa /tmp -eval 'ok = beam_seeds:main("fuzz/corpus/"), halt().'
%% (The node's own encoders write the other seeds: see src/fuzz_api.rs.)
-module(beam_seeds).
-export([main/1]).
main(D) ->
    Self = self(),
    Ref = make_ref(),
    Port = hd(erlang:ports()),
    Terms = [
        {fun_local, fun(X) -> X + 1 end},
        {fun_closure, (fun(Y) -> fun(X) -> X + Y end end)(5)},
        {export, fun lists:map/2},
        {bits, <<1:3>>, <<255, 7:5>>},
        {floats, 1.5, -0.0, 1.0e300, 2.2250738585072014e-308},
        {ints, 0, 255, 256, -1, 2147483647, -2147483648, 1 bsl 64, -(1 bsl 200)},
        {atoms, 'ünïcödé', '', 'a very long atom name that goes on and on and on'},
        {Self, Ref, Port},
        #{a => 1, <<"b">> => [1,2,3], {c} => #{nested => map}},
        maps:from_list([{I, I * I} || I <- lists:seq(1, 40)]),
        [1, 2 | 3],
        "a string",
        [300, 400],
        list_to_tuple(lists:seq(1, 300)),
        binary:copy(<<"xy">>, 200),
        {compressed_below}
    ],
    W = fun(Dir, Name, Bin) -> ok = file:write_file(D ++ Dir ++ "/" ++ Name, Bin) end,
    lists:foldl(fun(T, N) ->
        W("term", "beam" ++ integer_to_list(N), term_to_binary(T)),
        N + 1 end, 0, Terms),
    W("term", "beam_compressed", term_to_binary(lists:duplicate(100, hello), [compressed])),
    W("term", "beam_minor_float", term_to_binary(3.25, [{minor_version, 0}])),
    %% Control messages as a BEAM peer would send them (pass-through bodies).
    To = Self,
    Ctl = [
        {{2, '', To}, hello},
        {{6, Self, '', locker}, {'$gen_call', {Self, Ref}, {lock, key, Self, true}}},
        {{22, Self, To}, {msg, 1}},
        {{19, Self, To, Ref}},
        {{19, Self, locker, Ref}},
        {{20, Self, To, Ref}},
        {{1, Self, To}},
        {{4, Self, To}},
        {{35, 12345, Self, To}},
        {{36, 12345, Self, To}},
        {{3, Self, To, normal}},
        {{8, Self, To, kill}},
        {{24, Self, To, Ref}, {shutdown, x}},
        {{33, Self, Ref}, aliased},
        {{29, Ref, Self, Self, {erlang, apply, 2}, [link, monitor]}, [fun io:format/2, []]},
        {{31, Ref, Self, Self, ok}},
        {{7, Self, To}}
    ],
    lists:foldl(fun(C, N) ->
        Bin = case C of
            {Control, Payload} -> <<(term_to_binary(Control))/binary, (term_to_binary(Payload))/binary>>;
            {Control} -> term_to_binary(Control)
        end,
        W("control", "beam" ++ integer_to_list(N), Bin),
        Frame = <<112, Bin/binary>>,
        Len = byte_size(Frame),
        W("incoming", "beam" ++ integer_to_list(N), <<255, Len:32, Frame/binary, 0:32>>),
        N + 1 end, 0, Ctl),
    %% locker calls (op byte, term) and services requests (decoder 0).
    Calls = [{lock, k, Self, false}, {register_name, n, Self, #{meta => 1}}, {unregister_name, n},
             {whereis_lock, k}, {start_name, n, {rust, <<"svc">>}, #{restart => transient}},
             {host, Self, beam}, {start_failed, 3, oops}, status],
    lists:foldl(fun(C, N) -> W("services", "beam" ++ integer_to_list(N), <<0, (term_to_binary(C))/binary>>), N + 1 end, 0, Calls),
    Locker = [{0, {get_write_lock, k, not_found, Ref}}, {2, {write, Ref, k, v, 1000}},
              {2, {wait_for, k, 500}}, {0, {get_debug_state}}, {4, {set_w, [a@h], 2}},
              {1, {trans_log, 'm@h', [{write, k, v, 100}, {extend_lease, k, v, 50}, {update, k, w}]}},
              {2, get_meta}, {30, {release, k, v, Ref}}, {0, {dirty_read, k}}],
    W("locker", "beam_sequence", << <<Op, (term_to_binary(T))/binary>> || {Op, T} <- Locker >>),
    ok.
