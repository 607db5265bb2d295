// Integration tests of the fan-out's connected sockets and UDP GSO: every datagram of mixed
// sizes arrives byte for byte and in order, with GSO and without; the PAUSE/RESUME cut-offs
// stay exact inside one GSO batch; viewers see one source address; a killed fan-out loses
// nothing; a viewer whose port is closed is counted, paused and told.
//
// Stopping the fan-out (SIGSTOP) while the source sends makes the datagrams wait in the ring,
// so the fan-out meets them as one batch: runs for GSO, whatever the machine's speed.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

// Sizes that break GSO runs in every way: a long run, a short datagram closing it, one
// byte, the largest datagram, a run of another size.
constexpr uint32_t kSizes[] = {1316, 1316, 1316, 1316, 188, 1316, 1316, 1, 1500, 1500, 1316, 188, 188, 188, 1472};

// Datagram i: kSizes[i % 15] bytes, its index in the first bytes, then bytes derived from it.
std::string sized_payload(uint64_t index) {
  std::string p(kSizes[index % std::size(kSizes)], '\0');
  for (size_t k = 0; k < p.size(); ++k) p[k] = char(k < 8 ? index >> (8 * k) : (index * 31 + k) & 0xff);
  return p;
}

struct Stopped {  // the fan-out stopped for the scope's life: what is sent waits in the ring
  explicit Stopped(Relay& relay) : pid(relay.child_pid(kFanout)) { EXPECT_EQ(kill(pid, SIGSTOP), 0); }
  ~Stopped() { kill(pid, SIGCONT); }
  pid_t pid;
};

// Names a received datagram briefly (its index if it has one, and its size) for a failure.
std::string describe(const std::string& got) {
  uint64_t index = 0;
  std::memcpy(&index, got.data(), std::min<size_t>(8, got.size()));
  return std::to_string(got.size()) + " bytes, index field " + std::to_string(index);
}

// Every datagram of `indices` arrives at `sink`, identical and in that order, and nothing more.
void expect_exactly(UdpSink& sink, const std::vector<uint64_t>& indices) {
  for (uint64_t i : indices) {
    auto got = sink.receive();
    ASSERT_TRUE(got) << "datagram " << i << " never arrived at port " << sink.port();
    ASSERT_TRUE(*got == sized_payload(i)) << "datagram " << i << " differs or is out of order at port " << sink.port()
                                          << ": got " << describe(*got);
  }
  EXPECT_EQ(sink.drain(), 0u) << "extra datagrams at port " << sink.port();
}

std::vector<uint64_t> range(uint64_t first, uint64_t end) {
  std::vector<uint64_t> out;
  for (uint64_t i = first; i < end; ++i) out.push_back(i);
  return out;
}

class MixedSizes : public ::testing::TestWithParam<bool> {};

TEST_P(MixedSizes, EveryDatagramArrivesIdenticalAndInOrder) {
  bool gso = GetParam();
  Relay relay(std::string("fanout:\n  gso: ") + (gso ? "on" : "off") + "\n");
  Viewer viewers[3] = {Viewer(relay), Viewer(relay), Viewer(relay)};
  UdpSource source(relay.ingest_port());
  Stats& stats = relay.shm().stats();
  uint64_t bytes = 0;
  {
    Stopped stopped(relay);  // a batch of 1,500 datagrams: 12 ring batches of runs
    for (uint64_t i = 0; i < 1500; ++i) {
      source.send(sized_payload(i));
      bytes += kSizes[i % std::size(kSizes)];
    }
    ASSERT_TRUE(wait_until([&] { return stats.ingest.datagrams.load() == 1500; }));
  }
  for (Viewer& v : viewers) expect_exactly(v.sink, range(0, 1500));
  // And live, a datagram at a time.
  for (uint64_t i = 1500; i < 1800; ++i) {
    source.send(sized_payload(i));
    bytes += kSizes[i % std::size(kSizes)];
  }
  for (Viewer& v : viewers) expect_exactly(v.sink, range(1500, 1800));

  ASSERT_TRUE(wait_until([&] { return stats.fanout.sent_datagrams.load() == 3 * 1800u; }));
  Counters c = relay.counters();  // the figures of one moment, the subscribers' included
  EXPECT_EQ(c["fanout.sent_bytes"], 3 * bytes);
  EXPECT_EQ(c["fanout.send_errors"], 0u);
  EXPECT_EQ(c["fanout.sockets"], 3u);
  EXPECT_EQ(c["fanout.gso"], gso ? 1u : 0u);
  if (gso) {
    EXPECT_GT(c["fanout.gso_sends"], 0u);
    // The stopped batch went in a few sends per viewer, not one entry per datagram.
    EXPECT_LT(c["fanout.batches"], 3 * 300u + 3 * 100u);
  } else {
    EXPECT_EQ(c["fanout.gso_sends"], 0u);
  }
  int playing = 0;
  for (const SubscriberView& sub : c.subscribers()) {
    if (sub.state != SubscriberState::kPlaying) continue;
    ++playing;
    EXPECT_EQ(sub.datagrams, 1800u);
    EXPECT_EQ(sub.bytes, bytes);
    EXPECT_EQ(sub.errors, 0u);
  }
  EXPECT_EQ(playing, 3);
}

