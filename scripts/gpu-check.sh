#!/usr/bin/env bash
# One call on a GPU machine: build with CUDA, run the GPU tests (full matrix, then a short subset
# under compute-sanitizer memcheck and racecheck) and the benchmark table.
# Usage: scripts/gpu-check.sh [build] [test] [sanitize] [soak] [python] [calibrate] [compare]
#        [workers] [autoworkers] [smallitems] [bench] [profile] [stalls] [sources] [durations] [probes] ...   (default: build test sanitize bench)
# Logs go to $OUT (or ./gpu-out) so that they come back from a remote run.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
steps=${*:-build test sanitize bench}
build=build-gpu
status=0
recommended=
has() { [[ " $steps " == *" $1 "* ]]; }

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
if has build; then
  cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPADEC_CUDA=ON >"$out/build.log" 2>&1 &&
    cmake --build $build -j "$(nproc)" >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
  grep -E "spill|lmem|warning" "$out/build.log" | sort -u | head -20
fi
if has test; then
  ./$build/tests/test_cuda_matrix 2>&1 | tee "$out/test_cuda.log" | tail -15 || status=1
  # Every cuda-labelled test but the matrix (just run) and the soak (its own step).
  ctest --test-dir $build -L cuda -E 'test_cuda_matrix|test_cuda_soak' --output-on-failure \
    --timeout 300 2>&1 | tee "$out/ctest-cuda.log" | tail -25
  grep -q "100% tests passed" "$out/ctest-cuda.log" || status=1
fi
if has sanitize; then
  for tool in memcheck racecheck synccheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 ./$build/tests/test_cuda_matrix --short \
      >"$out/sanitize-$tool.log" 2>&1
    rc=$?
    echo "compute-sanitizer $tool: exit $rc ($(grep -c -E '^========= (Invalid|Race|Barrier|Error)' "$out/sanitize-$tool.log") reports)"
    tail -3 "$out/sanitize-$tool.log"
    [ $rc -eq 0 ] || status=1
  done
  # The shard merge and the validation kernels, once each under memcheck. test_cuda_shard
  # provokes two cudaMalloc failures on purpose (pending errors padec must report), so API
  # errors are left out of the report; the test checks every CUDA call itself.
  for t in "test_cuda_shard 2" "test_cuda_validate --quick"; do
    compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 ./$build/tests/$t \
      >"$out/sanitize-memcheck-${t%% *}.log" 2>&1
    rc=$?
    echo "compute-sanitizer memcheck $t: exit $rc"
    tail -2 "$out/sanitize-memcheck-${t%% *}.log"
    [ $rc -eq 0 ] || status=1
  done
fi
if has soak; then
  ./$build/tests/test_cuda_soak --count ${PADEC_SOAK_COUNT:-3000} --seconds ${PADEC_SOAK_SECONDS:-240} \
    >"$out/soak.log" 2>&1 || status=1
  grep -E "FAIL" "$out/soak.log" | head -5
  tail -2 "$out/soak.log"
fi
if has python; then
  # The Python package's CUDA tests (torch on the GPU) against this build's library.
  PADEC_LIBRARY="$PWD/$build/libpadec.so" python3 -m pytest -q python/tests/test_cuda.py \
    >"$out/pytest-cuda.log" 2>&1 || status=1
  tail -3 "$out/pytest-cuda.log"
fi
if has calibrate; then
  ./$build/padec bench --calibrate 2>&1 | tee "$out/calibrate.txt" | tail -30 || status=1
fi
if has compare; then
  ./$build/padec bench --backend cuda --compare bench/workloads.txt 2>&1 | tee "$out/compare.txt" || status=1
fi
if has profile; then
  # Hardware counters of one decode launch per workload (clocks left alone).
  for w in b64-4k-bf16 b1-32k-bf16 b64-4k-fp8; do
    line=$(grep "^name=$w " bench/workloads.txt)
    ncu --clock-control none --kernel-name regex:decode_kernel --launch-skip 3 --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
      ./$build/padec bench --backend cuda --workload "$line" >"$out/ncu-$w.txt" 2>&1
    echo "== ncu $w"
    grep -E "DRAM Throughput|Memory Throughput|Duration|Achieved Occupancy|Theoretical Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Issue Slots|Block Limit" "$out/ncu-$w.txt" | head -24
  done
