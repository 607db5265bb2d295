// Multicast ingest (ingest.listen: a group, ingest.interface, ingest.ssm_source), received
// for real: main() moves this process into a network namespace of its own before anything
// else and builds the network there (two veth pairs: mc0 with two IPv4 and two IPv6
// addresses, mc1 with one of each), so every vrelayd it starts joins groups there and the
// host's interfaces are never touched. Without namespaces (no root, no CAP_SYS_ADMIN, a
// container that forbids them) every test skips, saying why.
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.hpp"
#include "net.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

std::string g_unavailable;  // why the namespace could not be made; "" when it was

// The path of ip(8), or "" when it is missing.
std::string ip_command() {
  for (const char* path : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
    if (access(path, X_OK) == 0) return path;
  return "";
}

// A network namespace of this process's own, with lo up and the test network; "" on
// success, else why not.
std::string enter_test_network() {
  if (unshare(CLONE_NEWNET) != 0) return std::string("unshare(CLONE_NEWNET): ") + strerror(errno);
  std::string ip = ip_command();
  if (ip.empty()) return "ip(8) is not installed (iproute2)";
  const std::vector<std::vector<std::string>> steps = {
      {"link", "set", "lo", "up"},
      {"link", "add", "mc0", "type", "veth", "peer", "name", "mc0p"},
      {"link", "add", "mc1", "type", "veth", "peer", "name", "mc1p"},
      {"link", "set", "mc0", "up"},
      {"link", "set", "mc0p", "up"},
      {"link", "set", "mc1", "up"},
      {"link", "set", "mc1p", "up"},
      {"addr", "add", "10.99.0.1/24", "dev", "mc0"},
      {"addr", "add", "10.99.0.2/24", "dev", "mc0"},
      {"-6", "addr", "add", "fd99::1/64", "dev", "mc0", "nodad"},
      {"-6", "addr", "add", "fd99::2/64", "dev", "mc0", "nodad"},
      {"addr", "add", "10.98.0.1/24", "dev", "mc1"},
      {"-6", "addr", "add", "fd98::1/64", "dev", "mc1", "nodad"},
  };
  for (const auto& step : steps) {
    std::vector<std::string> args = {ip};
    args.insert(args.end(), step.begin(), step.end());
    ProgramResult r = run_program(args, 5000ms);
    if (r.status != 0) {
      std::string command;
      for (const auto& a : args) command += a + " ";
      return command + "failed: " + r.err;
    }
  }
  return "";
}

// Every test here needs the namespace.
class Netns : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!g_unavailable.empty()) GTEST_SKIP() << "network namespaces unavailable: " << g_unavailable;
  }
};

unsigned index_of(const char* interface) {
  unsigned index = if_nametoindex(interface);
  if (index == 0) throw std::runtime_error(std::string("no interface ") + interface);
  return index;
}

// A multicast sender: a UDP socket bound to one of the namespace's addresses, sending to
// groups out of one interface (and looped back to this host's members).
class GroupSender {
 public:
  GroupSender(const char* from, const char* interface) {
    Endpoint local = *parse_address(from);
    fd_ = socket(local.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + strerror(errno));
    int index = int(index_of(interface));
    if (local.family() == AF_INET) {
      ip_mreqn out{};
      out.imr_ifindex = index;
      check(setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_IF, &out, sizeof out), "IP_MULTICAST_IF");
      set_option(fd_, IPPROTO_IP, IP_MULTICAST_LOOP, 1, "IP_MULTICAST_LOOP");
    } else {
      set_option(fd_, IPPROTO_IPV6, IPV6_MULTICAST_IF, index, "IPV6_MULTICAST_IF");
      set_option(fd_, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, 1, "IPV6_MULTICAST_LOOP");
    }
    check(bind(fd_, local.addr(), local.length), "bind");
  }
  ~GroupSender() { close(fd_); }
  GroupSender(const GroupSender&) = delete;
  GroupSender& operator=(const GroupSender&) = delete;

  void send(const std::string& group, const std::string& payload) {
    Endpoint to = *parse_endpoint(group);
    check(int(sendto(fd_, payload.data(), payload.size(), 0, to.addr(), to.length)), "sendto");
  }

 private:
  void check(int rc, const char* what) {
    if (rc < 0) throw std::runtime_error(std::string(what) + ": " + strerror(errno));
  }
  int fd_ = -1;
};

