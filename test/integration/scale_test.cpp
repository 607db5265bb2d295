// Scale: 10,000 concurrent idle control sessions on one relay (one thread per session).
// Every session gets its HELLO, a sample of them answers PING, the relay counts them all,
// and every one of them ends once the clients leave. Clients connect from 127.0.0.2,
// 127.0.0.3, ... (1,000 per address) with non-blocking connects, at most 256 waiting for
// their HELLO at a time; events the relay sends (JOIN, LEAVE, ...) are read and skipped.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "harness.hpp"

namespace vrelay::test {
namespace {

constexpr size_t kSessions = 10000;
constexpr size_t kPerAddress = 1000;
constexpr size_t kInFlight = 256;

// Many sessions on one epoll; nothing here blocks without a deadline.
class Crowd {
 public:
  explicit Crowd(uint16_t port) : port_(port), epoll_(epoll_create1(EPOLL_CLOEXEC)) {}
  ~Crowd() {
    close_all();
    ::close(epoll_);
  }
  size_t hellos() const { return hellos_; }
  const std::string& error() const { return error_; }

  // Until `target` sessions have their HELLO; false on the first failure or at the deadline.
  bool open(size_t target, std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    while (hellos_ < target) {
      while (conns_.size() < target && conns_.size() - hellos_ < kInFlight)
        if (!connect_one()) return false;
      if (Clock::now() >= deadline) return fail("deadline passed");
      if (pump(100) < 0) return false;
    }
    return true;
  }

  // Reads (and drops) what the relay still sends, until nothing has come for 500 ms; false on
  // a failure or if it is still sending at the deadline.
  bool settle(std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline)
      if (int n = pump(500); n <= 0) return n == 0;
    return fail("the relay was still sending events to the idle sessions");
  }

  // Sends PING on session `index`; the first line that is not an event, or what went wrong.
  std::string ping(size_t index, Clock::time_point deadline) {
    Conn& c = conns_[index];
    if (send(c.fd, "PING\r\n", 6, MSG_NOSIGNAL) != 6) return std::string("(send: ") + strerror(errno) + ")";
    std::string line;
    while (true) {
      while (take_line(c, line))
        if (line.rfind("EVENT ", 0) != 0) return line;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd p{c.fd, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, int(left)) <= 0) return "(no reply in time)";
      if (!read_some(c)) return "(closed by the relay)";
    }
  }

  void close_all() {
    for (auto& c : conns_) ::close(c.fd);
    conns_.clear();
  }

 private:
  struct Conn {
    int fd;
    bool hello = false;
    std::string buffer;
  };

  bool connect_one() {
    size_t index = conns_.size();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(std::string("socket: ") + strerror(errno));
    int one = 1;  // the port is picked at connect() by the whole 4-tuple
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in from{}, to{};
    from.sin_family = to.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(0x7F000002u + uint32_t(index / kPerAddress));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(port_);
    if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
        (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS)) {
      std::string why = strerror(errno);
      ::close(fd);
      return fail("session " + std::to_string(index) + ": bind/connect: " + why);
    }
    epoll_event e{};
    e.events = EPOLLIN | EPOLLRDHUP;
    e.data.u64 = index;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &e);
    conns_.push_back(Conn{fd, false, {}});
    return true;
  }

  // Handles what epoll reports within `timeout_ms`: how many sessions were ready, or -1.
  int pump(int timeout_ms) {
    epoll_event events[512];
    int n = epoll_wait(epoll_, events, 512, timeout_ms);
    for (int i = 0; i < n; ++i)
      if (!on_ready(events[i].data.u64, events[i].events)) return -1;
    return n < 0 ? 0 : n;
  }

  static bool read_some(Conn& c) {
    char buf[4096];
    while (true) {
      ssize_t n = recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        c.buffer.append(buf, size_t(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
      }
    }
  }

  static bool take_line(Conn& c, std::string& line) {
    auto nl = c.buffer.find("\r\n");
    if (nl == std::string::npos) return false;
    line = c.buffer.substr(0, nl);
    c.buffer.erase(0, nl + 2);
    return true;
  }

  bool on_ready(size_t index, uint32_t what) {
    Conn& c = conns_[index];
    bool alive = read_some(c);
    std::string line;
    while (!c.hello && take_line(c, line)) {
      if (line.rfind("EVENT HELLO vrelay ", 0) != 0)
        return fail("session " + std::to_string(index) + ": expected HELLO, got '" + line + "'");
      c.hello = true;
      ++hellos_;
    }
    if (c.hello) {  // events (JOIN of later sessions, ...) are not needed: drop complete lines
      auto last = c.buffer.rfind("\r\n");
      if (last != std::string::npos) c.buffer.erase(0, last + 2);
    }
    if (!alive || (what & (EPOLLERR | EPOLLHUP | EPOLLRDHUP))) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      return fail("session " + std::to_string(index) + (c.hello ? " (after HELLO)" : " (before HELLO)") + ": " +
                  (err ? strerror(err) : "closed by the relay"));
    }
    return true;
  }

  bool fail(const std::string& why) {
    if (error_.empty()) error_ = why;
    return false;
  }

  uint16_t port_;
  int epoll_;
  std::vector<Conn> conns_;
  size_t hellos_ = 0;
  std::string error_;
};

