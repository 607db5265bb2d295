#!/usr/bin/env bash
# Test package.deb: builds the Debian package as `make package` does (packaging/build-deb.sh
# in PKGDIR, build-package/ of the source tree: incremental, minutes from scratch) and
# checks it:
#   deb_test.sh SOURCE_DIR PKGDIR VERSION
#  - its name, vrelay_VERSION_ARCH.deb, and its control fields (Depends from shlibdeps);
#  - `dpkg-deb -c` lists every file a system installation needs;
#  - the conffiles and the maintainer scripts (sh -n);
#  - unpacked with `dpkg -x` into a scratch root: the installed programs run (--version,
#    --help, --help-config, --check-config on the shipped configuration), and the installed
#    vrelayd relays for a second (vrelayctl PING, vrelaystat -n) before a clean stop;
#  - the bash completions offer every long option of each program's --help;
#  - the units: test/package/unit_test.sh (systemd-analyze verify and security);
#  - lintian: any E: line fails the test; warnings and notes are printed.
# Exit 77 (skipped) only when a tool it needs is missing.
set -euo pipefail
src=${1:?usage: deb_test.sh SOURCE_DIR PKGDIR VERSION}
pkgdir=${2:?usage: deb_test.sh SOURCE_DIR PKGDIR VERSION}
version=${3:?usage: deb_test.sh SOURCE_DIR PKGDIR VERSION}
here=$(cd "$(dirname "$0")" && pwd)

missing=()
for tool in dpkg dpkg-deb dpkg-shlibdeps file cmake cpack gzip lintian systemd-analyze flock; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "SKIP: missing ${missing[*]} (packages dpkg-dev, file, lintian, systemd: scripts/install-deps.sh)"
  exit 77
fi

fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d)
relay_pid=""
cleanup() {
  [ -n "$relay_pid" ] && kill -KILL "$relay_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building the package in $pkgdir (packaging/build-deb.sh)"
JOBS=${JOBS:-$(nproc)} "$src/packaging/build-deb.sh" "$pkgdir" > "$work/build.log" 2>&1 ||
  { tail -50 "$work/build.log" >&2; fail "packaging/build-deb.sh failed"; }
deb=$(tail -1 "$work/build.log")
echo "package: $deb"

arch=$(dpkg --print-architecture)
[ "$(basename "$deb")" = "vrelay_${version}_${arch}.deb" ] || fail "$deb is not named vrelay_${version}_${arch}.deb"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = vrelay ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version: $(field Version), not $version"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture: $(field Architecture), not $arch"
[ "$(field Section)" = net ] || fail "Section: $(field Section), not net"
[[ $(field Depends) == *libc6* ]] || fail "Depends: '$(field Depends)' (no shlibdeps?)"
[[ $(field Maintainer) == *@* ]] || fail "no Maintainer"
echo "control: Depends: $(field Depends)"

echo "== contents"
dpkg-deb -c "$deb" | awk '{ print $NF }' | sed 's|^\./|/|; s|/$||' > "$work/contents"
required=(
  /usr/sbin/vrelayd /usr/bin/vrelayctl /usr/bin/vrelaystat /usr/bin/vrelay-probe
  /usr/share/man/man8/vrelayd.8.gz /usr/share/man/man5/vrelay.yaml.5.gz
  /usr/share/man/man7/vrelay-protocol.7.gz /usr/share/man/man1/vrelayctl.1.gz
  /usr/share/man/man1/vrelaystat.1.gz /usr/share/man/man1/vrelay-probe.1.gz
  /usr/lib/systemd/system/vrelayd.service /usr/lib/systemd/system/vrelayd@.service
  /etc/vrelay/vrelay.yaml /usr/lib/sysusers.d/vrelay.conf /etc/logrotate.d/vrelay
  /usr/share/bash-completion/completions/vrelayd /usr/share/bash-completion/completions/vrelayctl
  /usr/share/bash-completion/completions/vrelaystat /usr/share/bash-completion/completions/vrelay-probe
  /usr/share/doc/vrelay/copyright /usr/share/doc/vrelay/changelog.gz
  /usr/share/doc/vrelay/examples/vrelay.yaml
)
for path in "${required[@]}"; do
  grep -qxF "$path" "$work/contents" || fail "the package lacks $path"
done
# Nothing outside /usr and /etc (/usr/local belongs to the administrator).
if grep -vE '^/$|^/(usr|etc)(/|$)' "$work/contents" >&2 || grep '^/usr/local' "$work/contents" >&2; then
  fail "the package installs the paths above, outside /usr and /etc or in /usr/local"
fi
echo "all ${#required[@]} required files are in the package"

echo "== control files"
dpkg-deb -e "$deb" "$work/control"
printf '/etc/vrelay/vrelay.yaml\n/etc/logrotate.d/vrelay\n' > "$work/conffiles.expected"
diff -u "$work/conffiles.expected" <(sort -r "$work/control/conffiles") ||
  fail "conffiles: expected exactly /etc/vrelay/vrelay.yaml and /etc/logrotate.d/vrelay"
for script in postinst prerm postrm; do
  [ -x "$work/control/$script" ] || fail "no executable $script"
  sh -n "$work/control/$script" || fail "$script: syntax error"
done
grep -q 'systemd-sysusers' "$work/control/postinst" || fail "postinst does not create the account"
grep -q 'deb-systemd-helper purge' "$work/control/postrm" || fail "postrm does not purge the unit's state"
echo "conffiles and maintainer scripts: ok"

echo "== the installed programs (dpkg -x)"
root=$work/root
dpkg -x "$deb" "$root"
bin=$root/usr/bin
sbin=$root/usr/sbin
[[ $("$sbin/vrelayd" --version) == *"$version"* ]] || fail "vrelayd --version does not print $version"
"$sbin/vrelayd" --help-config > "$work/help-config" || fail "vrelayd --help-config failed"
grep -q 'max_sessions' "$work/help-config" || fail "vrelayd --help-config lacks control.max_sessions"
"$sbin/vrelayd" --check-config -c "$root/etc/vrelay/vrelay.yaml" > /dev/null 2>&1 ||
  fail "vrelayd --check-config rejects the shipped /etc/vrelay/vrelay.yaml"
for tool in "$sbin/vrelayd" "$bin/vrelayctl" "$bin/vrelaystat" "$bin/vrelay-probe"; do
  "$tool" --help > "$work/$(basename "$tool").help" || fail "$(basename "$tool") --help failed"
  grep -q '^Usage:' "$work/$(basename "$tool").help" || fail "$(basename "$tool") --help prints no usage"
done
echo "--version, --help, --help-config, --check-config: ok"

# A relay of the installed vrelayd on free loopback ports, its lock in a private directory
# (as RuntimeDirectory= gives it), then vrelayctl and vrelaystat against it.
instance=pkgtest$$
mkdir -m 0700 "$work/run"
RUNTIME_DIRECTORY=$work/run "$sbin/vrelayd" -F --instance "$instance" --control 127.0.0.1:0 \
  --ingest 127.0.0.1:0 --http off > "$work/relay.out" 2> "$work/relay.err" &
relay_pid=$!
for _ in $(seq 100); do
  grep -q '^vrelayd ready' "$work/relay.out" && break
  kill -0 "$relay_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q '^vrelayd ready' "$work/relay.out" || { cat "$work/relay.err" >&2; fail "the installed vrelayd did not get ready"; }
control=$(sed -n 's/^vrelayd ready control=\([^ ]*\).*/\1/p' "$work/relay.out")
[ "$("$bin/vrelayctl" -s "$control" -t 5 PING)" = "OK PONG" ] || fail "vrelayctl PING to the installed vrelayd"
"$bin/vrelaystat" -n "$instance" -1 -f 'ingest.*' > "$work/vrelaystat.out" &&
  grep -q '^ingest.datagrams' "$work/vrelaystat.out" ||
  fail "vrelaystat -n $instance cannot read the installed relay's counters"
kill -TERM "$relay_pid"
status=0
wait "$relay_pid" || status=$?
relay_pid=""
[ "$status" -eq 0 ] || { cat "$work/relay.err" >&2; fail "the installed vrelayd stopped with status $status"; }
echo "the installed vrelayd relayed: ready line, vrelayctl PING, vrelaystat -n $instance, clean stop"

echo "== bash completion"
completions=$root/usr/share/bash-completion/completions
for tool in vrelayd vrelayctl vrelaystat vrelay-probe; do
  bash -n "$completions/$tool" || fail "completion of $tool: syntax error"
  for option in $(grep -oE -- '--[a-z][a-z-]+' "$work/$tool.help" | sort -u); do
    grep -qe "$option" "$completions/$tool" || fail "the completion of $tool lacks $option"
  done
done
# The completions at work, with the two helpers of bash-completion they use stubbed.
complete_words() {  # complete_words TOOL WORD...: what TOOL's completion offers for the last WORD
  local tool=$1
  shift
  bash -c '
    _init_completion() { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
    _filedir() { :; }
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    function=$(complete -p "$1" | sed "s/.*-F \([^ ]*\) .*/\1/")
    "$function"
    printf "%s\n" "${COMPREPLY[@]}"' _ "$completions/$tool" "$@"
}
offers() {  # offers WORD TOOL WORD...: TOOL's completion offers WORD for the last WORD
  local want=$1 offered
  shift
  offered=$(complete_words "$@") || fail "completing '$*' failed"
  grep -qxF -- "$want" <<< "$offered" || fail "completing '$*' offers not $want but: $offered"
}
offers STATS vrelayctl vrelayctl ST
offers watch vrelayctl vrelayctl -s 127.0.0.1:7700 wa
offers JSON vrelayctl vrelayctl FORMAT ""
offers ingest.datagrams vrelaystat vrelaystat -f ingest.data
offers --allow-root vrelayd vrelayd --allow
offers --subscribe vrelay-probe vrelay-probe --sub
echo "completions: every option of --help; commands, counters and options complete"

echo "== units"
"$here/unit_test.sh" "$root" /usr /etc

echo "== lintian"
lintian_status=0
lintian --display-info "$deb" > "$work/lintian" 2>&1 || lintian_status=$?
grep -v 'running with root privileges is not recommended' "$work/lintian" || true
grep -q '^E: ' "$work/lintian" && fail "lintian reports errors"
[ "$lintian_status" -eq 0 ] || fail "lintian failed (status $lintian_status)"
echo "lintian: no error ($(grep -c '^W: ' "$work/lintian" || true) warnings)"
echo "PASS: $deb"
