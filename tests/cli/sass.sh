#!/usr/bin/env bash
# scripts/sass.sh against a stand-in cuobjdump that prints what the real one prints for a CUDA
# build (two decode instances and another kernel): the instance list, one instance's SASS and its
# instruction counts, an instance the binary lacks, and bad arguments (exit 2).
set -u
source_dir=${2:?usage: sass.sh PADEC_BINARY SOURCE_DIR}
script="$source_dir/scripts/sass.sh"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
touch "$dir/padec"
fp8=_ZN10padec_cuda13decode_kernelILi128ELi2ELi1ELb0EEEv19padec_decode_params
bf16=_ZN10padec_cuda13decode_kernelILi64ELi0ELi2ELb1EEEv19padec_decode_params
cat >"$dir/cuobjdump" <<EOF
#!/usr/bin/env bash
if [[ \$1 == -res-usage ]]; then
  cat <<'R'
Resource usage:
 Function _ZN10padec_cuda12merge_kernelILi128EEEv19padec_decode_params:
  REG:40 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:832 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function $fp8:
  REG:220 STACK:0 SHARED:1024 LOCAL:0 CONSTANT[0]:832 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function $bf16:
  REG:255 STACK:120 SHARED:1024 LOCAL:0 CONSTANT[0]:832 TEXTURE:0 SURFACE:0 SAMPLER:0
R
elif [[ \$1 == -sass && \$3 == $fp8 ]]; then
  echo "cuobjdump warning : Function listed in --function '\$3' not found" >&2
  cat <<'S'
	code for sm_90a
		Function : $fp8
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/                   LDGSTS.E.BYPASS.128 [R43], desc[UR8][R46.64], !P2 ;
        /*0020*/              @!P4 LDG.E.CONSTANT R43, desc[UR8][R18.64] ;
        /*0030*/                   LDG.E.128 R60, desc[UR8][R22.64] ;
        /*0040*/                   HMMA.16816.F32 R4, R8, R12, R4 ;
        /*0050*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0060*/              @!UP0 SYNCS.EXCH.64 URZ, [UR6+0x19e30], UR4 ;
        /*0070*/                   EXIT ;
S
else
  echo "cuobjdump warning : Function listed in --function '\$3' not found" >&2
fi
EOF
chmod +x "$dir/cuobjdump"

out=$(CUOBJDUMP="$dir/cuobjdump" bash "$script" --binary "$dir/padec" 2>&1)
rc=$?
[[ $rc -eq 0 ]] || fail "the instance list exited $rc"
want=$'decode<128,2,1,0>    REG:220 STACK:0 LOCAL:0\ndecode<64,0,2,1>     REG:255 STACK:120 LOCAL:0'
[[ $out == "$want" ]] || fail "instance list is '$out'"

sass=$(CUOBJDUMP="$dir/cuobjdump" bash "$script" --binary "$dir/padec" 128 2 1 0 2>"$dir/err")
rc=$?
[[ $rc -eq 0 ]] || fail "the fp8 instance's SASS exited $rc"
grep -q "Function : $fp8" <<<"$sass" || fail "no SASS on stdout"
grep -q "not found" "$dir/err" && fail "cuobjdump's warnings for the other objects reached stderr"
grep -q '^decode<128,2,1,0>: instructions 8$' "$dir/err" || fail "instruction total: $(head -1 "$dir/err")"
for pair in "LDGSTS 1" "LDG. 2" "HMMA 1" "BAR.SYNC 1" "SYNCS 1" "SHFL 0"; do
  grep -qE "^  ${pair%% *} +${pair##* }\$" "$dir/err" || fail "count of ${pair%% *} is not ${pair##* }"
done

CUOBJDUMP="$dir/cuobjdump" bash "$script" --binary "$dir/padec" 256 1 1 0 >/dev/null 2>"$dir/err"
rc=$?
[[ $rc -eq 1 ]] || fail "an instance the binary lacks exited $rc, want 1"
grep -q 'decode<256,1,1,0> is not in' "$dir/err" || fail "message for a missing instance: $(cat "$dir/err")"

for args in "1 2" "128 2 1 x" "--binary" "--binary $dir/none"; do
  # shellcheck disable=SC2086
  CUOBJDUMP="$dir/cuobjdump" bash "$script" $args >/dev/null 2>&1
  rc=$?
  [[ $rc -eq 2 ]] || fail "'$args' exited $rc, want 2"
done
CUOBJDUMP="$dir/absent" bash "$script" --binary "$dir/padec" >/dev/null 2>"$dir/err"
rc=$?
[[ $rc -eq 2 ]] || fail "a cuobjdump that does not exist exited $rc, want 2"
grep -q 'no cuobjdump' "$dir/err" || fail "message without cuobjdump: $(cat "$dir/err")"

if [[ $failures -gt 0 ]]; then
  echo "sass.sh: $failures failure(s)"
  exit 1
fi
echo "sass.sh: all checks passed"
