#!/usr/bin/env bash
# Soak (issue 11): one vrelayd for an hour under 1,000 viewers, chat, a SIGHUP every 10 s and
# a child killed with SIGKILL every minute (ingest, fan-out, control in turn). Samples every
# 10 s the RSS and descriptors of the supervisor and of each child, checks every datagram of
# every viewer, and ends with a report (text and a markdown table for docs/benchmarks.md).
#
#   bash bench/soak.sh [--minutes N | --seconds N] [--viewers N] [OPTIONS] BUILD_BIN_DIR
#     --minutes N        run time (default 60); --seconds N for short runs (the CTest smoke)
#     --viewers N        viewers in all, probes included (default 1000)
#     --probes N         of which vrelay-probe processes (default 4)
#     --interval-ms N    ingest.interval_ms of the generator (default 5: 200 datagrams/s)
#     --kill-every S     seconds between two kills (default 60)
#     --hup-every S      seconds between two SIGHUPs (default 10)
#     --sample-every S   seconds between two samples (default 10)
#     --chatters N       chat sessions (default 4)
#     --keep             keep the work folder (logs, samples, per-viewer table) even on success
#   `make soak` runs it with the defaults. Exit status 0: every check below held; 1: one failed
#   (the report says which) or the run could not go on; 2: a usage error.
#
# How, and why this way:
# - The relay is its own: instance soak-PID, control and ingest on 127.0.0.1 port 0 (the ready
#   line tells the ports), a configuration written to the work folder: ingest.source generator
#   (vrelay's counter stream: index +1, value +2, what vrelay-probe checks exactly), one
#   datagram every 5 ms. That is the rate of a ~2 Mbit/s stream in 1316-byte datagrams and
#   200,000 copies/s for 1,000 viewers; 1 ms (1,000,000 copies/s) is beyond what 2 cores
#   deliver on loopback with the receivers on the same machine (measured: 31 % lost), and a
#   soak must look for leaks and wrong restarts, not for the relay's ceiling (relay_bench).
# - The viewers: 1,000 vrelay-probe processes would take the 2 cores for themselves. A few
#   (--probes) run as real vrelay-probe, the independent exact check; the rest are
#   bench/soak_viewers (one thread, one epoll: a UDP socket and a control session per viewer,
#   recvmmsg), which checks each viewer's counter stream with vrelay-probe's own
#   SequenceTracker and notes when each gap or duplicate arrived. soak_viewers also holds the
#   probes' control sessions (CONECTAR to their ports): vrelay-probe --subscribe would end
#   when the control process is killed, and a session must outlive that to adopt its orphan.
# - Chat: --chatters sessions take a NAME and send a MSG to the next one every second, and a
#   BROADCAST every fifth second (which every viewer's session receives too).
# - Kills: SIGKILL to the child's pid (from vrelaystat -j, checked against /proc), then wait
#   (bounded) for supervisor.child_restarts to grow and the new process to be ready. After a
#   control kill every session reconnects and sends CONECTAR again; the wait ends when
#   control.orphans_adopted has grown by one per subscription.
# - SIGHUP: sent and counted; the configuration file does not change, so each should be one
#   reload that changes nothing. The report counts the log lines that mention "reload" and
#   shows supervisor.reloads where the relay has it; fewer than the SIGHUPs sent is a warning,
#   not a failure (a relay without live reload only logs that it is not supported).
#
# Checks (each a line of the report; any that fails makes the exit status 1):
# - the relay and the crowd run to the end; the relay stops on SIGTERM with status 0;
# - every kill is followed by a restart within 15 s, and supervisor.child_restarts equals the
#   kills (a child that died on its own, or hung and was killed, is a failure);
# - control kills: every subscription adopted (control.orphans_adopted = subscriptions x
#   control kills), none expired, every session back within 30 s (control.orphan_grace);
# - loss: the fan-out keeps sending while control restarts, the ring holds what comes while
#   the fan-out restarts, and the generator lives in ingest and goes on from its last index,
#   so a viewer is expected to lose nothing. A gap, duplicate or reordering is explained only
#   when it arrives within a fan-out or ingest kill window (from 1 s before the kill to 5 s
#   after the new process is ready) and stays within what the relay admits: lost per viewer
#   <= fanout.stale_skipped + ingest.drops_ring_full, duplicates per viewer <= 128 (one
#   batch, vrelayd(8)) per fan-out kill. Anything outside those windows fails, control
#   windows included. The probes are held to the same bounds. Every viewer must still be
#   receiving at the end (none more than 2 s behind the newest) and no datagram may be corrupt;
# - chat: every chatter ready at the end, no ERR but no-such-user (a peer reconnecting), no
#   reply later than 10 s;
# - resources, once warmed up (from the first sample at a quarter of the run, 5 min at most):
#   descriptors of each process may grow by at most 8, its anonymous RSS (RssAnon: the heap
#   and stacks, where a leak shows; VmRSS also counts the shared ring, which fills up) by at
#   most 8 MiB + 10 %. Per process role: a killed child is compared with its successor.
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=test/e2e/lib.sh
source "$HERE/../test/e2e/lib.sh"

