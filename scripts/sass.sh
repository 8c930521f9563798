#!/usr/bin/env bash
# The machine code of the decode kernel's instances, read without a GPU: per instance its
# registers and stack (no argument), or one instance's SASS with the counts of the instructions
# the tile loop is made of (`HEAD_DIM KIND NTILES PSPLIT`, the template arguments of
# decode_kernel in src/cuda/decode.cuh: KIND 0 bf16, 1 f16, 2 e4m3, 3 e4m3 per-token).
#
# Usage: scripts/sass.sh [--binary PATH] [HEAD_DIM KIND NTILES PSPLIT]
#   --binary PATH   a padec binary or library built with CUDA (default: build-gpu/padec)
#   e.g. scripts/sass.sh 128 2 1 0 > fp8.sass   (the benchmark's fp8 instance; counts on stderr)
# Needs cuobjdump: $CUOBJDUMP, then PATH, then the CUDA toolkit's bin. Where the toolkit has none,
# PyPI's wheel carries it: pip download --no-deps nvidia-cuda-cuobjdump, unzip the wheel and
# set CUOBJDUMP to its nvidia/cu*/bin/cuobjdump.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
binary=build-gpu/padec
if [[ $# -ge 1 && $1 == --binary ]]; then
  [[ $# -ge 2 ]] || usage
  binary=$2
  shift 2
fi
[[ $# -eq 0 || $# -eq 4 ]] || usage
[[ -f $binary ]] || { echo "sass: '$binary' does not exist (build with CUDA first, or give --binary)" >&2; exit 2; }

tool=${CUOBJDUMP:-}
if [[ -z $tool ]]; then
  tool=$(command -v cuobjdump || true)
  for dir in "${CUDA_HOME:-}" /usr/local/cuda; do
    [[ -z $tool && -n $dir && -x $dir/bin/cuobjdump ]] && tool=$dir/bin/cuobjdump
  done
fi
[[ -n $tool && -x $tool ]] || {
  echo "sass: no cuobjdump (set CUOBJDUMP; the usage says where PyPI has it)" >&2
  exit 2
}

if [[ $# -eq 0 ]]; then
  # One line an instance: decode<HEAD_DIM,KIND,NTILES,PSPLIT> registers stack local.
  "$tool" -res-usage "$binary" | awk '
    /Function _ZN10padec_cuda13decode_kernelILi/ {
      if (match($0, /ILi[0-9]+ELi[0-9]+ELi[0-9]+ELb[01]E/)) {
        name = substr($0, RSTART, RLENGTH)
        gsub(/[^0-9]+/, " ", name)
        split(name, a, " ")
        instance = sprintf("decode<%s,%s,%s,%s>", a[1], a[2], a[3], a[4])
      }
      next
    }
    instance != "" && /REG:/ {
      line = $0
      printf "%-20s", instance
      while (match(line, /(REG|STACK|LOCAL):[0-9]+/)) {
        printf " %s", substr(line, RSTART, RLENGTH)
        line = substr(line, RSTART + RLENGTH)
      }
      printf "\n"
      instance = ""
    }' | sort -u
  exit 0
fi

for value in "$@"; do
  [[ $value =~ ^[0-9]+$ ]] || { echo "sass: '$value' is not a template argument (need integers)" >&2; exit 2; }
done
name="_ZN10padec_cuda13decode_kernelILi$1ELi$2ELi$3ELb$4EEEv19padec_decode_params"
# The binary holds several CUDA objects; cuobjdump warns for each that lacks the function.
out=$("$tool" -sass -fun "$name" "$binary" 2> >(grep -v "not found" >&2))
grep -q "Function : $name" <<<"$out" || {
  echo "sass: decode<$1,$2,$3,$4> is not in $binary (scripts/sass.sh with no instance lists them)" >&2
  exit 1
}
printf '%s\n' "$out"
count() { grep -cE "^ +/\*[0-9a-f]+\*/ +(@!?U?P[0-9T] +)?$1" <<<"$out" || true; }
{
  echo "decode<$1,$2,$3,$4>: instructions $(count '[A-Z]')"
  for op in 'LDGSTS' 'LDG\.' 'LDS' 'STS' 'HMMA' 'F2FP' 'BAR\.SYNC' 'SYNCS' 'IMAD\.WIDE' 'SHFL'; do
    printf '  %-10s %s\n' "${op//\\/}" "$(count "$op")"
  done
} >&2
