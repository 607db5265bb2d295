// Integration tests of vrelay-probe (client/vrelay-probe): the real binary receives crafted
// streams on 127.0.0.1, straight from the test or through a real vrelayd, and its reports
// and exit statuses are checked exactly. Waits end on events (a line in the probe's stderr,
// a relay counter, the probe's exit), each with a deadline.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "counter_stream.hpp"
#include "harness.hpp"
#include "version.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {


std::string counter_datagram(uint64_t index) {
  std::string d(kCounterDatagramSize, '\0');
  encode_counter(index, d.data());
  return d;
}

// One vrelay-probe process (the harness's Program), its stdout and stderr in files.
class Probe : public Program {
 public:
  explicit Probe(std::vector<std::string> args) : Program(with_path(std::move(args))) {}

  // Waits until its stderr holds `text` (false at the limit, or when it exited first).
  bool wait_stderr(const std::string& text, std::chrono::milliseconds limit = 5000ms) {
    return wait_until([&] { return err().find(text) != std::string::npos; }, limit);
  }
  nlohmann::json json() {
    std::string text = out();
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) ADD_FAILURE() << "stdout is not one JSON object: " << text;
    return j;
  }

 private:
  static std::vector<std::string> with_path(std::vector<std::string> args) {
    args.insert(args.begin(), VRELAY_PROBE_PATH);
    return args;
  }
};

// Datagrams straight to the probe's port on 127.0.0.1.
class Sender {
 public:
  explicit Sender(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) throw std::runtime_error("connect");
  }
  ~Sender() { close(fd_); }
  void send(const std::string& d) { ASSERT_EQ(::send(fd_, d.data(), d.size(), 0), ssize_t(d.size())); }

 private:
  int fd_;
};

std::string ts_packet(uint16_t pid, uint8_t cc) {
  std::string p(188, '\xFF');
  p[0] = 0x47;
  p[1] = char(pid >> 8 & 0x1F);
  p[2] = char(pid & 0xFF);
  p[3] = char(0x10 | (cc & 0x0F));
  return p;
}

std::string port_text(uint16_t port) { return std::to_string(port); }

// A listening TCP socket on 127.0.0.1 that plays a relay's control port by hand.
class FakeRelay {
 public:
  FakeRelay() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_fd_, 4) != 0)
      throw std::runtime_error("FakeRelay: bind/listen");
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~FakeRelay() {
    if (fd_ >= 0) close(fd_);
    close(listen_fd_);
  }
  uint16_t port() const { return port_; }
  bool accept_client(std::chrono::milliseconds limit = 5000ms) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, int(limit.count())) != 1) return false;
    fd_ = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    return fd_ >= 0;
  }
  void send(const std::string& text) { ASSERT_EQ(::send(fd_, text.data(), text.size(), MSG_NOSIGNAL), ssize_t(text.size())); }
  // The next line from the client, without CR LF; nullopt on timeout or close.
  std::optional<std::string> line(std::chrono::milliseconds limit = 5000ms) {
    auto deadline = Clock::now() + limit;
    for (;;) {
      size_t lf = buffer_.find('\n');
      if (lf != std::string::npos) {
        std::string l = buffer_.substr(0, lf > 0 && buffer_[lf - 1] == '\r' ? lf - 1 : lf);
        buffer_.erase(0, lf + 1);
        return l;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, int(left)) != 1) return std::nullopt;
      char chunk[512];
      ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, size_t(n));
    }
  }

 private:
  int listen_fd_ = -1, fd_ = -1;
  uint16_t port_ = 0;
  std::string buffer_;
};

}  // namespace

// ---- Usage ----