usage() {
  sed -n '7,18p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
SECONDS_TOTAL=3600 VIEWERS=1000 PROBES=4 INTERVAL_MS=5 KILL_EVERY=60 HUP_EVERY=10 SAMPLE_EVERY=10
CHATTERS=4 BIN=""
number() {
  if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < $3)); then
    echo "soak.sh: $1 expects a number >= $3, not '$2'" >&2
    exit 2
  fi
}
while (($#)); do
  case $1 in
    --minutes) number "$1" "${2:-}" 1; SECONDS_TOTAL=$((60 * $2)); shift 2 ;;
    --seconds) number "$1" "${2:-}" 10; SECONDS_TOTAL=$2; shift 2 ;;
    --viewers) number "$1" "${2:-}" 1; VIEWERS=$2; shift 2 ;;
    --probes) number "$1" "${2:-}" 0; PROBES=$2; shift 2 ;;
    --interval-ms) number "$1" "${2:-}" 1; INTERVAL_MS=$2; shift 2 ;;
    --kill-every) number "$1" "${2:-}" 5; KILL_EVERY=$2; shift 2 ;;
    --hup-every) number "$1" "${2:-}" 1; HUP_EVERY=$2; shift 2 ;;
    --sample-every) number "$1" "${2:-}" 1; SAMPLE_EVERY=$2; shift 2 ;;
    --chatters) number "$1" "${2:-}" 0; CHATTERS=$2; shift 2 ;;
    --keep) E2E_KEEP=1; shift ;;
    -h | --help) usage ;;
    -*) echo "soak.sh: unknown option '$1'" >&2; usage ;;
    *) [ -z "$BIN" ] || usage; BIN=$1; shift ;;
  esac
done
[ -n "$BIN" ] || usage
((PROBES <= VIEWERS)) || { echo "soak.sh: --probes must not exceed --viewers" >&2; exit 2; }
((CHATTERS != 1)) || { echo "soak.sh: --chatters 0, or at least 2" >&2; exit 2; }
for tool in vrelayd vrelaystat vrelay-probe soak_viewers; do
  [ -x "$BIN/$tool" ] || { echo "soak.sh: $BIN/$tool is missing (cmake --build build)" >&2; exit 2; }
done
require ss awk pgrep
STAT=$BIN/vrelaystat
FD_SLACK=8                # descriptors a process may gain after the warm-up
RSS_SLACK_KB=8192         # RssAnon it may gain: this + RSS_SLACK_PCT % of its warm value
RSS_SLACK_PCT=10
RESTART_LIMIT=15          # s for a killed child to be replaced and ready
SESSIONS_LIMIT=30         # s for every session to be back after a control kill: the default
                          # control.orphan_grace, after which an unclaimed subscription is gone
WARM=$((SECONDS_TOTAL / 4 < 300 ? SECONDS_TOTAL / 4 : 300))
((WARM >= SAMPLE_EVERY)) || WARM=$SAMPLE_EVERY

