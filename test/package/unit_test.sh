#!/usr/bin/env bash
# Checks the systemd units of an installed tree (test package.unit on `cmake --install`,
# test package.deb on the package's files):
#   unit_test.sh ROOT PREFIX SYSCONFDIR [CMAKE BUILD_DIR]
# ROOT is where the tree lies (DESTDIR, or what dpkg -x unpacked), PREFIX and SYSCONFDIR
# those the build was configured with (the units name PREFIX/sbin/vrelayd and
# SYSCONFDIR/vrelay/). With CMAKE and BUILD_DIR, it first installs BUILD_DIR in a new ROOT
# (DESTDIR=ROOT cmake --install BUILD_DIR). For vrelayd.service and
# the template vrelayd@.service (as vrelayd@tv1.service):
#  - ExecStart= names PREFIX/sbin/vrelayd, which the tree holds, and the configuration in
#    SYSCONFDIR/vrelay/; Documentation= names man pages the tree holds (MANPATH);
#  - `systemd-analyze verify` prints nothing and succeeds (offline: no systemd needed). It
#    checks that ExecStart='s program exists, so the test verifies a copy whose ExecStart=
#    points into ROOT; everything else is the file as installed;
#  - `systemd-analyze security --offline=true` rates the overall exposure 2.0 or less.
# Exit 77 (skipped) only when systemd-analyze is missing.
set -euo pipefail
usage="usage: unit_test.sh ROOT PREFIX SYSCONFDIR [CMAKE BUILD_DIR]"
root=${1:?$usage}
prefix=${2:?$usage}
sysconfdir=${3:?$usage}
cmake=${4:-}
build=${5:-}
max_exposure=2.0

if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is missing (package systemd; scripts/install-deps.sh installs it)"
  exit 77
fi

fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -n "$cmake" ]; then
  rm -rf "$root"
  DESTDIR=$root "$cmake" --install "$build" > "$work/install.log" 2>&1 ||
    { cat "$work/install.log" >&2; fail "DESTDIR=$root cmake --install $build failed"; }
fi

unit_dir=$root$prefix/lib/systemd/system

for unit in vrelayd.service vrelayd@.service; do
  file=$unit_dir/$unit
  [ -f "$file" ] || fail "$file is missing"
  exec_start=$(sed -n 's/^ExecStart=//p' "$file")
  program=${exec_start%% *}
  [ "$program" = "$prefix/sbin/vrelayd" ] || fail "$unit: ExecStart= runs $program, not $prefix/sbin/vrelayd"
  [ -x "$root$program" ] || fail "$unit: $root$program is not an executable file"
  case $unit in
    vrelayd.service) want="$prefix/sbin/vrelayd -F -c $sysconfdir/vrelay/vrelay.yaml" ;;
    *) want="$prefix/sbin/vrelayd -F -c $sysconfdir/vrelay/%i.yaml --instance %i" ;;
  esac
  [ "$exec_start" = "$want" ] || fail "$unit: ExecStart=$exec_start, expected ExecStart=$want"
  grep -qx 'User=vrelay' "$file" || fail "$unit: no User=vrelay"
  sed "s|^ExecStart=$program|ExecStart=$root$program|" "$file" > "$work/$unit"
done

export MANPATH=$root$prefix/share/man
for unit in vrelayd.service vrelayd@tv1.service; do
  if ! output=$(systemd-analyze verify "$work/$unit" 2>&1) || [ -n "$output" ]; then
    printf '%s\n' "$output" >&2
    fail "systemd-analyze verify $unit is not clean"
  fi
  echo "systemd-analyze verify $unit: clean"

  report=$(systemd-analyze security --offline=true "$work/$unit" 2>&1) || true
  exposure=$(printf '%s\n' "$report" | sed -n 's/^.*Overall exposure level for [^:]*: \([0-9.]*\).*$/\1/p')
  if [ -z "$exposure" ]; then
    printf '%s\n' "$report" >&2
    fail "systemd-analyze security $unit: no overall exposure level in its report"
  fi
  if awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e > m) }'; then
    printf '%s\n' "$report" | grep -v '✓' >&2
    fail "systemd-analyze security $unit: exposure $exposure, more than $max_exposure"
  fi
  echo "systemd-analyze security $unit: exposure $exposure (at most $max_exposure)"
done
