#!/usr/bin/env bash
# client tests client.oneshot and client.oneshot.json: `vrelayctl [-s HOST:PORT] COMMAND
# [ARGS]` from a shell, as a script would use it: the reply alone on stdout, exit status 0
# for OK, 1 for ERR, 2 for usage and connection errors; with "json", --json replies.
# Usage: oneshot.sh VRELAYD VRELAYCTL UDP_PROBE [json]
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
MODE=${4:-text}
require ss timeout
client_init "oneshot-$MODE" "$1" "$2" "$3"

OUT="$E2E_WORK/out" ERR="$E2E_WORK/err"
# run EXPECTED_STATUS ARGS...: runs vrelayctl ARGS (at most 20 s); stdout in $OUT, stderr in $ERR.
run() {
  local expected=$1 status=0
  shift
  timeout 20 "$VRELAYCTL" "$@" >"$OUT" 2>"$ERR" || status=$?
  [ "$status" = "$expected" ] ||
    die "vrelayctl $*: exit status $status, expected $expected (stdout '$(cat "$OUT")', stderr '$(cat "$ERR")')"
}
# stdout_is TEXT / stderr_has TEXT
stdout_is() { [ "$(cat "$OUT")" = "$1" ] || die "stdout was '$(cat "$OUT")', expected '$1'"; }
stderr_has() { grep -qF -- "$1" "$ERR" || die "stderr was '$(cat "$ERR")', expected it to contain '$1'"; }
S=(-s "127.0.0.1:$CONTROL_PORT")

if [ "$MODE" = json ]; then
  # --json sends FORMAT JSON first and prints the JSON reply line as it is.
  run 0 "${S[@]}" --json PING
  grep -qE '^\{.*"ok": *true.*\}$' "$OUT" || die "--json PING printed '$(cat "$OUT")', expected a JSON object with \"ok\":true"
  [ "$(wc -l <"$OUT")" = 1 ] || die "--json PING printed more than one line: '$(cat "$OUT")'"
  run 1 "${S[@]}" -j INFO nobody-here
  grep -qE '^\{.*"ok": *false.*"error": *"no-such-user".*\}$' "$OUT" ||
    die "--json INFO nobody-here printed '$(cat "$OUT")', expected ok false and error no-such-user"
  run 0 "${S[@]}" --json STATS
  grep -qE '"subscribers": *0' "$OUT" || die "--json STATS printed '$(cat "$OUT")', expected \"subscribers\":0"
  stop_relay
  echo "PASS client.oneshot.json"
  exit 0
fi

# The reply alone: no HELLO, no events; exit 0 on OK.
run 0 "${S[@]}" PING
stdout_is "OK PONG"
[ ! -s "$ERR" ] || die "PING wrote to stderr: '$(cat "$ERR")'"
run 0 --server "127.0.0.1:$CONTROL_PORT" ping
stdout_is "OK PONG"
# VRELAY_SERVER when there is no -s.
VRELAY_SERVER="127.0.0.1:$CONTROL_PORT" run 0 PING
stdout_is "OK PONG"
# Words joined with single spaces; an argument keeps its inner spaces.
run 0 "${S[@]}" ECHO hola   que "tal  bien"
stdout_is "OK hola que tal  bien"
# ERR: exit 1, the ERR line on stdout.
run 1 "${S[@]}" CONECTAR 80
grep -qE '^ERR bad-port ' "$OUT" || die "CONECTAR 80 printed '$(cat "$OUT")', expected 'ERR bad-port ...'"
run 1 "${S[@]}" NOSUCHCOMMAND
grep -qE '^ERR unknown-command ' "$OUT" || die "NOSUCHCOMMAND printed '$(cat "$OUT")'"
# Control characters are refused before anything is sent (no line injection).
run 2 "${S[@]}" ECHO $'a\r\nSHUTDOWN'
stderr_has "control characters"
[ ! -s "$OUT" ] || die "a refused command printed '$(cat "$OUT")'"
run 2 "${S[@]}" ECHO "$(printf 'x%.0s' {1..1100})"
stderr_has "1022"
# Usage errors: exit 2.
run 2
stderr_has "expected a command"
run 2 --bogus PING
stderr_has "unknown option"
run 2 -s "127.0.0.1:99999" PING
stderr_has "port must be a number"
run 2 watch
stderr_has "usage: vrelayctl watch PORT"
# --help and --version.
run 0 --help
grep -q '^Usage: vrelayctl' "$OUT" || die "--help printed '$(head -n 2 "$OUT")'"
run 0 --version
grep -qE '^vrelayctl [0-9]+\.[0-9]+\.[0-9]+$' "$OUT" || die "--version printed '$(cat "$OUT")'"
# A relay that is not there: exit 3 (not 2, a usage error) and a clear message.
free_port DEAD_PORT
run 3 -s "127.0.0.1:$DEAD_PORT" PING
stderr_has "cannot connect to the relay at 127.0.0.1:$DEAD_PORT"
[ ! -s "$OUT" ] || die "an unreachable relay printed '$(cat "$OUT")' on stdout"
# The session ended with the command: nothing left behind on the relay.
wait_until 5 "no session left but the STATS one" test "$(stat_value sessions)" = 1
stop_relay
echo "PASS client.oneshot"
