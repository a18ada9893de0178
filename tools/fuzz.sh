#!/usr/bin/env bash
# The libFuzzer targets of fuzz/: builds them with clang-14 under ASan and UBSan
# in build-fuzz/, then
#   tools/fuzz.sh            fuzzes each for FUZZ_SECONDS (60) on a scratch copy
#                            of its corpus (build-fuzz/corpus/<target>, kept
#                            between runs); crashes go to build-fuzz/artifacts/
#   tools/fuzz.sh --replay   runs each once over its committed corpus
#                            (fuzz/corpus/<target>), at the CPU's kernel level
#                            and at TILEDRAW_ISA=scalar: a regression test
# Prints per target the executions, new coverage and result, and exits non-zero
# on any crash, leak, timeout, out-of-memory or sanitizer report.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=fuzz
case "${1:-}" in
  "") ;;
  --replay) mode=replay ;;
  *) echo "usage: tools/fuzz.sh [--replay]" >&2; exit 2 ;;
esac

build=build-fuzz
# auto's remembered choices stay in the build tree, not the caller's home.
export TILEDRAW_CACHE_DIR="$PWD/$build/cache"
seconds=${FUZZ_SECONDS:-60}
targets=(safetensors_header_fuzz quant8s_fuzz model_loader_fuzz png_metadata_fuzz tokenizer_fuzz a1111_request_fuzz)
# Longest input per target: room for a few KB of JSON or text, and for the
# structured targets what their decoders read.
declare -A max_len=([safetensors_header_fuzz]=16384 [quant8s_fuzz]=4096 [model_loader_fuzz]=512
                    [png_metadata_fuzz]=16384 [tokenizer_fuzz]=4096 [a1111_request_fuzz]=8192)
limits=(-timeout=10 -rss_limit_mb=2048)

# One worker per target, one OpenMP thread: the runs stay on one core.
export OMP_NUM_THREADS=1
export UBSAN_OPTIONS=print_stacktrace=1

mkdir -p "$build"
# Debug: asserts stay on; the fuzz flags add -O1.
CXX=clang++-14 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTILEDRAW_FUZZ=ON -DBUILD_TESTING=OFF \
  -DTILEDRAW_BUILD_BENCH=OFF >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
start=$SECONDS
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >"$build/build.log" 2>&1 || { cat "$build/build.log"; exit 1; }
echo "fuzz: built the targets in $((SECONDS - start)) s"

mkdir -p "$build/logs" "$build/artifacts"
failed=0

# What went wrong, from a target's log: the first report line, and the input
# (the artifact written, or the last file run).
problem() {
  grep -m1 -E "^fuzz: |ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: " "$1" || true
  grep -oE "(Test unit written to|Running:) .*" "$1" | tail -n1 || true
}

final_stat() { grep -m1 "^stat::$2:" "$1" | awk '{print $2}'; }

run_fuzz() {
  local target=$1 log="$build/logs/$1.log" corpus="$build/corpus/$1"
  mkdir -p "$corpus"
  cp fuzz/corpus/"$target"/* "$corpus"/
  local status=0
  "$build/fuzz/$target" -max_total_time="$seconds" -max_len="${max_len[$target]}" "${limits[@]}" \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/$target-" "$corpus" >"$log" 2>&1 || status=$?
  local result=ok
  [ "$status" -eq 0 ] || result="FAILED (exit $status)"
  local coverage
  coverage=$(grep -oE "DONE +cov: [0-9]+" "$log" | awk '{print $3}' || true)
  printf '%-24s %10s executions  %5s new units  %6s edges  %s\n' "$target" \
    "$(final_stat "$log" number_of_executed_units)" "$(final_stat "$log" new_units_added)" "${coverage:-?}" "$result"
  if [ "$status" -ne 0 ]; then
    problem "$log" | sed 's/^/    /'
    echo "    log: $log"
    failed=1
  fi
}

# Runs every committed input once; after a failing one, goes on with the
# rest, so that the log names every input that fails.
run_replay() {
  local target=$1 isa
  for isa in native scalar; do
    local log="$build/logs/$target.replay-$isa.log" run_log="$build/logs/$target.replay-run.log"
    local inputs=(fuzz/corpus/"$target"/*) isa_env=() failures=0 details=""
    [ "$isa" = scalar ] && isa_env=(TILEDRAW_ISA=scalar)
    local rest=("${inputs[@]}")
    : >"$log"
    while [ ${#rest[@]} -gt 0 ]; do
      local status=0
      env "${isa_env[@]}" "$build/fuzz/$target" "${limits[@]}" "${rest[@]}" >"$run_log" 2>&1 || status=$?
      cat "$run_log" >>"$log"
      [ "$status" -eq 0 ] && break
      failures=$((failures + 1))
      details+=$(problem "$run_log" | sed 's/^/    /')$'\n'
      local bad i
      bad=$(grep -oE "^Running: .*" "$run_log" | tail -n1 | cut -d' ' -f2-)
      for i in "${!rest[@]}"; do [ "${rest[$i]}" = "$bad" ] && break; done
      [ "${rest[$i]}" = "$bad" ] || break  # not an input's fault: stop here
      rest=("${rest[@]:$((i + 1))}")
    done
    rm -f "$run_log"
    local result=ok
    [ "$failures" -eq 0 ] || { result="FAILED on $failures (log: $log)"; failed=1; }
    printf '%-24s %-7s %4s inputs  %s\n%s' "$target" "$isa" "${#inputs[@]}" "$result" "$details"
  done
}

for target in "${targets[@]}"; do
  "run_$mode" "$target"
done
exit "$failed"
