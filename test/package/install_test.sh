#!/usr/bin/env bash
# Test package.install: the install rules keep to the prefix.
#   install_test.sh CMAKE BUILD_DIR
#  - `cmake --install BUILD_DIR --prefix P` (P, a scratch directory) writes every file under
#    P, the configuration in P/etc/vrelay/vrelay.yaml and the units in
#    P/lib/systemd/system;
#  - a second install keeps a configuration that is already there (an edited one).
set -euo pipefail
cmake=${1:?usage: install_test.sh CMAKE BUILD_DIR}
build=${2:?usage: install_test.sh CMAKE BUILD_DIR}

fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

"$cmake" --install "$build" --prefix "$prefix" > "$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "cmake --install --prefix failed"; }
# Every path the install wrote or skipped as up to date, from its own log.
sed -n 's/^-- \(Installing\|Up-to-date\): //p' "$work/install.log" > "$work/paths"
[ -s "$work/paths" ] || fail "cmake --install reported no file"
if grep -v "^$prefix/" "$work/paths"; then
  fail "cmake --install --prefix $prefix wrote the paths above outside $prefix"
fi
for path in sbin/vrelayd bin/vrelayctl bin/vrelaystat bin/vrelay-probe etc/vrelay/vrelay.yaml \
            etc/logrotate.d/vrelay lib/systemd/system/vrelayd.service \
            lib/systemd/system/vrelayd@.service lib/sysusers.d/vrelay.conf \
            share/man/man8/vrelayd.8.gz share/bash-completion/completions/vrelayctl; do
  [ -e "$prefix/$path" ] || fail "cmake --install --prefix did not install $path"
done
# Debian's own files only go in the package (component debian).
[ ! -e "$prefix/share/doc/vrelay/copyright" ] || fail "a plain install installs the Debian copyright file"
echo "cmake --install --prefix: $(wc -l < "$work/paths") paths, all under the prefix"

echo "# edited" >> "$prefix/etc/vrelay/vrelay.yaml"
"$cmake" --install "$build" --prefix "$prefix" > "$work/install2.log" 2>&1 ||
  { cat "$work/install2.log" >&2; fail "the second cmake --install failed"; }
[ "$(tail -1 "$prefix/etc/vrelay/vrelay.yaml")" = "# edited" ] ||
  fail "a second install replaced the configuration in $prefix/etc/vrelay"
echo "a second install keeps the configuration"