// A member of a group beside the relay (any source): it proves that what the relay must
// not hear was really sent there.
class GroupListener {
 public:
  GroupListener(const std::string& group, const char* interface) {
    auto fd = bind_multicast(*parse_endpoint(group), index_of(interface), std::nullopt);
    if (!fd) throw std::runtime_error(fd.error());
    fd_ = *fd;
  }
  ~GroupListener() { close(fd_); }
  GroupListener(const GroupListener&) = delete;
  GroupListener& operator=(const GroupListener&) = delete;

  // Datagrams that arrive until `count` came or the limit passed.
  size_t receive(size_t count, std::chrono::milliseconds limit = 5000ms) {
    auto deadline = Clock::now() + limit;
    size_t got = 0;
    char buffer[2048];
    while (got < count) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd readable{fd_, POLLIN, 0};
      if (left <= 0 || poll(&readable, 1, int(left)) <= 0) break;
      if (recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT) > 0) ++got;
    }
    return got;
  }

 private:
  int fd_ = -1;
};

// The configuration of a multicast ingest.
std::string ingest_yaml(const std::string& group, const std::string& interface, const std::string& allow,
                        const std::string& ssm_source = "") {
  return "ingest:\n  listen: \"" + group + "\"\n  interface: \"" + interface + "\"\n  allow: [" + allow + "]\n" +
         (ssm_source.empty() ? "" : "  ssm_source: " + ssm_source + "\n");
}

// Waits for the log line of the ingest process that says what it joined.
::testing::AssertionResult logs(Relay& relay, const std::string& line) {
  if (wait_until([&] { return relay.log().find(line) != std::string::npos; })) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "no '" << line << "' in the log:\n" << relay.log();
}

// The viewer receives test_payload(first) .. test_payload(last - 1), in order, and the
// ingest counted exactly `accepted` datagrams when the last one came: nothing else passed.
void expect_stream(Relay& relay, Viewer& viewer, uint64_t first, uint64_t last, uint64_t accepted) {
  for (uint64_t i = first; i < last; ++i) ASSERT_TRUE(is_payload(viewer.sink.receive(), i)) << relay.log();
  EXPECT_EQ(relay.counters()["ingest.datagrams"], accepted);
  EXPECT_EQ(viewer.sink.drain(), 0u);
}

TEST_F(Netns, Ipv4GroupIsReceivedWholeAndTheLogSaysWhereItJoined) {
  Relay relay(ingest_yaml("239.255.12.42:5500", "mc0", "10.99.0.0/24"));
  EXPECT_NE(relay.ready_line().find(" ingest=239.255.12.42:5500 "), std::string::npos) << relay.ready_line();
  ASSERT_TRUE(logs(relay, "receiving on 239.255.12.42:5500 (joined on mc0)"));
  Viewer viewer(relay);
  GroupSender source("10.99.0.1", "mc0");
  for (uint64_t i = 0; i < 50; ++i) source.send("239.255.12.42:5500", test_payload(i));
  expect_stream(relay, viewer, 0, 50, 50);
  EXPECT_EQ(std::string(relay.shm().header().ingest_address), "239.255.12.42:5500");
}

// The interface named by one of its addresses, an IPv6 one.
TEST_F(Netns, Ipv6GroupJoinedOnTheInterfaceOfAnAddress) {
  Relay relay(ingest_yaml("[ff15::1234]:5500", "fd99::1", "fd99::/64"));
  ASSERT_TRUE(logs(relay, "receiving on [ff15::1234]:5500 (joined on fd99::1)"));
  Viewer viewer(relay);
  GroupSender source("fd99::2", "mc0");
  for (uint64_t i = 0; i < 50; ++i) source.send("[ff15::1234]:5500", test_payload(i));
  expect_stream(relay, viewer, 0, 50, 50);
}

