#!/usr/bin/env bash
# padec check on small ad-hoc workloads: every one must PASS against the oracle, exit 0.
set -u
padec=${1:?usage: check.sh PADEC_BINARY SOURCE_DIR}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

common='q_heads=8 kv_heads=2 head_dim=64'
workloads=(
  "name=bf16-mixed $common page=4 kv=bf16 lens=1,17,300,0,1000x3"
  "name=fp16-hnd $common page=16 kv=fp16 layout=hnd q=fp16 o=fp32 lens=513,77,2"
  "name=fp8-tensor q_heads=16 kv_heads=4 head_dim=128 page=8 kv=fp8 lens=700,3,1500"
  "name=fp8-token $common page=1 kv=fp8 scales=token q_len=2 lens=1,2,40,400"
  "name=fp8-device $common page=32 kv=fp8 scales=device lens=129,1000"
  "name=window-q4 $common page=16 kv=bf16 window=37 q_len=4 lens=0,3,4,5,600,2000"
  "name=hd256-g1 q_heads=4 kv_heads=4 head_dim=256 page=1024 kv=bf16 window=0 lens=1500,1"
)
args=()
for w in "${workloads[@]}"; do args+=(--workload "$w"); done

# Workers: many (every long sequence split), and fewer than KV heads (no splits at all).
for workers in 24 1; do
  out=$("$padec" check --backend cpu --workers "$workers" --partition 16 "${args[@]}" 2>&1)
  rc=$?
  [[ $rc -eq 0 ]] || fail "check --workers $workers exited $rc"
  n=$(grep -c ' PASS$' <<<"$out")
  [[ $n -eq ${#workloads[@]} ]] || fail "check --workers $workers: $n of ${#workloads[@]} PASS"
  if grep -q FAIL <<<"$out"; then fail "check --workers $workers printed FAIL"; fi
  [[ $rc -eq 0 && $n -eq ${#workloads[@]} ]] || echo "$out"
done

# The default backend (the GPU where there is one) on one workload of the real shapes.
out=$("$padec" check --scale-lengths 1/16 \
  --workload 'name=auto q_heads=32 kv_heads=8 head_dim=128 page=16 kv=bf16 lens=32768,1024x7' 2>&1)
rc=$?
[[ $rc -eq 0 ]] && grep -q ' PASS$' <<<"$out" || { fail "check (auto backend) exited $rc"; echo "$out"; }

# --policy auto: padec_choose's pick per workload, named on each row, and it must PASS: the grid
# path where every (sequence, KV head) fills a worker with even lengths, a cost plan when skewed.
out=$("$padec" check --backend cpu --policy auto --workers 16 \
  --workload 'name=even q_heads=8 kv_heads=2 head_dim=64 page=16 kv=bf16 q_len=2 lens=300x8' \
  --workload 'name=skew q_heads=8 kv_heads=2 head_dim=64 page=16 kv=bf16 lens=4000,30x7' 2>&1)
rc=$?
[[ $rc -eq 0 ]] || fail "check --policy auto exited $rc"
grep -q '^even .* PASS \[auto: grid, 1 split\]$' <<<"$out" || fail "check --policy auto: even batch not on the grid path"
grep -q '^skew .* PASS \[auto: cost, 16 workers\]$' <<<"$out" || fail "check --policy auto: skewed batch not under cost"
grep -q 'policy auto' <<<"$out" || fail "check --policy auto: the header does not say auto"
# padec plan under auto: the grid pick has no plan and says so; the cost pick shows its plan.
plan=$("$padec" plan --policy auto --workers 16 \
  --workload 'name=even q_heads=8 kv_heads=2 head_dim=64 page=16 kv=bf16 lens=300x8' \
  --workload 'name=skew q_heads=8 kv_heads=2 head_dim=64 page=16 kv=bf16 lens=4000,30x7' 2>&1)
grep -q '^even .*auto: the grid path, 1 split' <<<"$plan" || fail "plan --policy auto: no grid line"
grep -q '^skew  *8  *16 ' <<<"$plan" || fail "plan --policy auto: no plan row for the skewed batch"
[[ $rc -eq 0 ]] || echo "$out"

# The default scale: the largest 1/2^k to 65536 KV tokens, as the lengths are really scaled (each
# rounded up, none below its query tokens); where those floors keep a batch above the cap, the
# row says it ran at full size rather than name a factor it did not apply.
out=$("$padec" check --backend cpu --workload "name=long $common page=16 kv=bf16 lens=70000" \
  --workload "name=floors $common page=16 kv=bf16 lens=1x70000" 2>&1)
grep -qE '^long +1/2 +1 +35000 ' <<<"$out" || fail "check's default scale of 70000 tokens: not 1/2, 35000"
grep -qE '^floors +1 +70000 +70000 ' <<<"$out" || fail "check's default scale of 70000 one-token sequences: not 1"
grep -q ' FAIL' <<<"$out" && fail "check of the scaled workloads printed FAIL"
[[ $failures -eq 0 ]] || echo "$out"

# The name and scale columns widen to their longest entry: every row's scale ends where the
# header's does (a six-character column let 1/2147483648 and long names push the rows).
out=$("$padec" check --backend cpu --scale-lengths 1/2147483648 \
  --workload "name=a-workload-name-of-thirty-chars $common page=16 kv=bf16 lens=100" \
  --workload "name=short $common page=16 kv=bf16 lens=100" 2>&1)
header_end=$(grep '^workload ' <<<"$out" | grep -bo 'scale' | head -1 | cut -d: -f1)
for name in a-workload-name-of-thirty-chars short; do
  row_end=$(grep "^$name " <<<"$out" | grep -bo '1/2147483648' | head -1 | cut -d: -f1)
  [[ -n $header_end && -n $row_end && $((row_end + 12)) -eq $((header_end + 5)) ]] ||
    fail "check's columns: the scale of '$name' does not end under the header's"
done
[[ $failures -eq 0 ]] || echo "$out"

if ((failures)); then exit 1; fi
echo "check: ok"
