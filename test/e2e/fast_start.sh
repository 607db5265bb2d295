#!/usr/bin/env bash
# e2e test fast_start: VLC streams test videos with a key frame every second and every ten
# seconds through vrelayd; cvlc and ffmpeg viewers (0.5 s probe) subscribe at random moments
# in the middle of a GOP. Each must decode a picture within a second of CONECTAR's OK (the
# next key frame would take up to ten) with no damage at the join, and the relay must count a
# fast start for each. The timings against fast start off are bench/fast_start_bench.sh's.
# Usage: fast_start.sh VRELAYD
set -euo pipefail
# shellcheck source=test/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
BIN=${1:?usage: fast_start.sh VRELAYD}
STAT="$(dirname "$BIN")/vrelaystat"
require ffmpeg ffprobe cvlc runuser ss timeout pgrep awk
e2e_init fast_start
check_vlc_runs

JOIN_LIMIT=5
LIMIT_SECONDS=1.0   # a generous bound: fast start measures 0.06-0.2 s here, no fast start 0.3-10 s
joins=0

# fast_starts: the relay's fanout.fast_starts counter.
fast_starts() { "$STAT" -n "$RELAY_INSTANCE" -1 -f fanout.fast_starts | awk '{ print $2 }'; }

for gop in 1 10; do
  log "GOP ${gop} s: generating the video"
  make_video "$E2E_WORK/gop$gop.ts" $((gop + 16)) $((gop * 25))
  start_relay "$BIN" "e2e-fs$gop-$$"
  as_nobody timeout 60 cvlc --play-and-exit --file-caching=0 --sout-udp-caching=0 --sout-ts-dts-delay=0 \
    "$E2E_WORK/gop$gop.ts" --sout "#std{access=udp,mux=ts,dst=127.0.0.1:$INGEST_PORT}" \
    >"$E2E_WORK/source$gop.log" 2>&1 &
  SOURCE_PID=$!
  track "$SOURCE_PID"
  # The first key frame is in the ring once ingest has counted it.
  wait_until 20 "the first key frame of the GOP $gop s stream" \
    bash -c "[ \"\$(\"$STAT\" -n \"$RELAY_INSTANCE\" -1 -f ingest.key_frames | awk '{ print \$2 }')\" -ge 1 ]"
  for kind in cvlc ffmpeg-probe cvlc ffmpeg-probe; do
    sleep "0.$((RANDOM % 10))$((RANDOM % 10))"   # a random moment in the GOP
    before=$(fast_starts)
    join_viewer "$kind" "gop$gop-$kind-$joins"
    joins=$((joins + 1))
    echo "RESULT GOP ${gop} s, $kind: first picture after ${JOIN_SECONDS:-never} s, $JOIN_ERRORS damage lines"
    [ -n "$JOIN_SECONDS" ] || die "the $kind viewer showed no picture within $JOIN_LIMIT s (GOP $gop s)"
    awk -v s="$JOIN_SECONDS" -v max="$LIMIT_SECONDS" 'BEGIN { exit !(s <= max) }' ||
      die "the $kind viewer took $JOIN_SECONDS s to its first picture (GOP $gop s), more than $LIMIT_SECONDS s"
    at_most "damage lines of the $kind viewer (GOP $gop s)" "$JOIN_ERRORS" 0
    at_least "fanout.fast_starts after the $kind viewer joined" "$(fast_starts)" $((before + 1))
  done
  kill_tree TERM "$SOURCE_PID"
  wait_exit 10 "$SOURCE_PID"
  stop_relay
done
echo "PASS fast_start ($joins joins)"
