# Shared helpers of the end-to-end tests (test/e2e/*.sh) and of scripts/demo.sh: a private
# work folder, free ports, starting vrelayd and reading its ready line, control sessions
# over bash's /dev/tcp, VLC as user nobody, ffmpeg viewers, and a cleanup that ends only
# the processes this script started. Source it; it does not change shell options.
#
# Every wait is bounded; every failure goes through die(), which prints "FAIL: ..." and
# exits 1, so a test can never pass by accident.
# shellcheck shell=bash disable=SC2034

E2E_PIDS=()            # every background process this script started (cleanup kills these)
E2E_FDS=()             # control sessions and pipes held open
E2E_PORTS_TAKEN=" "    # ports handed out by free_port in this script
E2E_KEEP=${E2E_KEEP:-0}   # E2E_KEEP=1 keeps the work folder for a post-mortem
E2E_WORK=""
RELAY_PID="" RELAY_INSTANCE="" CONTROL_PORT="" INGEST_PORT="" HTTP_PORT="" RELAY_FD=""

# The error lines ffmpeg prints when it meets or conceals damage in what it decodes.
FFMPEG_ERROR_RE='corrupt decoded frame|error while decoding|concealing|Packet corrupt|PES packet size mismatch|Header missing|non-existing PPS'

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

# require CMD...: each must be installed (a missing tool is a failure, never a skip).
require() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is not installed (scripts/install-deps.sh installs it)"
  done
}

# e2e_init NAME: creates the work folder (readable by user nobody, who runs VLC) and installs
# the cleanup trap.
e2e_init() {
  E2E_WORK=$(mktemp -d "/tmp/vrelay-e2e-$1.XXXXXX") || die "mktemp failed"
  chmod 755 "$E2E_WORK"
  mkdir -p "$E2E_WORK/vlchome"
  chown nobody "$E2E_WORK/vlchome" 2>/dev/null || chmod 777 "$E2E_WORK/vlchome"
  trap e2e_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# descendants PID: PID's children, grandchildren... (runuser and timeout fork the real program).
descendants() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do
    descendants "$child"
    echo "$child"
  done
}

# kill_tree SIGNAL PID: signals PID and everything it started.
kill_tree() {
  local sig=$1 pid=$2
  kill -0 "$pid" 2>/dev/null || return 0
  # shellcheck disable=SC2046
  kill "-$sig" $(descendants "$pid") "$pid" 2>/dev/null || true
}

# track PID: remember a background process so that cleanup ends it.
track() { E2E_PIDS+=("$1"); }

