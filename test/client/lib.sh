# Shared helpers of the client tests (test/client/*.sh, label "client"): the e2e helpers
# (test/e2e/lib.sh: work folder, free ports, vrelayd on port 0, bounded waits, cleanup of
# only what the test started) plus vrelayctl and the UDP probe. Source it.
# shellcheck shell=bash

# shellcheck source=test/e2e/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../e2e/lib.sh"
CLIENT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# client_init NAME VRELAYD VRELAYCTL UDP_PROBE: work folder, relay started, and the
# environment of the expect scripts (RELAY, RELAY_PID, INGEST_PORT, VRELAYCTL, UDP_PROBE).
# With CLIENT_CONFIG set, the relay reads that YAML text as its configuration file.
client_init() {
  local name=$1
  VRELAYD=$2 VRELAYCTL=$3 UDP_PROBE=$4
  [ -x "$VRELAYCTL" ] || die "vrelayctl binary '$VRELAYCTL' is not executable"
  [ -x "$UDP_PROBE" ] || die "udp_probe binary '$UDP_PROBE' is not executable"
  e2e_init "client-$name"
  local args=()
  if [ -n "${CLIENT_CONFIG:-}" ]; then
    printf '%s\n' "$CLIENT_CONFIG" >"$E2E_WORK/vrelay.yaml"
    args=(-c "$E2E_WORK/vrelay.yaml" --control 127.0.0.1:0 --ingest 127.0.0.1:0)
  fi
  start_relay "$VRELAYD" "client-$name-$$" ${args[@]+"${args[@]}"}
  export RELAY="127.0.0.1:$CONTROL_PORT" RELAY_PID INGEST_PORT VRELAYCTL UDP_PROBE
}

# ctl ARGS...: one-shot vrelayctl against the test's relay.
ctl() { "$VRELAYCTL" -s "127.0.0.1:$CONTROL_PORT" "$@"; }

# stat_value NAME: a figure of the relay's STATS reply.
stat_value() {
  local line
  line=$(ctl STATS) || die "vrelayctl STATS failed: $line"
  [[ " $line " =~ \ $1=([^ ]+)\  ]] || die "STATS has no $1: '$line'"
  echo "${BASH_REMATCH[1]}"
}

subscribers_are() { [ "$(stat_value subscribers)" = "$1" ]; }

# run_expect SCRIPT ARGS...: runs an expect script of this folder (bounded by timeout(1)
# as a last resort; the scripts bound each step themselves) and fails the test if it fails.
run_expect() {
  local script=$1 status
  shift
  timeout 90 expect -f "$CLIENT_DIR/$script" "$@" &
  local pid=$!
  track "$pid"
  wait_exit 95 "$pid" status
  [ "$status" = 0 ] || die "$script $* failed (expect exit status $status)"
}
