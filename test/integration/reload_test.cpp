// Live reload (issue 11.4): SIGHUP, and a moderator's RELOAD, read the file in full first; an
// invalid file changes nothing and is logged with file, line and key; a valid one is in
// force at once, listen addresses included, with no session, subscriber or datagram lost.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>

#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

size_t descriptors(pid_t pid) {
  size_t count = 0;
  if (DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
    closedir(dir);
  }
  return count;
}

size_t rss_kib(pid_t pid) {
  std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
  auto at = status.find("VmRSS:");
  return at == std::string::npos ? 0 : std::stoul(status.substr(at + 6));
}

constexpr const char* kBase =
    "control:\n"
    "  max_line: 100\n"
    "fanout:\n"
    "  max_lag: 2000\n";

void rewrite(Relay& relay, const std::string& yaml) { std::ofstream(relay.config_path()) << yaml; }

// Sends datagrams first..last-1 and expects each at the viewer, in order, once.
void expect_stream(Viewer& viewer, UdpSource& source, uint64_t first, uint64_t last) {
  for (uint64_t i = first; i < last; ++i) source.send(test_payload(i));
  for (uint64_t i = first; i < last; ++i) ASSERT_TRUE(is_payload(viewer.sink.receive(), i)) << i;
}

uint16_t free_tcp_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length);
  close(fd);
  return ntohs(a.sin_port);
}

class Reload : public ::testing::Test {
 protected:
  void rewrite(const std::string& yaml) { ::rewrite(relay, yaml); }
  bool hangup() { return vrelay::test::hangup(relay); }
  supervisor_stats& counters() { return relay.shm().stats().supervisor; }
  Relay relay{kBase};
};

TEST_F(Reload, AValidFileIsInForceAtOnceAndNobodyIsDropped) {
  Viewer viewer(relay);
  Session chat(relay.control_port());
  ASSERT_EQ(chat.command("NAME ana"), "OK");
  UdpSource source(relay.ingest_port());
  ASSERT_NO_FATAL_FAILURE(expect_stream(viewer, source, 0, 50));
  std::string long_line = "ECHO " + std::string(150, 'x');
  EXPECT_TRUE(starts_with(chat.command(long_line), "ERR line-too-long"));
  pid_t control = relay.child_pid(kControl), fanout = relay.child_pid(kFanout), ingest = relay.child_pid(kIngest);

  // A key of control's, one of the fan-out's, and the HTTP endpoint turned on.
  rewrite("control:\n  max_line: 1000\nfanout:\n  max_lag: 3000\nhttp:\n  listen: 127.0.0.1:0\n");
  for (uint64_t i = 50; i < 100; ++i) source.send(test_payload(i));  // in flight across the reload
  ASSERT_TRUE(hangup()) << relay.log();
  for (uint64_t i = 50; i < 100; ++i) ASSERT_TRUE(is_payload(viewer.sink.receive(), i)) << i;
  ASSERT_NO_FATAL_FAILURE(expect_stream(viewer, source, 100, 150));
  EXPECT_EQ(viewer.sink.drain(), 0u);

  ASSERT_TRUE(wait_until([&] { return starts_with(chat.command(long_line), "OK"); })) << "control.max_line not in force";
  EXPECT_EQ(relay.child_pid(kControl), control) << "control was replaced: its sessions would have ended";
  EXPECT_EQ(relay.child_pid(kIngest), ingest) << "nothing of ingest's changed";
  ASSERT_TRUE(wait_until([&] { return relay.child_pid(kFanout) != fanout; })) << "the fan-out keeps its old keys";
  ASSERT_TRUE(wait_until([&] { return relay.shm().header().http_address[0] != '\0'; })) << relay.log();
  EXPECT_EQ(viewer.session.command("PING"), "OK PONG");
  Counters c = relay.counters();
  EXPECT_EQ(c["control.subscribers"], 1u);
  EXPECT_EQ(c["supervisor.child_restarts"], 0u) << "a replacement is not a crash";
}

