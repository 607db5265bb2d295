#!/usr/bin/env bash
# e2e test vlc_viewers: VLC (as user nobody) streams a 20 s test video into vrelayd's ingest
# as the original assignment did (#std{access=udp,mux=ts}); a cvlc viewer and an ffmpeg viewer,
# each subscribed through its own control session (CONECTAR), must decode at least 90% of the
# frames VLC actually sent. What VLC sent is measured by a reference ffmpeg that receives a
# second copy of the stream straight from VLC (#duplicate), not through the relay.
# Usage: vlc_viewers.sh VRELAYD
set -euo pipefail
# shellcheck source=test/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
BIN=${1:?usage: vlc_viewers.sh VRELAYD}
require ffmpeg ffprobe cvlc runuser ss timeout pgrep
e2e_init vlc_viewers
check_vlc_runs

log "generating the test video"
make_video "$E2E_WORK/test.ts" 20
log "test video: $VIDEO_FRAMES frames"

start_relay "$BIN" "e2e-vlc-$$"
free_port VLC_PORT   # cvlc viewer's UDP port
free_port RC_PORT    # cvlc viewer's rc (remote control) TCP port
free_port FF_PORT    # ffmpeg viewer's UDP port
free_port REF_PORT   # reference ffmpeg's UDP port (fed by VLC directly)

# --- viewers ---------------------------------------------------------------------------
as_nobody timeout 90 cvlc --vout dummy --aout dummy --network-caching=500 \
  --extraintf rc --rc-host "127.0.0.1:$RC_PORT" "udp://@:$VLC_PORT" >"$E2E_WORK/cvlc-viewer.log" 2>&1 &
CVLC_PID=$!
track "$CVLC_PID"
UDP_OPTS="timeout=5000000&overrun_nonfatal=1&fifo_size=100000"
start_ffmpeg_pair "udp://0.0.0.0:PORT?$UDP_OPTS" "$FF_PORT" "$REF_PORT"

wait_until 20 "the cvlc viewer's UDP port $VLC_PORT (VLC refused to run?)" udp_bound "$VLC_PORT"
wait_until 20 "the cvlc viewer's rc port $RC_PORT" tcp_listening "$RC_PORT"
check_vlc_log "$E2E_WORK/cvlc-viewer.log"

# --- subscribe both viewers; the sessions stay open while the video plays ----------------
control_open S_VLC
control_cmd "$S_VLC" "CONECTAR $VLC_PORT" OK
control_open S_FF
control_cmd "$S_FF" "CONECTAR $FF_PORT" OK
log "both viewers subscribed (CONECTAR $VLC_PORT -> OK, CONECTAR $FF_PORT -> OK)"

# --- the source: VLC as nobody, one copy to the relay, one to the reference ---------------
log "VLC streams the video into 127.0.0.1:$INGEST_PORT (and a copy to the reference)"
vlc_source "$E2E_WORK/test.ts" \
  "#duplicate{dst=std{access=udp,mux=ts,dst=127.0.0.1:$INGEST_PORT},dst=std{access=udp,mux=ts,dst=127.0.0.1:$REF_PORT}}" \
  "$E2E_WORK/vlc-source.log" 60

# The ffmpeg receivers end 5 s after the data stops.
wait_exit 20 "$FF_PID" FF_STATUS
wait_exit 20 "$REF_PID" REF_STATUS

# --- what the cvlc viewer displayed ----------------------------------------------------
STATS=$(vlc_rc "$RC_PORT" stats)
printf '%s\n' "$STATS" >"$E2E_WORK/cvlc-stats.log"
VLC_DISPLAYED=$(vlc_stat "frames displayed" <<<"$STATS")
VLC_LOST=$(vlc_stat "frames lost" <<<"$STATS")
VLC_CORRUPTED=$(vlc_stat "demux corrupted" <<<"$STATS")
VLC_DISCONT=$(vlc_stat "discontinuities" <<<"$STATS")
[ -n "$VLC_DISPLAYED" ] || die "no 'frames displayed' in the cvlc viewer's stats: $STATS"
vlc_rc "$RC_PORT" shutdown
wait_exit 15 "$CVLC_PID" CVLC_STATUS

# --- sessions end with DESCONECTAR; the relay stops cleanly on SIGTERM --------------------
control_close "$S_VLC"
control_close "$S_FF"
stop_relay

# --- figures and verdict ----------------------------------------------------------------
ffmpeg_pair_figures
echo "RESULT file: $VIDEO_FRAMES frames; VLC sent (reference decoded): $REF_FRAMES frames, $REF_ERRORS error lines"
echo "RESULT cvlc viewer: $VLC_DISPLAYED frames displayed ($(percent "$VLC_DISPLAYED" "$REF_FRAMES")%)," \
  "lost $VLC_LOST, demux corrupted $VLC_CORRUPTED, discontinuities $VLC_DISCONT"
echo "RESULT ffmpeg viewer: $FF_FRAMES frames decoded ($(percent "$FF_FRAMES" "$REF_FRAMES")%), $FF_ERRORS error lines"

# A source that did not really play (VLC refusing root exits 0 having sent nothing) must fail.
at_least "frames VLC sent (reference)" "$REF_FRAMES" $((VIDEO_FRAMES * 75 / 100))
at_least "cvlc viewer frames displayed" "$VLC_DISPLAYED" $(((REF_FRAMES * 9 + 9) / 10))
at_least "ffmpeg viewer frames decoded" "$FF_FRAMES" $(((REF_FRAMES * 9 + 9) / 10))
at_most "ffmpeg viewer error lines" "$FF_ERRORS" $((REF_ERRORS + 5))
at_most "cvlc viewer discontinuities" "${VLC_DISCONT:-0}" 5
at_most "cvlc viewer demux corrupted" "${VLC_CORRUPTED:-0}" 5
echo "PASS vlc_viewers"
