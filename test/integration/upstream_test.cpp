// Relay cascades (issue 13.3): an edge vrelayd takes its stream from a core vrelayd's control
// address (ingest.upstream), keeps that subscription through the core's restarts, its own
// ingest's death and its reloads, backs off while the core is away, and says so everywhere
// (counters, STATS, the segment's header).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>

#include "counter_stream.hpp"
#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

// A TCP port free on 127.0.0.1 now (the cores listen on one the test chooses, to come back
// on it after a restart).
uint16_t free_tcp_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof a;
  uint16_t port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

// A core: the generator's counter stream, one datagram every 5 ms, its control on `port`.
std::unique_ptr<Relay> start_core(uint16_t port) {
  return std::make_unique<Relay>("ingest:\n  source: generator\n  interval_ms: 5\n",
                                 std::vector<std::string>{"--control", "127.0.0.1:" + std::to_string(port)});
}

// An edge of the core at `port`. Its ingest.allow leaves the core's address out: the
// upstream's address is allowed automatically, and the datagrams counted prove it.
std::string edge_yaml(uint16_t port, const std::string& more = "") {
  return "ingest:\n  upstream: 127.0.0.1:" + std::to_string(port) +
         "\n  allow: [192.0.2.0/24]\n  stall_timeout: 1\n" + more;
}

bool upstream_state_is(Relay& relay, uint64_t state, std::chrono::milliseconds limit = 5000ms) {
  return wait_until([&] { return relay.counters()["ingest.upstream_state"] == state; }, limit);
}

// The next counter datagram at the sink (nullopt when none comes in time).
std::optional<CounterDatagram> next_counter(UdpSink& sink, std::chrono::milliseconds limit = 5000ms) {
  auto got = sink.receive(limit);
  if (!got) return std::nullopt;
  return decode_counter(got->data(), got->size());
}

// Receives `count` datagrams, each the one after the one before (none lost, none twice);
// returns the last index, 0 on failure (the failure is reported).
uint64_t expect_consecutive(UdpSink& sink, uint64_t count, uint64_t first = 0) {
  uint64_t last = first;
  for (uint64_t i = 0; i < count; ++i) {
    auto datagram = next_counter(sink);
    if (!datagram) {
      ADD_FAILURE() << "datagram " << i << " of " << count << " did not come (last index " << last << ")";
      return 0;
    }
    if (last != 0 && datagram->index != last + 1) {
      ADD_FAILURE() << "index " << datagram->index << " after " << last;
      return 0;
    }
    last = datagram->index;
  }
  return last;
}

// The subscriptions of a relay to 127.0.0.1:port.
size_t subscriptions_to(Relay& relay, uint16_t port) {
  size_t count = 0;
  Counters counters = relay.counters();
  for (const SubscriberView& s : counters.subscribers()) count += s.address == "127.0.0.1" && s.port == port;
  return count;
}

// Waits for EVENT SOURCE <state>, skipping the other SOURCE events (the "live" of the
// first datagram comes before any outage).
bool source_event(Session& session, const std::string& state, std::chrono::milliseconds limit = 5000ms) {
  auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    auto event = session.wait_event("SOURCE", std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
    if (!event) return false;
    if (*event == "EVENT SOURCE " + state) return true;
  }
  return false;
}

std::string stats_field(Session& session, const std::string& key) {
  std::string reply = session.command("STATS");
  auto at = reply.find(" " + key + "=");
  if (at == std::string::npos) return "";
  auto end = reply.find(' ', at + 1);
  return reply.substr(at + key.size() + 2, end == std::string::npos ? std::string::npos : end - at - key.size() - 2);
}

// A core on a port of its own, an edge subscribed to it, and a viewer of the edge: what
// most tests here start from.
class Cascade : public ::testing::Test {
 protected:
  void SetUp() override {
    core_ = start_core(port_);
    edge_ = std::make_unique<Relay>(edge_yaml(port_));
    ASSERT_TRUE(upstream_state_is(*edge_, 2)) << edge_->log();
    viewer_ = std::make_unique<Viewer>(*edge_);
  }
  uint16_t port_ = free_tcp_port();
  std::unique_ptr<Relay> core_;
  std::unique_ptr<Relay> edge_;
  std::unique_ptr<Viewer> viewer_;
};

}  // namespace