TEST_F(Reload, AnInvalidFileChangesNothingAndSaysWhereAndWhy) {
  Session s(relay.control_port());
  rewrite("control:\n  max_line: 1000\nfanout:\n  max_lag: nope\n");
  EXPECT_FALSE(hangup());
  EXPECT_EQ(counters().reload_failures.load(), 1u);
  std::string log = relay.log();
  EXPECT_NE(log.find(relay.config_path() + ":4: fanout.max_lag:"), std::string::npos) << log;
  EXPECT_NE(log.find("the configuration in force stays"), std::string::npos) << log;
  EXPECT_TRUE(starts_with(s.command("ECHO " + std::string(150, 'x')), "ERR line-too-long")) << "half of it applied";

  unlink(relay.config_path().c_str());  // unreadable
  EXPECT_FALSE(hangup());
  EXPECT_EQ(s.command("PING"), "OK PONG");
  rewrite(kBase);  // for the relay's own cleanup
}

// The supervisor binds the new address and hands it to a new ingest process; the old one
// is closed. The viewer never notices.
TEST(ReloadAddresses, ANewIngestAddressIsBoundAndHandedOver) {
  uint16_t first = free_udp_port(), second = free_udp_port();
  Relay relay(std::string(kBase) + "ingest:\n  listen: 127.0.0.1:" + std::to_string(first) + "\n");
  Viewer viewer(relay);
  UdpSource old_source(first);
  ASSERT_NO_FATAL_FAILURE(expect_stream(viewer, old_source, 0, 10));
  pid_t ingest = relay.child_pid(kIngest);
  rewrite(relay, std::string(kBase) + "ingest:\n  listen: 127.0.0.1:" + std::to_string(second) + "\n");
  ASSERT_TRUE(hangup(relay)) << relay.log();
  EXPECT_EQ(std::string(relay.shm().header().ingest_address), "127.0.0.1:" + std::to_string(second));
  UdpSource new_source(second);
  ASSERT_NO_FATAL_FAILURE(expect_stream(viewer, new_source, 10, 30));
  EXPECT_NE(relay.child_pid(kIngest), ingest);
  // Nothing holds the old port any more: it can be bound again.
  int probe = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(first);
  EXPECT_TRUE(wait_until([&] { return bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0; }));
  close(probe);
  EXPECT_EQ(viewer.session.command("PING"), "OK PONG");
}

// A new control address: control is replaced (its sessions end; that is the one key that
// costs them), the subscriptions flow on as orphans and a session on the new address takes
// its own back.
TEST(ReloadAddresses, ANewControlAddressKeepsEverySubscriptionFlowing) {
  uint16_t first = free_tcp_port(), second = free_tcp_port();
  Relay relay(std::string(kBase) + "control:\n  listen: 127.0.0.1:" + std::to_string(first) + "\n");
  Viewer viewer(relay);
  UdpSource source(relay.ingest_port());
  ASSERT_NO_FATAL_FAILURE(expect_stream(viewer, source, 0, 10));
  rewrite(relay, std::string(kBase) + "control:\n  listen: 127.0.0.1:" + std::to_string(second) + "\n");
  ASSERT_TRUE(hangup(relay)) << relay.log();
  EXPECT_TRUE(viewer.session.closed_by_peer());
  ASSERT_NO_FATAL_FAILURE(expect_stream(viewer, source, 10, 30));  // an orphan, still sent to
  EXPECT_EQ(std::string(relay.shm().header().control_address), "127.0.0.1:" + std::to_string(second));
  ASSERT_TRUE(wait_until([&] { return relay.shm().process(kControl).state.load() == uint32_t(ProcessState::kReady); }));
  Session again(second);
  EXPECT_EQ(again.command("CONECTAR " + std::to_string(viewer.sink.port())), "OK");
  EXPECT_EQ(relay.shm().stats().control.orphans_adopted.load(), 1u);
  ASSERT_NO_FATAL_FAILURE(expect_stream(viewer, source, 30, 40));
}

