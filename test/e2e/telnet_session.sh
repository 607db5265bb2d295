#!/usr/bin/env bash
# e2e tests telnet_session and telnet_session_aliases: starts vrelayd, runs a real telnet
# session through telnet_session.exp (es: the original command names, en: the English
# aliases), then stops the relay with SIGTERM and checks it exits 0 and removes its segment.
# Usage: telnet_session.sh VRELAYD es|en
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=test/e2e/lib.sh
source "$HERE/lib.sh"
BIN=${1:?usage: telnet_session.sh VRELAYD es|en}
VARIANT=${2:?usage: telnet_session.sh VRELAYD es|en}
require telnet expect ss timeout pgrep
e2e_init "telnet_$VARIANT"

start_relay "$BIN" "e2e-telnet-$VARIANT-$$"
free_port UDP_PORT   # nothing listens there: no source is streaming, so nothing is sent

# The expect script bounds every step itself (5 s); timeout(1) is the last resort.
timeout 60 expect -f "$HERE/telnet_session.exp" "$CONTROL_PORT" "$UDP_PORT" "$VARIANT" &
EXPECT_PID=$!
track "$EXPECT_PID"
wait_exit 65 "$EXPECT_PID" EXPECT_STATUS
[ "$EXPECT_STATUS" = 0 ] || die "the telnet session failed (expect exit status $EXPECT_STATUS)"

kill -0 "$RELAY_PID" 2>/dev/null || die "vrelayd died during the telnet session"
stop_relay
echo "PASS telnet_session ($VARIANT)"