// The whole path: core generator -> core fan-out -> edge ingest -> edge fan-out -> viewer,
// every datagram once and in order; both ends show the subscription.
TEST_F(Cascade, AnEdgeRelaysTheCoresStreamAndShowsItsSubscription) {
  uint16_t port = port_;
  auto& core = core_;
  Relay& edge = *edge_;
  Viewer& viewer = *viewer_;
  ASSERT_NE(expect_consecutive(viewer.sink, 300), 0u);

  Counters counters = edge.counters();
  EXPECT_EQ(counters["ingest.upstream_state"], 2u);
  EXPECT_EQ(counters["ingest.upstream_connects"], 1u);
  EXPECT_EQ(counters["ingest.upstream_losses"], 0u);
  EXPECT_EQ(counters["ingest.drops_foreign_sender"], 0u);  // the core is allowed without ingest.allow
  EXPECT_EQ(counters.snapshot().upstream_address, "127.0.0.1:" + std::to_string(port));
  EXPECT_STREQ(counters.snapshot().upstream_state(), "subscribed");
  EXPECT_NE(edge.log().find("may send the stream, in addition to ingest.allow"), std::string::npos) << edge.log();

  // The core has one subscription to the edge's ingest port, playing.
  ASSERT_EQ(subscriptions_to(*core, edge.ingest_port()), 1u);
  Counters core_counters = core->counters();
  for (const SubscriberView& s : core_counters.subscribers())
    if (s.port == edge.ingest_port()) {
      EXPECT_EQ(s.state, SubscriberState::kPlaying);
    }
  Session core_session(port);
  EXPECT_EQ(core_session.command("LIST").rfind("OK 2 guest-", 0), 0u);  // the edge's session and this one

  // STATS: the new field last, the state in words; the core has no upstream.
  std::string reply = viewer.session.command("STATS");
  EXPECT_EQ(reply.substr(reply.rfind(' ') + 1), "upstream=subscribed") << reply;
  reply = core_session.command("STATS");
  EXPECT_EQ(reply.substr(reply.rfind(' ') + 1), "upstream=none") << reply;
  viewer.session.command("FORMAT JSON");
  reply = viewer.session.command("STATS");
  EXPECT_NE(reply.find("\"upstream\":\"subscribed\""), std::string::npos) << reply;
}

// The core stops and a new one starts on the same port: the edge subscribes again within
// 3 s of its readiness; the edge's viewer keeps its subscription, hears the outage and the
// return, and receives the new core's stream.
TEST_F(Cascade, AnEdgeSubscribesAgainWhenTheCoreRestarts) {
  uint16_t port = port_;
  auto& core = core_;
  Relay& edge = *edge_;
  Viewer& viewer = *viewer_;
  uint64_t last = expect_consecutive(viewer.sink, 50);
  ASSERT_NE(last, 0u);

  ASSERT_EQ(core->stop(), 0);
  core.reset();
  ASSERT_TRUE(source_event(viewer.session, "stalled")) << edge.log();
  viewer.sink.drain();  // the old core's stream, all of it here by now
  EXPECT_GE(edge.counters()["ingest.upstream_losses"], 1u);
  EXPECT_NE(edge.counters()["ingest.upstream_state"], 2u);
  // (The stopping core may have taken one more subscription before its control stopped.)
  uint64_t connects = edge.counters()["ingest.upstream_connects"];

  core = start_core(port);
  auto ready = Clock::now();
  ASSERT_TRUE(wait_until([&] { return edge.counters()["ingest.upstream_connects"] == connects + 1; }, 3000ms))
      << edge.log();
  EXPECT_LE(Clock::now() - ready, 3000ms);
  auto live = viewer.session.wait_event("SOURCE", 5000ms);  // the next one: no other stall meanwhile
  ASSERT_TRUE(live) << edge.log();
  EXPECT_EQ(*live, "EVENT SOURCE live");

  // Every datagram after the outage is the new core's (the old one's were drained at the
  // stall), in order, from where the new core's count stood when the edge subscribed.
  auto datagram = next_counter(viewer.sink);
  ASSERT_TRUE(datagram);
  EXPECT_LE(datagram->index, core->counters()["ingest.generated"]);
  EXPECT_NE(expect_consecutive(viewer.sink, 100, datagram->index), 0u);
  // The viewer's subscription was never dropped: still the only one, its session open.
  EXPECT_EQ(subscriptions_to(edge, viewer.sink.port()), 1u);
  EXPECT_EQ(edge.counters()["control.subscribers"], 1u);
  EXPECT_EQ(subscriptions_to(*core, edge.ingest_port()), 1u);
}