// New sizes of the shared memory (the table, the ring, its slots): every process starts again
// on a new segment that carries the state over. Sessions end as for a new control address;
// every subscription flows on as an orphan, no datagram is lost, no counter starts over.
TEST(ReloadSizes, NewSizesOfTheSharedMemoryAreInForceAndTheStreamFlowsOn) {
  const std::string small = std::string(kBase) + "ingest:\n  ring_slots: 256\n  ring_bytes: 0\n" +
                            "fanout:\n  max_subscribers: 8\n";
  Relay relay(small);
  Viewer viewer(relay);
  Session chat(relay.control_port());
  ASSERT_EQ(chat.command("NAME ana"), "OK");
  UdpSource source(relay.ingest_port());
  ASSERT_NO_FATAL_FAILURE(expect_stream(viewer, source, 0, 50));
  pid_t supervisor = relay.pid(), control = relay.child_pid(kControl);
  ASSERT_EQ(relay.shm().header().ring_slots, 256u);

  rewrite(relay, std::string(kBase) + "ingest:\n  ring_slots: 1024\n  ring_bytes: 0\n  max_datagram: 2000\n" +
                     "fanout:\n  max_subscribers: 32\n");
  for (uint64_t i = 50; i < 100; ++i) source.send(test_payload(i));  // in flight across the resize
  ASSERT_TRUE(hangup(relay)) << relay.log();
  EXPECT_TRUE(viewer.session.closed_by_peer()) << "control started again on the new segment";
  for (uint64_t i = 50; i < 100; ++i) ASSERT_TRUE(is_payload(viewer.sink.receive(), i)) << i << "\n" << relay.log();
  ASSERT_TRUE(wait_until([&] { return relay.shm().header().ring_slots == 1024; })) << relay.log();
  const Header& h = relay.shm().header();
  EXPECT_EQ(h.max_subscribers, 32u);
  EXPECT_EQ(h.max_datagram, 2000u);
  EXPECT_EQ(h.supervisor_pid, supervisor);
  EXPECT_EQ(std::string(h.control_address), "127.0.0.1:" + std::to_string(relay.control_port()));
  ASSERT_TRUE(wait_until([&] { return relay.shm().process(kControl).state.load() == uint32_t(ProcessState::kReady); }));
  EXPECT_NE(relay.child_pid(kControl), control);
  ASSERT_NO_FATAL_FAILURE(expect_stream(viewer, source, 100, 150));  // an orphan, still sent to

  // Its session takes it back; a new viewer finds room in the new table.
  Session again(relay.control_port());
  EXPECT_EQ(again.command("CONECTAR " + std::to_string(viewer.sink.port())), "OK");
  Viewer newcomer(relay);
  ASSERT_NO_FATAL_FAILURE(expect_stream(newcomer, source, 150, 160));
  for (uint64_t i = 150; i < 160; ++i) ASSERT_TRUE(is_payload(viewer.sink.receive(), i)) << i;
  EXPECT_EQ(viewer.sink.drain(), 0u);
  Counters c = relay.counters();
  EXPECT_EQ(c["ingest.datagrams"], 160u) << "the counters carried over";
  EXPECT_EQ(c["supervisor.reloads"], 1u);
  EXPECT_EQ(c["control.orphans_adopted"], 1u);
  EXPECT_EQ(c["supervisor.child_restarts"], 0u) << "a resize is not a crash";
  EXPECT_NE(relay.log().find("shared memory resized: 32 subscribers, 1024 ring slots of 2000 bytes; "
                             "subscriptions kept: 1, datagrams kept: "),
            std::string::npos)
      << relay.log();
}

// A table smaller than the subscriptions in use is refused before anything changes.
TEST(ReloadSizes, ATableTooSmallForTheSubscriptionsIsRefused) {
  Relay relay(std::string(kBase) + "fanout:\n  max_subscribers: 4\n");
  Viewer a(relay), b(relay), c(relay);
  UdpSource source(relay.ingest_port());
  rewrite(relay, std::string(kBase) + "fanout:\n  max_subscribers: 2\n");
  EXPECT_FALSE(hangup(relay));
  EXPECT_NE(relay.log().find("fanout.max_subscribers: 2 is fewer than the 3 subscriptions in use"), std::string::npos)
      << relay.log();
  EXPECT_EQ(relay.shm().header().max_subscribers, 4u);
  for (uint64_t i = 0; i < 5; ++i) source.send(test_payload(i));
  for (Viewer* v : {&a, &b, &c})
    for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(is_payload(v->sink.receive(), i)) << i;
  EXPECT_EQ(a.session.command("PING"), "OK PONG") << "its session did not end";
  rewrite(relay, kBase);
}

