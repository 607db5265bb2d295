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

#include "crowd.hpp"
#include "harness.hpp"

namespace vrelay::test {
namespace {

constexpr size_t kSessions = 10000;

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
  bool opened = crowd.grow(kSessions, 45s);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_TRUE(opened) << crowd.open() << " of " << kSessions << " sessions got their HELLO in " << seconds
                      << " s; first failure: " << crowd.error() << "\n" << diagnosis();
  EXPECT_EQ(crowd.open(), kSessions);
  ASSERT_TRUE(wait_until([&] { return stats.sessions_open.load() == kSessions; }, 10000ms))
      << "control.sessions_open is " << stats.sessions_open.load() << ", not " << kSessions << "; " << diagnosis();

  // Events about the newcomers (JOIN) may still be on their way: the sessions must be idle.
  ASSERT_TRUE(crowd.settle(15s)) << crowd.error() << "; " << diagnosis();

  // A sample spread over the whole crowd, first and last included.
  size_t wrong = 0;
  for (size_t i = 0; i < 100 && wrong < 3; ++i) {
    size_t index = i * (kSessions - 1) / 99;
    bool answered = crowd.ping(index) >= 0;
    EXPECT_TRUE(answered) << crowd.error();
    wrong += !answered;
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
