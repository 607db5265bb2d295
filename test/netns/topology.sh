#!/usr/bin/env bash
# The multi-host topology of issue 13, built from network namespaces on this machine:
#
#                 switch (its own namespace: bridge br0, no address)
#      +--------+--------+--------+--------+--------+
#     core    edge1    edge2    edge3    viewer        each: eth0 10.77.0.x/24, fd77::x/64
#
#   core   vrelayd, ingest.source: generator (the counter stream of vrelay-probe(1))
#   edge1  vrelayd, ingest.upstream: core, and a multicast output to 239.77.0.1:5004 (ttl 2)
#   edge2  vrelayd, ingest.upstream: core
#   edge3  vrelayd, ingest.listen: 239.77.0.1:5004 on eth0 (what edge1 sends to the LAN)
#   viewer vrelay-probe --subscribe EDGE:7700 instances (and curl, soak_viewers in --bench)
#
# Usage: topology.sh [--bench] [--keep] [BINDIR]
#   BINDIR   the folder of vrelayd, vrelay-probe, vrelaystat, vrelayctl (default build/bin)
#   --bench  measure edges x viewers instead of checking (make bench); see bench_main
#   --keep   keep the work folder (configurations, logs, probe reports) even on success
# Environment: TOPOLOGY_BENCH_RUNS="EDGES:VIEWERS ..." (bench runs, default "1:50 1:200 2:50
# 2:200 4:50 4:200"), TOPOLOGY_BENCH_SECONDS (default 10), TOPOLOGY_BENCH_INTERVAL_MS (1).
#
# Checks (each bounded in time; a failure prints "FAIL: expected ..., seen ..." and exits 1):
#   1. steady state: every viewer's probe counts exactly N datagrams, 0 lost, 0 duplicated;
#   2. core restart: SIGTERM to the core's PID, the same configuration started again; every
#      edge is subscribed again within 3 s of the new core's ready line, new viewers get N
#      datagrams of the new stream, and a viewer that stayed through the restart sees it;
#   3. HTTP: curl from the viewer namespace reads /stream of an edge: the counter stream's
#      datagrams, whole and in order;
#   4. cleanup: the EXIT trap ends every process it started, by PID, and deletes every
#      namespace, on success, failure or Ctrl-C; then nothing of this run may be left.
#
# Exit status: 0 every check held; 1 a check failed; 2 usage; 77 skipped (not root, or no
# network namespaces, bridge or veth pairs).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=test/e2e/lib.sh
source "$HERE/../e2e/lib.sh"  # log, die, wait_until, wait_exit, kill_tree, require

MODE=check KEEP=0 BIN=""
for arg in "$@"; do
  case $arg in
    --bench) MODE=bench ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "topology.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
    *) BIN=$arg ;;
  esac
done
BIN=${BIN:-$HERE/../../build/bin}
for tool in vrelayd vrelay-probe vrelaystat vrelayctl; do
  [ -x "$BIN/$tool" ] || { echo "topology.sh: $BIN/$tool is not an executable (build first)" >&2; exit 2; }
done

skip() {
  echo "SKIP: network namespaces unavailable: $*"
  exit 77
}

# ---- Names: unique per run, so two runs never collide ---------------------------------
RUN_ID=$(printf '%x%02x' $$ $((RANDOM % 256)))  # the PID, and a byte against a PID reused
PREFIX="vt$RUN_ID"             # namespaces $PREFIX-core, $PREFIX-switch...
INSTANCE_PREFIX="topo$RUN_ID"  # vrelayd instances (shared-memory segments) topo<id>-core...
SUBNET=10.77.0
declare -A ADDRESS=([core]=$SUBNET.1 [edge1]=$SUBNET.11 [edge2]=$SUBNET.12 [edge3]=$SUBNET.13
                    [edge4]=$SUBNET.14 [viewer]=$SUBNET.100)
declare -A ADDRESS6=([core]=fd77::1 [edge1]=fd77::11 [edge2]=fd77::12 [edge3]=fd77::13
                     [edge4]=fd77::14 [viewer]=fd77::100)
CONTROL_PORT=7700 INGEST_PORT=5000 HTTP_PORT=8080
GROUP=239.77.0.1 GROUP_PORT=5004

