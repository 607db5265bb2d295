// Wall-clock steps (an NTP step, a wrong RTC fixed at boot) under a running relay: vrelayd
// runs under libfaketime (Debian package faketime) with an offset file this test rewrites,
// the monotonic clock left alone as the kernel leaves it. A step of +1 h, then of -2 h,
// while a stream and a viewer run: no child is killed, the source never counts as stalled,
// and PAUSE/RESUME cut exactly where they did before (issue 11.5).
#include <gtest/gtest.h>

#include <glob.h>

#include <array>
#include <fstream>

#include "clock.hpp"
#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

constexpr uint64_t kHour = 3600 * kNsPerSecond;

std::string faketime_library() {
  glob_t found{};
  std::string path;
  if (glob("/usr/lib/*/faketime/libfaketimeMT.so.1", 0, nullptr, &found) == 0 && found.gl_pathc) path = found.gl_pathv[0];
  globfree(&found);
  return path;
}

void set_offset(const std::string& file, const char* offset) {
  std::ofstream(file) << offset << "\n";
}

class ClockStep : public ::testing::Test {
 protected:
  void SetUp() override {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "libfaketime is an LD_PRELOAD library, which the sanitizers' runtimes must precede";
#endif
    library_ = faketime_library();
    if (library_.empty()) GTEST_SKIP() << "libfaketime is not installed (Debian package faketime)";
    offset_file_ = "/tmp/vrelay-clock-step-" + std::to_string(getpid());
    set_offset(offset_file_, "+0");
  }
  void TearDown() override {
    if (!offset_file_.empty()) unlink(offset_file_.c_str());
  }
  std::vector<std::string> environment() const {
    return {"LD_PRELOAD=" + library_, "FAKETIME_TIMESTAMP_FILE=" + offset_file_, "FAKETIME_NO_CACHE=1",
            "FAKETIME_DONT_FAKE_MONOTONIC=1"};
  }
  std::string library_, offset_file_;
};

TEST_F(ClockStep, NoStepKillsAChildStallsTheSourceOrMovesACutOff) {
  Relay relay("ingest:\n  stall_timeout: 1\n", {}, environment());
  Viewer viewer(relay);
  Session watcher(relay.control_port());  // hears EVENT SOURCE
  UdpSource source(relay.ingest_port());
  std::array<pid_t, 3> pids{relay.child_pid(kIngest), relay.child_pid(kFanout), relay.child_pid(kControl)};
  uint64_t next = 0;

  // Every datagram sent reaches the viewer, in order, for `span`: longer than the source's
  // stall timeout and than the supervisor's check interval.
  auto stream_for = [&](std::chrono::milliseconds span) {
    auto until = Clock::now() + span;
    while (Clock::now() < until) {
      source.send(test_payload(next));
      ASSERT_TRUE(is_payload(viewer.sink.receive(), next));
      ++next;
      ASSERT_FALSE(viewer.sink.receive(20ms)) << "a datagram twice";  // and paces the stream
    }
  };
  // PAUSE withholds what comes after its OK, RESUME sends what comes after its own.
  auto pause_and_resume = [&] {
    ASSERT_EQ(viewer.session.command("PAUSE"), "OK");
    source.send(test_payload(next++));
    // In ingest before RESUME: under the time shim the kernel's receive stamp is not
    // believed (the clocks differ by the step), so the stamp is when ingest read it.
    ASSERT_TRUE(wait_until([&] { return relay.shm().stats().ingest.datagrams.load() == next; }));
    ASSERT_EQ(viewer.session.command("RESUME"), "OK");
    source.send(test_payload(next));
    ASSERT_TRUE(is_payload(viewer.sink.receive(), next)) << "the first datagram after RESUME";
    ++next;
  };
  auto wall_seen_by_relay = [&] {  // the wall time ingest stamps its last datagram with
    return int64_t(relay.shm().stats().ingest.last_datagram_ns.load()) - int64_t(wall_ns());
  };

  ASSERT_NO_FATAL_FAILURE(stream_for(500ms));
  ASSERT_NO_FATAL_FAILURE(pause_and_resume());

  set_offset(offset_file_, "+3600");
  ASSERT_NO_FATAL_FAILURE(stream_for(2500ms));
  EXPECT_GT(wall_seen_by_relay(), int64_t(kHour) - int64_t(60 * kNsPerSecond)) << "the step did not reach vrelayd";
  ASSERT_NO_FATAL_FAILURE(pause_and_resume());
  ASSERT_NO_FATAL_FAILURE(stream_for(500ms));

  set_offset(offset_file_, "-3600");  // 2 h back
  ASSERT_NO_FATAL_FAILURE(stream_for(2500ms));
  EXPECT_LT(wall_seen_by_relay(), -int64_t(kHour) + int64_t(60 * kNsPerSecond)) << "the step did not reach vrelayd";
  ASSERT_NO_FATAL_FAILURE(pause_and_resume());
  ASSERT_NO_FATAL_FAILURE(stream_for(500ms));

  Counters c = relay.counters();  // restarts, stalls and processes after both steps, at one moment
  EXPECT_EQ(c["supervisor.child_restarts"], 0u) << relay.log();
  EXPECT_EQ((std::array<pid_t, 3>{c.process(kIngest).pid, c.process(kFanout).pid, c.process(kControl).pid}), pids);
  EXPECT_EQ(c["ingest.stalls"], 0u) << relay.log();
  EXPECT_EQ(viewer.sink.drain(), 0u);
  // The watcher heard the source go live once and never stall.
  while (auto event = watcher.next_event(0ms)) EXPECT_EQ(event->find("stalled"), std::string::npos) << *event;
}

}  // namespace
