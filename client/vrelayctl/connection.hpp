// vrelayctl: the TCP connection to the relay's control port, on a libev loop: connects
// with a deadline, splits what the relay sends into lines (CR LF or LF), sends lines ending
// in CR LF. It never sends telnet IAC bytes: every line goes through sendable() first.
#pragma once
#include <ev.h>

#include <string>
#include <string_view>

namespace vrelay::ctl {

class Connection {
 public:
  struct Handler {
    virtual ~Handler() = default;
    virtual void on_server_line(std::string_view line) = 0;  // without its CR LF
    virtual void on_server_closed(const std::string& why) = 0;  // "" when the relay closed cleanly
  };

  Connection(struct ev_loop* loop, int fd, Handler& handler);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Queues line + CR LF. The caller has checked it with sendable().
  void send_line(std::string_view line);
  // No more lines from us (the relay sees end of input, as DESCONECTAR); keep reading.
  void shutdown_write();
  void close();
  bool is_open() const { return fd_ >= 0; }

  // Lines longer than this (the relay's own lines are far shorter) are cut.
  static constexpr size_t kMaxLine = 1 << 20;

 private:
  void on_readable();
  void on_writable();
  void flush();
  void closed(const std::string& why);

  struct ev_loop* loop_;
  int fd_;
  Handler& handler_;
  ev_io read_watcher_{}, write_watcher_{};
  std::string in_, out_;
  bool discarding_ = false;  // inside a line that was cut
  bool write_shut_ = false;
};

}  // namespace vrelay::ctl