TEST(Probe, BadUsageExitsWithStatusTwoAndAClearMessage) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  std::vector<Case> cases = {
      {{}, "expected the UDP PORT"},
      {{"70000"}, "PORT must be a number from 1 to 65535, not '70000'"},
      {{"0"}, "PORT must be a number from 1 to 65535"},
      {{"5000x"}, "PORT must be a number"},
      {{"--frobnicate", "5000"}, "unknown option '--frobnicate'"},
      {{"--count", "0", "5000"}, "--count expects"},
      {{"--duration", "-1", "5000"}, "--duration expects"},
      {{"--idle"}, "option '--idle' needs a value"},
      {{"--subscribe", "127.0.0.1", "5000"}, "--subscribe: '127.0.0.1': expected HOST:PORT"},
      {{"--subscribe", "127.0.0.1:99999", "5000"}, "--subscribe: '127.0.0.1:99999': the port must be a number from 1 to 65535"},
      {{"--bind", "example.org", "5000"}, "--bind expects a numeric IPv4 or IPv6 address, not 'example.org'"},
      {{"5000", "5001"}, "unexpected argument '5001'"},
  };
  for (const auto& c : cases) {
    Probe probe(c.args);
    EXPECT_EQ(probe.wait(), 2) << c.message;
    std::string err = probe.err();
    EXPECT_NE(err.find("vrelay-probe: " + c.message), std::string::npos) << err;
    EXPECT_NE(err.find("Try 'vrelay-probe --help'.\n"), std::string::npos) << err;
    EXPECT_EQ(probe.out(), "");
  }
}

TEST(Probe, HelpAndVersion) {
  Probe help({"--help"});
  EXPECT_EQ(help.wait(), 0);
  EXPECT_NE(help.out().find("  -s, --subscribe HOST:PORT\n"), std::string::npos) << help.out();
  EXPECT_NE(help.out().find("  -j, --json "), std::string::npos);
  Probe version({"-V"});
  EXPECT_EQ(version.wait(), 0);
  EXPECT_EQ(version.out(), std::string("vrelay-probe ") + VRELAY_VERSION + "\n");
}

TEST(Probe, APortInUseIsARuntimeFailure) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  Probe probe({"--bind", "127.0.0.1", port_text(ntohs(a.sin_port))});
  EXPECT_EQ(probe.wait(), 1);
  EXPECT_NE(probe.err().find("vrelay-probe: "), std::string::npos);
  EXPECT_EQ(probe.err().find("Try "), std::string::npos) << "not a usage error";
  close(fd);
}

// ---- Straight from a sender ----

TEST(Probe, CounterStreamWithGapReorderAndDuplicateGivesExactCounts) {
  uint16_t port = free_udp_port();
  Probe probe({"--bind", "127.0.0.1", "--count", "10", "--json", "--idle", "20", port_text(port)});
  ASSERT_TRUE(probe.wait_stderr("receiving on 127.0.0.1:" + port_text(port))) << probe.err();
  Sender sender(port);
  // 7 is lost, 4 comes after 5, 6 comes twice.
  uint64_t sent_sum = 0;
  for (uint64_t i : {1, 2, 3, 5, 4, 6, 6, 8, 9, 10}) {
    sender.send(counter_datagram(i));
    sent_sum += counter_value(i);
  }
  ASSERT_EQ(probe.wait(), 0) << probe.err();
  auto j = probe.json();
  EXPECT_EQ(j["kind"], "counter");
  EXPECT_EQ(j["end"], "count");
  EXPECT_EQ(j["datagrams"], 10);
  EXPECT_EQ(j["bytes"], 240);
  EXPECT_EQ(j["other_datagrams"], 0);
  EXPECT_EQ(j["sequence"]["received"], 10);
  EXPECT_EQ(j["sequence"]["lost"], 1);
  EXPECT_EQ(j["sequence"]["out_of_order"], 1);
  EXPECT_EQ(j["sequence"]["duplicates"], 1);
  EXPECT_EQ(j["sequence"]["too_old"], 0);
  EXPECT_EQ(j["counter"]["sum"], sent_sum);
  EXPECT_EQ(j["counter"]["corrupt"], 0);
  EXPECT_EQ(j["counter"]["lowest_index"], 1);
  EXPECT_EQ(j["counter"]["highest_index"], 10);
}

TEST(Probe, MpegTsTextReportCountsContinuityErrorsPerPid) {
  uint16_t port = free_udp_port();
  Probe probe({"--bind", "127.0.0.1", "-c", "3", "-i", "20", port_text(port)});
  ASSERT_TRUE(probe.wait_stderr("receiving on 127.0.0.1:" + port_text(port))) << probe.err();
  Sender sender(port);
  sender.send(ts_packet(0x100, 0) + ts_packet(0x101, 0));
  sender.send(ts_packet(0x100, 1) + ts_packet(0x101, 2));  // 0x101 skips 1
  sender.send(ts_packet(0x100, 2) + ts_packet(0x101, 3));
  ASSERT_EQ(probe.wait(), 0) << probe.err();
  std::string out = probe.out();
  EXPECT_NE(out.find("kind: mpegts\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ts.cc_errors: 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ts.packets: 6\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ts.pids 256: packets 3 cc_errors 0 discontinuities 0\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ts.pids 257: packets 3 cc_errors 1 discontinuities 0\n"), std::string::npos) << out;
}

