#!/usr/bin/env bash
# A/B of two padec binaries on one machine: `padec bench --csv` with each binary in turn,
# alternated (base, new, base, new, ...), so that both meet the same card, clocks and machine
# state. Machine starts of the same card differ by 2 to 3%, more than most kernel changes, so
# docs/PERF.md compares kernels only this way. Prints, per workload, the metric of every run
# (effective / copy where the bench measured a copy, that is on a GPU; effective GB/s otherwise)
# and new / base of the two binaries' means.
#
# Usage: scripts/ab-bench.sh BASE_PADEC NEW_PADEC [--rounds N] [padec bench options and files]
#   --rounds N   base-new pairs (default 2)
#   the rest goes to `padec bench` (default: --policy auto bench/workloads.txt), e.g.
#   scripts/ab-bench.sh build-base/padec build/padec --policy auto --only fp8 bench/workloads.txt
# The raw CSV of every run is kept under $OUT (or a temporary folder, named at the end).
set -euo pipefail
usage() { sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 2 ]] || usage
base=$1 new=$2
shift 2
rounds=2
if [[ $# -ge 2 && $1 == --rounds ]]; then
  rounds=$2
  shift 2
fi
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "ab-bench: --rounds needs a positive count, got '$rounds'" >&2; exit 2; }
for binary in "$base" "$new"; do
  [[ -x $binary ]] || { echo "ab-bench: '$binary' is not an executable padec" >&2; exit 2; }
done
[[ $# -gt 0 ]] || set -- --policy auto bench/workloads.txt
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

runs=()
for ((round = 1; round <= rounds; ++round)); do
  for side in base new; do
    binary=$base
    [[ $side == new ]] && binary=$new
    file="$out/ab-$side-$round.csv"
    "$binary" bench --csv "$@" >"$file" || { echo "ab-bench: $binary bench failed (exit $?)" >&2; exit 1; }
    runs+=("$file")
  done
done

# Columns by name from each file's header; a workload's metric is effective_over_copy when the
# run measured a copy, else effective_gbps. Rows keep the order of the first run.
awk -F, -v rounds="$rounds" '
  FNR == 1 {
    ++file
    for (i = 1; i <= NF; ++i) column[$i] = i
    next
  }
  {
    name = $column["workload"]
    gsub(/"/, "", name)
    metric = $column["effective_over_copy"]
    if (metric == "") { metric = $column["effective_gbps"]; unit = "effective GB/s" }
    else unit = "effective / copy"
    if (file == 1) order[++count] = name
    side = (file % 2 == 1) ? "base" : "new"
    value[name, file] = metric
    sum[name, side] += metric
    runs_of[name, side] += 1
  }
  END {
    printf "%-24s", "workload"
    for (f = 1; f <= file; ++f) printf " %9s", (f % 2 == 1 ? "base" : "new") int((f + 1) / 2)
    printf " %9s\n", "new/base"
    for (k = 1; k <= count; ++k) {
      name = order[k]
      printf "%-24s", name
      for (f = 1; f <= file; ++f) printf " %9s", ((name, f) in value ? value[name, f] : "-")
      b = runs_of[name, "base"] ? sum[name, "base"] / runs_of[name, "base"] : 0
      n = runs_of[name, "new"] ? sum[name, "new"] / runs_of[name, "new"] : 0
      if (b > 0) printf " %9.3f\n", n / b
      else printf " %9s\n", "-"
    }
    printf "metric: %s; %d base-new pairs, alternated\n", unit, rounds
  }' "${runs[@]}"
echo "raw runs: $out"
