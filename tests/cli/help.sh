#!/usr/bin/env bash
# padec --help, help CMD, CMD --help and --version.
set -u
padec=${1:?usage: help.sh PADEC_BINARY SOURCE_DIR}
src=${2:?usage: help.sh PADEC_BINARY SOURCE_DIR}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

out=$("$padec" --help) || fail "padec --help exited $?"
for cmd in run check plan bench help; do
  grep -qE "^  $cmd " <<<"$out" || fail "padec --help does not list '$cmd'"
done
for cmd in run check plan bench; do
  text=$("$padec" help "$cmd") || fail "padec help $cmd exited $?"
  grep -q "usage: padec $cmd" <<<"$text" || fail "padec help $cmd has no usage line"
  grep -q -- "--workload" <<<"$text" || fail "padec help $cmd does not document --workload"
  same=$("$padec" "$cmd" --help) || fail "padec $cmd --help exited $?"
  [[ "$same" == "$text" ]] || fail "padec $cmd --help differs from padec help $cmd"
done
"$padec" help check | grep -q -- "--scale-lengths" || fail "help check does not document --scale-lengths"
"$padec" help plan | grep -q -- "--dump" || fail "help plan does not document --dump"
"$padec" help bench | grep -q -- "--csv" || fail "help bench does not document --csv"

version=$("$padec" --version) || fail "padec --version exited $?"
project=$(sed -n 's/^project(padec VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[[ "$version" =~ ^padec\ [0-9]+\.[0-9]+\.[0-9]+ ]] || fail "--version printed '$version'"
[[ -z "$project" || "$version" == "padec $project "* ]] ||
  fail "--version printed '$version', CMakeLists.txt says $project"

if ((failures)); then exit 1; fi
echo "help: ok"
