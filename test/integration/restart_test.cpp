// Integration tests of supervision: a child killed with SIGKILL is restarted on the same
// sockets and shared memory, and the same subscribers receive again without re-subscribing.
#include <gtest/gtest.h>
#include <signal.h>

#include "clock.hpp"
#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

// Sends datagram `index` until the sink receives it (the restarted child may miss the first
// ones only if they arrived before its socket... they wait in the kernel buffer, so the
// first try normally succeeds). Returns the attempts needed, or -1.
int deliver_eventually(UdpSource& source, UdpSink& sink, uint64_t index) {
  for (int attempt = 1; attempt <= 50; ++attempt) {
    source.send(test_payload(index));
    if (auto got = sink.receive(200ms)) {
      EXPECT_TRUE(is_payload(got, index));
      return attempt;
    }
  }
  return -1;
}

void expect_restart_keeps_subscribers(Role victim) {
  Relay relay;
  Viewer a(relay), b(relay);
  UdpSource source(relay.ingest_port());
  source.send(test_payload(0));
  ASSERT_TRUE(is_payload(a.sink.receive(), 0));
  ASSERT_TRUE(is_payload(b.sink.receive(), 0));

  pid_t old_pid = relay.child_pid(victim);
  ASSERT_EQ(kill(old_pid, SIGKILL), 0);
  ASSERT_TRUE(relay.wait_restarted(victim, old_pid)) << relay.log();
  Counters c = relay.counters();  // the process's restarts and the supervisor's, at one moment
  EXPECT_EQ(c.process(victim).restarts, 1u);
  EXPECT_EQ(c["supervisor.child_restarts"], 1u);

  // The datagrams sent while the child was down wait in the socket buffer or the ring.
  for (uint64_t i = 1; i <= 100; ++i) source.send(test_payload(i));
  for (UdpSink* sink : {&a.sink, &b.sink}) {
    auto got = sink->receive();
    // A fan-out killed between its sendmmsg and the release of the ring position sends that
    // batch again when it restarts: at least once, never lost.
    if (victim == kFanout && got == test_payload(0)) got = sink->receive();
    for (uint64_t i = 1; i <= 100; ++i) {
      ASSERT_TRUE(is_payload(got, i)) << "after the restart, at port " << sink->port();
      if (i < 100) got = sink->receive();
    }
    EXPECT_EQ(sink->drain(), 0u);
  }
  // The sessions themselves are untouched.
  EXPECT_EQ(a.session.command("PING"), "OK PONG");
  EXPECT_EQ(b.session.command("PAUSE"), "OK");
}

TEST(Restart, FanoutKilledIsRestartedAndTheSameSubscribersReceive) { expect_restart_keeps_subscribers(kFanout); }

TEST(Restart, IngestKilledIsRestartedAndTheSameSubscribersReceive) { expect_restart_keeps_subscribers(kIngest); }

TEST(Restart, DatagramsSentWhileFanoutIsDownAreDeliveredAfterIt) {
  Relay relay;
  Viewer viewer(relay);
  pid_t old_pid = relay.child_pid(kFanout);
  ASSERT_EQ(kill(old_pid, SIGKILL), 0);
  UdpSource source(relay.ingest_port());
  for (uint64_t i = 0; i < 50; ++i) source.send(test_payload(i));  // the ring keeps them
  for (uint64_t i = 0; i < 50; ++i) {
    auto got = viewer.sink.receive(10000ms);
    ASSERT_TRUE(got) << i;
    EXPECT_TRUE(is_payload(got, i));
  }
}

// A fan-out that stopped (SIGSTOP, as a hang) and was replaced finds the stream of all that
// time waiting in the ring: older than fanout.max_lag, it is skipped and counted, and the
// viewer goes on live instead of receiving it in one burst (issue 11.8).
TEST(Restart, AReplacedFanoutSkipsWhatIsOlderThanMaxLag) {
  Relay relay("fanout:\n  max_lag: 300\n");
  Viewer viewer(relay);
  UdpSource source(relay.ingest_port());
  source.send(test_payload(0));
  ASSERT_TRUE(is_payload(viewer.sink.receive(), 0));
  pid_t old_pid = relay.child_pid(kFanout);
  ASSERT_EQ(kill(old_pid, SIGSTOP), 0);
  for (uint64_t i = 1; i <= 50; ++i) source.send(test_payload(i));
  auto& ingest = relay.shm().stats().ingest;
  ASSERT_TRUE(wait_until([&] { return ingest.datagrams.load() == 51; }));
  uint64_t all_in = monotonic_ns();
  ASSERT_TRUE(wait_until([&] { return monotonic_ns() > all_in + 400 * kNsPerMs; }));  // they age past max_lag
  ASSERT_EQ(kill(old_pid, SIGKILL), 0);
  ASSERT_TRUE(relay.wait_restarted(kFanout, old_pid)) << relay.log();

  source.send(test_payload(51));
  ASSERT_TRUE(is_payload(viewer.sink.receive(), 51)) << "the stale stream was sent";
  EXPECT_EQ(viewer.sink.drain(), 0u);
  // Datagram 0 too, if the fan-out stopped between sending it and releasing its position.
  uint64_t skipped = relay.shm().stats().fanout.stale_skipped.load();
  EXPECT_TRUE(skipped == 50 || skipped == 51) << skipped;
  EXPECT_NE(relay.log().find("skipped"), std::string::npos) << relay.log();
}

