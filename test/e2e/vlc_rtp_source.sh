#!/usr/bin/env bash
# e2e test vlc_rtp_source: VLC (as nobody) sends RTP carrying MPEG-TS, as the original
# assignment's streamer did (#rtp{proto=udp,mux=ts}); an ffmpeg viewer subscribed with
# CONECTAR plays rtp://127.0.0.1:PORT. ffmpeg's RTP demuxer checks every RTP header (version,
# payload type, sequence numbers), so decoding >= 90% of the frames VLC sent, with no more
# damage than a reference receiving VLC's own copy, shows the relay forwards RTP unchanged.
# Usage: vlc_rtp_source.sh VRELAYD
set -euo pipefail
# shellcheck source=test/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
BIN=${1:?usage: vlc_rtp_source.sh VRELAYD}
require ffmpeg ffprobe cvlc runuser ss timeout pgrep
e2e_init vlc_rtp_source
check_vlc_runs

make_video "$E2E_WORK/test.ts" 12
log "test video: $VIDEO_FRAMES frames"
start_relay "$BIN" "e2e-rtp-$$"
free_port FF_PORT 2    # RTP on FF_PORT, RTCP on FF_PORT+1 (ffmpeg binds both)
free_port REF_PORT 2

# Damage lines: the decoder's, plus RTP sequence gaps and bad headers. Left out: "non-existing
# PPS", which ffmpeg's RTP input prints 40-50 times at start-up, before the first SPS/PPS,
# in every receiver alike (the reference too) and with a varying count.
FFMPEG_ERROR_RE="${FFMPEG_ERROR_RE/|non-existing PPS/}|RTP: missed|bad cseq|RTP: PT="

start_ffmpeg_pair "rtp://127.0.0.1:PORT?timeout=5000000" "$FF_PORT" "$REF_PORT"

control_open S_FF
control_cmd "$S_FF" "CONNECT $FF_PORT" OK
log "viewer subscribed (CONNECT $FF_PORT -> OK)"

log "VLC streams RTP into 127.0.0.1:$INGEST_PORT (and a copy to the reference)"
vlc_source "$E2E_WORK/test.ts" \
  "#duplicate{dst=rtp{proto=udp,mux=ts,dst=127.0.0.1,port=$INGEST_PORT},dst=rtp{proto=udp,mux=ts,dst=127.0.0.1,port=$REF_PORT}}" \
  "$E2E_WORK/vlc-source.log" 50

# The reference ends on VLC's RTCP BYE; the viewer gets no RTCP (the relay carries only the
# RTP port) and ffmpeg's RTP input may retry its 5 s timeout for long: stop it after 6 s.
end_viewer 6 "$FF_PID"
end_viewer 6 "$REF_PID"
control_close "$S_FF"
stop_relay

ffmpeg_pair_figures
echo "RESULT file: $VIDEO_FRAMES frames; VLC sent over RTP (reference decoded): $REF_FRAMES frames, $REF_ERRORS error lines"
echo "RESULT ffmpeg viewer (rtp://): $FF_FRAMES frames decoded ($(percent "$FF_FRAMES" "$REF_FRAMES")%), $FF_ERRORS error lines"

at_least "frames VLC sent (reference)" "$REF_FRAMES" $((VIDEO_FRAMES * 70 / 100))
at_least "ffmpeg viewer frames decoded" "$FF_FRAMES" $(((REF_FRAMES * 9 + 9) / 10))
at_most "ffmpeg viewer error lines" "$FF_ERRORS" $((REF_ERRORS + 5))
echo "PASS vlc_rtp_source"
