#!/usr/bin/env bash
# GPU checks beyond the matrix: every cuda-labelled test, the Python binding's CUDA tests and
# example, the graph example, and the device-scheduler benchmark. Run after gpu-check.sh build.
set -uo pipefail
cd "$(dirname "$0")/.."
build=build-gpu
status=0
ctest --test-dir $build -L cuda --output-on-failure --timeout 240 2>&1 | tail -30 || status=1
if [ -x $build/example_graph_step ]; then $build/example_graph_step 12 2>&1 | tail -6 || status=1; fi
if [ -f $build/libpadec.so ]; then
  export PADEC_LIBRARY=$PWD/$build/libpadec.so
  python3 -m pytest -q -rs -x python/tests 2>&1 | tail -8 || status=1
  for d in bf16 fp8; do PYTHONPATH=python python3 python/examples/vllm_style.py --kv-dtype $d 2>&1 | tail -2 || status=1; done
fi
T="q_heads=32 kv_heads=8 head_dim=128 page=16 kv=bf16"
$build/padec bench --backend cuda --device-plan --iterations 100 \
  --workload "name=b1 $T lens=4096x1" --workload "name=b64 $T lens=4096x64" \
  --workload "name=b256 $T lens=1024x256" --workload "name=b1024 $T lens=512x1024" 2>&1 | tail -5
exit $status