NAMESPACES=()          # created by this run, deleted by cleanup
declare -A RELAY_PID   # host -> vrelayd supervisor PID
declare -A READY_AT    # host -> monotonic ms of its ready line
OTHER_PIDS=()          # probes, curl, vrelayctl, soak_viewers: ended by cleanup
WORK=""

now_ms() { echo $(($(date +%s%N) / 1000000)); }
ns() { echo "$PREFIX-$1"; }
# in_ns HOST CMD...: runs CMD in HOST's namespace. Not for background processes: their $!
# must be the program's own PID, so they run `ip netns exec` directly (it execs the program).
in_ns() {
  local host=$1
  shift
  ip netns exec "$(ns "$host")" "$@"
}
instance() { echo "$INSTANCE_PREFIX-$1"; }

# ---- Cleanup (check 4) ----------------------------------------------------------------
all_pids() { echo "${RELAY_PID[@]}" "${OTHER_PIDS[@]}"; }
# ours PID: PID is still a child of this script (not a number some other process reuses).
ours() { [ "$(awk '/^PPid:/ {print $2}' "/proc/$1/status" 2>/dev/null)" = "$$" ]; }

end_processes() {
  local pid i alive
  for pid in "${OTHER_PIDS[@]}"; do ours "$pid" && kill_tree TERM "$pid"; done
  for pid in "${RELAY_PID[@]}"; do ours "$pid" && kill -TERM "$pid"; done  # its children follow
  for ((i = 0; i < 50; i++)); do
    alive=0
    for pid in $(all_pids); do ours "$pid" && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in $(all_pids); do ours "$pid" && kill_tree KILL "$pid"; done
  wait 2>/dev/null || true
}

# What this run leaves behind, one line each ("" when nothing).
leftovers() {
  local pid n
  for pid in $(all_pids); do ours "$pid" && echo "process $pid"; done
  ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-" | sed 's/^/namespace /' || true
  for n in /dev/shm/vrelay."$INSTANCE_PREFIX"-*; do [ -e "$n" ] && echo "segment $n"; done
  return 0
}