e2e_cleanup() {
  local rc=$? pid fd i
  trap - EXIT
  set +e
  for fd in "${E2E_FDS[@]}"; do { exec {fd}>&-; } 2>/dev/null; done
  # The relay gets SIGTERM alone (its children follow it); the others with what they started.
  for pid in "${E2E_PIDS[@]}"; do
    if [ "$pid" = "$RELAY_PID" ]; then kill -TERM "$pid" 2>/dev/null; else kill_tree TERM "$pid"; fi
  done
  # Up to 3 s for a graceful exit, then SIGKILL what is left (ours only).
  for ((i = 0; i < 30; i++)); do
    local alive=0
    for pid in "${E2E_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${E2E_PIDS[@]}"; do kill_tree KILL "$pid"; done
  wait 2>/dev/null
  # A relay we had to kill leaves its segment behind; it is ours (unique instance name).
  if [ -n "$RELAY_INSTANCE" ] && [ -e "/dev/shm/vrelay.$RELAY_INSTANCE" ] && [ -n "$RELAY_PID" ] &&
     ! kill -0 "$RELAY_PID" 2>/dev/null; then
    rm -f "/dev/shm/vrelay.$RELAY_INSTANCE"
  fi
  if [ -n "$E2E_WORK" ] && [ -d "$E2E_WORK" ]; then
    if ((rc != 0 || E2E_KEEP)); then
      echo "logs kept in $E2E_WORK" >&2
      # Show the tails of the logs, so a CI failure explains itself.
      local f
      for f in "$E2E_WORK"/*.log; do
        [ -s "$f" ] || continue
        echo "----- tail of $f" >&2
        tr '\r' '\n' <"$f" | grep -v '^frame=' | tail -n 15 >&2
      done
    else
      rm -rf "$E2E_WORK"
    fi
  fi
  exit "$rc"
}

# port_in_use PORT: true if any TCP or UDP socket of this machine uses PORT.
port_in_use() {
  [ -n "$(ss -Htuan "( sport = :$1 )" 2>/dev/null)" ]
}

# free_port VAR [SPAN]: stores in VAR a port that no socket uses and that this script has not
# handed out yet (with SPAN=2, PORT+1 is free too, for RTP's RTCP).
free_port() {
  local var=$1 span=${2:-1} _fp_p i k ok
  for ((i = 0; i < 200; i++)); do
    _fp_p=$((20000 + RANDOM % 30000))
    ok=1
    for ((k = 0; k < span; k++)); do
      if port_in_use $((_fp_p + k)) || [[ $E2E_PORTS_TAKEN == *" $((_fp_p + k)) "* ]]; then ok=0; fi
    done
    if ((ok)); then
      for ((k = 0; k < span; k++)); do E2E_PORTS_TAKEN+="$((_fp_p + k)) "; done
      printf -v "$var" '%s' "$_fp_p"
      return 0
    fi
  done
  die "no free port found"
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.05 s until it succeeds;
# fails the test with DESCRIPTION after SECONDS.
wait_until() {
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out after ${limit}s waiting for $what"
    sleep 0.05
  done
}

udp_bound() { [ -n "$(ss -Hluan "( sport = :$1 )" 2>/dev/null)" ]; }
tcp_listening() { [ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]; }

# wait_exit SECONDS PID [VAR]: waits for a background PID to end, stores its exit status in
# VAR; fails the test if it is still running after SECONDS.
wait_exit() {
  local limit=$1 pid=$2 var=${3:-}
  local deadline=$((SECONDS + limit))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || die "process $pid still running after ${limit}s"
    sleep 0.1
  done
  local _we_status=0
  wait "$pid" || _we_status=$?
  [ -z "$var" ] || printf -v "$var" '%s' "$_we_status"
}

# start_relay BINARY INSTANCE [--defaults | ARGS...]: starts vrelayd in the foreground and
# waits (10 s at most) for its ready line; sets RELAY_PID, CONTROL_PORT, INGEST_PORT,
# RELAY_INSTANCE, and HTTP_PORT when http.listen is on ("" otherwise). Without ARGS it listens on 127.0.0.1, ports chosen by the kernel; with
# --defaults, on its embedded defaults (control 0.0.0.0:7700, ingest 127.0.0.1:65534).
start_relay() {
  local binary=$1 instance=$2
  shift 2
  [ -x "$binary" ] || die "vrelayd binary '$binary' is not executable"
  local args=("$@")
  if ((${#args[@]} == 0)); then
    args=(--control 127.0.0.1:0 --ingest 127.0.0.1:0)
  elif [ "${args[0]}" = --defaults ]; then
    args=()
  fi
  RELAY_INSTANCE=$instance
  # The ready line arrives through a FIFO, read with a deadline (no sleep-and-hope).
  local fifo="$E2E_WORK/relay-$instance.stdout"
  mkfifo "$fifo"
  exec {RELAY_FD}<>"$fifo"
  E2E_FDS+=("$RELAY_FD")
  "$binary" -F ${args[@]+"${args[@]}"} --instance "$instance" >"$fifo" 2>"$E2E_WORK/vrelayd.log" &
  RELAY_PID=$!
  track "$RELAY_PID"
  local line=""
  if ! read -r -t 10 -u "$RELAY_FD" line; then
    kill -0 "$RELAY_PID" 2>/dev/null || die "vrelayd exited before it was ready: $(tail -n 3 "$E2E_WORK/vrelayd.log")"
    die "vrelayd printed no ready line within 10 s"
  fi
  local re='^vrelayd ready control=([^ ]+):([0-9]+) ingest=([^ ]+):([0-9]+) instance=([^ ]+) pid=([0-9]+)( http=([^ ]+):([0-9]+))?$'
  [[ $line =~ $re ]] ||
    die "unexpected ready line: '$line'"
  CONTROL_PORT=${BASH_REMATCH[2]}
  INGEST_PORT=${BASH_REMATCH[4]}
  HTTP_PORT=${BASH_REMATCH[9]}
  [ "${BASH_REMATCH[5]}" = "$instance" ] || die "ready line names instance '${BASH_REMATCH[5]}', expected '$instance'"
  [ "${BASH_REMATCH[6]}" = "$RELAY_PID" ] || die "ready line names pid ${BASH_REMATCH[6]}, expected $RELAY_PID"
  log "vrelayd ready (pid $RELAY_PID): control port $CONTROL_PORT, ingest port $INGEST_PORT"
}

# stop_relay: SIGTERM; asserts exit status 0 within 10 s and that the segment is gone.
stop_relay() {
  kill -TERM "$RELAY_PID" || die "vrelayd (pid $RELAY_PID) is not running any more"
  local status
  wait_exit 10 "$RELAY_PID" status
  [ "$status" = 0 ] || die "vrelayd exited with status $status on SIGTERM (expected 0)"
  [ ! -e "/dev/shm/vrelay.$RELAY_INSTANCE" ] || die "/dev/shm/vrelay.$RELAY_INSTANCE still exists after vrelayd stopped"
  log "vrelayd stopped on SIGTERM: exit status 0, /dev/shm/vrelay.$RELAY_INSTANCE removed"
}

# control_open VAR [HOST]: opens a control session, checks the HELLO line, and stores the file
# descriptor in VAR. The session stays open until control_close or the end of the script.
CONTROL_LAST=""   # the last line read by control_open / control_cmd, CR removed
control_open() {
  local var=$1 host=${2:-127.0.0.1} _co_fd
  exec {_co_fd}<>"/dev/tcp/$host/$CONTROL_PORT" || die "cannot connect to the control port $host:$CONTROL_PORT"
  E2E_FDS+=("$_co_fd")
  local line=""
  read -r -t 5 -u "$_co_fd" line || die "no greeting from the control session within 5 s"
  line=${line%$'\r'}
  local re='^EVENT HELLO vrelay [^ ]+ guest-[0-9]+$'
  [[ $line =~ $re ]] || die "bad greeting: '$line'"
  CONTROL_LAST=$line
  printf -v "$var" '%s' "$_co_fd"
}

# control_cmd FD COMMAND REGEX: sends COMMAND (CRLF), reads its reply line within 5 s and
# checks it against REGEX (anchored). Events that arrive meanwhile (JOIN, LEAVE, ...) are
# skipped: they may come at any time.
control_cmd() {
  local fd=$1 command=$2 regex=$3 line="EVENT"
  printf '%s\r\n' "$command" >&"$fd" || die "cannot send '$command'"
  local deadline=$((SECONDS + 5))
  while [[ $line == EVENT* ]]; do
    ((SECONDS <= deadline)) || die "no reply to '$command' within 5 s"
    read -r -t 5 -u "$fd" line || die "no reply to '$command' within 5 s"
    [[ $line == *$'\r' ]] || die "reply to '$command' does not end with CRLF: '$line'"
  done
  line=${line%$'\r'}
  local re="^($regex)\$"
  [[ $line =~ $re ]] || die "reply to '$command' was '$line', expected /$regex/"
  CONTROL_LAST=$line
}

# control_close FD: DESCONECTAR, expects OK, then the server closes the connection.
control_close() {
  local fd=$1 rest=""
  control_cmd "$fd" DESCONECTAR OK
  if read -r -t 5 -u "$fd" rest; then die "data after DESCONECTAR's OK: '$rest'"; fi
  exec {fd}>&-
}

# make_video FILE SECONDS [GOP]: the recipe's test video (640x360, 25 fps, H.264 + MP2 in
# MPEG-TS), readable by nobody; sets VIDEO_FRAMES to its number of video frames. GOP (in frames,
# default 25) is exact: no extra key frame at scene cuts.
VIDEO_FRAMES=0
make_video() {
  local file=$1 seconds=$2 gop=${3:-25}
  ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=25 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t "$seconds" -c:v libx264 -preset veryfast \
    -tune zerolatency -b:v 800k -maxrate 800k -bufsize 400k -g "$gop" -sc_threshold 0 -pix_fmt yuv420p \
    -c:a mp2 -b:a 128k -f mpegts "$file" || die "ffmpeg could not generate the test video"
  chmod 644 "$file"
  # ffprobe prints the count once per program and once per stream: take the first.
  VIDEO_FRAMES=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
    -of csv=p=0 "$file" | grep -m1 -E '^[0-9]+$' || true)
  if ! [[ $VIDEO_FRAMES =~ ^[0-9]+$ ]] || ((VIDEO_FRAMES == 0)); then die "ffprobe found no video frames in $file"; fi
}

# as_nobody CMD...: runs CMD as user nobody (VLC refuses root) with a private HOME.
as_nobody() { runuser -u nobody -- env HOME="$E2E_WORK/vlchome" "$@"; }

# check_vlc_runs: fails now, with a clear message, if VLC cannot run as nobody here.
check_vlc_runs() {
  local out
  out=$(as_nobody timeout 20 cvlc --version 2>&1) || die "cvlc --version as nobody failed: $out"
  [[ $out == *"VLC version"* ]] || die "cvlc as nobody did not run: $out"
  [[ $out != *"not supposed to be run as root"* ]] || die "VLC still runs as root: $out"
}

# check_vlc_log LOG: a VLC that refused to run exits 0 without doing anything; catch that.
check_vlc_log() {
  ! grep -qiE 'not supposed to be run as root' "$1" || die "VLC refused to run as root (see $1)"
}

# start_ffmpeg_pair URL VIEWER_PORT REF_PORT: two ffmpeg receivers on URL (its word PORT
# replaced): the viewer, which subscribes through the relay, and the reference, which VLC
# feeds directly and so counts what VLC really sent (it drops about its last second).
# Logs ffmpeg-viewer.log and reference.log; sets FF_PID and REF_PID once both ports are bound.
start_ffmpeg_pair() {
  start_ffmpeg_viewer "${1/PORT/$2}" "$E2E_WORK/ffmpeg-viewer.log"
  FF_PID=$VIEWER_PID
  start_ffmpeg_viewer "${1/PORT/$3}" "$E2E_WORK/reference.log"
  REF_PID=$VIEWER_PID
  wait_until 10 "the ffmpeg viewer's port $2" udp_bound "$2"
  wait_until 10 "the reference ffmpeg's port $3" udp_bound "$3"
}

# ffmpeg_pair_figures: FF_FRAMES, FF_ERRORS, REF_FRAMES, REF_ERRORS from the pair's logs.
ffmpeg_pair_figures() {
  FF_FRAMES=$(ffmpeg_frames "$E2E_WORK/ffmpeg-viewer.log")
  FF_ERRORS=$(ffmpeg_errors "$E2E_WORK/ffmpeg-viewer.log")
  REF_FRAMES=$(ffmpeg_frames "$E2E_WORK/reference.log")
  REF_ERRORS=$(ffmpeg_errors "$E2E_WORK/reference.log")
}

# vlc_source FILE SOUT LOG SECONDS: streams FILE with VLC (as nobody) through the --sout
# chain SOUT and waits for it to end (SECONDS at most); fails unless VLC ran and exited 0.
vlc_source() {
  local file=$1 sout=$2 logf=$3 limit=$4 pid status
  as_nobody timeout "$limit" cvlc --play-and-exit --file-caching=0 --sout-udp-caching=0 --sout-ts-dts-delay=0 \
    "$file" --sout "$sout" >"$logf" 2>&1 &
  pid=$!
  track "$pid"
  wait_exit $((limit + 10)) "$pid" status
  check_vlc_log "$logf"
  [ "$status" = 0 ] || die "the VLC source exited with status $status"
}

# start_ffmpeg_viewer URL LOG [ARGS...]: an ffmpeg that decodes the video of URL and exits
# 5 s after the data stops; prints nothing; sets VIEWER_PID.
start_ffmpeg_viewer() {
  local url=$1 logfile=$2
  shift 2
  ffmpeg -nostdin -hide_banner -loglevel info "$@" -i "$url" -map 0:v:0 -f null - >"$logfile" 2>&1 &
  VIEWER_PID=$!
  track "$VIEWER_PID"
}

# end_viewer SECONDS PID: gives an ffmpeg receiver SECONDS to end on its own once the data has
# stopped, then asks it to stop (SIGTERM: ffmpeg still writes its final figures).
end_viewer() {
  local limit=$1 pid=$2 deadline=$((SECONDS + $1))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -TERM "$pid" 2>/dev/null || true
  wait_exit 10 "$pid"
}

# ffmpeg_frames LOG: the last frame= figure of an ffmpeg log (0 if none).
ffmpeg_frames() {
  local n
  n=$(tr '\r' '\n' <"$1" | sed -n 's/^frame= *\([0-9][0-9]*\).*/\1/p' | tail -n 1)
  echo "${n:-0}"
}