TEST(Probe, IdleEndsAProbeThatReceivesNothing) {
  Probe probe({"--bind", "127.0.0.1", "--idle", "0.2", "--json", "--quiet", port_text(free_udp_port())});
  ASSERT_EQ(probe.wait(), 0) << probe.err();
  EXPECT_EQ(probe.err(), "");  // --quiet
  auto j = probe.json();
  EXPECT_EQ(j["end"], "idle");
  EXPECT_EQ(j["kind"], "unknown");
  EXPECT_EQ(j["datagrams"], 0);
  EXPECT_GE(j["duration_s"].get<double>(), 0.2);
}

TEST(Probe, SigtermEndsWithTheFinalReport) {
  uint16_t port = free_udp_port();
  Probe probe({"--bind", "127.0.0.1", "--json", port_text(port)});
  ASSERT_TRUE(probe.wait_stderr("receiving on")) << probe.err();
  Sender sender(port);
  sender.send("hello");
  sender.send("world!");
  // The datagrams are in the probe's socket before the signal is: both are read first,
  // since the probe drains the socket before it looks at the signal.
  probe.signal(SIGTERM);
  ASSERT_EQ(probe.wait(), 0) << probe.err();
  auto j = probe.json();
  EXPECT_EQ(j["end"], "signal");
  EXPECT_EQ(j["kind"], "unknown");
  EXPECT_EQ(j["datagrams"], 2);
  EXPECT_EQ(j["bytes"], 11);
  EXPECT_EQ(j["other_datagrams"], 2);
}

// ---- Through a real relay ----

TEST(Probe, SubscribesThroughARelayReceivesEveryDatagramAndLeaves) {
  Relay relay;
  uint16_t port = free_udp_port();
  constexpr uint64_t kCount = 600;
  Probe probe({"--subscribe", "127.0.0.1:" + port_text(relay.control_port()), "--bind", "127.0.0.1", "--count",
               std::to_string(kCount), "--json", "--idle", "30", port_text(port)});
  Stats& stats = relay.shm().stats();
  ASSERT_TRUE(wait_until([&] { return stats.control.subscribers.load() == 1; })) << probe.err();
  ASSERT_TRUE(probe.wait_stderr("subscribed UDP port " + port_text(port))) << probe.err();

  UdpSource source(relay.ingest_port());
  uint64_t sent_sum = 0;
  // In chunks, each relayed before the next is sent, so that no socket buffer overflows.
  for (uint64_t i = 1; i <= kCount; ++i) {
    source.send(counter_datagram(i));
    sent_sum += counter_value(i);
    if (i % 100 == 0) {
      ASSERT_TRUE(wait_until([&] { return stats.fanout.sent_datagrams.load() == i; })) << i;
    }
  }
  ASSERT_EQ(probe.wait(), 0) << probe.err();
  auto j = probe.json();
  EXPECT_EQ(j["kind"], "counter");
  EXPECT_EQ(j["end"], "count");
  EXPECT_EQ(j["sequence"]["received"], kCount);
  EXPECT_EQ(j["sequence"]["lost"], 0);
  EXPECT_EQ(j["sequence"]["out_of_order"], 0);
  EXPECT_EQ(j["sequence"]["duplicates"], 0);
  EXPECT_EQ(j["counter"]["sum"], sent_sum);
  EXPECT_EQ(j["counter"]["corrupt"], 0);
  // Its DESCONECTAR removed the subscription: the probe waited for the OK before exiting.
  EXPECT_EQ(stats.control.subscribers.load(), 0u);
  for (uint32_t i = 0; i < relay.shm().header().max_subscribers; ++i)
    EXPECT_EQ(relay.shm().subscribers()[i].state.load(), uint32_t(SubscriberState::kFree)) << "slot " << i;
  Session check(relay.control_port());
  std::string stats_reply = check.command("STATS");
  EXPECT_NE(stats_reply.find(" subscribers=0"), std::string::npos) << stats_reply;
}