// kill -9 of the edge's ingest: the supervisor starts a new one, which subscribes again
// (the killed one's session closed with it, and the core ended its subscription); the
// viewer keeps receiving and the core never holds two subscriptions to the edge.
TEST_F(Cascade, AKilledIngestSubscribesAgain) {
  auto& core = core_;
  Relay& edge = *edge_;
  Viewer& viewer = *viewer_;
  uint64_t last = expect_consecutive(viewer.sink, 50);
  ASSERT_NE(last, 0u);

  pid_t ingest = edge.child_pid(kIngest);
  ASSERT_GT(ingest, 0);
  ASSERT_EQ(kill(ingest, SIGKILL), 0);
  ASSERT_TRUE(edge.wait_restarted(kIngest, ingest));
  ASSERT_TRUE(wait_until([&] { return edge.counters()["ingest.upstream_connects"] == 2; })) << edge.log();
  EXPECT_EQ(edge.counters()["ingest.upstream_state"], 2u);
  EXPECT_EQ(subscriptions_to(*core, edge.ingest_port()), 1u);

  // The stream goes on, later in the core's count, without a gap from the new subscription
  // on (what the core sent between the kill and it is not relayed).
  viewer.sink.drain();
  auto datagram = next_counter(viewer.sink);
  ASSERT_TRUE(datagram) << edge.log();
  EXPECT_GT(datagram->index, last);
  EXPECT_NE(expect_consecutive(viewer.sink, 100, datagram->index), 0u);
  EXPECT_EQ(subscriptions_to(edge, viewer.sink.port()), 1u);
}

// kill -9 of the core's control process: the core keeps sending to the edge (an orphan
// subscription, control.orphan_grace), the edge's session drops, and its next CONECTAR,
// to the core's new control process, takes the orphan back: not one datagram lost.
TEST_F(Cascade, TheEdgeAdoptsItsOrphanAfterTheCoresControlDied) {
  auto& core = core_;
  Relay& edge = *edge_;
  Viewer& viewer = *viewer_;
  uint64_t last = expect_consecutive(viewer.sink, 20);
  ASSERT_NE(last, 0u);

  pid_t control = core->child_pid(kControl);
  ASSERT_GT(control, 0);
  ASSERT_EQ(kill(control, SIGKILL), 0);
  ASSERT_TRUE(core->wait_restarted(kControl, control));
  ASSERT_TRUE(wait_until([&] { return edge.counters()["ingest.upstream_connects"] == 2; })) << edge.log();
  EXPECT_EQ(core->counters()["control.orphans_adopted"], 1u);
  EXPECT_EQ(subscriptions_to(*core, edge.ingest_port()), 1u);
  EXPECT_NE(expect_consecutive(viewer.sink, 100, last), 0u);
}

// Nothing listens at the upstream's address: the edge runs, counts its failures, backs off
// (a bounded number of attempts), and subscribes as soon as a core appears.
TEST(Upstream, AnUnreachableUpstreamIsRetriedWithBackoff) {
  uint16_t port = free_tcp_port();
  Relay edge(edge_yaml(port));
  ASSERT_TRUE(wait_until([&] { return edge.counters()["ingest.upstream_losses"] >= 1; })) << edge.log();
  Counters first = edge.counters();
  auto from = Clock::now();
  // Refused at once on loopback: without the backoff (0.1, 0.2, 0.4 ... 2 s) this would
  // reach 20 in a few milliseconds. About 5 attempts fit in 3 s.
  EXPECT_FALSE(wait_until([&] { return edge.counters()["ingest.upstream_losses"] >= first["ingest.upstream_losses"] + 12; },
                          3000ms));
  Counters later = edge.counters();
  double elapsed = std::chrono::duration<double>(Clock::now() - from).count();
  uint64_t attempts = later["ingest.upstream_losses"] - first["ingest.upstream_losses"];
  EXPECT_GE(attempts, 2u) << "in " << elapsed << " s";
  EXPECT_LE(attempts, 8u) << "in " << elapsed << " s";
  EXPECT_EQ(later["ingest.upstream_connects"], 0u);
  EXPECT_NE(later["ingest.upstream_state"], 2u);
  Session session(edge.control_port());
  std::string state = stats_field(session, "upstream");
  EXPECT_TRUE(state == "retrying" || state == "connecting") << state;
  EXPECT_NE(edge.log().find("cannot connect"), std::string::npos) << edge.log();

  auto core = start_core(port);
  ASSERT_TRUE(upstream_state_is(edge, 2, 3000ms)) << edge.log();
  Viewer viewer(edge);
  EXPECT_NE(expect_consecutive(viewer.sink, 50), 0u);
}