INSTANTIATE_TEST_SUITE_P(Fanout, MixedSizes, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Gso" : "NoGso"; });

TEST(Fanout, PauseAndResumeCutOffsAreExactInsideOneBatch) {
  Relay relay;
  Viewer pausing(relay), watching(relay);
  UdpSource source(relay.ingest_port());
  Stats& stats = relay.shm().stats();
  // The fan-out meets datagrams from before and after each command in one batch.
  auto batch = [&](uint64_t first, uint64_t end, const char* command_midway) {
    Stopped stopped(relay);
    uint64_t middle = (first + end) / 2;
    for (uint64_t i = first; i < middle; ++i) source.send(sized_payload(i));
    ASSERT_TRUE(wait_until([&] { return stats.ingest.datagrams.load() == middle; }));
    ASSERT_EQ(pausing.session.command(command_midway), "OK");
    for (uint64_t i = middle; i < end; ++i) source.send(sized_payload(i));
    ASSERT_TRUE(wait_until([&] { return stats.ingest.datagrams.load() == end; }));
  };
  batch(0, 200, "INTERRUMPIR");
  expect_exactly(pausing.sink, range(0, 100));
  expect_exactly(watching.sink, range(0, 200));
  batch(200, 400, "CONTINUAR");
  expect_exactly(pausing.sink, range(300, 400));
  expect_exactly(watching.sink, range(200, 400));
}

// The port the viewer's next datagram came from; 0 if none came within 5 s.
uint16_t from_port(Viewer& viewer) {
  uint16_t port = 0;
  viewer.sink.receive(5000ms, &port);
  return port;
}

TEST(Fanout, EveryViewerSeesTheOneSourceAddressAlsoAfterARestart) {
  Relay relay;
  std::string address = relay.shm().header().fanout_address;
  uint16_t fanout_port = uint16_t(std::atoi(address.substr(address.rfind(':') + 1).c_str()));
  ASSERT_NE(fanout_port, 0) << address;
  Viewer a(relay), b(relay);
  UdpSource source(relay.ingest_port());
  source.send(sized_payload(0));
  EXPECT_EQ(from_port(a), fanout_port);
  EXPECT_EQ(from_port(b), fanout_port);

  pid_t old = relay.child_pid(kFanout);
  ASSERT_EQ(kill(old, SIGKILL), 0);
  ASSERT_TRUE(relay.wait_restarted(kFanout, old));
  source.send(sized_payload(1));
  EXPECT_EQ(from_port(a), fanout_port);
  EXPECT_EQ(from_port(b), fanout_port);
}

TEST(Fanout, KilledMidStreamLosesNothingAndRepeatsAtMostOneBatch) {
  Relay relay;
  Viewer viewers[4] = {Viewer(relay), Viewer(relay), Viewer(relay), Viewer(relay)};
  UdpSource source(relay.ingest_port());
  Stats& stats = relay.shm().stats();
  pid_t old = relay.child_pid(kFanout);
  {
    Stopped stopped(relay);
    for (uint64_t i = 0; i < 3000; ++i) source.send(sized_payload(i));
    ASSERT_TRUE(wait_until([&] { return stats.ingest.datagrams.load() == 3000; }));
  }
  // Killed once it is under way, somewhere in the middle of the 3,000.
  ASSERT_TRUE(wait_until([&] { return stats.fanout.sent_datagrams.load() > 0; }));
  ASSERT_EQ(kill(old, SIGKILL), 0);
  ASSERT_TRUE(relay.wait_restarted(kFanout, old));
  for (uint64_t i = 3000; i < 3100; ++i) source.send(sized_payload(i));

  for (Viewer& v : viewers) {
    // In order, each once, but for the one batch the killed process may have sent before it
    // recorded so (at most 128 datagrams, sent again).
    uint64_t next = 0, repeated = 0;
    while (next < 3100) {
      auto got = v.sink.receive();
      ASSERT_TRUE(got) << "datagram " << next << " never arrived at port " << v.sink.port();
      if (*got == sized_payload(next)) {
        ++next;
        continue;
      }
      bool earlier = false;
      for (uint64_t i = next > 128 ? next - 128 : 0; i < next && !earlier; ++i) earlier = *got == sized_payload(i);
      ASSERT_TRUE(earlier) << "datagram " << next << " differs at port " << v.sink.port() << ": got " << describe(*got);
      ++repeated;
    }
    EXPECT_LE(repeated, 128u);
    EXPECT_EQ(v.sink.drain(), 0u);
  }
}

// A port nobody listens on (bound, then closed).
uint16_t closed_port() {
  UdpSink sink;
  return sink.port();
}

TEST(Fanout, AViewerWhosePortIsClosedIsCountedPausedAndToldWhileOthersLoseNothing) {
  Relay relay("fanout:\n  unreachable_pause: 1\n");
  Viewer watching(relay);
  Session gone(relay.control_port()), json(relay.control_port());
  uint16_t port = closed_port();
  ASSERT_EQ(gone.command("CONECTAR " + std::to_string(port)), "OK");
  UdpSource source(relay.ingest_port());
  uint64_t sent = 0;
  // About 100 datagrams a second until the event comes (after 1 s of refusals), 10 s at most.
  auto stream_until_told = [&](Session& session) {
    std::optional<std::string> event;
    for (auto deadline = Clock::now() + 10s; !event && Clock::now() < deadline;) {
      source.send(sized_payload(sent++));
      event = session.wait_event("UNREACHABLE", 10ms);
    }
    return event;
  };
  ASSERT_EQ(stream_until_told(gone), "EVENT UNREACHABLE " + std::to_string(port));
  for (uint64_t i = 0; i < 50; ++i) source.send(sized_payload(sent++));

  expect_exactly(watching.sink, range(0, sent));
  // Its counters and the fan-out's, compared at one moment.
  auto subscriber_at = [&](const Counters& c) -> std::optional<SubscriberView> {
    for (const SubscriberView& sub : c.subscribers())
      if (sub.port == port) return sub;
    return std::nullopt;
  };
  Counters c = relay.counters();
  std::optional<SubscriberView> paused = subscriber_at(c);
  ASSERT_TRUE(paused);
  EXPECT_EQ(paused->state, SubscriberState::kPaused);
  EXPECT_GT(paused->refusals, 0u);
  EXPECT_GE(paused->errors, paused->refusals);
  EXPECT_EQ(c["fanout.unreachable"], 1u);
  EXPECT_EQ(c["fanout.refusals"], paused->refusals);
  EXPECT_NE(gone.command("STATS").find("refusals="), std::string::npos);

  // CONTINUAR plays it again; the port is still closed, so it is found unreachable again.
  ASSERT_EQ(gone.command("CONTINUAR"), "OK");
  std::optional<SubscriberView> resumed = subscriber_at(relay.counters());
  ASSERT_TRUE(resumed);
  EXPECT_EQ(resumed->state, SubscriberState::kPlaying);
  ASSERT_EQ(json.command("FORMAT JSON"), R"({"ok":true,"text":""})");
  ASSERT_EQ(gone.command("DESCONECTAR"), "OK");
  uint16_t json_port = closed_port();
  ASSERT_EQ(json.command("CONECTAR " + std::to_string(json_port)), R"({"ok":true,"text":""})");
  EXPECT_EQ(stream_until_told(json), R"({"event":"unreachable","port":)" + std::to_string(json_port) + "}");
  EXPECT_EQ(watching.session.command("PING"), "OK PONG");
  EXPECT_NE(relay.log().find("refused every datagram"), std::string::npos);
}

TEST(Fanout, RefusalsThatStopBeforeThePauseOnlyCount) {
  Relay relay("fanout:\n  unreachable_pause: 30\n");
  Session s(relay.control_port());
  uint16_t port = closed_port();
  ASSERT_EQ(s.command("CONECTAR " + std::to_string(port)), "OK");
  UdpSource source(relay.ingest_port());
  Stats& stats = relay.shm().stats();
  for (uint64_t i = 0; i < 20 && stats.fanout.refusals.load() < 3; ++i) {
    source.send(sized_payload(i));
    wait_until([&] { return stats.fanout.datagrams.load() > i; });
  }
  EXPECT_GE(stats.fanout.refusals.load(), 1u);
  // The port opens: the same viewer now receives, and nothing paused it.
  ASSERT_EQ(s.command("DESCONECTAR"), "OK");
  Viewer late(relay);  // another port: the closed one may have been taken by someone else meanwhile
  source.send(sized_payload(100));
  auto got = late.sink.receive();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, sized_payload(100));
  EXPECT_EQ(stats.fanout.unreachable.load(), 0u);
}

