#!/usr/bin/env bash
# e2e test http_stream: ffmpeg -re streams a test video (a key frame every second) into
# vrelayd; ffmpeg and cvlc read it back over HTTP from http://127.0.0.1:PORT/stream, joining
# mid-stream, and must decode pictures: ffmpeg -t 2 exits 0 with at least 25 frames and no
# damage at the join, VLC shows its first picture. The relay counts both viewers.
# Usage: http_stream.sh VRELAYD
set -euo pipefail
# shellcheck source=test/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
BIN=${1:?usage: http_stream.sh VRELAYD}
STAT="$(dirname "$BIN")/vrelaystat"
require ffmpeg ffprobe cvlc runuser ss timeout pgrep awk
e2e_init http_stream
check_vlc_runs

make_video "$E2E_WORK/test.ts" 20
start_relay "$BIN" "e2e-http-$$" --control 127.0.0.1:0 --ingest 127.0.0.1:0 --http 127.0.0.1:0
[ -n "$HTTP_PORT" ] || die "the ready line names no http address"
URL="http://127.0.0.1:$HTTP_PORT/stream"

counter() { "$STAT" -n "$RELAY_INSTANCE" -1 -f "$1" | awk -v name="$1" '$1 == name { print $2 }'; }
streams_gone() { [ "$(counter http.streams)" = 0 ]; }

timeout 40 ffmpeg -nostdin -hide_banner -loglevel warning -re -i "$E2E_WORK/test.ts" -c copy -map 0 \
  -f mpegts "udp://127.0.0.1:$INGEST_PORT?pkt_size=1316" >"$E2E_WORK/ffmpeg-source.log" 2>&1 &
SRC_PID=$!
track "$SRC_PID"
# Mid-stream: the second key frame is in the ring, and half a GOP more.
wait_until 15 "two key frames of the source" bash -c "[ \"\$(\"$STAT\" -n \"$RELAY_INSTANCE\" -1 -f ingest.key_frames | awk '{ print \$2 }')\" -ge 2 ]"
sleep 0.5

log "ffmpeg reads $URL for 2 s of stream"
status=0
timeout 20 ffmpeg -nostdin -hide_banner -loglevel info -i "$URL" -map 0:v:0 -t 2 -f null - \
  >"$E2E_WORK/ffmpeg-viewer.log" 2>&1 || status=$?
FRAMES=$(ffmpeg_frames "$E2E_WORK/ffmpeg-viewer.log")
ERRORS=$(ffmpeg_errors "$E2E_WORK/ffmpeg-viewer.log")
echo "RESULT ffmpeg over HTTP: exit status $status, $FRAMES frames decoded, $ERRORS damage lines"
[ "$status" = 0 ] || die "ffmpeg -i $URL exited with status $status"
at_least "frames ffmpeg decoded from /stream" "$FRAMES" 25
at_most "damage lines of the ffmpeg viewer" "$ERRORS" 0

log "cvlc reads $URL"
as_nobody timeout 20 cvlc -vv --vout dummy --aout dummy --network-caching=500 --run-time=3 --play-and-exit "$URL" \
  >"$E2E_WORK/vlc-viewer.log" 2>&1 || true
check_vlc_log "$E2E_WORK/vlc-viewer.log"
grep -qE 'Received first picture|original format .* 4cc I420' "$E2E_WORK/vlc-viewer.log" ||
  die "VLC showed no picture from $URL"
echo "RESULT cvlc over HTTP: a picture"

at_least "http.streams_opened" "$(counter http.streams_opened)" 2
at_most "http.stream_cut" "$(counter http.stream_cut)" 0
wait_until 5 "http.streams back to 0" streams_gone
kill_tree TERM "$SRC_PID"
wait_exit 10 "$SRC_PID"
stop_relay
echo "PASS http_stream"
