#!/usr/bin/env bash
# client tests client.positional.{basic,event,shutdown}: the original client's form at a
# terminal, driven by positional.exp against a vrelayd of its own.
# Usage: positional.sh VRELAYD VRELAYCTL UDP_PROBE basic|event|shutdown
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
SCENARIO=${4:?usage: positional.sh VRELAYD VRELAYCTL UDP_PROBE basic|event|shutdown}
require expect ss timeout pgrep
client_init "positional-$SCENARIO" "$1" "$2" "$3"
free_port UDP_PORT

run_expect positional.exp "$CONTROL_PORT" "$UDP_PORT" "$SCENARIO"

if [ "$SCENARIO" = shutdown ]; then
  wait_exit 10 "$RELAY_PID" status
  [ "$status" = 0 ] || die "vrelayd exited with status $status"
else
  wait_until 5 "no subscriber left" subscribers_are 0
  kill -0 "$RELAY_PID" 2>/dev/null || die "vrelayd died during the test"
  stop_relay
fi
echo "PASS client.positional.$SCENARIO"