# ffmpeg_errors LOG: how many of ffmpeg's lines report damage.
ffmpeg_errors() { tr '\r' '\n' <"$1" | grep -cE "$FFMPEG_ERROR_RE" || true; }

# vlc_rc PORT COMMAND: sends COMMAND to a VLC rc interface and prints its answer (5 s at most;
# for "stats", until the end of the table).
vlc_rc() {
  local port=$1 command=$2 fd line
  exec {fd}<>"/dev/tcp/127.0.0.1/$port" || die "cannot reach VLC's rc interface on port $port"
  printf '%s\n' "$command" >&"$fd"
  if [ "$command" = stats ]; then
    while read -r -t 5 -u "$fd" line; do
      echo "$line"
      [[ $line == *"end of statistical info"* ]] && break
    done
  fi
  exec {fd}>&-
}

# vlc_stat NAME: a figure from vlc_rc's stats output on stdin ("frames displayed" ...).
vlc_stat() { sed -n "s/.*| *$1 *: *\([0-9][0-9]*\).*/\1/p" | tail -n 1; }

# percent A B: A as a whole percentage of B.
percent() { (($2 > 0)) && echo $((100 * $1 / $2)) || echo 0; }

# at_least NAME VALUE MIN: asserts VALUE >= MIN.
at_least() {
  [[ $2 =~ ^[0-9]+$ ]] || die "$1: '$2' is not a number"
  (($2 >= $3)) || die "$1 = $2, expected at least $3"
}
# at_most NAME VALUE MAX: asserts VALUE <= MAX.
at_most() {
  [[ $2 =~ ^[0-9]+$ ]] || die "$1: '$2' is not a number"
  (($2 <= $3)) || die "$1 = $2, expected at most $3"
}

