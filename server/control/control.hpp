// The control process: a libev acceptor on the main thread and one thread per session.
// Internal to server/control/.
#pragma once
#include <ev.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "child.hpp"
#include "protocol.hpp"
#include "subscriber_table.hpp"

namespace vrelay {

class Control;

// One client connection, served by its own thread running its own small libev loop:
// its socket, an ev_async that says "lines wait in the outbox", and the idle timer.
class Session : public std::enable_shared_from_this<Session>, private protocol::LineReader::Sink {
 public:
  Session(Control& control, int fd, uint64_t id, const Endpoint& peer);
  ~Session() override;
  void run();                                   // the thread body
  // From any thread: queue a whole line (never interleaved with another) and wake the loop.
  void post(const std::string& line, bool then_close = false);

  uint64_t id() const { return id_; }
  int fd() const { return fd_; }
  const Endpoint& peer() const { return peer_; }

 private:
  void on_line(std::string_view line) override;
  void on_line_too_long() override;
  void on_telnet_reply(std::string_view bytes) override;

  void on_readable();
  void flush();
  void reply(std::string line);
  std::string execute(const protocol::Parsed& command);
  void end_subscription();
  void arm_idle();

  Control& control_;
  int fd_;
  uint64_t id_;
  Endpoint peer_;
  std::string name_;
  protocol::LineReader reader_;
  int subscription_ = -1;
  bool closing_ = false;  // close once the outbox is sent

  std::mutex out_mutex_;  // guards outbox_, close_requested_ and loop_alive_
  std::string outbox_;
  bool close_requested_ = false;
  bool loop_alive_ = false;

  struct ev_loop* loop_ = nullptr;
  ev_io read_watcher_{}, write_watcher_{};
  ev_async wake_{};
  ev_timer timer_{};
};

class Control {
 public:
  explicit Control(ChildContext& ctx);
  void accept_ready();
  void expire_orphans();
  void shutdown(const std::string& reason);   // tell every session, wait for them (bounded)
  void session_ended(Session& session);

  ChildContext& ctx;
  SubscriberTable table;
  control_stats& stats;

 private:
  void start_thread(std::shared_ptr<Session> session);

  std::mutex mutex_;  // guards sessions_ and per_ip_
  std::condition_variable all_ended_;
  std::unordered_map<uint64_t, std::shared_ptr<Session>> sessions_;
  std::unordered_map<std::string, uint32_t> per_ip_;
  uint64_t next_id_ = 1;
};

}  // namespace vrelay
