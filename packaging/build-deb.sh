#!/usr/bin/env bash
# Builds the Debian package vrelay_<version>_<architecture>.deb (make package, and the test
# package.deb): configures DIR (default build-package/ of the source tree) for the prefix
# /usr in Release without the tests (-DBUILD_TESTING=OFF), builds it with JOBS jobs
# (default: nproc), runs cpack -G DEB in it and prints the package's path as its last line.
# Incremental: a second run rebuilds only what changed. Two runs on one DIR take turns.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$src/build-package}
jobs=${JOBS:-$(nproc)}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
exec 9>"$dir/.build-deb.lock"
flock 9

# Compiled as Debian compiles its packages: the flags of dpkg-buildflags (-O2, the
# hardening flags: fortify, stack protector, relro, bindnow) in place of CMake's Release
# -O3, which also trips a false -Wrestrict of GCC 12 in libstdc++ under -Werror.
flags() { (cd "$src" && DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get "$1"); }
cmake -S "$src" -B "$dir" -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE=-DNDEBUG -DCMAKE_CXX_FLAGS="$(flags CPPFLAGS) $(flags CXXFLAGS)" \
  -DCMAKE_EXE_LINKER_FLAGS="$(flags LDFLAGS)"
cmake --build "$dir" -j "$jobs"
rm -f "$dir"/vrelay_*.deb
(cd "$dir" && cpack -G DEB)
debs=("$dir"/vrelay_*.deb)
if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then
  echo "build-deb: cpack made no vrelay_*.deb in $dir" >&2
  exit 1
fi
echo "${debs[0]}"