TEST(Fanout, MaxBatchDelayGathersWhatArrivesMeanwhile) {
  Relay relay("fanout:\n  max_batch_delay: 200000\n");  // 0.2 s
  Viewer viewer(relay);
  UdpSource source(relay.ingest_port());
  for (uint64_t i = 0; i < 20; ++i) source.send(sized_payload(i));
  expect_exactly(viewer.sink, range(0, 20));
  // 20 datagrams sent within far less than 0.2 s left in fewer sends than datagrams.
  EXPECT_LT(relay.shm().stats().fanout.batches.load(), 20u);
}

TEST(Fanout, TooFewDescriptorsForMaxSubscribersIsRefusedAtStart) {
  // 30,000 subscribers need 30,064 descriptors; under a hard limit of 4,096 vrelayd cannot
  // get them (unless it may raise the hard limit: CAP_SYS_RESOURCE).
  std::string config = "/tmp/vrelay-test-" + std::to_string(getpid()) + "-fd.yaml";
  { std::ofstream(config) << "fanout:\n  max_subscribers: 30000\n"; }
  std::string instance = "fd-" + std::to_string(getpid());
  // bash sets the limit (soft and hard) and becomes vrelayd.
  Program vrelayd({"/bin/bash", "-c", "ulimit -n 4096 && exec \"$@\"", "bash", VRELAYD_PATH, "-F", "--instance", instance,
                   "--control", "127.0.0.1:0", "--ingest", "127.0.0.1:0", "-c", config});
  auto started = [&] { return vrelayd.out().find("vrelayd ready ") != std::string::npos; };
  wait_until([&] { return started() || !vrelayd.running(); }, 10000ms);
  if (started()) {
    vrelayd.signal(SIGTERM);
    vrelayd.wait();
    unlink(config.c_str());
    GTEST_SKIP() << "this process may raise its descriptor limit";
  }
  int status = vrelayd.wait();
  unlink(config.c_str());
  std::string output = vrelayd.out() + vrelayd.err();
  EXPECT_NE(output.find("fanout.max_subscribers=30000 needs 30064 descriptors"), std::string::npos) << output;
  EXPECT_EQ(status, 1) << output;
}

}  // namespace
