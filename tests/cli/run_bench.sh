#!/usr/bin/env bash
# padec run and padec bench (cpu) on a small workloads file: exit 0, one line per workload.
set -u
padec=${1:?usage: run_bench.sh PADEC_BINARY SOURCE_DIR}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

file=$(mktemp)
trap 'rm -f "$file"' EXIT
cat >"$file" <<'W'
# two small workloads; blank lines and comments are skipped

name=small-bf16 q_heads=8 kv_heads=2 head_dim=128 page=16 kv=bf16 window=0 lens=1000,3x4,0
   name=small-fp8 q_heads=8 kv_heads=2 head_dim=64 page=16 kv=fp8 window=100 q_len=2 lens=2000x2
W

out=$("$padec" run "$file" 2>&1)
rc=$?
[[ $rc -eq 0 ]] || fail "run exited $rc"
n=$(grep -c 'ok (no NaN/Inf)' <<<"$out")
[[ $n -eq 2 ]] || fail "run: $n of 2 workloads ok"
[[ $rc -eq 0 && $n -eq 2 ]] || echo "$out"

out=$("$padec" bench --backend cpu --iterations 2 --csv "$file" 2>&1)
rc=$?
[[ $rc -eq 0 ]] || fail "bench --csv exited $rc"
header=$(head -n 1 <<<"$out")
[[ "$header" == workload,backend,*effective_gbps* ]] || fail "bench --csv header is '$header'"
n=$(grep -c '^"small-' <<<"$out")
[[ $n -eq 2 ]] || fail "bench --csv printed $n rows, want 2"
[[ $rc -eq 0 && $n -eq 2 ]] || echo "$out"

out=$("$padec" bench --backend cpu --iterations 1 --only fp8 "$file" 2>&1)
rc=$?
[[ $rc -eq 0 ]] || fail "bench exited $rc"
grep -q '^small-fp8 ' <<<"$out" || { fail "bench --only fp8 has no small-fp8 row"; echo "$out"; }
if grep -q '^small-bf16 ' <<<"$out"; then fail "bench --only fp8 ran small-bf16"; fi

# A fitted cost model reaches the cost plans of run and bench (the plans themselves: plan_dump.sh).
for cmd in run "bench --backend cpu --iterations 1"; do
  # shellcheck disable=SC2086
  out=$("$padec" $cmd --policy cost --cost-model 11400,3900,2000 --only bf16 "$file" 2>&1)
  rc=$?
  [[ $rc -eq 0 ]] && grep -q '^small-bf16 ' <<<"$out" ||
    { fail "$cmd --policy cost --cost-model exited $rc"; echo "$out"; }
done

# Under auto a grid pick shows as such: "grid:N" in the workers column, and in the CSV workers 0
# with the split count; a plan shows its workers and 0 splits.
grid="name=even q_heads=8 kv_heads=8 head_dim=64 page=16 kv=bf16 lens=64x40"
plan="name=skew q_heads=8 kv_heads=2 head_dim=64 page=16 kv=bf16 lens=2000,16x3"
out=$("$padec" bench --backend cpu --iterations 1 --policy auto --workers 16 --workload "$grid" \
  --workload "$plan" 2>&1)
grep -qE '^even +40 +[0-9]+ +[0-9.]+ +grid:1 ' <<<"$out" || { fail "bench: the grid pick's workers column"; echo "$out"; }
grep -qE '^skew +4 +[0-9]+ +[0-9.]+ +16 ' <<<"$out" || { fail "bench: the plan's workers column"; echo "$out"; }
out=$("$padec" bench --backend cpu --iterations 1 --policy auto --workers 16 --csv --workload "$grid" \
  --workload "$plan" 2>&1)
grep -q ',grid_splits$' <<<"$out" || { fail "bench --csv: no grid_splits column"; echo "$out"; }
grep -qE '^"even",cpu,"cpu",40,[0-9]+,[0-9]+,0,.*,1$' <<<"$out" || { fail "bench --csv: the grid row"; echo "$out"; }
grep -qE '^"skew",cpu,"cpu",4,[0-9]+,[0-9]+,16,.*,0$' <<<"$out" || { fail "bench --csv: the plan row"; echo "$out"; }

if ((failures)); then exit 1; fi
echo "run_bench: ok"
