#!/usr/bin/env bash
# Installs every build, test and demo dependency of vrelay with apt-get (Debian 12).
# Idempotent: with --check it only reports whether something is missing (exit 1 if so);
# without it, it installs only what is missing, so a second run costs one dpkg query.
set -euo pipefail

PACKAGES=(
  g++ cmake make pkg-config
  libev-dev libboost-dev libyaml-cpp-dev libsystemd-dev nlohmann-json3-dev libedit-dev libmicrohttpd-dev
  googletest libgtest-dev libgmock-dev
  ffmpeg vlc-bin vlc-plugin-base telnet expect chromium
  mandoc groff-base procps iproute2 util-linux faketime curl jq
  dpkg-dev file lintian systemd  # make package (dpkg-shlibdeps, file), its tests (lintian, systemd-analyze)
)
# faketime: the clock-step test runs vrelayd under libfaketime.
# iproute2, curl, jq: test/netns/topology.sh (namespaces, HTTP /stream, vrelay-probe's JSON).
# promtool checks the /metrics output in the tests. Debian ships it only in the package of
# the Prometheus server, whose install would enable that server at boot: the tool alone is
# taken out of the package into /usr/local/bin, and no server is installed.
PROMTOOL=/usr/local/bin/promtool

# Optional, for `make fuzz` only: --fuzz adds clang and libclang-rt-14-dev (libFuzzer and the
# sanitizer runtimes, which clang only recommends) to the set. `--fuzz --check` checks them too.
if [ "${1:-}" = "--fuzz" ]; then
  PACKAGES+=(clang libclang-rt-14-dev)
  shift
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

need_promtool=""
command -v promtool >/dev/null 2>&1 || need_promtool=1

if [ "${1:-}" = "--check" ]; then
  [ ${#missing[@]} -eq 0 ] && [ -z "$need_promtool" ] && exit 0
  [ ${#missing[@]} -eq 0 ] || echo "missing packages: ${missing[*]}" >&2
  [ -z "$need_promtool" ] || echo "missing: promtool" >&2
  exit 1
fi

[ ${#missing[@]} -eq 0 ] && [ -z "$need_promtool" ] && exit 0
[ ${#missing[@]} -eq 0 ] || echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# Packages install without starting services: a policy-rc.d that says no, for the time of
# the install, unless the machine has its own.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  own_policy=1
fi
trap '[ -n "$own_policy" ] && $SUDO rm -f "$policy"' EXIT
[ ${#missing[@]} -eq 0 ] || $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

if [ -n "$need_promtool" ]; then
  work=$(mktemp -d)
  $SUDO chown _apt "$work" 2>/dev/null || true  # apt downloads as _apt where it can
  (cd "$work" && $SUDO apt-get download -q prometheus)
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  $SUDO install -m 755 "$work/root/usr/bin/promtool" "$PROMTOOL"
  rm -rf "$work"
  echo "install-deps: promtool in $PROMTOOL (from the prometheus package, not installed)"
fi
