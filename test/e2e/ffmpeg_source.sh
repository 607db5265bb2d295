#!/usr/bin/env bash
# e2e test ffmpeg_source: ffmpeg -re streams a 12 s test video into vrelayd's ingest (its
# datagrams vary from 188 to 1316 bytes); one ffmpeg viewer subscribed with CONECTAR must
# decode at least 90% of the file's frames (ffmpeg, unlike VLC, sends the whole file).
# Usage: ffmpeg_source.sh VRELAYD
set -euo pipefail
# shellcheck source=test/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
BIN=${1:?usage: ffmpeg_source.sh VRELAYD}
require ffmpeg ffprobe ss timeout pgrep
e2e_init ffmpeg_source

make_video "$E2E_WORK/test.ts" 12
log "test video: $VIDEO_FRAMES frames"
start_relay "$BIN" "e2e-ffsrc-$$"
free_port FF_PORT

start_ffmpeg_viewer "udp://0.0.0.0:$FF_PORT?timeout=5000000&overrun_nonfatal=1&fifo_size=100000" \
  "$E2E_WORK/ffmpeg-viewer.log"
FF_PID=$VIEWER_PID
wait_until 10 "the ffmpeg viewer's UDP port $FF_PORT" udp_bound "$FF_PORT"

control_open S_FF
control_cmd "$S_FF" "CONECTAR $FF_PORT" OK
log "viewer subscribed (CONECTAR $FF_PORT -> OK)"

log "ffmpeg -re streams the video into 127.0.0.1:$INGEST_PORT"
timeout 40 ffmpeg -nostdin -hide_banner -loglevel warning -re -i "$E2E_WORK/test.ts" -c copy -map 0 \
  -f mpegts "udp://127.0.0.1:$INGEST_PORT?pkt_size=1316" >"$E2E_WORK/ffmpeg-source.log" 2>&1 &
SRC_PID=$!
track "$SRC_PID"
wait_exit 45 "$SRC_PID" SRC_STATUS
[ "$SRC_STATUS" = 0 ] || die "the ffmpeg source exited with status $SRC_STATUS"

end_viewer 10 "$FF_PID"   # it ends by itself 5 s after the data stops
control_close "$S_FF"
stop_relay

FF_FRAMES=$(ffmpeg_frames "$E2E_WORK/ffmpeg-viewer.log")
FF_ERRORS=$(ffmpeg_errors "$E2E_WORK/ffmpeg-viewer.log")
echo "RESULT ffmpeg source sent the whole file: $VIDEO_FRAMES frames"
echo "RESULT ffmpeg viewer: $FF_FRAMES frames decoded ($(percent "$FF_FRAMES" "$VIDEO_FRAMES")%), $FF_ERRORS error lines"
at_least "ffmpeg viewer frames decoded" "$FF_FRAMES" $(((VIDEO_FRAMES * 9 + 9) / 10))
at_most "ffmpeg viewer error lines" "$FF_ERRORS" 5
echo "PASS ffmpeg_source"