TEST(Restart, ControlKilledLeavesTheStreamFlowingAndAReconnectTakesItOver) {
  Relay relay("control:\n  orphan_grace: 30\n");
  UdpSink sink;
  UdpSource source(relay.ingest_port());
  {
    Session s(relay.control_port());
    ASSERT_EQ(s.command("NAME ana"), "OK");
    ASSERT_EQ(s.command("CONECTAR " + std::to_string(sink.port())), "OK");
    ASSERT_EQ(relay.counters().subscribers().at(0).owner_name, "ana");
    pid_t old_pid = relay.child_pid(kControl);
    ASSERT_EQ(kill(old_pid, SIGKILL), 0);
    EXPECT_TRUE(s.closed_by_peer());
    ASSERT_TRUE(relay.wait_restarted(kControl, old_pid));
  }
  // The orphaned subscription keeps receiving, and has no owner's name any more.
  EXPECT_GT(deliver_eventually(source, sink, 1), 0);
  EXPECT_EQ(relay.counters().subscribers().at(0).owner_name, "");
  // The same client reconnects and subscribes the same port: it takes the subscription over.
  Session again(relay.control_port());
  ASSERT_EQ(again.command("NAME bob"), "OK");
  ASSERT_EQ(again.command("CONECTAR " + std::to_string(sink.port())), "OK");
  Counters c = relay.counters();  // adopted, not added: both figures of one moment
  EXPECT_EQ(c["control.orphans_adopted"], 1u);
  EXPECT_EQ(c["control.subscribers"], 1u);
  ASSERT_EQ(c.subscribers().size(), 1u);
  EXPECT_EQ(c.subscribers()[0].owner_name, "bob");  // the adopter's name
  source.send(test_payload(2));
  EXPECT_TRUE(is_payload(sink.receive(), 2));
  EXPECT_EQ(sink.drain(), 0u);  // one subscription, not two
  ASSERT_EQ(again.command("PAUSE"), "OK");
  source.send(test_payload(3));
  ASSERT_EQ(again.command("RESUME"), "OK");
  source.send(test_payload(4));
  EXPECT_TRUE(is_payload(sink.receive(), 4));
}

TEST(Restart, APausedOrphanPlaysAgainWhenItsClientReconnects) {
  Relay relay;
  UdpSink sink;
  {
    Session s(relay.control_port());
    ASSERT_EQ(s.command("CONECTAR " + std::to_string(sink.port())), "OK");
    ASSERT_EQ(s.command("PAUSE"), "OK");
    pid_t old_pid = relay.child_pid(kControl);
    ASSERT_EQ(kill(old_pid, SIGKILL), 0);
    EXPECT_TRUE(s.closed_by_peer());
    ASSERT_TRUE(relay.wait_restarted(kControl, old_pid));
  }
  Session again(relay.control_port());
  ASSERT_EQ(again.command("CONECTAR " + std::to_string(sink.port())), "OK");
  UdpSource source(relay.ingest_port());
  source.send(test_payload(7));
  EXPECT_TRUE(is_payload(sink.receive(), 7));  // CONECTAR's OK means playing
}

TEST(Restart, UnclaimedOrphansAreRemovedAfterTheGrace) {
  Relay relay("control:\n  orphan_grace: 1\n");
  Viewer viewer(relay);
  ASSERT_EQ(kill(relay.child_pid(kControl), SIGKILL), 0);
  EXPECT_TRUE(viewer.session.closed_by_peer());
  Stats& stats = relay.shm().stats();
  EXPECT_TRUE(wait_until([&] { return stats.control.orphans_expired.load() == 1u; }, 10000ms));
  EXPECT_EQ(stats.control.subscribers.load(), 0u);
}

}  // namespace

namespace {

TEST(Restart, AChildStoppedBySigtermFromOutsideIsRestartedNotTheRelay) {
  Relay relay;
  pid_t old_pid = relay.child_pid(kControl);
  ASSERT_EQ(kill(old_pid, SIGTERM), 0);
  ASSERT_TRUE(relay.wait_restarted(kControl, old_pid));
  Session s(relay.control_port());
  EXPECT_EQ(s.command("PING"), "OK PONG");
  EXPECT_EQ(relay.restarts(kControl), 1u);
}

// Heartbeats and deadlines are monotonic (common/clock.hpp): a step of the wall clock
// (NTP) must neither make a child look hung nor stop the watchdog. Their values are near
// CLOCK_MONOTONIC, decades away from CLOCK_REALTIME.
TEST(Restart, HeartbeatsAndOrphanDeadlinesFollowTheMonotonicClock) {
  Relay relay("control:\n  orphan_grace: 30\n");
  constexpr uint64_t kNear = 60 * kNsPerSecond;
  for (Role role : {kIngest, kFanout, kControl}) {
    uint64_t beat = relay.shm().process(role).heartbeat_ns.load();
    EXPECT_LT(beat > monotonic_ns() ? beat - monotonic_ns() : monotonic_ns() - beat, kNear) << role_name(role);
  }
  Viewer viewer(relay);
  ASSERT_EQ(kill(relay.child_pid(kControl), SIGKILL), 0);
  EXPECT_TRUE(viewer.session.closed_by_peer());
  SubscriberSlot& slot = relay.shm().subscribers()[0];
  ASSERT_TRUE(wait_until([&] { return slot.orphan_deadline_ns.load() != 0; }));
  uint64_t deadline = slot.orphan_deadline_ns.load();
  EXPECT_GT(deadline, monotonic_ns());
  EXPECT_LT(deadline, monotonic_ns() + 31 * kNsPerSecond);
}

TEST(Restart, AHungChildIsKilledAndRestarted) {
  Relay relay;
  pid_t old_pid = relay.child_pid(kIngest);
  ASSERT_EQ(kill(old_pid, SIGSTOP), 0);  // alive but silent: its heartbeat stops
  ASSERT_TRUE(relay.wait_restarted(kIngest, old_pid, 20000ms)) << relay.log();
  EXPECT_NE(relay.log().find("has not answered"), std::string::npos);
}

}  // namespace