e2e_init soak
W=$E2E_WORK
# The crowd rewrites its state file every second: on tmpfs, since a rename on ext4 under I/O
# pressure can block the crowd's only thread for seconds (measured: 2 s), which would show as
# stalls and slow chat replies of its own making.
RUN=$(mktemp -d /dev/shm/vrelay-soak.XXXXXX) || die "mktemp in /dev/shm failed"
soak_cleanup() {
  local rc=$?
  rm -rf "$RUN"
  (exit "$rc")
  e2e_cleanup
}
trap soak_cleanup EXIT
FAILS=()
WARNS=()
check() {  # check DESCRIPTION CONDITION...: records a failure when the condition is false
  local what=$1
  shift
  if "$@"; then CHECKS+=("ok   $what"); else CHECKS+=("FAIL $what"); FAILS+=("$what"); fi
}
CHECKS=()
fatal() {  # the run cannot go on: go straight to the report
  FAILS+=("$*")
  CHECKS+=("FAIL $*")
  log "FAIL: $*"
  ABORTED=1
}
ABORTED=0
now_ns() { local t=${EPOCHREALTIME/./}; echo "${t}000"; }
# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s; 1 if it did not succeed in time.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# ---- the relay's figures --------------------------------------------------------------------
declare -A C=()
read_counters() {
  local out name value _rest
  out=$("$STAT" -n "$RELAY_INSTANCE" -1 2>/dev/null) || return 1
  C=()
  while read -r name value _rest; do C[$name]=$value; done <<<"$out"
}
counter() { if read_counters; then echo "${C[$1]:-0}"; else echo 0; fi; }
# role_state ROLE: "PID STATE" of that child, from the segment.
role_state() {
  "$STAT" -n "$RELAY_INSTANCE" -j 2>/dev/null | awk -v want="$1" '
    /"role":/ { r = $2; gsub(/[",]/, "", r) }
    /"pid":/ && r != "" { p = $2; gsub(/,/, "", p) }
    /"state":/ && r != "" { s = $2; gsub(/[",]/, "", s); if (r == want) print p, s; r = "" }'
}
proc_role() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | awk '$1 == "vrelayd:" { print $2 }'; }
# The crowd's figures of the moment (soak_viewers --state).
viewer_state() { awk -F= -v k="$1" '$1 == k { print $2 }' "$RUN/viewers.state" 2>/dev/null; }
alive() { kill -0 "$1" 2>/dev/null; }

# ---- start ------------------------------------------------------------------------------------
SUBSCRIPTIONS=$VIEWERS
cat >"$W/vrelay.yaml" <<EOF
# bench/soak.sh: $VIEWERS viewers, $CHATTERS chatters
control:
  max_sessions: $((VIEWERS + CHATTERS + 64))
  max_sessions_per_ip: $((VIEWERS + CHATTERS + 64))
ingest:
  source: generator
  interval_ms: $INTERVAL_MS
fanout:
  max_subscribers: $((VIEWERS + 64))
EOF
log "soak: ${SECONDS_TOTAL}s, $VIEWERS viewers ($PROBES vrelay-probe), $CHATTERS chatters," \
  "a datagram every $INTERVAL_MS ms, a kill every ${KILL_EVERY}s, SIGHUP every ${HUP_EVERY}s, samples every ${SAMPLE_EVERY}s"
start_relay "$BIN/vrelayd" "soak-$$" -c "$W/vrelay.yaml" --control 127.0.0.1:0 --ingest 127.0.0.1:0
read_counters || die "vrelaystat cannot read the segment of instance $RELAY_INSTANCE"

PROBE_PIDS=() PROBE_ARGS=() port=""
for ((i = 0; i < PROBES; i++)); do
  free_port port
  "$BIN/vrelay-probe" -q -b 127.0.0.1 "$port" >"$W/probe-$i.report" 2>"$W/probe-$i.log" &
  PROBE_PIDS+=($!)
  track $!
  PROBE_ARGS+=(--probe "$port")
  wait_until 10 "vrelay-probe $i to bind UDP port $port" udp_bound "$port"
done
"$BIN/soak_viewers" --control "127.0.0.1:$CONTROL_PORT" --viewers $((VIEWERS - PROBES)) ${PROBE_ARGS[@]+"${PROBE_ARGS[@]}"} \
  --chatters "$CHATTERS" --state "$RUN/viewers.state" --windows "$W/windows" --per-viewer "$W/per-viewer.tsv" \
  --marks "$W/marks" \
  >"$W/viewers.report" 2>"$W/viewers.log" &
CROWD_PID=$!
track "$CROWD_PID"
: >"$W/windows"
wait_until 120 "every session to be ready (soak_viewers)" grep -q 'soak_viewers: ready' "$W/viewers.log"
log "$(grep 'soak_viewers: ready' "$W/viewers.log")"

# ---- samples ----------------------------------------------------------------------------------
echo "t role pid vmrss_kb rssanon_kb fds threads cpu_ticks" >"$W/samples.tsv"
echo "t ready sessions receiving received lost duplicates reconnects chat_ok max_reply_ms" >"$W/crowd.tsv"
sample() {
  local t=$1 pid role
  for pid in "$RELAY_PID" $(pgrep -P "$RELAY_PID" || true); do
    role=$(proc_role "$pid")
    [ -n "$role" ] || continue
    local status fds cpu
    status=$(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^Threads:/ { t = $2 } END { print r + 0, a + 0, t + 0 }' \
      "/proc/$pid/status" 2>/dev/null) || continue
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    cpu=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || continue
    read -r rss anon threads <<<"$status"
    echo "$t $role $pid $rss $anon $fds $threads $cpu" >>"$W/samples.tsv"
  done
  echo "$t $(viewer_state ready) $(viewer_state sessions) $(viewer_state receiving) $(viewer_state received)" \
    "$(viewer_state lost) $(viewer_state duplicates) $(viewer_state reconnects) $(viewer_state chat_ok)" \
    "$(viewer_state max_reply_ms)" >>"$W/crowd.tsv"
}
progress() {
  local line
  line=$(awk -v t="$1" '$1 == t { printf "%s %.1f MiB %d fds, ", $2, $4 / 1024, $6 }' "$W/samples.tsv")
  log "t=${1}s ${line}viewers receiving $(viewer_state receiving)/$((VIEWERS - PROBES)), lost $(viewer_state lost)," \
    "dups $(viewer_state duplicates), reconnects $(viewer_state reconnects), chat ok $(viewer_state chat_ok)," \
    "kills $KILLS, SIGHUPs $HUPS"
}

# ---- kills ------------------------------------------------------------------------------------
ROLES=(ingest fanout control)
KILLS=0 HUPS=0
declare -A KILLED=([ingest]=0 [fanout]=0 [control]=0)
RESTART_TIMES=()
replaced() {  # replaced ROLE OLD_PID RESTARTS_BEFORE
  local now
  now=$(role_state "$1") || return 1
  read -r pid state <<<"$now"
  [ -n "${pid:-}" ] && [ "$pid" != "$2" ] && [ "${state:-}" = ready ] &&
    (($(counter supervisor.child_restarts) > $3))
}
sessions_back() {  # every subscription adopted again, every session of the crowd ready
  (($(counter control.orphans_adopted) >= $1)) &&
    [ "$(viewer_state ready)" = "$(viewer_state sessions)" ]
}
kill_child() {
  local role=${ROLES[$((KILLS % 3))]} old state restarts adopted t0 t1
  read -r old state <<<"$(role_state "$role")"
  if [ -z "${old:-}" ] || [ "$(proc_role "$old")" != "$role" ]; then
    fatal "no $role process to kill (pid '${old:-}')"
    return
  fi
  restarts=$(counter supervisor.child_restarts)
  adopted=$(counter control.orphans_adopted)
  t0=$(now_ns)
  kill -KILL "$old"
  KILLS=$((KILLS + 1))
  KILLED[$role]=$((KILLED[$role] + 1))
  if ! wait_for "$RESTART_LIMIT" replaced "$role" "$old" "$restarts"; then
    fatal "the $role process (pid $old, killed) was not replaced and ready within ${RESTART_LIMIT}s"
    return
  fi
  if [ "$role" = control ] && ! wait_for "$SESSIONS_LIMIT" sessions_back $((adopted + SUBSCRIPTIONS)); then
    fatal "after the control kill, the sessions were not all back within ${SESSIONS_LIMIT}s" \
      "(adopted $(($(counter control.orphans_adopted) - adopted)) of $SUBSCRIPTIONS, crowd ready" \
      "$(viewer_state ready)/$(viewer_state sessions))"
    return
  fi
  t1=$(now_ns)
  echo "$role $((t0 - 1000000000)) $((t1 + 5000000000))" >>"$W/windows"
  local took
  took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
  RESTART_TIMES+=("$role:$took")
  log "killed $role (pid $old): replaced by pid $(role_state "$role" | awk '{ print $1 }')" \
    "$([ "$role" = control ] && echo "and every session back ")in ${took}s"
}

# ---- the run ----------------------------------------------------------------------------------
T0=$SECONDS
crowd_ticks() { awk '{ print $14 + $15 }' "/proc/$CROWD_PID/stat" 2>/dev/null || echo 0; }
CROWD_TICKS0=$(crowd_ticks)
# The whole machine (other work on it shows here): user+nice+system+irq+softirq, idle+iowait.
machine() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6, $8 }' /proc/stat; }
read -r BUSY0 IDLE0 SOFT0 <<<"$(machine)"
next_sample=0 next_hup=$HUP_EVERY next_kill=$KILL_EVERY next_progress=60
sample 0
while :; do
  t=$((SECONDS - T0))
  ((t < SECONDS_TOTAL)) || break
  alive "$RELAY_PID" || { fatal "vrelayd (pid $RELAY_PID) died: $(tail -n 3 "$W/vrelayd.log" | tr '\n' ' ')"; break; }
  alive "$CROWD_PID" || { fatal "soak_viewers died: $(tail -n 3 "$W/viewers.log" | tr '\n' ' ')"; break; }
  if ((t >= next_sample)); then
    sample "$t"
    next_sample=$((next_sample + SAMPLE_EVERY))
    if ((t >= next_progress)); then
      progress "$t"
      next_progress=$((next_progress + 60))
    fi
  fi
  if ((t >= next_hup)); then
    kill -HUP "$RELAY_PID" && HUPS=$((HUPS + 1))
    next_hup=$((next_hup + HUP_EVERY))
  fi
  # A kill whose windows would not close before the end is not started.
  if ((t >= next_kill)) && ((t + RESTART_LIMIT <= SECONDS_TOTAL)); then
    kill_child
    ((ABORTED == 0)) || break
    next_kill=$((next_kill + KILL_EVERY))
  fi
  sleep 0.2
done
T_END=$((SECONDS - T0))
RUN_ABORTED=$ABORTED
CROWD_CPU=$(awk -v a="$CROWD_TICKS0" -v b="$(crowd_ticks)" -v hz="$(getconf CLK_TCK)" -v t="$T_END" \
  'BEGIN { printf "%.0f", (t > 0 ? 100 * (b - a) / hz / t : 0) }')
read -r BUSY1 IDLE1 SOFT1 <<<"$(machine)"
MACHINE=$(awk -v b=$((BUSY1 - BUSY0)) -v i=$((IDLE1 - IDLE0)) -v s=$((SOFT1 - SOFT0)) \
  'BEGIN { t = b + i; if (t > 0) printf "%.0f %% busy (softirq %.0f %%)", 100 * b / t, 100 * s / t }')
if alive "$RELAY_PID"; then
  sample "$T_END"
  progress "$T_END"
  read_counters || fatal "vrelaystat could not read the segment at the end"
fi
declare -A END=()
for k in "${!C[@]}"; do END[$k]=${C[$k]}; done
SUBSCRIBERS_END=${END[control.subscribers]:-?}

# ---- stop: probes, crowd, relay ---------------------------------------------------------------
declare -A PR=()
for i in "${!PROBE_PIDS[@]}"; do
  kill -TERM "${PROBE_PIDS[$i]}" 2>/dev/null || true
  wait_for 10 bash -c "! kill -0 ${PROBE_PIDS[$i]} 2>/dev/null" || fatal "vrelay-probe $i did not stop on SIGTERM"
  wait "${PROBE_PIDS[$i]}" 2>/dev/null || fatal "vrelay-probe $i failed: $(tail -n 2 "$W/probe-$i.log" | tr '\n' ' ')"
  while IFS=': ' read -r key value; do PR[$i.$key]=$value; done <"$W/probe-$i.report"
done
declare -A V=()
if alive "$CROWD_PID"; then
  kill -TERM "$CROWD_PID"
  wait_for 30 bash -c "! kill -0 $CROWD_PID 2>/dev/null" || fatal "soak_viewers did not stop within 30 s"
  wait "$CROWD_PID" 2>/dev/null || fatal "soak_viewers exited with a failure"
fi
while IFS='=' read -r key value; do V[$key]=$value; done <"$W/viewers.report"
RELAY_STATUS="not running"
if alive "$RELAY_PID"; then
  kill -TERM "$RELAY_PID"
  if wait_for 15 bash -c "! kill -0 $RELAY_PID 2>/dev/null"; then
    RELAY_STATUS=0
    wait "$RELAY_PID" || RELAY_STATUS=$?
  else
    RELAY_STATUS="still running 15 s after SIGTERM"
  fi
fi
RELOAD_LINES=$(grep -ci 'reload' "$W/vrelayd.log" || true)
ERROR_LINES=$(grep -c '^<[0-3]>' "$W/vrelayd.log" || true)
WARNING_LINES=$(grep -c '^<4>' "$W/vrelayd.log" || true)

# ---- checks -----------------------------------------------------------------------------------
v() { echo "${V[$1]:-?}"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
num() { [[ $1 =~ ^[0-9]+$ ]]; }
le() { num "$1" && num "$2" && (($1 <= $2)); }
eq() { [ "$1" = "$2" ]; }
STALE=${END[fanout.stale_skipped]:-0}
RINGFULL=${END[ingest.drops_ring_full]:-0}
LOSS_BOUND=$((STALE + RINGFULL))
DUP_BOUND=$((128 * KILLED[fanout]))
check "the run lasted its ${SECONDS_TOTAL}s (ran ${T_END}s)" eq "$RUN_ABORTED" 0
check "vrelayd stopped on SIGTERM with status 0 (got: $RELAY_STATUS)" eq "$RELAY_STATUS" 0
check "supervisor.child_restarts ${END[supervisor.child_restarts]:-?} = kills $KILLS" eq "${END[supervisor.child_restarts]:-?}" "$KILLS"
check "control.orphans_adopted ${END[control.orphans_adopted]:-?} = $SUBSCRIPTIONS x ${KILLED[control]} control kills" \
  eq "${END[control.orphans_adopted]:-?}" $((SUBSCRIPTIONS * KILLED[control]))
check "control.orphans_expired ${END[control.orphans_expired]:-?} = 0" eq "${END[control.orphans_expired]:-?}" 0
check "control.subscribers $SUBSCRIBERS_END = $SUBSCRIPTIONS viewers at the end" eq "$SUBSCRIBERS_END" "$SUBSCRIPTIONS"
check "every crowd session ready at the end ($(v sessions_ready)/$(v sessions))" eq "$(v sessions_ready)" "$(v sessions)"
check "no viewer silent or behind at the end (silent $(v viewers_silent), behind $(v viewers_behind))" \
  eq "$(v viewers_silent)/$(v viewers_behind)" 0/0
check "no corrupt or foreign datagram ($(v corrupt), $(v foreign)) and no stray reply line ($(v stray_lines))" \
  eq "$(v corrupt)/$(v foreign)/$(v stray_lines)" 0/0/0
check "no gap, duplicate or reordering outside the fan-out/ingest kill windows" \
  eq "$(v gap_outside)/$(v gap_in_control_windows)/$(v dup_outside)/$(v dup_in_control_windows)/$(v reorder_outside)/$(v reorder_in_control_windows)/$(v marks_dropped)" \
  0/0/0/0/0/0/0
check "worst viewer lost $(v worst_viewer_lost) <= fanout.stale_skipped + ingest.drops_ring_full = $LOSS_BOUND" \
  le "$(v worst_viewer_lost)" "$LOSS_BOUND"
check "worst viewer duplicates $(v worst_viewer_duplicates) <= 128 x ${KILLED[fanout]} fan-out kills" \
  le "$(v worst_viewer_duplicates)" "$DUP_BOUND"
probe_fine() {  # probe_fine I: vrelay-probe I saw the counter stream, within the bounds
  local i=$1
  [ "${PR[$i.kind]:-}" = counter ] && le 1 "${PR[$i.datagrams]:-0}" && le "${PR[$i.sequence.lost]:-?}" "$LOSS_BOUND" &&
    le "${PR[$i.sequence.duplicates]:-?}" "$DUP_BOUND" && eq "${PR[$i.counter.corrupt]:-?}" 0
}
for i in "${!PROBE_PIDS[@]}"; do
  check "vrelay-probe $i: ${PR[$i.kind]:-no} stream, ${PR[$i.datagrams]:-?} datagrams, lost ${PR[$i.sequence.lost]:-?} <= $LOSS_BOUND, duplicates ${PR[$i.sequence.duplicates]:-?} <= $DUP_BOUND, corrupt ${PR[$i.counter.corrupt]:-?}" \
    probe_fine "$i"
done
chat_fine() { [ "$(v chat_ready)" = "$CHATTERS" ] && { ((CHATTERS == 0)) || le 1 "$(v chat_ok)"; }; }
check "chat: every chatter ready at the end ($(v chat_ready)/$CHATTERS), $(v chat_ok) of $(v chat_sent) answered OK" chat_fine
check "chat: no ERR but no-such-user (got $(v chat_err))" eq "$(v chat_err)" 0
check "chat: every reply within 10 s (slowest $(v max_reply_ms) ms)" \
  awk -v m="$(v max_reply_ms)" 'BEGIN { exit !(m != "?" && m < 10000) }'

# Per role: the first sample, the warm one (first at or after WARM s), the last, the maximum.
awk -v warm="$WARM" 'NR > 1 {
    r = $2
    if (!(r in first)) { first[r] = NR; rss0[r] = $4; fd0[r] = $6 }
    if ($1 >= warm && !(r in wrss)) { wrss[r] = $4; wanon[r] = $5; wfd[r] = $6 }
    erss[r] = $4; eanon[r] = $5; efd[r] = $6; ethr[r] = $7
    if ($4 > mrss[r]) mrss[r] = $4
    if ($5 > manon[r]) manon[r] = $5
    if ($6 > mfd[r]) mfd[r] = $6
    if (!((r, $3) in seen)) { seen[r, $3] = 1; pids[r]++; t0[r, $3] = $8 }
    cpu[r] += $8 - (((r, $3) in last) ? last[r, $3] : t0[r, $3]); last[r, $3] = $8
  }
  END { for (r in first) print r, rss0[r], wrss[r] + 0, erss[r], mrss[r], wanon[r] + 0, eanon[r], manon[r],
                                fd0[r], wfd[r] + 0, efd[r], mfd[r], pids[r], ethr[r], cpu[r] }' "$W/samples.tsv" >"$W/roles"
for role in supervisor ingest fanout control; do
  line=$(awk -v r="$role" '$1 == r' "$W/roles")
  [ -n "$line" ] || { check "$role: sampled" false; continue; }
  read -r _ rss0 wrss erss mrss wanon eanon manon fd0 wfd efd mfd npids threads <<<"$line"
  check "$role: descriptors $wfd after warm-up, $efd at the end (at most +$FD_SLACK)" le "$efd" $((wfd + FD_SLACK))
  check "$role: RssAnon $(mib "$wanon") MiB after warm-up, $(mib "$eanon") MiB at the end (at most +8 MiB +10 %)" \
    le "$eanon" $((wanon + RSS_SLACK_KB + wanon * RSS_SLACK_PCT / 100))
done
((RELOAD_LINES >= HUPS)) ||
  WARNS+=("$HUPS SIGHUPs sent but only $RELOAD_LINES log lines mention a reload")
# Once the relay counts its reloads, each SIGHUP should be one (the file does not change).
[ -z "${END[supervisor.reloads]:-}" ] || [ "${END[supervisor.reloads]}" = "$HUPS" ] ||
  WARNS+=("$HUPS SIGHUPs sent, supervisor.reloads = ${END[supervisor.reloads]}")

# ---- report -----------------------------------------------------------------------------------
echo
echo "## Soak report: $(date -u +%F), $(uname -r), $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo
echo "$("$BIN/vrelayd" -V 2>/dev/null); this script's tree: $(git -C "$HERE/.." describe --always --dirty 2>/dev/null || echo unknown)"
echo
echo "Run ${T_END} s of ${SECONDS_TOTAL} s: $VIEWERS viewers ($((VIEWERS - PROBES)) in soak_viewers, $PROBES vrelay-probe)," \
  "$CHATTERS chatters, generator every $INTERVAL_MS ms ($((1000 / INTERVAL_MS)) datagrams/s," \
  "$((1000 * VIEWERS / INTERVAL_MS)) copies/s); $KILLS kills (ingest ${KILLED[ingest]}, fan-out ${KILLED[fanout]}," \
  "control ${KILLED[control]}), $HUPS SIGHUPs; samples every ${SAMPLE_EVERY} s, warm-up ${WARM} s."
echo
HZ=$(getconf CLK_TCK)
echo "| process | pids | VmRSS MiB start / warm / end / max | RssAnon MiB warm / end / max | fds start / warm / end / max | threads | CPU % |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for role in supervisor ingest fanout control; do
  line=$(awk -v r="$role" '$1 == r' "$W/roles")
  [ -n "$line" ] || continue
  read -r _ rss0 wrss erss mrss wanon eanon manon fd0 wfd efd mfd npids threads ticks <<<"$line"
  echo "| $role | $npids | $(mib "$rss0") / $(mib "$wrss") / $(mib "$erss") / $(mib "$mrss") |" \
    "$(mib "$wanon") / $(mib "$eanon") / $(mib "$manon") | $fd0 / $wfd / $efd / $mfd | $threads |" \
    "$(awk -v k="$ticks" -v hz="$HZ" -v t="$T_END" 'BEGIN { printf "%.1f", (t > 0 ? 100 * k / hz / t : 0) }') |"
done
echo
echo "CPU %: the process's own time (utime + stime) over the run; the kernel delivers the copies on"
echo "loopback mostly in softirq, counted in the machine's figure below, not in the fan-out's."
probe_received=0 probe_lost=0 probe_dups=0
for i in "${!PROBE_PIDS[@]}"; do
  probe_received=$((probe_received + ${PR[$i.sequence.received]:-0}))
  probe_lost=$((probe_lost + ${PR[$i.sequence.lost]:-0}))
  probe_dups=$((probe_dups + ${PR[$i.sequence.duplicates]:-0}))
done
echo
echo "| figure | value |"
echo "|---|---:|"
echo "| datagrams generated (ingest.generated) | ${END[ingest.generated]:-?} |"
echo "| copies sent (fanout.sent_datagrams) | ${END[fanout.sent_datagrams]:-?} |"
echo "| received by soak_viewers / lost / duplicates / out of order | $(v received) / $(v lost) / $(v duplicates) / $(v out_of_order) |"
echo "| viewers with a loss, worst viewer's loss | $(v viewers_with_loss), $(v worst_viewer_lost) |"
echo "| gaps in fan-out/ingest windows / control windows / elsewhere | $(v gap_in_stream_windows) / $(v gap_in_control_windows) / $(v gap_outside) |"
echo "| duplicates in fan-out/ingest windows / control windows / elsewhere | $(v dup_in_stream_windows) / $(v dup_in_control_windows) / $(v dup_outside) |"
echo "| received by the $PROBES vrelay-probe / lost / duplicates | $probe_received / $probe_lost / $probe_dups |"
echo "| fanout.stale_skipped, ingest.drops_ring_full | $STALE, $RINGFULL |"
echo "| fanout.send_errors, fanout.refusals | ${END[fanout.send_errors]:-?}, ${END[fanout.refusals]:-?} |"
echo "| restarts (supervisor.child_restarts), time to ready (s) | ${END[supervisor.child_restarts]:-?}, ${RESTART_TIMES[*]:-none} |"
echo "| orphans adopted / expired | ${END[control.orphans_adopted]:-?} / ${END[control.orphans_expired]:-?} |"
echo "| session reconnects, slowest back (ms), CONECTAR refused | $(v reconnects), $(v max_reconnect_ms), $(v subscribe_errors) |"
echo "| chat sent / OK / ERR (peer away) / unanswered (session cut) | $(v chat_sent) / $(v chat_ok) / $(v chat_err) ($(v chat_err_absent)) / $(v chat_unanswered) |"
echo "| chat MSG / BROADCAST events received; BROADCAST events at viewers | $(v chat_msgs_received) / $(v chat_broadcasts_received); $(v viewer_broadcasts) |"
echo "| slowest chat reply (ms): MSG / BROADCAST; replies over 1 s | $(v max_msg_reply_ms) / $(v max_broadcast_reply_ms); $(v replies_over_1s) |"
echo "| longest silence of a viewer (ms): ingest kill / fan-out kill / control kill / elsewhere | $(v max_stall_ms_ingest) / $(v max_stall_ms_fanout) / $(v max_stall_ms_control) / $(v max_stall_ms_outside) |"
echo "| soak_viewers: longest busy stretch (ms), CPU % | $(v max_busy_ms), $CROWD_CPU |"
echo "| the machine's CPU over the run (every process on it) | ${MACHINE:-?} |"
echo "| SIGHUPs sent, supervisor.reloads, log lines mentioning reload | $HUPS, ${END[supervisor.reloads]:-not counted}, $RELOAD_LINES |"
echo "| log lines: errors, warnings | $ERROR_LINES, $WARNING_LINES |"
echo
echo "Checks:"
printf '  %s\n' "${CHECKS[@]}"
for w in "${WARNS[@]+"${WARNS[@]}"}"; do echo "  warn $w"; done
if ((ERROR_LINES + WARNING_LINES > 0)); then
  echo "vrelayd's error and warning lines (numbers folded):"
  grep '^<[0-4]>' "$W/vrelayd.log" | sed -E 's/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -n 15 | sed 's/^/  /'
fi
if ((${#FAILS[@]})); then
  echo "soak: FAILED (${#FAILS[@]} checks); logs in $W" >&2
  E2E_KEEP=1
  exit 1
fi
echo "soak: passed"
((E2E_KEEP == 0)) || echo "soak: logs, samples and the per-viewer table kept in $W"