// A refusal (here: the edge's ingest port outside the core's control.ports) is a loss too,
// retried with backoff, its reply in the log.
TEST(Upstream, ARefusedConectarIsLoggedAndRetried) {
  uint16_t port = free_tcp_port();
  auto core = std::make_unique<Relay>("control:\n  ports: 1025-1030\ningest:\n  source: generator\n",
                                      std::vector<std::string>{"--control", "127.0.0.1:" + std::to_string(port)});
  Relay edge(edge_yaml(port));
  ASSERT_TRUE(wait_until([&] { return edge.counters()["ingest.upstream_losses"] >= 2; })) << edge.log();
  EXPECT_EQ(edge.counters()["ingest.upstream_connects"], 0u);
  EXPECT_NE(edge.log().find("CONECTAR refused: ERR bad-port"), std::string::npos) << edge.log();
}

// A reload that names another upstream: the new ingest subscribes there, and the old core
// loses the edge's subscription (nothing left behind, nothing twice).
TEST(Upstream, AReloadMovesTheSubscriptionToTheNewUpstream) {
  uint16_t first_port = free_tcp_port();
  auto first = start_core(first_port);
  uint16_t second_port = free_tcp_port();
  auto second = start_core(second_port);
  Relay edge(edge_yaml(first_port));
  ASSERT_TRUE(upstream_state_is(edge, 2)) << edge.log();
  ASSERT_EQ(subscriptions_to(*first, edge.ingest_port()), 1u);
  Viewer viewer(edge);
  ASSERT_NE(expect_consecutive(viewer.sink, 20), 0u);

  // Another ingest key: the new ingest process subscribes to the same core again, once.
  std::ofstream(edge.config_path()) << edge_yaml(first_port, "  socket_buffer: 1048576\n");
  ASSERT_EQ(kill(edge.pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_until([&] { return edge.counters()["ingest.upstream_connects"] == 2; })) << edge.log();
  ASSERT_TRUE(upstream_state_is(edge, 2)) << edge.log();
  EXPECT_EQ(subscriptions_to(*first, edge.ingest_port()), 1u);

  std::ofstream(edge.config_path()) << edge_yaml(second_port);
  ASSERT_EQ(kill(edge.pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_until([&] { return edge.counters()["ingest.upstream_connects"] == 3; })) << edge.log();
  EXPECT_TRUE(wait_until([&] { return subscriptions_to(*first, edge.ingest_port()) == 0; })) << first->log();
  EXPECT_EQ(subscriptions_to(*second, edge.ingest_port()), 1u);
  EXPECT_EQ(edge.counters().snapshot().upstream_address, "127.0.0.1:" + std::to_string(second_port));
  EXPECT_EQ(subscriptions_to(edge, viewer.sink.port()), 1u);
  ASSERT_TRUE(next_counter(viewer.sink));

  // And without an upstream: none, and nothing left on the second core.
  std::ofstream(edge.config_path()) << "ingest:\n  stall_timeout: 1\n";
  ASSERT_EQ(kill(edge.pid(), SIGHUP), 0);
  EXPECT_TRUE(upstream_state_is(edge, 0)) << edge.log();
  EXPECT_TRUE(wait_until([&] { return subscriptions_to(*second, edge.ingest_port()) == 0; })) << second->log();
  EXPECT_EQ(edge.counters().snapshot().upstream_address, "");
}

// Configuration errors name the key and start nothing.
TEST(Upstream, ConfigurationErrorsNameTheKey) {
  struct Case {
    const char* yaml;
    const char* expected;
  } cases[] = {
      {"ingest:\n  upstream: core.example\n", "ingest.upstream: 'core.example': expected HOST:PORT"},
      {"ingest:\n  upstream: 127.0.0.1:0\n", "ingest.upstream: '127.0.0.1:0': the port must be a number from 1 to 65535"},
      {"ingest:\n  upstream: 127.0.0.1:99999\n", "ingest.upstream"},
      {"ingest:\n  upstream: \"[::1]\"\n", "ingest.upstream: '[::1]': expected HOST:PORT"},
      {"ingest:\n  upstream: 127.0.0.1:7700\n  source: generator\n", "ingest.upstream: an edge takes its stream"},
  };
  for (const Case& c : cases) {
    std::string path = "/tmp/vrelay-upstream-" + std::to_string(getpid()) + ".yaml";
    std::ofstream(path) << c.yaml;
    ProgramResult result = run_vrelayd({"-F", "--check-config", "-c", path});
    unlink(path.c_str());
    EXPECT_NE(result.status, 0) << c.yaml;
    EXPECT_NE(result.output().find(c.expected), std::string::npos) << c.yaml << result.output();
  }
}