// The original counter-stream system whole: the relay's generator streams, the probe
// subscribes itself and counts. Whatever index it starts at, it gets a run of consecutive
// ones, and the sum of their values is the sum of 2*i over that run.
TEST(Probe, CountsTheRelaysGeneratorStreamExactly) {
  Relay relay("ingest:\n  source: generator\n  interval_ms: 2\n");
  uint16_t port = free_udp_port();
  constexpr uint64_t kCount = 300;
  Probe probe({"--subscribe", "127.0.0.1:" + port_text(relay.control_port()), "--bind", "127.0.0.1", "--count",
               std::to_string(kCount), "--json", "--quiet", port_text(port)});
  ASSERT_EQ(probe.wait(20000ms), 0) << probe.err();
  auto j = probe.json();
  EXPECT_EQ(j["kind"], "counter");
  EXPECT_EQ(j["sequence"]["received"], kCount);
  EXPECT_EQ(j["sequence"]["lost"], 0);
  EXPECT_EQ(j["sequence"]["out_of_order"], 0);
  EXPECT_EQ(j["sequence"]["duplicates"], 0);
  EXPECT_EQ(j["counter"]["corrupt"], 0);
  uint64_t lowest = j["counter"]["lowest_index"], highest = j["counter"]["highest_index"];
  EXPECT_EQ(highest - lowest + 1, kCount);
  EXPECT_EQ(j["counter"]["sum"], (lowest + highest) * kCount);  // sum of 2i for i in [lowest, highest]
  EXPECT_GE(relay.shm().stats().ingest.generated.load(), highest);
}

TEST(Probe, ARefusedSubscriptionIsARuntimeFailure) {
  Relay relay("control:\n  ports: 2000-2001\n");
  uint16_t port = free_udp_port();
  ASSERT_TRUE(port < 2000 || port > 2001);
  Probe probe({"--subscribe", "127.0.0.1:" + port_text(relay.control_port()), "--bind", "127.0.0.1", port_text(port)});
  EXPECT_EQ(probe.wait(), 1);
  std::string err = probe.err();
  EXPECT_NE(err.find("vrelay-probe: the relay refused CONECTAR " + port_text(port) + ": ERR bad-port"),
            std::string::npos) << err;
  EXPECT_EQ(probe.out(), "");
}

TEST(Probe, NoRelayListeningIsARuntimeFailure) {
  // A bound TCP socket that does not listen: connecting to it is refused at once.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  Probe probe({"--subscribe", "127.0.0.1:" + port_text(ntohs(a.sin_port)), "--bind", "127.0.0.1",
               port_text(free_udp_port())});
  EXPECT_EQ(probe.wait(), 1);
  EXPECT_NE(probe.err().find("cannot connect to the relay at 127.0.0.1:"), std::string::npos) << probe.err();
  close(fd);
}

TEST(Probe, TheRelayGoingAwayEndsTheProbeWithStatusOneAndItsReport) {
  auto relay = std::make_unique<Relay>();
  uint16_t port = free_udp_port();
  Probe probe({"--subscribe", "127.0.0.1:" + port_text(relay->control_port()), "--bind", "127.0.0.1", "--json",
               port_text(port)});
  Stats& stats = relay->shm().stats();
  ASSERT_TRUE(wait_until([&] { return stats.control.subscribers.load() == 1; })) << probe.err();
  {
    UdpSource source(relay->ingest_port());
    for (uint64_t i = 1; i <= 5; ++i) source.send(counter_datagram(i));
    ASSERT_TRUE(wait_until([&] { return stats.fanout.sent_datagrams.load() == 5; }));
  }
  EXPECT_EQ(relay->stop(), 0);
  relay.reset();
  ASSERT_EQ(probe.wait(), 1) << probe.err();
  EXPECT_NE(probe.err().find("vrelay-probe: the relay closed the connection"), std::string::npos) << probe.err();
  auto j = probe.json();
  EXPECT_EQ(j["end"], "error");
  EXPECT_EQ(j["sequence"]["received"], 5);
}

// ---- Against a fake relay: the control session's failures ----