// A link-local group is bound with its interface as the scope (bind() refuses it without).
TEST_F(Netns, Ipv6LinkLocalGroupIsBoundOnItsInterface) {
  Relay relay(ingest_yaml("[ff12::1234]:5500", "mc0", "fd99::/64"));
  ASSERT_TRUE(logs(relay, "receiving on [ff12::1234]:5500 (joined on mc0)"));
  Viewer viewer(relay);
  GroupSender source("fd99::2", "mc0");
  for (uint64_t i = 0; i < 10; ++i) source.send("[ff12::1234]:5500", test_payload(i));
  expect_stream(relay, viewer, 0, 10, 10);
}

// Source-specific: the other sender's datagrams (also allowed by ingest.allow) never reach
// the socket, although they reach an any-source member of the group.
void expect_only_the_chosen_source(const std::string& group, const char* chosen, const char* other,
                                   const std::string& allow) {
  Relay relay(ingest_yaml(group, "mc0", allow, chosen));
  ASSERT_TRUE(logs(relay, "receiving on " + group + " (joined on mc0, source " + chosen + ")"));
  Viewer viewer(relay);
  GroupListener member(group, "mc0");
  GroupSender wanted(chosen, "mc0"), unwanted(other, "mc0");
  for (uint64_t i = 0; i < 20; ++i) {
    unwanted.send(group, test_payload(1000 + i));
    wanted.send(group, test_payload(i));
  }
  EXPECT_EQ(member.receive(40), 40u);
  expect_stream(relay, viewer, 0, 20, 20);
  EXPECT_EQ(relay.counters()["ingest.drops_foreign_sender"], 0u);
}

TEST_F(Netns, SourceSpecificIpv4PassesOnlyTheChosenSender) {
  expect_only_the_chosen_source("232.1.2.3:5500", "10.99.0.1", "10.99.0.2", "10.99.0.0/24");
}

TEST_F(Netns, SourceSpecificIpv6PassesOnlyTheChosenSender) {
  expect_only_the_chosen_source("[ff35::8000:1]:5500", "fd99::1", "fd99::2", "fd99::/64");
}

TEST_F(Netns, AnotherGroupOnTheSamePortIsNotReceived) {
  Relay relay(ingest_yaml("239.255.12.42:5500", "mc0", "10.99.0.0/24"));
  ASSERT_TRUE(logs(relay, "receiving on 239.255.12.42:5500 (joined on mc0)"));
  Viewer viewer(relay);
  GroupListener neighbour("239.255.12.43:5500", "mc0");  // the host is a member of that group too
  GroupSender source("10.99.0.1", "mc0");
  for (uint64_t i = 0; i < 20; ++i) {
    source.send("239.255.12.43:5500", test_payload(1000 + i));
    source.send("239.255.12.42:5500", test_payload(i));
  }
  EXPECT_EQ(neighbour.receive(20), 20u);
  expect_stream(relay, viewer, 0, 20, 20);
}

TEST_F(Netns, IngestAllowStillRefusesASenderOutsideIt) {
  Relay relay(ingest_yaml("239.255.12.42:5500", "mc0", "10.99.0.1/32"));
  ASSERT_TRUE(logs(relay, "receiving on 239.255.12.42:5500 (joined on mc0)"));
  Viewer viewer(relay);
  GroupSender allowed_sender("10.99.0.1", "mc0"), foreign_sender("10.99.0.2", "mc0");
  for (uint64_t i = 0; i < 20; ++i) {
    foreign_sender.send("239.255.12.42:5500", test_payload(1000 + i));
    allowed_sender.send("239.255.12.42:5500", test_payload(i));
  }
  expect_stream(relay, viewer, 0, 20, 20);
  EXPECT_TRUE(wait_until([&] { return relay.counters()["ingest.drops_foreign_sender"] == 20; }))
      << relay.counters()["ingest.drops_foreign_sender"];
}