std::string tail(const std::string& text, int lines) {
  size_t from = text.size();
  for (int i = 0; i <= lines && from > 0; ++i) {
    size_t nl = text.rfind('\n', from - 1);
    from = nl == std::string::npos ? 0 : nl;
  }
  return text.substr(from);
}

TEST(Scale, TenThousandIdleSessions) {
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  rlim_t needed = kSessions + 64;
  if (nofile.rlim_cur < needed) {
    nofile.rlim_cur = needed;
    if (nofile.rlim_max < needed) nofile.rlim_max = needed;  // needs CAP_SYS_RESOURCE
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &nofile), 0) << "this test holds " << kSessions
                                                    << " sockets; raise RLIMIT_NOFILE: " << strerror(errno);
  }
  Relay relay("control:\n  max_sessions: 10100\n  max_sessions_per_ip: 10100\n  idle_timeout: 0\n"
              "  thread_stack_kib: 128\n  presence_events: named\n");
  pid_t control = relay.child_pid(kControl);
  control_stats& stats = relay.shm().stats().control;
  auto diagnosis = [&] {
    return "control restarts " + std::to_string(relay.restarts(kControl)) + ", sessions_open " +
           std::to_string(stats.sessions_open.load()) + ", refused " + std::to_string(stats.sessions_refused.load()) +
           "; vrelayd's log ends:\n" + tail(relay.log(), 10);
  };

  Crowd crowd(relay.control_port());
  auto start = Clock::now();
  bool opened = crowd.open(kSessions, 45s);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_TRUE(opened) << crowd.hellos() << " of " << kSessions << " sessions got their HELLO in " << seconds
                      << " s; first failure: " << crowd.error() << "\n" << diagnosis();
  EXPECT_EQ(crowd.hellos(), kSessions);
  ASSERT_TRUE(wait_until([&] { return stats.sessions_open.load() == kSessions; }, 10000ms))
      << "control.sessions_open is " << stats.sessions_open.load() << ", not " << kSessions << "; " << diagnosis();

  // Events about the newcomers (JOIN) may still be on their way: the sessions must be idle.
  ASSERT_TRUE(crowd.settle(15s)) << crowd.error() << "; " << diagnosis();

  // A sample spread over the whole crowd, first and last included; 10 s for all of them.
  auto pings_deadline = Clock::now() + 10s;
  size_t wrong = 0;
  for (size_t i = 0; i < 100 && wrong < 3; ++i) {
    size_t index = i * (kSessions - 1) / 99;
    std::string reply = crowd.ping(index, pings_deadline);
    EXPECT_EQ(reply, "OK PONG") << "session " << index;
    wrong += reply != "OK PONG";
  }
  EXPECT_EQ(stats.sessions_open.load(), kSessions);
  EXPECT_EQ(relay.restarts(kControl), 0u) << diagnosis();
  EXPECT_EQ(relay.child_pid(kControl), control);

  crowd.close_all();
  EXPECT_TRUE(wait_until([&] { return stats.sessions_open.load() == 0; }, 20000ms))
      << stats.sessions_open.load() << " sessions still open 20 s after their clients left; " << diagnosis();
}

}  // namespace
}  // namespace vrelay::test