TEST(Probe, AServerThatIsNotARelayIsRefused) {
  FakeRelay fake;
  Probe probe({"--subscribe", "127.0.0.1:" + port_text(fake.port()), "--bind", "127.0.0.1", port_text(free_udp_port())});
  ASSERT_TRUE(fake.accept_client());
  fake.send("SSH-2.0-OpenSSH_9.2\r\n");
  EXPECT_EQ(probe.wait(), 1);
  EXPECT_NE(probe.err().find("vrelay-probe: not a vrelay relay (its first line is 'SSH-2.0-OpenSSH_9.2'"),
            std::string::npos) << probe.err();
}

TEST(Probe, NoReplyToConectarWithinTheTimeoutIsARuntimeFailure) {
  FakeRelay fake;
  uint16_t port = free_udp_port();
  Probe probe({"--subscribe", "127.0.0.1:" + port_text(fake.port()), "--timeout", "0.3", "--bind", "127.0.0.1",
               port_text(port)});
  ASSERT_TRUE(fake.accept_client());
  fake.send("EVENT HELLO vrelay 0.1.0 guest-1\r\n");
  EXPECT_EQ(fake.line(), "CONECTAR " + port_text(port));
  EXPECT_EQ(probe.wait(), 1);
  EXPECT_NE(probe.err().find("vrelay-probe: no reply to CONECTAR " + port_text(port) + " within 0.3 s"),
            std::string::npos) << probe.err();
}

TEST(Probe, CtrlCWhileWaitingForTheRelayEndsCleanlyAtOnce) {
  FakeRelay fake;
  uint16_t port = free_udp_port();
  Probe probe({"--subscribe", "127.0.0.1:" + port_text(fake.port()), "--timeout", "600", "--json", "--bind",
               "127.0.0.1", port_text(port)});
  ASSERT_TRUE(fake.accept_client());
  fake.send("EVENT HELLO vrelay 0.1.0 guest-1\r\nEVENT JOIN ana\r\n");
  EXPECT_EQ(fake.line(), "CONECTAR " + port_text(port));
  probe.signal(SIGINT);  // the reply never comes: the signal must end the wait
  EXPECT_EQ(probe.wait(5000ms), 0) << probe.err();
  auto j = probe.json();
  EXPECT_EQ(j["end"], "signal");
  EXPECT_EQ(j["datagrams"], 0);
}

TEST(Probe, EventsDoNotConfuseTheSubscriptionOrTheLeaving) {
  FakeRelay fake;
  uint16_t port = free_udp_port();
  Probe probe({"--subscribe", "127.0.0.1:" + port_text(fake.port()), "--json", "--bind", "127.0.0.1", "--count", "1",
               port_text(port)});
  ASSERT_TRUE(fake.accept_client());
  fake.send("EVENT HELLO vrelay 0.1.0 guest-1\r\n");
  EXPECT_EQ(fake.line(), "CONECTAR " + port_text(port));
  fake.send("EVENT JOIN bob\r\nOK\r\nEVENT MSG bob hola\r\n");
  ASSERT_TRUE(probe.wait_stderr("subscribed UDP port " + port_text(port))) << probe.err();
  Sender(port).send(counter_datagram(1));
  EXPECT_EQ(fake.line(), "DESCONECTAR");
  fake.send("EVENT LEAVE bob\r\nOK\r\n");
  EXPECT_EQ(probe.wait(), 0) << probe.err();
  EXPECT_EQ(probe.json()["sequence"]["received"], 1);
}

TEST(Probe, AnErrReplyToDesconectarIsARuntimeFailureWithTheReport) {
  FakeRelay fake;
  uint16_t port = free_udp_port();
  Probe probe({"--subscribe", "127.0.0.1:" + port_text(fake.port()), "--json", "--bind", "127.0.0.1", "--count", "1",
               port_text(port)});
  ASSERT_TRUE(fake.accept_client());
  fake.send("EVENT HELLO vrelay 0.1.0 guest-1\r\n");
  EXPECT_EQ(fake.line(), "CONECTAR " + port_text(port));
  fake.send("OK\r\n");
  ASSERT_TRUE(probe.wait_stderr("subscribed UDP port")) << probe.err();
  Sender(port).send(counter_datagram(1));
  EXPECT_EQ(fake.line(), "DESCONECTAR");
  fake.send("ERR busy try later\r\n");
  EXPECT_EQ(probe.wait(), 1);
  EXPECT_NE(probe.err().find("vrelay-probe: the relay answered DESCONECTAR with: ERR busy try later"),
            std::string::npos) << probe.err();
  EXPECT_EQ(probe.json()["datagrams"], 1);
}
