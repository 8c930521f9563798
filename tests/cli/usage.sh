#!/usr/bin/env bash
# Usage errors exit 2 with a message that names the problem.
set -u
padec=${1:?usage: usage.sh PADEC_BINARY SOURCE_DIR}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

good='name=u q_heads=8 kv_heads=2 head_dim=64 page=4 kv=bf16'
# expect_usage PATTERN ARGS...: exit 2 and PATTERN in stderr.
expect_usage() {
  local pattern=$1
  shift
  local err rc
  err=$("$padec" "$@" 2>&1 >/dev/null)
  rc=$?
  [[ $rc -eq 2 ]] || fail "padec $* exited $rc, want 2"
  grep -qF -- "$pattern" <<<"$err" || fail "padec $*: message '$err' does not mention '$pattern'"
}

expect_usage "frobnicate" frobnicate
expect_usage "--frob" run --frob
expect_usage "--workers" plan --workers
expect_usage "--workers 0" plan --workers 0
expect_usage "--backend gpu" check --backend gpu
expect_usage "--partition 100" plan --partition 100
expect_usage "--dump" bench --dump
expect_usage "--policy greedy" plan --policy greedy
expect_usage "--cost-model 1,2" plan --cost-model 1,2
expect_usage "--cost-model 0,2,3" plan --cost-model 0,2,3
expect_usage "--cost-model 1,-2,3" bench --cost-model 1,-2,3
expect_usage "--cost-model 1,inf,3" run --cost-model 1,inf,3
expect_usage "--cost-model 1,2,3x" check --cost-model 1,2,3x
expect_usage "--calibrate" bench --calibrate --workload "$good lens=5"
expect_usage "--calibrate" bench --calibrate --backend cpu
expect_usage "--calibrate" plan --calibrate
expect_usage "no --policy, --cost-model or --seed" bench --calibrate --policy cost
expect_usage "no --policy, --cost-model or --seed" bench --calibrate --cost-model 1,2,3
expect_usage "no --policy, --cost-model or --seed" bench --calibrate --seed 5
expect_usage "--calibrate goes with none of" bench --calibrate --compare
expect_usage "--calibrate goes with none of" bench --calibrate --trace
expect_usage "no --scale-lengths or --partition" bench --calibrate --partition 512
expect_usage "no --scale-lengths or --partition" bench --calibrate --scale-lengths 0.5
expect_usage "--csv goes with neither --compare nor --device-plan" bench --csv --compare --workload "$good lens=5"
expect_usage "--csv goes with neither --compare nor --device-plan" bench --csv --device-plan --workload "$good lens=5"
expect_usage "--trace needs the cuda backend" bench --trace --backend cpu --workload "$good lens=5"
expect_usage "--compare times the GPU" bench --compare --backend cpu --workload "$good lens=5"
expect_usage "--device-plan times the GPU" bench --device-plan --backend cpu --workload "$good lens=5"
expect_usage "even policy only: --policy auto" bench --device-plan --policy auto --workload "$good lens=5"
expect_usage "even policy only: --policy cost" bench --device-plan --policy cost --workload "$good lens=5"
expect_usage "--trace" plan --trace
# A valued option given twice is refused, naming both values (the second used to win silently);
# --workload adds a workload each time.
expect_usage "option '--policy' given twice ('even', then 'cost')" plan --policy even --policy=cost --workload "$good lens=5"
expect_usage "option '--workers' given twice ('8', then '8')" run --workers 8 --workers 8 --workload "$good lens=5"
expect_usage "option '--seed' given twice" check --seed 1 --seed 2 --workload "$good lens=5"
if ! "$padec" plan --workload "$good lens=5" --workload "${good/name=u/name=v} lens=7" >/dev/null 2>&1; then
  fail "padec plan with --workload twice failed"
fi
# Without CUDA, --calibrate says it needs a GPU (exit 2); with CUDA it may run, so only then.
if "$padec" --version | grep -q "CUDA kernels: not built"; then
  expect_usage "needs a GPU" bench --calibrate
