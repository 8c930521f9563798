#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (-fsanitize=fuzzer,address,undefined) and runs
# each for a while, starting from its seed corpus in fuzz/corpus/<target>/.
#
# Usage: fuzz/run.sh [SECONDS [TARGET...]]
#   SECONDS  fuzzing time per target (default 30); 0 replays the seed corpus and the saved corpus
#            once, without fuzzing (a regression run)
#   TARGET   fuzz_workload_parse, fuzz_params, fuzz_schedule, fuzz_plan_corrupt (default: all)
# Environment (optional): PADEC_FUZZ_BUILD, the build directory (default build-fuzz); CC, a clang
# with libFuzzer (default clang).
#
# New inputs found go to $PADEC_FUZZ_BUILD/corpus/<target>/ (never into the seed corpus); a
# crashing input goes to $PADEC_FUZZ_BUILD/artifacts/, and the script prints the command that
# replays it. Exit status: 0 when every target ran clean, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(fuzz_workload_parse fuzz_params fuzz_schedule fuzz_plan_corrupt)
build=${PADEC_FUZZ_BUILD:-build-fuzz}
cc=${CC:-clang}
[[ $cc == cc || $cc == gcc* ]] && cc=clang # libFuzzer is clang's; a gcc CC from the caller won't do

say() { printf '\n==> %s\n' "$*"; }

# clang and its runtime libraries (libclang_rt.fuzzer comes with Debian's libclang-rt-*-dev,
# which the clang package does not pull in without recommends).
fuzzer_works() {
  command -v "$cc" >/dev/null || return 1
  local dir
  dir=$(mktemp -d)
  printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
    >"$dir/probe.c"
  "$cc" -fsanitize=fuzzer,address,undefined "$dir/probe.c" -o "$dir/probe" >/dev/null 2>&1
  local rc=$?
  rm -rf "$dir"
  return $rc
}
if ! fuzzer_works; then
  say "installing clang and libclang-rt-dev (libFuzzer)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends clang libclang-rt-dev
  cc=clang
  fuzzer_works || { echo "fuzz/run.sh: $cc cannot build libFuzzer targets" >&2; exit 1; }
fi
"$cc" --version | head -n 1

flags=(-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
  -fno-sanitize-recover=all -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes
  -Wmissing-prototypes -Wno-missing-field-initializers -Iinclude -Isrc -Ibench)
# The host library without CUDA: every C source of src/ (cuda_stub.c stands in for the kernels),
# so that a new scheduler file needs no change here.
library=(src/*.c src/sched/*.c src/cpu/*.c)
declare -A extra=([fuzz_workload_parse]="bench/workload.c" [fuzz_params]="" [fuzz_schedule]=""
  [fuzz_plan_corrupt]="bench/case.c")
declare -A max_len=([fuzz_workload_parse]=4096 [fuzz_params]=512 [fuzz_schedule]=4096
  [fuzz_plan_corrupt]=64)

mkdir -p "$build/artifacts"
say "building ${targets[*]} in $build"
for target in "${targets[@]}"; do
  [[ -f fuzz/$target.c ]] || { echo "fuzz/run.sh: no target fuzz/$target.c" >&2; exit 2; }
  # shellcheck disable=SC2086
  "$cc" "${flags[@]}" "fuzz/$target.c" "${library[@]}" ${extra[$target]:-} -lm -o "$build/$target"
done

status=0
for target in "${targets[@]}"; do
  corpus=$build/corpus/$target
  mkdir -p "$corpus"
  options=(-max_len="${max_len[$target]:-4096}" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1
    -artifact_prefix="$build/artifacts/$target-")
  [[ -f fuzz/$target.dict ]] && options+=(-dict="fuzz/$target.dict")
  if [[ $seconds == 0 ]]; then
    say "$target: replaying the corpus"
    options+=(-runs=0)
  else
    say "$target: fuzzing for ${seconds}s"
    options+=(-max_total_time="$seconds")
  fi
  rm -f "$build/artifacts/$target"-*
  log=$build/$target.log
  if "$build/$target" "${options[@]}" "$corpus" "fuzz/corpus/$target" >"$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' "$log" | tr '\n' ' '
    echo
  else
    status=1
    tail -n 60 "$log"
    echo "FAIL $target (log: $log)"
    for artifact in "$build/artifacts/$target"-*; do
      if [[ -e $artifact ]]; then echo "  replay: $build/$target $artifact"; fi
    done
  fi
done
((status == 0)) && say "fuzzing: every target ran clean" || say "fuzzing: failures above"
exit $status