# --- Joining mid-stream (fast start) ------------------------------------------------------
# join_viewer KIND LABEL: a viewer of KIND starts, subscribes through a new control session
# to the relay of CONTROL_PORT, and is timed from CONECTAR's OK to its first decoded picture;
# it then plays for a while so that damage after the join counts too. KIND is cvlc
# (--network-caching=500), ffmpeg-probe (-analyzeduration 0.5M) or ffmpeg (its 5 s probe).
# Sets JOIN_SECONDS ("" if no picture within JOIN_LIMIT seconds) and JOIN_ERRORS (the damage
# lines in the viewer's log, $E2E_WORK/join-LABEL.log).
JOIN_LIMIT=${JOIN_LIMIT:-15}   # seconds a viewer may take to show its first picture
JOIN_WATCH=${JOIN_WATCH:-2}    # seconds it plays after its first picture
JOIN_SECONDS="" JOIN_ERRORS=0
# What VLC logs (with -vv) when it joined badly: its packetizer drops the stream while it
# waits for the parameter sets, its decoder stalls or conceals.
CVLC_ERROR_RE='packetizer warning: waiting for|decoder error|corrupt|concealing|non-existing PPS|no frame!'

# stamp_lines: each line of stdin, prefixed with the time it was read (seconds since 1970).
stamp_lines() {
  local line
  while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done
}