cleanup() {
  local rc=$? n host
  trap - EXIT INT TERM
  set +e
  end_processes
  # A relay killed with SIGKILL leaves its segment; the names are this run's own.
  for host in "${!RELAY_PID[@]}"; do rm -f "/dev/shm/vrelay.$(instance "$host")"; done
  for n in "${NAMESPACES[@]}"; do ip netns del "$n" 2>/dev/null; done
  # A sanitizer report from any vrelayd process (the sanitizer builds) fails the run, as in
  # the integration tests' harness, even when every check held.
  if [ -n "$WORK" ] && grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' \
       "$WORK"/*.log 2>/dev/null; then
    echo "FAIL: a vrelayd process reported a sanitizer error (in the logs above)" >&2
    ((rc == 0 || rc == 77)) && rc=1
  fi
  local left
  left=$(leftovers)
  if [ -n "$left" ]; then
    echo "FAIL: cleanup: expected nothing of run $RUN_ID left, seen:" >&2
    echo "$left" >&2
    ((rc == 0 || rc == 77)) && rc=1
  fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if ((rc != 0 && rc != 77)); then
      local f
      for f in "$WORK"/*.log "$WORK"/*.err; do
        [ -s "$f" ] || continue
        echo "----- tail of $f" >&2
        tail -n 20 "$f" >&2
      done
    fi
    if ((rc != 0 && rc != 77 || KEEP)); then
      echo "work folder kept: $WORK" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}

# ---- The network ----------------------------------------------------------------------
make_switch() {
  [ "$(id -u)" -eq 0 ] || skip "not root (uid $(id -u))"
  command -v ip >/dev/null || skip "ip (iproute2) is not installed"
  local err
  if ! err=$(ip netns add "$(ns switch)" 2>&1); then skip "ip netns add: $err"; fi
  NAMESPACES+=("$(ns switch)")
  if ! err=$(ip -n "$(ns switch)" link add br0 type bridge mcast_snooping 0 2>&1); then
    skip "no bridge in a namespace: $err"
  fi
  if ! err=$(ip -n "$(ns switch)" link add vcheck type veth peer name vcheck-peer 2>&1); then
    skip "no veth pairs: $err"
  fi
  ip -n "$(ns switch)" link del vcheck
  # No IGMP snooping: the bridge floods multicast to every port, as a plain LAN switch does.
  ip -n "$(ns switch)" link set br0 up
  ip -n "$(ns switch)" link set lo up
}

# add_host NAME: a namespace with lo and eth0 (IPv4 /24, IPv6 ULA /64, multicast on),
# eth0's peer a port of the switch's bridge.
add_host() {
  local host=$1 sw
  sw=$(ns switch)
  ip netns add "$(ns "$host")"
  NAMESPACES+=("$(ns "$host")")
  ip -n "$sw" link add "p-$host" type veth peer name eth0 netns "$(ns "$host")"
  ip -n "$sw" link set "p-$host" master br0
  ip -n "$sw" link set "p-$host" up
  ip -n "$(ns "$host")" link set lo up
  ip -n "$(ns "$host")" addr add "${ADDRESS[$host]}/24" dev eth0
  ip -n "$(ns "$host")" -6 addr add "${ADDRESS6[$host]}/64" dev eth0 nodad
  ip -n "$(ns "$host")" link set eth0 multicast on up
  # Multicast leaves by eth0 even for a sender that does not name an interface.
  ip -n "$(ns "$host")" route add 224.0.0.0/4 dev eth0
}

# ---- Relays ---------------------------------------------------------------------------
# write_config HOST -> prints the configuration of HOST ($WORK/HOST.yaml holds it).
config_core() {
  cat <<EOF
instance: $(instance core)
control:
  listen: 0.0.0.0:$CONTROL_PORT
ingest:
  listen: ${ADDRESS[core]}:$INGEST_PORT
  source: generator
  interval_ms: $INTERVAL_MS
EOF
}

# An edge: its ingest on its eth0 address, fed by ingest.upstream (which allows the core to
# send without an ingest.allow entry); edge1 also sends to the multicast group (not in the
# bench, which measures unicast copies).
config_edge() {
  local host=$1
  cat <<EOF
instance: $(instance "$host")
control:
  listen: "[::]:$CONTROL_PORT"
http:
  listen: 0.0.0.0:$HTTP_PORT
ingest:
  listen: ${ADDRESS[$host]}:$INGEST_PORT
EOF
  echo "  upstream: ${ADDRESS[core]}:$CONTROL_PORT"
  if [ "$host" = edge1 ] && [ "$MODE" = check ]; then
    cat <<EOF
outputs:
  - name: lan
    to: "$GROUP:$GROUP_PORT"
    interface: eth0
    ttl: 2
EOF
  fi
}

config_edge3() {
  cat <<EOF
instance: $(instance edge3)
control:
  listen: "[::]:$CONTROL_PORT"
http:
  listen: 0.0.0.0:$HTTP_PORT
ingest:
  listen: $GROUP:$GROUP_PORT
  interface: eth0
  allow:
    - ${ADDRESS[edge1]}/32
EOF
}

# start_relay HOST: starts vrelayd in HOST's namespace with $WORK/HOST.yaml; waits (10 s at
# most) for its ready line and checks it names this instance and this PID.
start_relay() {
  local host=$1 fd line re
  local fifo="$WORK/$host.stdout"
  [ -p "$fifo" ] || mkfifo "$fifo"
  exec {fd}<>"$fifo"
  # ip netns exec execs vrelayd: $! is vrelayd's own PID.
  ip netns exec "$(ns "$host")" "$BIN/vrelayd" -F -c "$WORK/$host.yaml" >"$fifo" 2>>"$WORK/$host.log" &
  RELAY_PID[$host]=$!
  if ! read -r -t 10 -u "$fd" line; then
    kill -0 "${RELAY_PID[$host]}" 2>/dev/null || die "vrelayd of $host exited before it was ready (log $WORK/$host.log)"
    die "vrelayd of $host: expected its ready line within 10 s, seen none"
  fi
  READY_AT[$host]=$(now_ms)
  re="^vrelayd ready control=[^ ]+ ingest=[^ ]+ instance=$(instance "$host") pid=${RELAY_PID[$host]}( |$)"
  [[ $line =~ $re ]] || die "vrelayd of $host: expected 'vrelayd ready ... instance=$(instance "$host") pid=${RELAY_PID[$host]}', seen '$line'"
  exec {fd}>&-
  log "$host: $line"
}

# stop_relay HOST: SIGTERM to its PID; it must exit with status 0 within 10 s.
stop_relay() {
  local host=$1 status
  kill -TERM "${RELAY_PID[$host]}" || die "vrelayd of $host (pid ${RELAY_PID[$host]}) is not running"
  wait_exit 10 "${RELAY_PID[$host]}" status
  ((status == 0)) || die "vrelayd of $host: expected exit status 0 after SIGTERM, seen $status"
}

# counter HOST NAME: the value of one counter of HOST's relay (vrelaystat reads the segment,
# which is not in the network namespace).
counter() {
  local value
  value=$("$BIN/vrelaystat" -n "$(instance "$1")" -1 -f "$2" 2>/dev/null | awk -v n="$2" '$1 == n {print $2}')
  echo "${value:-}"
}
counter_at_least() { local v; v=$(counter "$1" "$2"); [ -n "$v" ] && ((v >= $3)); }

# stats HOST: the STATS reply of HOST's relay, asked over its control port from the viewer.
stats() { in_ns viewer "$BIN/vrelayctl" -t 2 -s "${ADDRESS[$1]}:$CONTROL_PORT" STATS 2>/dev/null || true; }
upstream_state() { stats "$1" | grep -o 'upstream=[a-z]*' | cut -d= -f2; }
is_subscribed() { [ "$(upstream_state "$1")" = subscribed ]; }

# wait_fed HOST: the edge's ingest accepts the stream (10 s at most).
wait_fed() {
  local host=$1 before
  wait_until 10 "$host to accept datagrams from its source (ingest.datagrams > 0)" \
    counter_at_least "$host" ingest.datagrams 1
  before=$(counter "$host" ingest.datagrams)
  wait_until 5 "$host's ingest.datagrams to grow past $before" counter_at_least "$host" ingest.datagrams $((before + 1))
}

# ---- Viewers --------------------------------------------------------------------------
NEXT_VIEWER_PORT=6000
declare -A PROBE_PID  # label -> PID

# start_probe LABEL EDGE [COUNT [6]]: a vrelay-probe in the viewer namespace subscribed to
# EDGE (over IPv6 with 6: the stream comes by IPv6 too); COUNT datagrams then it ends;
# without COUNT it runs until SIGTERM. Report: $WORK/LABEL.json.
start_probe() {
  local label=$1 host=$2 count=${3:-} family=${4:-4} port=$((NEXT_VIEWER_PORT++))
  local args=(--subscribe "${ADDRESS[$host]}:$CONTROL_PORT" --json --quiet --timeout 5)
  ((family == 6)) && args=(--subscribe "[${ADDRESS6[$host]}]:$CONTROL_PORT" --bind :: --json --quiet --timeout 5)
  # A ceiling, so that a stream that stops cannot hang the check: 3x the time COUNT takes.
  if [ -n "$count" ]; then args+=(--count "$count" --duration $((count * INTERVAL_MS * 3 / 1000 + 5))); fi
  ip netns exec "$(ns viewer)" "$BIN/vrelay-probe" "${args[@]}" "$port" >"$WORK/$label.json" 2>"$WORK/$label.err" &
  PROBE_PID[$label]=$!
  OTHER_PIDS+=($!)
}

# subscribers_at_least EDGE N: N subscriptions of EDGE are being sent to (vrelay-probe
# --quiet does not print its SUBSCRIBED reply: the edge's gauge tells instead).
subscribers_at_least() { counter_at_least "$1" fanout.playing "$2"; }

# finish_probe LABEL [SECONDS]: waits for the probe's end (SIGTERM first without COUNT).
finish_probe() {
  local label=$1 limit=${2:-30} status
  wait_exit "$limit" "${PROBE_PID[$label]}" status
  ((status == 0)) || die "probe $label: expected exit status 0, seen $status: $(cat "$WORK/$label.err")"
  [ -s "$WORK/$label.json" ] || die "probe $label: expected a JSON report, seen none"
}

field() { jq -r "$2" "$WORK/$1.json"; }

# check_exact LABEL N: the probe received exactly N datagrams of the counter stream, each
# once, none lost, in order, none corrupt.
check_exact() {
  local label=$1 n=$2 seen
  seen=$(jq -c '{kind, received: .sequence.received, lost: .sequence.lost, duplicates: .sequence.duplicates,
                 out_of_order: .sequence.out_of_order, corrupt: .counter.corrupt, end: .end}' "$WORK/$label.json")
  local want="{\"kind\":\"counter\",\"received\":$n,\"lost\":0,\"duplicates\":0,\"out_of_order\":0,\"corrupt\":0,\"end\":\"count\"}"
  [ "$seen" = "$want" ] || die "probe $label: expected $want, seen $seen"
  log "probe $label: $n received, 0 lost, 0 duplicated (indexes $(field "$label" .counter.lowest_index)..$(field "$label" .counter.highest_index))"
}

# ---- Check 1: steady state ------------------------------------------------------------
VIEWERS_PER_EDGE=2
check_steady() {
  local n=$1 host i
  shift
  for host in "$@"; do
    # The last viewer of each edge over IPv6.
    for ((i = 1; i <= VIEWERS_PER_EDGE; i++)); do
      start_probe "steady-$host-$i" "$host" "$n" $((i == VIEWERS_PER_EDGE ? 6 : 4))
    done
  done
  for host in "$@"; do
    for ((i = 1; i <= VIEWERS_PER_EDGE; i++)); do
      finish_probe "steady-$host-$i" $((n * INTERVAL_MS * 3 / 1000 + 15))
      check_exact "steady-$host-$i" "$n"
    done
  done
  log "check 1 (steady state) passed: $# edges x $VIEWERS_PER_EDGE viewers (one over IPv6), $n datagrams each, 0 lost, 0 duplicated"
}

# ---- Check 3: HTTP stream from another namespace --------------------------------------
# The body: whole 24-byte counter datagrams (a cut at the end of --max-time aside), indexes
# growing by exactly 1; prints how many and the first and last index.
check_counter_bytes() {
  local file=$1 line count=0 first="" previous="" index
  local magic="56 52 43 4f 55 4e 54 31"
  while read -r line; do
    local -a b
    read -ra b <<<"$line"
    ((${#b[@]} == 24)) || break  # the tail cut by --max-time
    [ "${b[*]:0:8}" = "$magic" ] || die "HTTP stream: datagram $((count + 1)): expected the magic VRCOUNT1, seen '${b[*]:0:8}'"
    index=$((16#${b[8]}${b[9]}${b[10]}${b[11]}${b[12]}${b[13]}${b[14]}${b[15]}))
    [ "$((16#${b[16]}${b[17]}${b[18]}${b[19]}${b[20]}${b[21]}${b[22]}${b[23]}))" = $((2 * index)) ] ||
      die "HTTP stream: datagram of index $index: expected the value $((2 * index))"
    if [ -n "$previous" ] && ((index != previous + 1)); then
      die "HTTP stream: expected index $((previous + 1)) after $previous, seen $index"
    fi
    [ -n "$first" ] || first=$index
    previous=$index
    count=$((count + 1))
  done < <(od -An -v -tx1 -w24 "$file")
  echo "$count $first $previous"
}

check_http() {
  local host=$1 rc=0 before
  before=$(counter "$host" http.stream_bytes)
  # --max-time ends the endless body: exit 28 is the expected end, 0 a stream the edge ended.
  in_ns viewer curl -sS --max-time 2 -D "$WORK/http-$host.headers" -o "$WORK/http-$host.body" \
    "http://${ADDRESS[$host]}:$HTTP_PORT/stream" 2>"$WORK/http-$host.err" || rc=$?
  ((rc == 0 || rc == 28)) || die "HTTP /stream of $host: expected curl to read until --max-time, seen exit $rc: $(cat "$WORK/http-$host.err")"
  grep -qi '^HTTP/1.[01] 200' "$WORK/http-$host.headers" ||
    die "HTTP /stream of $host: expected status 200, seen '$(head -n 1 "$WORK/http-$host.headers")'"
  grep -qi '^content-type: *video/mp2t' "$WORK/http-$host.headers" ||
    die "HTTP /stream of $host: expected Content-Type: video/mp2t, seen '$(grep -i '^content-type' "$WORK/http-$host.headers")'"
  local bytes summary count
  bytes=$(stat -c %s "$WORK/http-$host.body")
  summary=$(check_counter_bytes "$WORK/http-$host.body")
  count=${summary%% *}
  local range=${summary#* }
  # 2 s of a datagram every INTERVAL_MS: at least a quarter of them, whatever the start.
  ((count >= 500 / INTERVAL_MS)) || die "HTTP /stream of $host: expected at least $((500 / INTERVAL_MS)) datagrams in 2 s, seen $count ($bytes bytes)"
  # The edge counted at least what curl got (http.streams is a gauge: back to 0 by now).
  wait_until 5 "HTTP /stream of $host: http.stream_bytes >= $before + $bytes to count what curl got" \
    counter_at_least "$host" http.stream_bytes $((before + bytes))
  log "check 3 (HTTP) passed: $host /stream gave $bytes bytes: $count counter datagrams in order (indexes ${range/ /..})"
}

# ---- Check 2: core restart ------------------------------------------------------------
RESUBSCRIBE_MS=3000
# start_through EDGE...: a viewer per edge that stays through the core's restart, started
# early so that the new stream's indexes (from 1 again) reach the first index it had.
THROUGH_FROM=0
start_through() {
  local host
  for host in "$@"; do start_probe "through-$host" "$host"; done
  wait_until 10 "the viewers that stay through the restart to be subscribed" all_subscribed "$@"
  THROUGH_FROM=$(counter core ingest.generated)
}

check_restart() {
  local n=$1 host
  shift
  local edges=("$@") fed=("$@" edge3)  # edge3: fed by edge1's multicast output
  # The old stream must go past the indexes the new one will reach in this check: then the
  # new stream's datagrams are ones the viewers that stay through it already had.
  wait_until 30 "the core to generate $RESTART_MIN_INDEX datagrams" counter_at_least core ingest.generated "$RESTART_MIN_INDEX"
  stop_relay core
  log "core stopped (SIGTERM): the edges lose their upstream"
  for host in "${edges[@]}"; do
    wait_until 5 "$host to notice the core is gone (upstream != subscribed)" not_subscribed "$host"
  done
  start_relay core
  local ready=${READY_AT[core]} deadline=$((READY_AT[core] + RESUBSCRIBE_MS)) waiting=("${edges[@]}") still
  while ((${#waiting[@]})); do
    still=()
    for host in "${waiting[@]}"; do
      if is_subscribed "$host"; then
        log "$host subscribed again $(($(now_ms) - ready)) ms after the new core's ready line"
      else
        still+=("$host")
      fi
    done
    waiting=(${still[@]+"${still[@]}"})
    ((${#waiting[@]})) || break
    (($(now_ms) <= deadline)) || die "core restart: expected ${waiting[*]} subscribed (STATS upstream=subscribed) within ${RESUBSCRIBE_MS} ms of the new core's ready line, seen upstream=$(upstream_state "${waiting[0]}") after $(($(now_ms) - ready)) ms"
    sleep 0.05
  done
  for host in "${edges[@]}"; do
    local state connects losses
    state=$(counter "$host" ingest.upstream_state) connects=$(counter "$host" ingest.upstream_connects)
    losses=$(counter "$host" ingest.upstream_losses)
    if [ "$state" != 2 ] || ((connects < 2 || losses < 1)); then
      die "core restart: $host: expected ingest.upstream_state 2, upstream_connects >= 2, upstream_losses >= 1; seen $state, $connects, $losses"
    fi
  done
  # New viewers: exactly n datagrams of the new stream (its indexes start again at 1).
  for host in "${fed[@]}"; do start_probe "after-$host" "$host" "$n"; done
  for host in "${fed[@]}"; do
    finish_probe "after-$host" $((n * INTERVAL_MS * 3 / 1000 + 15))
    check_exact "after-$host" "$n"
    local highest generated
    highest=$(field "after-$host" .counter.highest_index) generated=$(counter core ingest.generated)
    ((highest <= generated && highest < RESTART_MIN_INDEX)) ||
      die "core restart: viewer of $host: expected indexes of the new core's stream (<= its $generated generated, < $RESTART_MIN_INDEX the old one reached), seen up to $highest"
  done
  # The new stream past the first index the viewers that stay had (no gap between the two),
  # by 100 datagrams: the copies of the first 50 of them left the edges long before.
  wait_until 15 "the new core to generate $((THROUGH_FROM + 100)) datagrams" counter_at_least core ingest.generated $((THROUGH_FROM + 100))
  for host in "${fed[@]}"; do
    kill -TERM "${PROBE_PID[through-$host]}"
    finish_probe "through-$host" 10
    check_through "through-$host"
  done
  log "check 2 (core restart) passed: ${edges[*]} subscribed again within ${RESUBSCRIBE_MS} ms; viewers on ${fed[*]} got the new stream"
}

not_subscribed() { ! is_subscribed "$1"; }

all_subscribed() {
  local host
  for host in "$@"; do subscribers_at_least "$host" 1 || return 1; done
}

# check_through LABEL: a viewer that stayed through the core's restart. vrelay-probe reads the
# counter stream's index only (it has no run id): the new core's datagrams carry indexes
# this viewer already had, or lower ones. So: none lost over [lowest, highest], and every
# datagram of the new stream counted as a duplicate or out of order (never as new ground
# above the old highest index).
check_through() {
  local label=$1 seen received dup ooo lost lowest highest
  seen=$(jq -r '[.sequence.received, .sequence.duplicates, .sequence.out_of_order, .sequence.lost,
                 .counter.lowest_index, .counter.highest_index] | @tsv' "$WORK/$label.json")
  read -r received dup ooo lost lowest highest <<<"$seen"
  local again=$((dup + ooo))
  ((lost == 0 && again > 0)) ||
    die "viewer $label through the restart: expected 0 lost and the new stream's datagrams counted as duplicates or out of order (> 0), seen received $received, lost $lost, duplicates $dup, out of order $ooo"
  ((received == highest - lowest + 1 + dup)) ||
    die "viewer $label: expected received = distinct indexes $((highest - lowest + 1)) + duplicates $dup, seen $received"
  log "viewer $label through the restart: $received received, $again of them from the new core (duplicates $dup, out of order $ooo), 0 lost"
}

# ---- The run: checks ------------------------------------------------------------------
INTERVAL_MS=10
RESTART_MIN_INDEX=1000
check_main() {
  local n=200 host
  make_switch
  for host in core edge1 edge2 edge3 viewer; do add_host "$host"; done
  config_core >"$WORK/core.yaml"
  config_edge edge1 >"$WORK/edge1.yaml"
  config_edge edge2 >"$WORK/edge2.yaml"
  config_edge3 >"$WORK/edge3.yaml"
  for host in core edge1 edge2 edge3; do start_relay "$host"; done
  local fed=(edge1 edge2 edge3)
  for host in "${fed[@]}"; do wait_fed "$host"; done
  start_through "${fed[@]}"

  check_steady "$n" "${fed[@]}"
  check_http edge1
  check_restart "$n" edge1 edge2

  end_processes
  local n_ns
  for n_ns in "${NAMESPACES[@]}"; do ip netns del "$n_ns"; done
  local left
  left=$(leftovers)
  [ -z "$left" ] || die "cleanup: expected nothing of run $RUN_ID left, seen: $left"
  log "check 4 (cleanup) passed: no process, namespace or segment of run $RUN_ID left"
  log "all checks passed"
}

# ---- Bench mode (make bench) ----------------------------------------------------------
# For each EDGES:VIEWERS run: a core (generator, a 24-byte datagram every
# TOPOLOGY_BENCH_INTERVAL_MS), EDGES edges fed by it, and VIEWERS soak_viewers viewers per
# edge in the viewer namespace. Measured over TOPOLOGY_BENCH_SECONDS once every viewer is
# subscribed: loss (exact, per viewer, by soak_viewers), CPU of the core's and the edges'
# processes (utime + stime from /proc/PID/stat of the supervisor and its children), and
# datagrams sent per second (fanout.sent_datagrams).
cpu_ticks() {  # cpu_ticks PID: utime + stime of PID and its children, in clock ticks
  local pid total=0 f
  for pid in "$1" $(pgrep -P "$1" 2>/dev/null); do
    f=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    f=${f##*) }  # the fields after the command name, which may hold spaces
    read -ra fields <<<"$f"
    total=$((total + fields[11] + fields[12]))  # utime, stime: fields 14 and 15 of stat
  done
  echo "$total"
}

# sample HOST: "MS TICKS SENT": the time, the CPU ticks of HOST's relay, its copies sent.
sample() {
  local sent
  sent=$(counter "$1" fanout.sent_datagrams)
  echo "$(now_ms) $(cpu_ticks "${RELAY_PID[$1]}") $sent"
}

bench_run() {
  local edge_count=$1 viewers=$2 seconds=$3 i host
  local names=()
  for ((i = 1; i <= edge_count; i++)); do names+=("edge$i"); done
  for host in "${names[@]}"; do
    config_edge "$host" >"$WORK/$host.yaml"
    start_relay "$host"
  done
  for host in "${names[@]}"; do wait_fed "$host"; done
  local crowd=()
  for host in "${names[@]}"; do
    ip netns exec "$(ns viewer)" "$BIN/soak_viewers" --control "${ADDRESS[$host]}:$CONTROL_PORT" --viewers "$viewers" --chatters 0 \
      >"$WORK/bench-$host.report" 2>"$WORK/bench-$host.err" &
    crowd+=($!)
    OTHER_PIDS+=($!)
  done
  for host in "${names[@]}"; do
    wait_until 60 "the $viewers viewers of $host to be ready" grep -qs 'soak_viewers: ready' "$WORK/bench-$host.err"
  done
  declare -A before
  for host in core "${names[@]}"; do before[$host]=$(sample "$host"); done
  sleep "$seconds"  # the measured period itself, not a wait for an event
  local rates=""
  for host in core "${names[@]}"; do rates+="$host ${before[$host]} $(sample "$host")"$'\n'; done
  local pid received=0 lost=0 status
  for pid in "${crowd[@]}"; do kill -TERM "$pid"; done
  for ((i = 0; i < ${#crowd[@]}; i++)); do
    wait_exit 30 "${crowd[$i]}" status
    local report="$WORK/bench-${names[$i]}.report"
    received=$((received + $(sed -n 's/^received=//p' "$report")))
    lost=$((lost + $(sed -n 's/^lost=//p' "$report")))
  done
  # Per relay: cpu % of one core and copies sent per second, each over its own sampled times.
  awk -v e="$edge_count" -v v="$viewers" -v r="$received" -v l="$lost" -v hz="$(getconf CLK_TCK)" '
    NF == 7 {
      s = ($5 - $2) / 1000
      cpu = 100 * ($6 - $3) / hz / s
      rate = ($7 - $4) / s
      if ($1 == "core") { core_cpu = cpu; core_rate = rate } else { edge_cpu += cpu; edge_rate += rate }
    }
    END {
      loss = (r + l) ? 100 * l / (r + l) : 0
      printf "%5d %7d %10d %9d %8.3f %8.1f %12.1f %12.1f %12.0f %12.0f\n", e, v, r, l, loss, core_cpu,
        edge_cpu / e, edge_cpu, core_rate, edge_rate
    }' <<<"$rates"
  for host in "${names[@]}"; do
    stop_relay "$host"
    unset "RELAY_PID[$host]"
  done
}

bench_main() {
  local runs=${TOPOLOGY_BENCH_RUNS:-"1:50 1:200 2:50 2:200 4:50 4:200"}
  local seconds=${TOPOLOGY_BENCH_SECONDS:-10} run
  INTERVAL_MS=${TOPOLOGY_BENCH_INTERVAL_MS:-1}
  [ -x "$BIN/soak_viewers" ] || die "$BIN/soak_viewers is not built"
  make_switch
  local host
  for host in core edge1 edge2 edge3 edge4 viewer; do add_host "$host"; done
  config_core >"$WORK/core.yaml"
  start_relay core
  echo "# topology bench: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# counter stream: a 24-byte datagram every $INTERVAL_MS ms ($((1000 / INTERVAL_MS)) datagrams/s), ${seconds} s measured per run, cpu % of one core"
  echo "edges viewers   received      lost   loss_%  core_cpu edge_cpu_avg edge_cpu_sum  core_sent/s edges_sent/s"
  for run in $runs; do
    bench_run "${run%%:*}" "${run##*:}" "$seconds"
  done
}

# ---- Main -----------------------------------------------------------------------------
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
require jq curl od ss
WORK=$(mktemp -d "/tmp/vrelay-topology-$RUN_ID.XXXXXX")
log "run $RUN_ID: namespaces $PREFIX-*, instances $INSTANCE_PREFIX-*, work folder $WORK"
if [ "$MODE" = bench ]; then
  bench_main
else
  # Every wait is bounded; this bounds their sum too, below CTest's TIMEOUT (180 s), so that
  # the EXIT trap cleans up rather than CTest's SIGKILL leaving namespaces behind.
  (sleep 150 && echo "FAIL: topology.sh still running after 150 s: stopping it" >&2 && kill -TERM $$) &
  OTHER_PIDS+=($!)
  check_main
fi