fi
expect_usage "--scale-lengths 3" check --scale-lengths 3
expect_usage "frob" help frob
expect_usage "no-such-file" plan no-such-file.txt
expect_usage "q_len=5" check --workload "$good lens=10 q_len=5"
expect_usage "q_len=0" check --workload "$good lens=10 q_len=0"
expect_usage "lens" plan --workload "$good"
expect_usage "lens=1,,2" plan --workload "$good lens=1,,2"
# More (sequence, KV head) pairs than a plan's int32 work index holds (found by the fuzzer).
expect_usage "more than a plan holds" plan \
  --workload 'name=big q_heads=32 kv_heads=32 head_dim=128 page=16 kv=fp8 lens=32768x11102420,14'
expect_usage "lens=5x" plan --workload "$good lens=5x"
expect_usage "lens=-3" plan --workload "$good lens=-3"
expect_usage "colour" plan --workload "$good lens=5 colour=red"
expect_usage "head_dim=96" plan --workload "name=u q_heads=8 kv_heads=2 head_dim=96 page=4 kv=bf16 lens=5"
expect_usage "page=3" plan --workload "name=u q_heads=8 kv_heads=2 head_dim=64 page=3 kv=bf16 lens=5"
expect_usage "kv=int8" plan --workload "name=u q_heads=8 kv_heads=2 head_dim=64 page=4 kv=int8 lens=5"
expect_usage "kv_heads=3" plan --workload "name=u q_heads=8 kv_heads=3 head_dim=64 page=4 kv=bf16 lens=5"
expect_usage "scales=token" plan --workload "$good lens=5 scales=token"
expect_usage "twice" plan --workload "$good lens=5 page=8"

# A bad line in a file names the file and the line.
file=$(mktemp)
trap 'rm -f "$file"' EXIT
printf '# comment\n\n%s lens=5\n%s lens=5 window=-1\n' "$good" "$good" >"$file"
expect_usage "$file:4: window=-1" plan "$file"
# A NUL byte would end the line for the parser and hide the rest: refused, not cut short.
printf '%s lens=5\0 garbage=1\n' "$good" >"$file"
expect_usage "$file:1: a NUL byte" plan "$file"
# A directory names why it cannot be read.
expect_usage "$(dirname "$file"): read error: Is a directory" plan "$(dirname "$file")"
# A count past the largest batch names the limit.
expect_usage "COUNT 1..16777216" plan --workload "$good lens=0x16777217"

# No arguments at all: the overview on stderr, exit 2.
"$padec" >/dev/null 2>&1
rc=$?
[[ $rc -eq 2 ]] || fail "padec without arguments exited $rc, want 2"

# Output that cannot be written (a full device) fails the command, with a message, rather than
# leave a truncated table behind an exit status of 0.
if [[ -w /dev/full ]]; then
  full_output() { # COMMAND...: run padec with stdout on /dev/full
    local message rc
    message=$("$padec" "$@" 2>&1 >/dev/full)
    rc=$?
    [[ $rc -eq 1 ]] || fail "padec $* > /dev/full exited $rc, want 1"
    grep -q "writing the output failed" <<<"$message" || fail "padec $* > /dev/full: '$message'"
  }
  full_output --help
  full_output plan --workload "$good lens=5,9"
fi

# Where there is no GPU (the run's header says the CPU was picked, and why), every request that
# needs one exits 2 alike, with that reason.
header=$("$padec" run --workload "$good lens=5" 2>/dev/null | head -1)
if [[ $header == *"backend cpu (auto: "* ]]; then
  reason=${header#*backend cpu (auto: }
  reason=${reason%%); lengths*}
  expect_usage "--backend cuda: $reason" run --backend cuda --workload "$good lens=5"
  expect_usage "--backend cuda: $reason" check --backend cuda --workload "$good lens=5"
  expect_usage "it needs the cuda backend, and this run's is cpu (auto: $reason)" \
    bench --compare --workload "$good lens=5"
  expect_usage "--calibrate needs a GPU: $reason" bench --calibrate
fi

if ((failures)); then exit 1; fi
echo "usage: ok"
