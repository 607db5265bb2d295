// What a child process of vrelayd inherits from the supervisor across fork().
#pragma once
#include <ev.h>

#include <functional>

#include "config.hpp"
#include "shm.hpp"

namespace vrelay {

struct Sockets {
  int control = -1;  // listening TCP socket
  int ingest = -1;   // bound UDP socket the source sends to
  int fanout = -1;   // bound UDP socket the copies to IPv6 viewers leave from, [::]:PORT
  int fanout4 = -1;  // the same port for IPv4 viewers, 0.0.0.0:PORT (may be `fanout` itself)
  int wake = -1;     // eventfd: ingest -> fan-out "the ring has data"
  int http = -1;     // listening TCP socket of the HTTP endpoint (http.listen), or -1
};

struct ChildContext {
  const Config& config;  // as the child was started with
  // Reads the configuration again as the supervisor does (file, command-line overrides,
  // validation); throws ConfigError. For a child that applies a reload in place (control).
  const std::function<Config()>& reload_config;
  Segment& segment;
  Sockets sockets;
  Role role;
};

// Exit status of a child that must not be restarted (its configuration cannot work).
constexpr int kExitConfig = 78;

// Descriptors the fan-out needs: one socket per subscriber, and a reserve.
uint32_t fanout_descriptors(const Config& config);

int run_ingest(ChildContext& ctx);
int run_fanout(ChildContext& ctx);
int run_control(ChildContext& ctx);
int run_http(ChildContext& ctx);

// Marks the child ready in shared memory and keeps its heartbeat; shared by all children.
void mark_ready(ChildContext& ctx);
void heartbeat(ChildContext& ctx);

// The event loop of a child: a fresh libev loop (never the supervisor's), SIGTERM/SIGINT
// end it, and a timer keeps the heartbeat in shared memory. Signals arrive through a
// signalfd: libev's own signal table still names the supervisor's loop after fork().
class ChildLoop {
 public:
  explicit ChildLoop(ChildContext& ctx);
  ~ChildLoop();
  struct ev_loop* loop() const { return loop_; }
  void run();  // until SIGTERM/SIGINT or stop()
  void stop();
  // SIGHUP from the supervisor: it validated a new configuration (control applies it).
  void on_reload(std::function<void()> action) { on_reload_ = std::move(action); }
  // Stopped by SIGUSR2: a reload replaces this process, the relay goes on.
  bool replaced() const { return replaced_; }

 private:
  ChildContext& ctx_;
  struct ev_loop* loop_;
  int signal_fd_ = -1;
  ev_io signals_{};
  ev_timer beat_{};
  uint64_t log_reopens_seen_ = 0;
  std::function<void()> on_reload_;
  bool replaced_ = false;
};

}  // namespace vrelay
