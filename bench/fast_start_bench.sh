#!/usr/bin/env bash
# Fast start, measured with the real players: VLC streams a test video (a key frame every
# second, then every ten seconds) into two vrelayd, one with fanout.fast_start on and one with
# it off (#duplicate: the same stream, the same moments). cvlc (--network-caching=500), ffmpeg
# with a 0.5 s probe and plain ffmpeg (5 s probe) subscribe at random moments, in turn to each
# relay; each is timed from CONECTAR's OK to its first decoded picture, and the damage lines
# in its log (decode errors, data dropped while waiting for parameter sets) are counted.
# Prints one table per GOP: the median and the worst time, the most damage lines per viewer.
# Usage: fast_start_bench.sh VRELAYD [JOINS]   (JOINS per viewer and relay, default 5;
# `make bench` runs it; the figures go to docs/benchmarks.md)
set -euo pipefail
# shellcheck source=test/e2e/lib.sh
source "$(dirname "$0")/../test/e2e/lib.sh"
BIN=${1:?usage: fast_start_bench.sh VRELAYD [JOINS]}
JOINS=${2:-5}
[[ $JOINS =~ ^[1-9][0-9]*$ ]] || die "JOINS must be a positive number, not '$JOINS'"
STAT="$(dirname "$BIN")/vrelaystat"
require ffmpeg ffprobe cvlc runuser ss timeout pgrep awk
e2e_init fast_start_bench
check_vlc_runs
read -r -a KINDS <<<"${FSB_KINDS:-cvlc ffmpeg-probe ffmpeg}"   # FSB_KINDS, FSB_GOPS: a subset
JOIN_LIMIT=14   # a GOP of 10 s plus plain ffmpeg's probe
printf 'fanout:\n  fast_start: off\n' >"$E2E_WORK/off.yaml"

echo "fast start with real players: $JOINS joins per viewer and relay, $(nproc) CPUs, $(date -u +%F)"
for gop in ${FSB_GOPS:-1 10}; do
  # Long enough for every join, each taking at most JOIN_LIMIT + JOIN_WATCH seconds.
  seconds=$((JOINS * ${#KINDS[@]} * 2 * (gop + 8) + 20))
  log "GOP ${gop} s: generating a ${seconds} s video"
  make_video "$E2E_WORK/gop$gop.ts" "$seconds" $((gop * 25))
  start_relay "$BIN" "fsb-on-$gop-$$"
  ON_CONTROL=$CONTROL_PORT ON_INGEST=$INGEST_PORT ON_INSTANCE=$RELAY_INSTANCE
  start_relay "$BIN" "fsb-off-$gop-$$" --control 127.0.0.1:0 --ingest 127.0.0.1:0 -c "$E2E_WORK/off.yaml"
  OFF_CONTROL=$CONTROL_PORT
  as_nobody timeout $((seconds + 30)) cvlc --play-and-exit --file-caching=0 --sout-udp-caching=0 \
    --sout-ts-dts-delay=0 "$E2E_WORK/gop$gop.ts" \
    --sout "#duplicate{dst=std{access=udp,mux=ts,dst=127.0.0.1:$ON_INGEST},dst=std{access=udp,mux=ts,dst=127.0.0.1:$INGEST_PORT}}" \
    >"$E2E_WORK/source$gop.log" 2>&1 &
  SOURCE_PID=$!
  track "$SOURCE_PID"
  wait_until 20 "the first key frame of the GOP $gop s stream" \
    bash -c "[ \"\$(\"$STAT\" -n \"$ON_INSTANCE\" -1 -f ingest.key_frames | awk '{ print \$2 }')\" -ge 1 ]"

  declare -A times=() worst_damage=() missed=()
  for ((round = 0; round < JOINS; round++)); do
    for kind in "${KINDS[@]}"; do
      for mode in on off; do
        sleep "0.$((RANDOM % 10))$((RANDOM % 10))"   # a random moment in the GOP
        if [ "$mode" = on ]; then CONTROL_PORT=$ON_CONTROL; else CONTROL_PORT=$OFF_CONTROL; fi
        join_viewer "$kind" "gop$gop-$kind-$mode-$round"
        key="$kind/$mode"
        if [ -n "$JOIN_SECONDS" ]; then times[$key]+="$JOIN_SECONDS "; else missed[$key]=$((${missed[$key]:-0} + 1)); fi
        ((JOIN_ERRORS <= ${worst_damage[$key]:-0})) || worst_damage[$key]=$JOIN_ERRORS
        log "GOP ${gop} s, $kind, fast start $mode: ${JOIN_SECONDS:-no picture} s, $JOIN_ERRORS damage lines"
      done
    done
  done
  kill_tree TERM "$SOURCE_PID"
  wait_exit 10 "$SOURCE_PID"

  echo
  echo "GOP ${gop} s: from CONECTAR's OK to the first decoded picture (seconds), damage lines"
  printf '| %-12s | %-36s | %-36s |\n' viewer "fast start off" "fast start on"
  printf '|%s|%s|%s|\n' "--------------" "--------------------------------------" "--------------------------------------"
  for kind in "${KINDS[@]}"; do
    cells=()
    for mode in off on; do
      key="$kind/$mode"
      # shellcheck disable=SC2086
      med=$(median ${times[$key]:-}) worst=$(printf '%s\n' ${times[$key]:-} | sort -g | tail -n 1)
      cell="median ${med}, max ${worst:--}, ${worst_damage[$key]:-0} dmg"
      [ -z "${missed[$key]:-}" ] || cell+=", ${missed[$key]} none"
      cells+=("$cell")
    done
    printf '| %-12s | %-36s | %-36s |\n' "$kind" "${cells[0]}" "${cells[1]}"
  done
  echo
  unset times worst_damage missed
  CONTROL_PORT=$ON_CONTROL
done
echo "PASS fast_start_bench"
