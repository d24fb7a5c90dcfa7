%%% rust_quorum_shard: the shard (0..63) a Rust node puts a lock key or a
%%% name in, computed on the BEAM node, so that rust_quorum:call/1 can send
%%% a request straight to the node holding that shard (rust_quorum_route).
%%%
%%% The Rust node hashes a kind byte (lock 0, name 1) followed by the key's
%%% canonical bytes (src/term/canon.rs: a prefix-free encoding in which
%%% `=:=` terms give equal bytes) with FNV-1a 64, modulo 64
%%% (src/services/shards.rs). This module writes the same bytes:
%%%
%%%   atom       $a Len Utf8            integer    $i <<I:64/little-signed>>
%%%   float      $f <<F:64/little-float>>           (outside i64:
%%%   binary     $b Len Bytes                        $I Len MinimalTwosComplementLE)
%%%   bitstring  $B TailBits Len Bytes (the last byte's bits low, the rest zero)
%%%   tuple      $t Len Elements        map        $m Len sorted(Key Value)
%%%   list       $l ($c Element)* ($n | $| Tail)
%%%
%%% Len is <<N:64/little>>; map entries are sorted by their encoded key
%%% (then value) bytes. Pids, ports, references and funs are written by the
%%% Rust node from their external form (creation, serial, fun indices):
%%% knowable, but not cheaply and not the same across BEAM releases, so a
%%% key holding one is `unknown` and is routed as before (the first node
%%% may redirect).
%%%
%%% Only the low 6 bits of FNV-1a's state reach `rem 64`, and both of its
%%% steps (xor with a byte, multiplication modulo 2^64) keep the low bits
%%% independent of the high ones, so the whole hash runs modulo 64 here:
%%% small integers, no bignum per byte.
-module(rust_quorum_shard).

-export([shard/2, encode/1]).

-define(SHARDS, 64).
%% FNV-1a 64's offset basis and prime, modulo 64.
-define(BASIS, (16#cbf29ce484222325 band 63)).
-define(PRIME, (16#100000001b3 band 63)).

%% The shard of Key of Kind (`lock` or `name`), as a Rust node computes it,
%% or `unknown` for a key holding a pid, port, reference or fun.
-spec shard(lock | name, term()) -> 0..63 | unknown.
shard(Kind, Key) ->
    try encode(Key) of
        Bytes -> hash(?BASIS, [kind_byte(Kind) | Bytes])
    catch
        throw:unknown -> unknown
    end.

kind_byte(lock) -> 0;
kind_byte(name) -> 1.

%% The canonical bytes of Term as an iolist; throws `unknown` for what the
%% module doc says it cannot write.
-spec encode(term()) -> iolist().
encode(A) when is_atom(A) ->
    Text = atom_to_binary(A, utf8),
    [$a, <<(byte_size(Text)):64/little>>, Text];
encode(I) when is_integer(I), I >= -16#8000000000000000, I =< 16#7fffffffffffffff ->
    <<$i, I:64/little-signed>>;
encode(I) when is_integer(I) ->
    N = signed_bytes(I, 9),
    [$I, <<N:64/little>>, <<I:(8 * N)/little-signed>>];
encode(F) when is_float(F) ->
    <<$f, F:64/little-float>>;
encode(B) when is_binary(B) ->
    [$b, <<(byte_size(B)):64/little>>, B];
encode(B) when is_bitstring(B) ->
    Whole = byte_size(B) - 1,
    Tail = bit_size(B) rem 8,
    <<Bytes:Whole/binary, Last:Tail/bitstring>> = B,
    [$B, Tail, <<(Whole + 1):64/little>>, Bytes, <<0:(8 - Tail), Last/bitstring>>];
encode(T) when is_tuple(T) ->
    [$t, <<(tuple_size(T)):64/little>> | [encode(E) || E <- tuple_to_list(T)]];
encode(L) when is_list(L) ->
    [$l | list(L)];
encode(M) when is_map(M) ->
    Entries = lists:sort([{iolist_to_binary(encode(K)), iolist_to_binary(encode(V))}
                          || {K, V} <- maps:to_list(M)]),
    [$m, <<(map_size(M)):64/little>> | [[K, V] || {K, V} <- Entries]];
encode(_PidPortRefFun) ->
    throw(unknown).

list([H | T]) -> [$c, encode(H) | list(T)];
list([]) -> [$n];
list(Tail) -> [$|, encode(Tail)].

%% The fewest bytes holding I in two's complement (num-bigint's
%% to_signed_bytes_le, one form per value).
signed_bytes(I, N) ->
    Half = 1 bsl (8 * N - 1),
    case I >= -Half andalso I < Half of
        true -> N;
        false -> signed_bytes(I, N + 1)
    end.

%% FNV-1a over an iolist, flattened first: one loop of one
%% binary-matching clause, in which the compiler keeps one match context
%% (walking the iolist's small parts one call each costs 5 times more).
hash(H, IoList) ->
    hash_bin(H, iolist_to_binary(IoList)).

hash_bin(H, <<Byte, Rest/binary>>) -> hash_bin(((H bxor Byte) * ?PRIME) band (?SHARDS - 1), Rest);
hash_bin(H, <<>>) -> H.