# seconds_between T0 T1: T1 - T0 with 3 decimals (both $EPOCHREALTIME values).
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

join_viewer() {
  local kind=$1 label=$2 port pid fd session t0 t1="" logf="$E2E_WORK/join-$2.log" first
  free_port port
  JOIN_SECONDS="" JOIN_ERRORS=0
  case $kind in
    cvlc)
      # The stamps date VLC's log lines: its video output opens for the decoder's first
      # picture ("original format ... 4cc I420"), which VLC then logs as "Received first
      # picture" (unless it gave up buffering: "buffer deadlock prevented").
      as_nobody timeout $((JOIN_LIMIT + JOIN_WATCH + 20)) cvlc -vv --vout dummy --aout dummy \
        --network-caching=500 "udp://@:$port" > >(stamp_lines >"$logf") 2>&1 &
      pid=$!
      ;;
    ffmpeg | ffmpeg-probe)
      # ffmpeg writes each decoded picture (shrunk to 16x16) to a FIFO: its first byte dates
      # the first picture. -t ends it JOIN_WATCH s of stream after that.
      local probe=() fifo="$E2E_WORK/join-$label.fifo"
      [ "$kind" = ffmpeg-probe ] && probe=(-analyzeduration 0.5M)
      mkfifo "$fifo"
      exec {fd}<>"$fifo"
      E2E_FDS+=("$fd")
      ffmpeg -nostdin -hide_banner -loglevel info "${probe[@]}" \
        -i "udp://127.0.0.1:$port?timeout=5000000&overrun_nonfatal=1&fifo_size=100000" \
        -map 0:v:0 -vf scale=16:16 -t $((JOIN_WATCH + 1)) -f rawvideo -y "$fifo" >"$logf" 2>&1 &
      pid=$!
      ;;
    *) die "join_viewer: unknown kind '$kind'" ;;
  esac
  track "$pid"
  wait_until 20 "the $kind viewer's UDP port $port" udp_bound "$port"
  control_open session
  control_cmd "$session" "CONECTAR $port" OK
  t0=$EPOCHREALTIME
  local deadline=$((SECONDS + JOIN_LIMIT))
  if [ "$kind" = cvlc ]; then
    while ((SECONDS < deadline)); do
      first=$(grep -m1 -E 'Received first picture|original format .* 4cc I420' "$logf" || true)
      if [ -n "$first" ]; then t1=${first%% *}; break; fi
      sleep 0.02
    done
    [ -z "$t1" ] || sleep "$JOIN_WATCH"   # it plays on: damage after the join counts too
    kill_tree TERM "$pid"
    wait_exit 10 "$pid"
    check_vlc_log "$logf"
    JOIN_ERRORS=$(grep -cE "$CVLC_ERROR_RE" "$logf" || true)
  else
    local byte drain=""
    if read -r -N 1 -t "$JOIN_LIMIT" -u "$fd" byte; then
      t1=$EPOCHREALTIME
      cat <&"$fd" >/dev/null &   # the rest of its pictures
      drain=$!
      track "$drain"
    fi
    [ -n "$t1" ] || kill_tree TERM "$pid"
    wait_exit $((JOIN_WATCH + 20)) "$pid"
    [ -z "$drain" ] || kill "$drain" 2>/dev/null || true
    JOIN_ERRORS=$(ffmpeg_errors "$logf")
  fi
  control_close "$session"
  [ -z "$t1" ] || JOIN_SECONDS=$(seconds_between "$t0" "$t1")
}

# median V...: the median of numbers (the lower middle one of an even count); "-" if none.
median() {
  (($# > 0)) || { echo -; return; }
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
