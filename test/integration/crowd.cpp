// Many control sessions at once (see crowd.hpp).
#include "crowd.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "control_client.hpp"

namespace vrelay::test {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {
constexpr size_t kInFlight = 256;     // connections waiting for their HELLO, at most
constexpr size_t kPerAddress = 1000;  // sessions per client source address 127.0.0.x
constexpr auto kReplyLimit = 5000ms;  // for one PING's reply
double us_since(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }
}  // namespace

Crowd::Crowd(uint16_t port) : port_(port), epoll_(epoll_create1(EPOLL_CLOEXEC)) {}

Crowd::~Crowd() {
  close_all();
  ::close(epoll_);
}

bool Crowd::grow(size_t target, Clock::duration limit, const std::function<void()>& tick) {
  hello_us_.clear();
  auto deadline = Clock::now() + limit;
  while (open_ < target) {
    while (conns_.size() < target && conns_.size() - open_ < kInFlight)
      if (!start_connect()) return false;
    if (Clock::now() >= deadline) {
      error_ = "deadline: " + std::to_string(open_) + " of " + std::to_string(target) + " sessions open after " +
               std::to_string(std::chrono::duration_cast<std::chrono::seconds>(limit).count()) + " s";
      return false;
    }
    if (!pump(100)) return false;
    tick();
  }
  return true;
}

bool Crowd::pump(int timeout_ms) {
  epoll_event events[512];
  int n = epoll_wait(epoll_, events, 512, timeout_ms);
  for (int i = 0; i < n; ++i)
    if (!on_ready(events[i].data.u64, events[i].events)) return false;
  return true;
}

bool Crowd::settle(Clock::duration limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    uint64_t before = events_;
    if (!pump(500)) return false;
    if (events_ == before) return true;
  }
  return fail("the relay was still sending events to the idle sessions");
}

double Crowd::ping(size_t index) {
  Conn& c = conns_[index];
  std::string name = "session " + std::to_string(index);
  std::string line;
  while (take_line(c, line)) {  // what arrived before (events) is not the reply
    if (line.rfind("EVENT ", 0) != 0) return failed(name + ": stray line '" + line + "'");
    ++events_;
  }
  auto start = Clock::now();
  if (send(c.fd, "PING\r\n", 6, MSG_NOSIGNAL) != 6) return failed(name + ": send PING: " + strerror(errno));
  auto deadline = start + kReplyLimit;
  while (true) {
    while (take_line(c, line)) {
      if (control::classify(line).is_event()) {
        ++events_;
        continue;
      }
      double took = us_since(start);
      if (line != "OK PONG") return failed(name + ": PING answered '" + line + "'");
      return took;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{c.fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, int(left)) <= 0) return failed(name + ": no PONG in 5 s");
    if (!read_some(c)) return failed(name + ": closed while waiting for PONG");
  }
}

void Crowd::close_all() {
  for (auto& c : conns_)
    if (c.fd >= 0) ::close(c.fd);
  conns_.clear();
  open_ = 0;
}

bool Crowd::start_connect() {
  size_t index = conns_.size();
  Conn c;
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) return fail(std::string("socket: ") + strerror(errno));
  // Spread the clients over source addresses; the port is chosen at connect() by the
  // whole 4-tuple, so ephemeral ports never run out.
  int one = 1;
  setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  from.sin_addr.s_addr = htonl(0x7F000002u + uint32_t(index / kPerAddress));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port_);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(c.fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
    ::close(c.fd);
    return fail(std::string("bind 127.0.0.x: ") + strerror(errno));
  }
  c.started = Clock::now();
  if (connect(c.fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS) {
    ::close(c.fd);
    return fail(std::string("connect: ") + strerror(errno));
  }
  epoll_event e{};
  e.events = EPOLLIN | EPOLLRDHUP;
  e.data.u64 = index;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &e);
  conns_.push_back(std::move(c));
  return true;
}

bool Crowd::read_some(Conn& c) {
  char buf[4096];
  while (true) {
    ssize_t n = recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      c.buffer.append(buf, size_t(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

bool Crowd::take_line(Conn& c, std::string& line) {
  auto nl = c.buffer.find("\r\n");
  if (nl == std::string::npos) return false;
  line = c.buffer.substr(0, nl);
  c.buffer.erase(0, nl + 2);
  return true;
}

bool Crowd::on_ready(size_t index, uint32_t what) {
  Conn& c = conns_[index];
  bool alive = read_some(c);
  std::string line;
  while (take_line(c, line)) {
    if (!c.open) {
      if (auto hello = control::parse_hello(line); !hello)
        return fail("session " + std::to_string(index) + ": " + hello.error());
      c.open = true;
      ++open_;
      hello_us_.push_back(us_since(c.started));
    } else if (control::classify(line).is_event()) {
      ++events_;
    } else {
      return fail("session " + std::to_string(index) + ": stray line '" + line + "'");
    }
  }
  if (!alive || (what & (EPOLLERR | EPOLLHUP | EPOLLRDHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return fail("session " + std::to_string(index) + (c.open ? " (open)" : " (before HELLO)") + ": " +
                (err ? strerror(err) : "closed by the relay"));
  }
  return true;
}

bool Crowd::fail(const std::string& why) {
  if (error_.empty()) error_ = why;
  return false;
}

double Crowd::failed(const std::string& why) {
  fail(why);
  return -1;
}

}  // namespace vrelay::test
