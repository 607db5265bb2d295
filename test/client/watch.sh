#!/usr/bin/env bash
# client tests client.watch.{ctrl_c,sigterm,play}: `vrelayctl watch PORT [--play]` receives
# the stream while it runs, and leaves cleanly on Ctrl-C (at a terminal, watch.exp) or
# SIGTERM (in the background): exit 0, the relay's subscriber count back to 0, and no more
# datagrams at the port.
# With "keepalive", the relay's idle timeout is 2 s: a watch with its PING keepalive (here
# every 0.5 s) and one without (--keepalive 0) both outlive it, since a session playing the
# stream is not idle; the keepalive PINGs print nothing.
# Usage: watch.sh VRELAYD VRELAYCTL UDP_PROBE ctrl_c|sigterm|play|keepalive
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
SCENARIO=${4:?usage: watch.sh VRELAYD VRELAYCTL UDP_PROBE ctrl_c|sigterm|play|keepalive}
require expect ss timeout pgrep ps
[ "$SCENARIO" != keepalive ] || CLIENT_CONFIG=$'control:\n  idle_timeout: 2'
# ctrl_c checks that an event is printed while watching: the JOIN of another session, which
# an unnamed session hears only with presence_events: all.
[ "$SCENARIO" != ctrl_c ] || CLIENT_CONFIG=$'control:\n  presence_events: all'
client_init "watch-$SCENARIO" "$1" "$2" "$3"
free_port UDP_PORT

case "$SCENARIO" in
  ctrl_c)
    run_expect watch.exp "$UDP_PORT" ctrl_c -
    ;;
  sigterm)
    "$VRELAYCTL" -s "127.0.0.1:$CONTROL_PORT" watch "$UDP_PORT" >"$E2E_WORK/watch.out" 2>"$E2E_WORK/watch.err" &
    WATCH_PID=$!
    track "$WATCH_PID"
    wait_until 10 "watch's OK" grep -qx OK "$E2E_WORK/watch.out"
    "$UDP_PROBE" arrives "$UDP_PORT" "$INGEST_PORT" 3 || die "the stream did not reach UDP port $UDP_PORT"
    [ "$(stat_value subscribers)" = 1 ] || die "STATS while watching: subscribers is not 1"
    kill -TERM "$WATCH_PID"
    wait_exit 10 "$WATCH_PID" status
    [ "$status" = 0 ] || die "watch exited with status $status on SIGTERM (expected 0): $(cat "$E2E_WORK/watch.err")"
    [ "$(tail -n 1 "$E2E_WORK/watch.out")" = OK ] || die "the last line of watch was not the OK of DESCONECTAR: $(cat "$E2E_WORK/watch.out")"
    ;;
  play)
    require cvlc
    check_vlc_runs
    # VLC does not run as root: as root vrelayctl runs it as $SUDO_USER, else as nobody.
    unset SUDO_USER
    PLAYER_USER=$(id -un)
    [ "$(id -u)" != 0 ] || PLAYER_USER=nobody
    run_expect watch.exp "$UDP_PORT" play "$PLAYER_USER"
    ;;
  keepalive)
    "$VRELAYCTL" -s "127.0.0.1:$CONTROL_PORT" --keepalive 0.5 watch "$UDP_PORT" >"$E2E_WORK/kept.out" 2>"$E2E_WORK/kept.err" &
    KEPT_PID=$!
    track "$KEPT_PID"
    free_port IDLE_PORT
    "$VRELAYCTL" -s "127.0.0.1:$CONTROL_PORT" --keepalive 0 watch "$IDLE_PORT" >"$E2E_WORK/idle.out" 2>"$E2E_WORK/idle.err" &
    IDLE_PID=$!
    track "$IDLE_PID"
    # The relay does not count a viewer watching the stream as idle: without keepalive too,
    # the session outlives twice the idle timeout (checked below, after the same wait).
    # With keepalive: still subscribed after twice the idle timeout, the stream still flows.
    sleep 4
    kill -0 "$KEPT_PID" 2>/dev/null || die "watch --keepalive 0.5 ended: $(cat "$E2E_WORK/kept.out" "$E2E_WORK/kept.err")"
    ! grep -q 'EVENT BYE' "$E2E_WORK/kept.out" || die "watch --keepalive 0.5 was told BYE: $(cat "$E2E_WORK/kept.out")"
    kill -0 "$IDLE_PID" 2>/dev/null || die "watch --keepalive 0 ended while watching: $(cat "$E2E_WORK/idle.out" "$E2E_WORK/idle.err")"
    ! grep -q 'EVENT BYE' "$E2E_WORK/idle.out" || die "a watching session was told BYE idle: $(cat "$E2E_WORK/idle.out")"
    "$UDP_PROBE" arrives "$UDP_PORT" "$INGEST_PORT" 3 || die "the stream no longer reaches UDP port $UDP_PORT"
    # The keepalive replies are not printed: one OK (CONECTAR's), no PONG.
    [ "$(grep -c '^OK' "$E2E_WORK/kept.out")" = 1 ] || die "watch printed more than one reply: $(cat "$E2E_WORK/kept.out")"
    kill -TERM "$KEPT_PID" "$IDLE_PID"
    wait_exit 10 "$KEPT_PID" status
    [ "$status" = 0 ] || die "watch exited with status $status on SIGTERM"
    wait_exit 10 "$IDLE_PID" status
    [ "$status" = 0 ] || die "watch --keepalive 0 exited with status $status on SIGTERM"
    ;;
  *) die "unknown scenario $SCENARIO" ;;
esac

wait_until 5 "no subscriber left" subscribers_are 0
# (With --play, the player has ended and no longer holds the port.)
"$UDP_PROBE" silent "$UDP_PORT" "$INGEST_PORT" 2 || die "datagrams still reach UDP port $UDP_PORT after watch ended"
stop_relay
echo "PASS client.watch.$SCENARIO"
