// vrelayctl: the TCP connection to the relay (see connection.hpp).
#include "connection.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstring>

namespace vrelay::ctl {

Connection::Connection(struct ev_loop* loop, int fd, Handler& handler) : loop_(loop), fd_(fd), handler_(handler) {
  ev_io_init(&read_watcher_, [](struct ev_loop*, ev_io* w, int) { static_cast<Connection*>(w->data)->on_readable(); },
             fd_, EV_READ);
  ev_io_init(&write_watcher_, [](struct ev_loop*, ev_io* w, int) { static_cast<Connection*>(w->data)->on_writable(); },
             fd_, EV_WRITE);
  read_watcher_.data = write_watcher_.data = this;
  ev_io_start(loop_, &read_watcher_);
}

Connection::~Connection() { close(); }

void Connection::close() {
  if (fd_ < 0) return;
  ev_io_stop(loop_, &read_watcher_);
  ev_io_stop(loop_, &write_watcher_);
  ::close(fd_);
  fd_ = -1;
}

void Connection::send_line(std::string_view line) {
  if (fd_ < 0 || write_shut_) return;
  out_.append(line);
  out_ += "\r\n";
  flush();
}

void Connection::shutdown_write() {
  if (fd_ < 0 || write_shut_) return;
  write_shut_ = true;
  if (out_.empty()) ::shutdown(fd_, SHUT_WR);  // else once the queue is out (flush)
}

void Connection::flush() {
  size_t sent = 0;
  while (sent < out_.size()) {
    ssize_t n = send(fd_, out_.data() + sent, out_.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += size_t(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      out_.erase(0, sent);
      closed(strerror(errno));
      return;
    }
  }
  out_.erase(0, sent);
  if (out_.empty()) {
    ev_io_stop(loop_, &write_watcher_);
    if (write_shut_) ::shutdown(fd_, SHUT_WR);
  } else {
    ev_io_start(loop_, &write_watcher_);
  }
}

void Connection::on_writable() { flush(); }

void Connection::on_readable() {
  char buffer[16384];
  ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    // A last line without its LF still counts.
    if (!in_.empty() && !discarding_) {
      std::string last;
      last.swap(in_);
      if (!last.empty() && last.back() == '\r') last.pop_back();
      handler_.on_server_line(last);
      if (fd_ < 0) return;
    }
    closed(n == 0 ? std::string() : std::string(strerror(errno)));
    return;
  }
  size_t start = 0;
  for (size_t i = 0; i < size_t(n); ++i) {
    if (buffer[i] != '\n') continue;
    if (discarding_) {
      discarding_ = false;
    } else {
      in_.append(buffer + start, i - start);
      if (!in_.empty() && in_.back() == '\r') in_.pop_back();
      std::string line;
      line.swap(in_);
      handler_.on_server_line(line);
      if (fd_ < 0) return;  // the handler closed the connection
    }
    start = i + 1;
  }
  if (!discarding_) {
    in_.append(buffer + start, size_t(n) - start);
    if (in_.size() > kMaxLine) {  // show what came, drop the rest of this line
      std::string line;
      line.swap(in_);
      line.resize(kMaxLine);
      line += " [cut]";
      discarding_ = true;
      handler_.on_server_line(line);
    }
  }
}

void Connection::closed(const std::string& why) {
  close();
  handler_.on_server_closed(why);
}

}  // namespace vrelay::ctl
