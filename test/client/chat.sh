#!/usr/bin/env bash
# client test client.chat: two `vrelayctl chat` views at two terminals (chat.exp) against a
# vrelayd of their own; afterwards no session is left on the relay.
# Usage: chat.sh VRELAYD VRELAYCTL UDP_PROBE
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
require expect ss timeout pgrep
client_init chat "$1" "$2" "$3"

run_expect chat.exp

# Only the STATS session itself is left.
wait_until 5 "every chat session closed" test "$(stat_value sessions)" = 1
stop_relay
echo "PASS client.chat"