// vrelayd with this configuration file, which it must refuse at start: exit status 2 and
// `message` on stderr.
void expect_refused_at_start(const std::string& yaml, const std::string& message) {
  std::string path = "/tmp/vrelay-netns-" + std::to_string(getpid()) + ".yaml";
  std::ofstream(path) << yaml;
  ProgramResult r = run_vrelayd({"-F", "--control", "127.0.0.1:0", "--instance",
                                 "netns-" + std::to_string(getpid()), "-c", path});
  unlink(path.c_str());
  EXPECT_EQ(r.status, 2) << yaml << r.output();
  EXPECT_NE(r.err.find("vrelayd: configuration error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(message), std::string::npos) << yaml << r.err;
}

TEST_F(Netns, AMissingOrUnknownInterfaceIsRefusedAtStartNamingTheKey) {
  expect_refused_at_start("ingest:\n  listen: 239.255.12.42:5500\n",
                          "ingest.interface: required when ingest.listen is a multicast group (239.255.12.42:5500)");
  expect_refused_at_start(ingest_yaml("239.255.12.42:5500", "nope0", "10.99.0.0/24"),
                          "ingest.interface: no network interface is named 'nope0'");
  expect_refused_at_start(ingest_yaml("239.255.12.42:5500", "10.77.0.1", "10.99.0.0/24"),
                          "ingest.interface: no network interface has the address 10.77.0.1");
  expect_refused_at_start(ingest_yaml("239.255.12.42:5500", "mc0", "10.99.0.0/24", "fd99::1"),
                          "ingest.ssm_source: fd99::1 is an IPv6 address but the group 239.255.12.42 is IPv4");
}

void rewrite(Relay& relay, const std::string& yaml) { std::ofstream(relay.config_path()) << yaml; }

// A reload that changes the interface, then the group, joins again; one with an interface
// the host does not have is refused and the socket in force keeps receiving.
TEST_F(Netns, ReloadJoinsAgainAndABadInterfaceKeepsTheOldJoin) {
  const std::string allow = "10.0.0.0/8";
  Relay relay(ingest_yaml("239.255.12.42:5500", "mc0", allow));
  ASSERT_TRUE(logs(relay, "receiving on 239.255.12.42:5500 (joined on mc0)"));
  Viewer viewer(relay);
  GroupSender on_mc0("10.99.0.1", "mc0"), on_mc1("10.98.0.1", "mc1");
  on_mc0.send("239.255.12.42:5500", test_payload(0));
  ASSERT_TRUE(is_payload(viewer.sink.receive(), 0));

  // The same group on another interface.
  pid_t ingest = relay.child_pid(Role::kIngest);
  rewrite(relay, ingest_yaml("239.255.12.42:5500", "mc1", allow));
  ASSERT_TRUE(hangup(relay)) << relay.log();
  ASSERT_TRUE(relay.wait_restarted(Role::kIngest, ingest));
  ASSERT_TRUE(logs(relay, "receiving on 239.255.12.42:5500 (joined on mc1)"));
  on_mc0.send("239.255.12.42:5500", test_payload(1000));
  on_mc1.send("239.255.12.42:5500", test_payload(1));
  expect_stream(relay, viewer, 1, 2, 2);

  // Another group.
  ingest = relay.child_pid(Role::kIngest);
  rewrite(relay, ingest_yaml("239.255.12.50:5500", "mc1", allow));
  ASSERT_TRUE(hangup(relay)) << relay.log();
  ASSERT_TRUE(relay.wait_restarted(Role::kIngest, ingest));
  ASSERT_TRUE(logs(relay, "receiving on 239.255.12.50:5500 (joined on mc1)"));
  EXPECT_EQ(std::string(relay.shm().header().ingest_address), "239.255.12.50:5500");
  on_mc1.send("239.255.12.42:5500", test_payload(1001));
  on_mc1.send("239.255.12.50:5500", test_payload(2));
  expect_stream(relay, viewer, 2, 3, 3);

  // An interface this host does not have: refused, counted, the join in force stays.
  ingest = relay.child_pid(Role::kIngest);
  rewrite(relay, ingest_yaml("239.255.12.50:5500", "nope0", allow));
  EXPECT_FALSE(hangup(relay));
  EXPECT_EQ(relay.counters()["supervisor.reload_failures"], 1u);
  EXPECT_NE(std::string(relay.shm().header().reload_error).find("ingest.interface: no network interface is named 'nope0'"),
            std::string::npos)
      << relay.shm().header().reload_error;
  EXPECT_NE(relay.log().find("reload refused"), std::string::npos) << relay.log();
  on_mc1.send("239.255.12.50:5500", test_payload(3));
  expect_stream(relay, viewer, 3, 4, 4);
  EXPECT_EQ(relay.child_pid(Role::kIngest), ingest);
}

// Fixed outputs (outputs:) to a group: a relay's multicast output, with its interface and
// TTL, is what another relay ingests from the group; and a member beside it sees that TTL.
// The TTL (or hop limit) of the first datagram to a group a member of it receives once it
// has joined and `send` has run; -1 if none came within the limit.
int received_ttl(const std::string& group, const char* interface, const std::function<void()>& send,
                 std::chrono::milliseconds limit) {
  Endpoint g = *parse_endpoint(group);
  auto fd = bind_multicast(g, index_of(interface), std::nullopt);
  if (!fd) throw std::runtime_error(fd.error());
  bool v6 = g.family() == AF_INET6;
  set_option(*fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_RECVHOPLIMIT : IP_RECVTTL, 1, "receive the TTL");
  send();
  int ttl = -1;
  pollfd readable{*fd, POLLIN, 0};
  if (poll(&readable, 1, int(limit.count())) == 1) {
    char data[2048], control[256];
    iovec iov{data, sizeof data};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    if (recvmsg(*fd, &m, 0) > 0)
      for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
            (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT))
          std::memcpy(&ttl, CMSG_DATA(c), sizeof ttl);
  }
  close(*fd);
  return ttl;
}

void expect_output_feeds_an_edge(const std::string& group, const std::string& allow) {
  Relay edge(ingest_yaml(group, "mc0", allow));
  ASSERT_TRUE(logs(edge, "receiving on " + group + " (joined on mc0)"));
  Viewer viewer(edge);
  Relay core("outputs:\n  - {name: lan, to: \"" + group + "\", interface: mc0, ttl: 3}\n");
  ASSERT_TRUE(logs(core, "output lan: sending to " + group + " on mc0"));
  UdpSource source(core.ingest_port());
  for (uint64_t i = 0; i < 100; ++i) source.send(test_payload(i));
  expect_stream(edge, viewer, 0, 100, 100);
  EXPECT_EQ(core.counters()["fanout.send_errors"], 0u) << core.log();
  EXPECT_EQ(core.counters()["fanout.sockets"], 0u) << "no socket to hear refusals from a group";

  EXPECT_EQ(received_ttl(group, "mc0", [&] { source.send(test_payload(100)); }, 5000ms), 3);
}

TEST_F(Netns, AMulticastOutputFeedsAnotherRelaysIpv4Ingest) { expect_output_feeds_an_edge("239.255.20.1:5600", "10.99.0.0/24"); }
TEST_F(Netns, AMulticastOutputFeedsAnotherRelaysIpv6Ingest) {
  expect_output_feeds_an_edge("[ff15::20]:5600", "fd99::/64, fe80::/10");
}

}  // namespace

int main(int argc, char** argv) {
  // Listing the tests (CTest's discovery, at build time) needs no namespace.
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::string(argv[i]).rfind("--gtest_list_tests", 0) == 0;
  if (!listing) g_unavailable = enter_test_network();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
