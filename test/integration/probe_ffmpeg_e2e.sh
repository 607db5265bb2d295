#!/usr/bin/env bash
# e2e test probe_ffmpeg (label "e2e"): ffmpeg -re streams a 6 s test video (MPEG-TS, raw
# or in RTP) into vrelayd's ingest; vrelay-probe, subscribed with --subscribe, must see a
# stream of that kind with no continuity, sync or transport errors (and, for RTP, no
# sequence number lost, reordered or repeated), and exactly the bytes and datagrams that
# the relay's ingest received (STATS). Uses the helpers of test/e2e/lib.sh.
# Usage: probe_ffmpeg_e2e.sh VRELAYD VRELAY_PROBE [mpegts|rtp]
set -euo pipefail
# shellcheck source=test/e2e/lib.sh
source "$(dirname "$0")/../e2e/lib.sh"
BIN=${1:?usage: probe_ffmpeg_e2e.sh VRELAYD VRELAY_PROBE}
PROBE=${2:?usage: probe_ffmpeg_e2e.sh VRELAYD VRELAY_PROBE [mpegts|rtp]}
MODE=${3:-mpegts}
case "$MODE" in
  mpegts) OUTPUT=(-f mpegts "udp://127.0.0.1:PORT?pkt_size=1316") ;;
  rtp) OUTPUT=(-f rtp_mpegts "rtp://127.0.0.1:PORT?pkt_size=1328") ;;  # 12-byte header + 7 TS packets
  *) echo "usage: probe_ffmpeg_e2e.sh VRELAYD VRELAY_PROBE [mpegts|rtp]" >&2; exit 2 ;;
esac
require ffmpeg ffprobe ss timeout pgrep
e2e_init "probe_ffmpeg_$MODE"

# json_number KEY FILE: the first "KEY":N of the report (the keys come in a fixed order:
# top-level datagrams and bytes before the ts object, its totals before the PIDs).
json_number() { grep -oE "\"$1\":[0-9]+" "$2" | head -n 1 | cut -d: -f2; }
# stats_value KEY: KEY=N of the last STATS reply.
stats_value() { printf '%s\n' "$CONTROL_LAST" | grep -oE "(^| )$1=[0-9]+" | cut -d= -f2; }

make_video "$E2E_WORK/test.ts" 6
log "test video: $VIDEO_FRAMES frames"
start_relay "$BIN" "e2e-probe-$$"
free_port PROBE_PORT

# --duration bounds it if the signal below never comes.
"$PROBE" --subscribe "127.0.0.1:$CONTROL_PORT" --bind 127.0.0.1 --duration 60 --json "$PROBE_PORT" \
  >"$E2E_WORK/probe.json" 2>"$E2E_WORK/probe.log" &
PROBE_PID=$!
track "$PROBE_PID"
probe_subscribed() { grep -q "subscribed UDP port $PROBE_PORT" "$E2E_WORK/probe.log"; }
wait_until 10 "vrelay-probe's subscription" probe_subscribed
log "vrelay-probe subscribed UDP port $PROBE_PORT"

OUTPUT[2]=${OUTPUT[2]/PORT/$INGEST_PORT}
log "ffmpeg -re streams the video ($MODE) into ${OUTPUT[2]}"
timeout 30 ffmpeg -nostdin -hide_banner -loglevel warning -re -i "$E2E_WORK/test.ts" -c copy -map 0 \
  "${OUTPUT[@]}" >"$E2E_WORK/ffmpeg-source.log" 2>&1 &
SRC_PID=$!
track "$SRC_PID"
wait_exit 35 "$SRC_PID" SRC_STATUS
[ "$SRC_STATUS" = 0 ] || die "the ffmpeg source exited with status $SRC_STATUS"

# Every datagram that reached ingest has been sent to the probe (one subscriber) before the
# probe is stopped; the probe reads what waits in its socket before it handles the signal.
control_open S
relayed() {
  control_cmd "$S" STATS 'OK .*'
  local in out
  in=$(stats_value ingest_datagrams)
  out=$(stats_value sent_datagrams)
  [ -n "$in" ] && [ "$in" -gt 0 ] && [ "$in" = "$out" ]
}
wait_until 10 "the relay to send every datagram it received" relayed
INGEST_DATAGRAMS=$(stats_value ingest_datagrams)
INGEST_BYTES=$(stats_value ingest_bytes)

kill -INT "$PROBE_PID"
wait_exit 10 "$PROBE_PID" PROBE_STATUS
[ "$PROBE_STATUS" = 0 ] || die "vrelay-probe exited with status $PROBE_STATUS: $(tail -n 3 "$E2E_WORK/probe.log")"
REPORT="$E2E_WORK/probe.json"
log "report: $(head -c 400 "$REPORT")"
grep -q "\"kind\":\"$MODE\"" "$REPORT" || die "the probe did not see a $MODE stream: $(head -c 300 "$REPORT")"
grep -q '"end":"signal"' "$REPORT" || die "the probe did not end on the signal"

DATAGRAMS=$(json_number datagrams "$REPORT")
BYTES=$(json_number bytes "$REPORT")
PACKETS=$(json_number packets "$REPORT")
CC=$(json_number cc_errors "$REPORT")
SYNC=$(json_number sync_errors "$REPORT")
TEI=$(json_number transport_errors "$REPORT")
PIDS=$(json_number pid_count "$REPORT")
echo "RESULT relay ingest: $INGEST_DATAGRAMS datagrams, $INGEST_BYTES bytes"
echo "RESULT vrelay-probe: $DATAGRAMS datagrams, $BYTES bytes, $PACKETS TS packets on $PIDS PIDs," \
  "$CC continuity errors, $SYNC sync errors, $TEI transport errors"
[ "$DATAGRAMS" = "$INGEST_DATAGRAMS" ] || die "the probe got $DATAGRAMS datagrams, the relay's ingest $INGEST_DATAGRAMS"
[ "$BYTES" = "$INGEST_BYTES" ] || die "the probe got $BYTES bytes, the relay's ingest $INGEST_BYTES"
HEADER=0
[ "$MODE" = rtp ] && HEADER=12
[ "$((PACKETS * 188 + DATAGRAMS * HEADER))" = "$BYTES" ] || die "$PACKETS TS packets in $DATAGRAMS datagrams do not make $BYTES bytes"
if [ "$MODE" = rtp ]; then  # every RTP sequence number once, in order
  for key in lost out_of_order duplicates; do
    [ "$(json_number "$key" "$REPORT")" = 0 ] || die "RTP: $key is $(json_number "$key" "$REPORT")"
  done
  [ "$(json_number received "$REPORT")" = "$DATAGRAMS" ] || die "RTP: received $(json_number received "$REPORT") of $DATAGRAMS"
fi
[ "$CC" = 0 ] || die "$CC continuity counter errors"
[ "$SYNC" = 0 ] || die "$SYNC sync errors"
[ "$TEI" = 0 ] || die "$TEI transport errors"
[ "$PIDS" -ge 3 ] || die "only $PIDS PIDs (expected PAT, PMT, video, audio...)"
grep -q '"other_datagrams":0' "$REPORT" || die "datagrams of another kind"

# The probe's DESCONECTAR removed its subscription.
control_cmd "$S" STATS 'OK .*'
[ "$(stats_value subscribers)" = 0 ] || die "the relay still has $(stats_value subscribers) subscriber(s)"
control_close "$S"
stop_relay
echo "PASS probe_ffmpeg $MODE"
