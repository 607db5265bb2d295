// vrelay-probe's control session (see control.hpp). Lines from the relay end with CR LF;
// a line longer than kMaxLine is a protocol error, so the buffer stays bounded.
#include "control.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "net.hpp"

namespace vrelay::probe {

namespace {

constexpr size_t kMaxLine = 64 * 1024;
using Clock = std::chrono::steady_clock;

Clock::time_point deadline_after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? int(left) + 1 : 0;  // round up: never a busy 0 ms poll before the deadline
}

std::string seconds_text(double s) {
  char buf[32];
  snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

}  // namespace

ControlSession::~ControlSession() { close(); }

int ControlSession::wait_for(short events, int timeout_ms, std::string* error) {
  for (;;) {
    pollfd p[2] = {{fd_, events, 0}, {interrupt_fd_, POLLIN, 0}};
    int n = poll(p, interrupt_fd_ >= 0 ? 2 : 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = std::string("poll: ") + strerror(errno);
      return -1;
    }
    if (n == 0) return 0;
    if (interrupt_fd_ >= 0 && (p[1].revents & POLLIN)) {
      interrupted_ = true;
      *error = "interrupted";
      return -1;
    }
    return 1;
  }
}

void ControlSession::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool ControlSession::open(const std::string& host, const std::string& port, double timeout_s, std::string* error) {
  auto deadline = deadline_after(timeout_s);
  std::string why;
  fd_ = connect_tcp(host, port, timeout_s, &why, interrupt_fd_);
  if (fd_ < 0) {
    interrupted_ = why == "interrupted";
    *error = interrupted_ ? why : "cannot connect to the relay at " + host + ":" + port + ": " + why;
    return false;
  }
  std::string line;
  double left = std::chrono::duration<double>(deadline - Clock::now()).count();
  switch (read_line(left > 0 ? left : 0, &line, error)) {
    case Read::kLine: break;
    case Read::kTimeout: *error = "no greeting from the relay within " + seconds_text(timeout_s); close(); return false;
    case Read::kClosed: *error = "the relay closed the connection before its greeting"; close(); return false;
    case Read::kError: close(); return false;
  }
  if (line.rfind("EVENT HELLO ", 0) != 0) {
    *error = "not a vrelay relay (its first line is '" + line.substr(0, 80) + "', not EVENT HELLO)";
    close();
    return false;
  }
  return true;
}

bool ControlSession::take_line(std::string* line) {
  size_t lf = buffer_.find('\n');
  if (lf == std::string::npos) return false;
  size_t end = lf > 0 && buffer_[lf - 1] == '\r' ? lf - 1 : lf;
  line->assign(buffer_, 0, end);
  buffer_.erase(0, lf + 1);
  return true;
}

ControlSession::Read ControlSession::read_line(double timeout_s, std::string* line, std::string* error) {
  auto deadline = deadline_after(timeout_s);
  for (;;) {
    if (take_line(line)) return Read::kLine;
    if (buffer_.size() > kMaxLine) {
      *error = "the relay sent a line longer than " + std::to_string(kMaxLine) + " bytes";
      return Read::kError;
    }
    int n = wait_for(POLLIN, ms_left(deadline), error);
    if (n < 0) return Read::kError;
    if (n == 0) return Read::kTimeout;
    char chunk[4096];
    ssize_t got = recv(fd_, chunk, sizeof chunk, 0);
    if (got == 0) return Read::kClosed;
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      *error = std::string("connection to the relay: ") + strerror(errno);
      return Read::kError;
    }
    buffer_.append(chunk, size_t(got));
  }
}

bool ControlSession::send_line(const std::string& line, std::string* error) {
  std::string bytes = line + "\r\n";
  size_t sent = 0;
  auto deadline = deadline_after(5);  // a few bytes into an empty socket buffer: never long
  while (sent < bytes.size()) {
    ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      if (poll(&p, 1, ms_left(deadline)) == 0) {
        *error = "cannot send to the relay: its connection does not drain";
        return false;
      }
      continue;
    }
    *error = std::string("cannot send to the relay: ") + strerror(errno);
    return false;
  }
  return true;
}

bool ControlSession::command(const std::string& command, double timeout_s, std::string* reply, std::string* error) {
  if (!send_line(command, error)) return false;
  auto deadline = deadline_after(timeout_s);
  for (;;) {
    double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    switch (read_line(left > 0 ? left : 0, reply, error)) {
      case Read::kLine: break;
      case Read::kTimeout: *error = "no reply to " + command + " within " + seconds_text(timeout_s); return false;
      case Read::kClosed: *error = "the relay closed the connection before replying to " + command; return false;
      case Read::kError: return false;
    }
    if (reply->rfind("EVENT ", 0) == 0) continue;  // other sessions' news
    if (pending_replies_ > 0) {  // a PING's reply, still due before ours
      --pending_replies_;
      continue;
    }
    return true;
  }
}

bool ControlSession::subscribe(uint16_t udp_port, double timeout_s, std::string* error) {
  std::string line = "CONECTAR " + std::to_string(udp_port), reply;
  if (!command(line, timeout_s, &reply, error)) return false;
  if (reply == "OK") return true;
  *error = "the relay refused " + line + ": " + reply.substr(0, 200);
  return false;
}

bool ControlSession::service(std::string* error) {
  for (;;) {
    char chunk[4096];
    ssize_t got = recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
    if (got == 0) {
      *error = "the relay closed the connection" + (last_event_.empty() ? "" : " (after '" + last_event_ + "')");
      close();
      return false;
    }
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      *error = std::string("connection to the relay: ") + strerror(errno);
      close();
      return false;
    }
    buffer_.append(chunk, size_t(got));
    std::string line;
    while (take_line(&line)) {
      if (line.rfind("EVENT ", 0) == 0)
        last_event_ = line.substr(0, 200);
      else if (pending_replies_ > 0)
        --pending_replies_;
    }
    if (buffer_.size() > kMaxLine) {
      *error = "the relay sent a line longer than " + std::to_string(kMaxLine) + " bytes";
      close();
      return false;
    }
  }
  return true;
}

bool ControlSession::ping(std::string* error) {
  if (!send_line("PING", error)) return false;
  ++pending_replies_;
  return true;
}

bool ControlSession::unsubscribe(double timeout_s, std::string* error) {
  std::string reply;
  if (!command("DESCONECTAR", timeout_s, &reply, error)) return false;
  if (reply != "OK") {
    *error = "the relay answered DESCONECTAR with: " + reply.substr(0, 200);
    return false;
  }
  close();  // the relay closes its side after this OK
  return true;
}

}  // namespace vrelay::probe