fi
if has stalls; then
  # Why the tile loop waits: per issued instruction, the cycles a warp spends in each stall
  # reason, with the instructions executed, the issue-slot use and the DRAM throughput (ncu,
  # clocks left alone) of one decode launch per workload. docs/PERF.md reads these.
  metrics=""
  for r in barrier long_scoreboard short_scoreboard wait math_pipe_throttle mio_throttle \
    lg_throttle dispatch_stall not_selected selected no_instruction branch_resolving membar; do
    metrics="$metrics,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio"
  done
  metrics="${metrics#,},smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active"
  metrics="$metrics,gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed"
  for w in b64-4k-fp8 b64-4k-bf16 b256-1k-fp8 g8-b128-2k-fp8; do
    line=$(grep "^name=$w " bench/workloads.txt)
    ncu --clock-control none --kernel-name regex:decode_kernel --launch-skip 3 --launch-count 1 \
      --metrics "$metrics" ./$build/padec bench --backend cuda --policy auto --iterations 50 \
      --workload "$line" >"$out/stalls-$w.txt" 2>&1
    echo "== $w: $(grep -E 'smsp__|gpu__|dram__' "$out/stalls-$w.txt" |
      sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' |
      awk '{printf "%s %s, ", $1, $NF}')"
  done
fi
if has sources; then
  # Where in the SASS the warps wait: ncu's warp-state sampling of one decode launch per workload
  # (clocks left alone, pages in order so that the placement does not vary), the instructions
  # with the most samples and their stall reasons (scripts/stall-sources.py; offsets as
  # scripts/sass.sh prints them).
  for w in b1-32k-fp8 g8-b128-2k-bf16 g8-b128-2k-fp8; do
    line=$(grep "^name=$w " bench/workloads.txt)
    PADEC_BENCH_PAGES=contiguous ncu --clock-control none --kernel-name regex:decode_kernel \
      --launch-skip 3 --launch-count 1 --section WarpStateStats --section SourceCounters \
      -f -o "$out/sources-$w" ./$build/padec bench --backend cuda --iterations 10 --workload "$line" \
      >"$out/sources-$w.log" 2>&1 || { status=1; tail -3 "$out/sources-$w.log"; continue; }
    echo "== $w"
    ncu --import "$out/sources-$w.ncu-rep" --page source --csv --print-source sass >"$out/sources-$w.csv" &&
      python3 scripts/stall-sources.py "$out/sources-$w.csv" 20 || status=1
  done
fi
if has durations; then
  # Each kernel's own duration (ncu, clocks left alone, caches flushed before each kernel), to
  # set against the event-timed median of the whole run: the difference is launch overhead.
  for w in b1-32k-bf16 b1-32k-fp8 g8-b128-2k-fp8 b256-1k-fp8; do
    line=$(grep "^name=$w " bench/workloads.txt)
    ncu --clock-control none --metrics gpu__time_duration.sum --kernel-name regex:'decode_kernel|clear_merge' \
      --launch-skip 20 --launch-count 6 ./$build/padec bench --backend cuda --workload "$line" \
      >"$out/durations-$w.txt" 2>&1
    echo "== $w: $(grep -E 'gpu__time_duration' "$out/durations-$w.txt" | awk '{print $NF}' | tr '\n' ' ')us"
  done
fi
if has probes; then
  # Conversion and reference instruction rates per SM and clock (docs/PERF.md, the fp8 loop).
  ./$build/probe_conversion_rate | tee "$out/probe-conversion-rate.txt" || status=1
  # What a kernel that only streams N bytes reaches under the benchmark's method (docs/PERF.md,
  # "What any kernel reaches under the method").
  ./$build/probe_size_ceiling | tee "$out/probe-size-ceiling.txt" || status=1
  # A decode CTA's start-up, and the latency of a hand-off between SMs (the fused merge's round
  # trips; docs/PERF.md, Next steps item 3).
  ./$build/probe_startup | tee "$out/probe-startup.txt" || status=1
  ./$build/probe_handoff | tee "$out/probe-handoff.txt" || status=1
  # Whether equal CTAs, one an SM, get equal shares of the memory bandwidth (the tail between
  # the grid path's CTAs; docs/PERF.md, Next steps item 4).
  ./$build/probe_sm_share | tee "$out/probe-sm-share.txt" || status=1
