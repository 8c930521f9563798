#!/usr/bin/env bash
# Installs a built padec into a fresh prefix and uses it as a project outside the tree would:
# find_package(padec) with the shared and the static library (tests/install/consumer), pkg-config
# with the C compiler, and the installed `padec` tool. Exit 0 when every use works.
# Usage: tests/install/run.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
fail() { echo "test_install: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
for file in include/padec.h include/padec_cuda.h bin/padec lib/libpadec.a lib/libpadec.so \
            lib/cmake/padec/padecConfig.cmake lib/cmake/padec/padecConfigVersion.cmake \
            lib/pkgconfig/padec.pc; do
  [[ -e $prefix/$file ]] || fail "$file was not installed"
done
soname=$(objdump -p "$prefix/lib/libpadec.so" | awk '$1 == "SONAME" {print $2}')
[[ $soname =~ ^libpadec\.so\.[0-9]+\.[0-9]+$ ]] || fail "soname '$soname', need libpadec.so.MAJOR.MINOR"

# find_package, both libraries (the static one where its CUDA dependency is found).
cmake -S "$here/consumer" -B "$prefix/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >"$prefix/configure.log" 2>&1 ||
  { cat "$prefix/configure.log"; fail "the consumer project does not configure"; }
cmake --build "$prefix/consumer" >"$prefix/build.log" 2>&1 ||
  { cat "$prefix/build.log"; fail "the consumer project does not build"; }
"$prefix/consumer/consumer_shared" || fail "consumer_shared failed"
[[ -x $prefix/consumer/consumer_static ]] || fail "padec::padec_static was not available"
"$prefix/consumer/consumer_static" || fail "consumer_static failed"

# pkg-config, where the machine has it.
if command -v pkg-config >/dev/null; then
  flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs padec)
  # shellcheck disable=SC2086 # the flags are words
  cc -std=c11 -Wall -Wextra -Werror "$here/consumer/main.c" $flags -lm -Wl,-rpath,"$prefix/lib" \
    -o "$prefix/consumer_pkg_config" || fail "cc with pkg-config's flags failed"
  "$prefix/consumer_pkg_config" || fail "consumer_pkg_config failed"
else
  echo "test_install: no pkg-config here: its file was installed, not used"
fi

"$prefix/bin/padec" plan --help >/dev/null 2>&1 || "$prefix/bin/padec" --help >/dev/null ||
  fail "the installed padec tool does not run"
echo "test_install: installed to a fresh prefix; find_package (shared, static), pkg-config and the tool work"
