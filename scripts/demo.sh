#!/usr/bin/env bash
# make demo: streams a 10 s test video through a live vrelayd on its embedded defaults
# (control 0.0.0.0:7700, ingest 127.0.0.1:65534), exactly as the original assignment did:
# VLC sends the video to the relay, a viewer subscribes over the control protocol and
# receives it. Prints what the viewer decoded and the control session, then stops everything
# it started. Exit 0 if the viewer decoded at least 90% of the frames VLC sent.
# Usage: scripts/demo.sh BINDIR   (make demo runs scripts/demo.sh build/bin)
set -euo pipefail
BINDIR=${1:?usage: scripts/demo.sh BINDIR}
# shellcheck source=test/e2e/lib.sh
source "$(dirname "$0")/../test/e2e/lib.sh"   # helpers shared with the e2e tests
require ffmpeg ffprobe cvlc runuser ss timeout pgrep
section() { printf '\n== %s\n' "$*"; }

section "1. Checking that the default ports are free"
if tcp_listening 7700; then
  echo "TCP port 7700 (control) is busy; stop whatever listens there:" >&2
  ss -Hltnp "( sport = :7700 )" >&2
  exit 1
fi
if udp_bound 65534; then
  echo "UDP port 65534 (ingest) is busy; stop whatever uses it:" >&2
  ss -Hlunp "( sport = :65534 )" >&2
  exit 1
fi
echo "7700/tcp and 65534/udp are free"
e2e_init demo          # private work folder; cleanup of everything we start, on any exit
check_vlc_runs         # VLC runs as user nobody (it refuses root)

section "2. Generating a 10 s test video"
make_video "$E2E_WORK/test.ts" 10
echo "$E2E_WORK/test.ts: $VIDEO_FRAMES video frames (640x360, 25 fps, H.264 in MPEG-TS)"

section "3. Starting vrelayd on its embedded defaults"
start_relay "$BINDIR/vrelayd" demo --defaults

section "4. A viewer subscribes through the control protocol"
free_port VIEWER_PORT
free_port REF_PORT
UDP_OPTS="timeout=5000000&overrun_nonfatal=1&fifo_size=100000"
# VLC drops about its last second at exit, so "what VLC sent" is measured by a reference
# receiver that gets a second copy straight from VLC, not through the relay.
start_ffmpeg_pair "udp://0.0.0.0:PORT?$UDP_OPTS" "$VIEWER_PORT" "$REF_PORT"

TRANSCRIPT=()
say() {   # say FD COMMAND REPLY_REGEX: one command, recorded for the transcript
  TRANSCRIPT+=("> $2")
  control_cmd "$1" "$2" "$3"
  TRANSCRIPT+=("< $CONTROL_LAST")
}
control_open SESSION
TRANSCRIPT+=("< $CONTROL_LAST")
say "$SESSION" PING "OK PONG"
say "$SESSION" "CONECTAR $VIEWER_PORT" OK
echo "viewer (ffmpeg) listens on UDP $VIEWER_PORT and is subscribed"

section "5. VLC (as user nobody) streams the video into 127.0.0.1:65534"
vlc_source "$E2E_WORK/test.ts" \
  "#duplicate{dst=std{access=udp,mux=ts,dst=127.0.0.1:65534},dst=std{access=udp,mux=ts,dst=127.0.0.1:$REF_PORT}}" \
  "$E2E_WORK/vlc.log" 40
echo "VLC finished; waiting for the receivers to drain"
end_viewer 10 "$FF_PID"       # ffmpeg ends by itself 5 s after the data stops
end_viewer 10 "$REF_PID"

section "6. What the relay counted (vrelaystat, read from its shared memory)"
"$BINDIR/vrelaystat" -n "$RELAY_INSTANCE" -1 -f 'ingest.datagrams' -f 'ingest.bytes' -f 'ingest.drops_*' \
  -f 'fanout.sent_*' -f 'fanout.send_errors' -f 'control.sessions_total'
"$BINDIR/vrelaystat" -n "$RELAY_INSTANCE" --subscribers
say "$SESSION" DESCONECTAR OK

section "7. Stopping vrelayd (SIGTERM)"
stop_relay

section "8. What the viewer received"
ffmpeg_pair_figures
SENT=$REF_FRAMES
GOT=$FF_FRAMES
ERRORS=$FF_ERRORS
echo "VLC sent $SENT frames of the $VIDEO_FRAMES in the file (it drops about the last second)."
echo "The viewer decoded $GOT frames ($(percent "$GOT" "$SENT")% of what VLC sent)."
echo "Decoder error lines: $ERRORS at the viewer, $REF_ERRORS at the reference (VLC's cut tail causes a few)."
echo "Control session transcript (> sent, < received):"
printf '  %s\n' "${TRANSCRIPT[@]}"

if ((SENT > 0 && GOT * 10 >= SENT * 9)); then
  echo "DEMO OK: the relay delivered the stream."
  exit 0
fi
echo "DEMO FAILED: the viewer decoded less than 90% of the frames VLC sent." >&2
exit 1