fi
if has workers; then
  # One CTA an SM (fewer splits, less to merge) against the default worker count, on the
  # workloads whose fixed costs miss the targets (docs/PERF.md, "Where padec stands").
  sms=$(nvidia-smi --query-gpu=multiprocessor_count --format=csv,noheader 2>/dev/null | head -1)
  [[ "$sms" =~ ^[0-9]+$ ]] || sms=132
  for w in b1-32k-bf16 b1-32k-fp8 g8-b128-2k-bf16 g8-b128-2k-fp8; do
    line=$(grep "^name=$w " bench/workloads.txt)
    for n in default $sms 128; do
      if [ $n = default ]; then args=(--policy auto); else args=(--policy cost --workers $n); fi
      ./$build/padec bench --backend cuda "${args[@]}" --workload "$line" 2>&1 |
        grep "^$w" | sed "s/^/workers=$n /"
    done
  done | tee "$out/workers.txt"
fi
if has autoworkers; then
  # `auto`'s pick on the workloads of no more (sequence, KV head) pairs than SMs (one CTA an SM:
  # the grid path of floor(SMs / pairs) splits) against the same bench with --workers at the
  # recommendation (a plan of two CTAs an SM, the count left to the caller), alternated by
  # scripts/ab-bench.sh. Then check runs auto's picks against the oracle.
  grep -E '^name=(b1-32k|b16-8k|g8-b128-2k)-' bench/workloads.txt >"$out/few-pairs.txt"
  # The base is one --workers for all six: it must be every one's recommended count.
  counts=$(./$build/padec bench --backend cuda --iterations 50 --policy even --csv "$out/few-pairs.txt" |
    awk -F, 'NR > 1 {print $7}' | sort -u)
  recommended=$counts
  if [[ ! "$recommended" =~ ^[0-9]+$ ]]; then
    echo "autoworkers: the recommended worker counts differ between the workloads ($(echo $counts)):" \
      "no single --workers base; the step is skipped" >&2
    status=1
    recommended=
  fi
fi
if has autoworkers && [[ -n "$recommended" ]]; then
  printf '#!/bin/sh\ncommand=$1\nshift\nexec "%s" "$command" --workers %s "$@"\n' \
    "$PWD/$build/padec" "$recommended" >"$out/padec-recommended"
  chmod +x "$out/padec-recommended"
  echo "auto (new) against --workers $recommended (base):"
  OUT="$out/autoworkers" scripts/ab-bench.sh "$out/padec-recommended" ./$build/padec --rounds 3 \
    --policy auto "$out/few-pairs.txt" 2>&1 | tee "$out/autoworkers.txt" || status=1
  ./$build/padec check --backend cuda --policy auto bench/workloads.txt >"$out/check-auto.txt" 2>&1 ||
    status=1
  grep -c ' PASS ' "$out/check-auto.txt"
  grep -E 'FAIL|workers\]' "$out/check-auto.txt" | head -12
fi
if has smallitems; then
  # Skewed and mixed batches as plans of more workers than the device holds, every worker one
  # item of about P partitions (`even`, workers = the batch's partitions / P): the hardware
  # hands the CTAs out as slots free, so the tail is one small item, at the price of more
  # CTA start-ups and, for the long sequences, more pieces to merge (docs/PERF.md, Next
  # steps). Against auto's pick, alternated twice, effective / copy.
  for w in skew-b64-fp8 skew-b64-bf16 mixed-b128-fp8 mixed-b128-bf16; do
    line=$(grep "^name=$w " bench/workloads.txt)
    heads=$(sed 's/.* kv_heads=\([0-9]*\) .*/\1/' <<<"$line")
    parts=$(./$build/padec plan --workers 264 --workload "$line" | awk -v w="$w" '$1 == w {print $5; exit}')
    for _ in 1 2; do
      for P in auto 4 8; do
        if [ $P = auto ]; then args=(--policy auto); else
          args=(--policy even --workers $(((parts * heads + P - 1) / P))); fi
        ./$build/padec bench --backend cuda --csv "${args[@]}" --workload "$line" 2>&1 |
          awk -F, -v p=$P 'NR > 1 {print $1, "P=" p, "workers=" $7, $14}'
      done
    done
  done | tee "$out/smallitems.txt"
fi
if has bench; then
  ./$build/padec bench --backend cuda bench/workloads.txt 2>&1 | tee "$out/bench.txt"
fi
exit $status