TEST_F(Reload, RELOADIsAModeratorsCommandAndAnswersWithTheOutcome) {
  std::string token = "/tmp/vrelay-reload-token-" + std::to_string(getpid());
  std::ofstream(token) << "reload-Token-77\n";
  rewrite(std::string(kBase) + "moderators:\n  token_files: [" + token + "]\n");
  ASSERT_TRUE(hangup());
  // Control applies its keys once the supervisor has put the file in force: wait for it.
  ASSERT_TRUE(wait_until([&] { return relay.log().find("reload: the control settings are in force") != std::string::npos; }));
  Session s(relay.control_port());
  EXPECT_TRUE(starts_with(s.command("RELOAD"), "ERR forbidden"));
  ASSERT_EQ(s.command("AUTH reload-Token-77"), "OK");
  uint64_t done = counters().reloads.load();
  EXPECT_EQ(s.command("RELOAD"), "OK");
  EXPECT_EQ(counters().reloads.load(), done + 1);
  rewrite("control:\n  max_line: 5\n");
  std::string refused = s.command("RELOAD");
  EXPECT_TRUE(starts_with(refused, "ERR reload-failed " + relay.config_path() + ":2: control.max_line:")) << refused;
  EXPECT_EQ(s.command("PING"), "OK PONG");
  unlink(token.c_str());
}

// 1,000 reloads with a stream and a viewer: every other one replaces the fan-out. No
// datagram lost or doubled, no descriptor or memory kept.
TEST_F(Reload, AThousandReloadsUnderLoadKeepEveryDatagramAndNoResource) {
  Viewer viewer(relay);
  UdpSource source(relay.ingest_port());
  ASSERT_NO_FATAL_FAILURE(expect_stream(viewer, source, 0, 10));
  pid_t supervisor = relay.pid(), control = relay.child_pid(kControl), fanout = relay.child_pid(kFanout);
  size_t fds_supervisor = 0, fds_control = 0;
  [[maybe_unused]] size_t rss_supervisor = 0, rss_control = 0;  // not judged under the sanitizers
  uint64_t next = 10;
  for (int i = 0; i < 1000; ++i) {
    if (i == 100) {  // measured once the allocators have warmed up: a leak grows on, they do not
      fds_supervisor = descriptors(supervisor), fds_control = descriptors(control);
      rss_supervisor = rss_kib(supervisor), rss_control = rss_kib(control);
    }
    rewrite(i % 2 ? "control:\n  max_line: 100\nfanout:\n  max_lag: 1500\n" : kBase);
    for (int k = 0; k < 5; ++k) source.send(test_payload(next + uint64_t(k)));
    ASSERT_TRUE(hangup()) << i << "\n" << relay.log();
    for (int k = 0; k < 5; ++k, ++next) ASSERT_TRUE(is_payload(viewer.sink.receive(), next)) << "reload " << i;
  }
  EXPECT_EQ(viewer.sink.drain(), 0u);
  EXPECT_EQ(relay.child_pid(kControl), control);
  EXPECT_NE(relay.child_pid(kFanout), fanout) << "the fan-out's key changed: it is replaced";
  EXPECT_EQ(viewer.session.command("PING"), "OK PONG");
  EXPECT_LE(descriptors(supervisor), fds_supervisor);
  EXPECT_LE(descriptors(control), fds_control + 2);  // a session thread may be mid-start
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)  // their quarantine and shadow grow by design
  EXPECT_LE(rss_kib(supervisor), rss_supervisor + 256) << "KiB after 900 reloads";
  EXPECT_LE(rss_kib(control), rss_control + 512) << "KiB after 900 reloads";
#endif
  EXPECT_EQ(relay.shm().stats().supervisor.child_restarts.load(), 0u);
}

}  // namespace
