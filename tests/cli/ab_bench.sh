#!/usr/bin/env bash
# scripts/ab-bench.sh with the same padec as base and new (cpu backend, small workloads): a row
# per workload with every run's metric and a new / base ratio; bad arguments exit 2.
set -u
padec=${1:?usage: ab_bench.sh PADEC_BINARY SOURCE_DIR}
source_dir=${2:?usage: ab_bench.sh PADEC_BINARY SOURCE_DIR}
script="$source_dir/scripts/ab-bench.sh"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/w.txt" <<'W'
name=ab-bf16 q_heads=8 kv_heads=2 head_dim=128 page=16 kv=bf16 window=0 lens=300,40x3
name=ab-fp8 q_heads=8 kv_heads=2 head_dim=64 page=16 kv=fp8 window=0 lens=500x2
W

out=$(OUT="$dir/runs" bash "$script" "$padec" "$padec" --rounds 2 --backend cpu --iterations 1 "$dir/w.txt" 2>&1)
rc=$?
[[ $rc -eq 0 ]] || fail "ab-bench exited $rc"
head=$(head -n 1 <<<"$out")
[[ $head =~ ^workload\ +base1\ +new1\ +base2\ +new2\ +new/base$ ]] || fail "header is '$head'"
for name in ab-bf16 ab-fp8; do
  row=$(grep "^$name " <<<"$out")
  # name, four runs, the ratio: all numbers
  [[ $row =~ ^$name(\ +[0-9]+\.[0-9]+){5}$ ]] || fail "row of $name is '$row'"
done
grep -q '^metric: effective GB/s; 2 base-new pairs, alternated$' <<<"$out" || fail "no metric line"
n=$(ls "$dir/runs"/ab-*.csv 2>/dev/null | wc -l)
[[ $n -eq 4 ]] || fail "$n raw runs kept under OUT, want 4"
[[ $failures -eq 0 ]] || echo "$out"

bash "$script" "$padec" >/dev/null 2>&1
[[ $? -eq 2 ]] || fail "one binary: want exit 2"
bash "$script" "$padec" "$dir/missing" >/dev/null 2>&1
[[ $? -eq 2 ]] || fail "a missing binary: want exit 2"
bash "$script" "$padec" "$padec" --rounds 0 >/dev/null 2>&1
[[ $? -eq 2 ]] || fail "--rounds 0: want exit 2"

[[ $failures -eq 0 ]] && echo "ab-bench: ok"
exit $((failures > 0))
