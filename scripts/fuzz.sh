#!/usr/bin/env bash
# Coverage-guided fuzzing of every network decoder (fuzz/fuzz_targets/*.rs,
# entry points in src/fuzz_api.rs) with libFuzzer, on the stable toolchain.
#
# libFuzzer comes from the libfuzzer-sys crate (its C++ sources compiled by
# its build script), and coverage from rustc's stable sancov flags below, so
# no nightly, no cargo-fuzz and no sanitizer runtime are needed (the code is
# memory-safe Rust: the fuzzer looks for panics, overflows, aborts, stack
# overflows, hangs and runaway memory).
#
#   scripts/fuzz.sh                  every target for 20 s (CI)
#   scripts/fuzz.sh -t 60 term       one target for 60 s
#   scripts/fuzz.sh --long 2         every target for 2 hours, one after another
#   scripts/fuzz.sh --jobs 2 ...     targets in parallel (default 1)
#   scripts/fuzz.sh --build          build only
#
# The corpus each run grows is kept in $FUZZ_OUT (default /tmp/eq-fuzz), seeded
# from fuzz/corpus/<target>/; crashes land in $FUZZ_OUT/artifacts/<target>/.
# Exit status: non-zero if any target crashed (or failed to build). A crash
# found: minimize it (printed below), copy it to fuzz/regressions/<target>/,
# and `cargo test --lib fuzz_api` replays it from then on.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=20
JOBS=1
BUILD_ONLY=0
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--time) SECONDS_EACH=$2; shift 2 ;;
    --long) SECONDS_EACH=$(awk -v h="$2" 'BEGIN { printf "%d", h * 3600 }'); shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --build) BUILD_ONLY=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(frame handshake atom_cache term control incoming services locker)
fi

# The fuzzer itself (libfuzzer-sys, from crates.io) is fetched and built by
# cargo; its build script needs a C++ compiler.
# Installed as the other scripts install (scripts/lib.sh: as root or through
# sudo, without recommends; g++'s only one, libc6-dev, is already there where
# Rust links programs).
log() { echo "fuzz: $*"; }
warn() { echo "fuzz: WARNING: $*" >&2; }
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
if ! command -v c++ >/dev/null 2>&1; then
  log "installing g++ (libFuzzer is C++)"
  apt_install g++ >/dev/null || { warn "installing g++ failed"; exit 1; }
fi

OUT=${FUZZ_OUT:-/tmp/eq-fuzz}
HOST=$(rustc -vV | sed -n 's/^host: //p')
# Stable rustc flags: SanitizerCoverage with the counters, PC table and
# comparison tracing libFuzzer uses; `cfg(fuzzing)` as cargo-fuzz sets it.
export RUSTFLAGS="--cfg fuzzing -C passes=sancov-module \
 -C llvm-args=-sanitizer-coverage-level=4 \
 -C llvm-args=-sanitizer-coverage-inline-8bit-counters \
 -C llvm-args=-sanitizer-coverage-pc-table \
 -C llvm-args=-sanitizer-coverage-trace-compares \
 -C debug-assertions -C overflow-checks"
# --target: the flags then apply to the targets' code only, not to build
# scripts and proc macros (which cannot link the coverage callbacks).
(cd fuzz && cargo build --release --target "$HOST" --bins)
BIN=$ROOT/fuzz/target/$HOST/release
[ "$BUILD_ONLY" = 1 ] && exit 0

run_target() {
  local t=$1
  mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t" "$OUT/logs"
  # Seeds and past crashes go into the working corpus (merged, never moved).
  cp -n "$ROOT/fuzz/corpus/$t/"* "$OUT/corpus/$t/" 2>/dev/null || true
  cp -n "$ROOT/fuzz/regressions/$t/"* "$OUT/corpus/$t/" 2>/dev/null || true
  local log=$OUT/logs/$t.log
  echo "fuzz: $t for ${SECONDS_EACH}s (log $log)"
  set +e
  "$BIN/$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$OUT/artifacts/$t/" "$OUT/corpus/$t" >"$log" 2>&1
  local rc=$?
  set -e
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "fuzz: $t: exit $rc, ${execs:-?} executions in ${SECONDS_EACH}s"
  if [ $rc -ne 0 ]; then
    touch "$OUT/failed.$t"
    echo "fuzz: $t CRASHED; last lines of $log:"
    tail -n 40 "$log"
    for a in "$OUT/artifacts/$t/"*; do
      [ -e "$a" ] || continue
      echo "fuzz: minimize with: $BIN/$t -minimize_crash=1 -runs=10000 -exact_artifact_path=$a.min $a"
    done
    return 1
  fi
}

mkdir -p "$OUT"
rm -f "$OUT"/failed.*
for t in "${TARGETS[@]}"; do
  run_target "$t" &
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
done
wait
if compgen -G "$OUT/failed.*" >/dev/null; then
  echo "fuzz: a target crashed (inputs under $OUT/artifacts)"
  exit 1
fi
echo "fuzz: no crash in ${#TARGETS[@]} targets"
