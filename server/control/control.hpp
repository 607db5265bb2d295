// The control process: a libev acceptor on the main thread, one thread per session
// (Session: its socket, its line reader and its outbox), and the registry every session
// thread consults (registry.hpp). Internal to server/control/.
#pragma once
#include <ev.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "child.hpp"
#include "log.hpp"
#include "protocol.hpp"
#include "rate_limit.hpp"
#include "registry.hpp"
#include "subscriber_table.hpp"

namespace vrelay {

class Control;

// LIST and INFO show an output NAME as output:NAME (no session name has a ':').
constexpr std::string_view kOutputPrefix = "output:";

// ERR no-such-user, worded once.
protocol::Reply no_such_user(std::string_view name);

class Session;

// The protocol side of one session: what its commands set (its subscription, moderation)
// and their handlers (commands.cpp), one per commands.def entry. It never touches the
// socket: its Session reads the lines, sends the replies, and does what a reply asks of the
// connection (a new reply format, closing after it).
class Conversation {
 public:
  Conversation(Control& control, Session& session) : control_(control), session_(session) {}
  // The access check, then the command's handler.
  protocol::Reply execute(const protocol::Parsed& command);
  int subscription() const { return subscription_.load(std::memory_order_acquire); }
  bool watching() const;  // subscribed and playing
  void end_subscription();

 private:
#define VRELAY_COMMAND(id, ...) protocol::Reply command_##id(const protocol::Parsed& command);
#include "commands.def"
#undef VRELAY_COMMAND
  std::optional<uint16_t> call_port(const protocol::Parsed& command) const;
  protocol::Reply output_info(std::string_view name);
  void wait_unless_stopping(uint64_t until_ns) const;

  Control& control_;
  Session& session_;
  std::atomic<int> subscription_{-1};
  bool moderator_ = false;
};

// One client connection, served by its own thread: I/O only (the line reader, the outbox,
// the poll loop); its Conversation runs the commands. The thread waits in ppoll() on its
// socket alone (one descriptor per session) with the timer as the poll's deadline; other
// threads wake it with SIGUSR1 when they queue lines for it. No libev loop per session:
// its eventfd and its per-descriptor arrays cost too much at 10,000 sessions.
class Session : public std::enable_shared_from_this<Session>, private protocol::LineReader::Sink {
 public:
  Session(Control& control, int fd, uint64_t id, const Endpoint& peer);
  ~Session() override;
  void run();  // the thread body

  // From any thread: queue an event, rendered in this session's format, as whole lines
  // (never interleaved with another). A session whose outbox overflows is cut off.
  void post(const protocol::Event& event, bool then_close = false);
  void post_rendered(const std::string& text_line, const std::string& json_line, bool then_close = false);

  uint64_t id() const { return id_; }
  int fd() const { return fd_; }
  const Endpoint& peer() const { return peer_; }
  uint64_t started_ns() const { return started_ns_; }
  int subscription() const { return conversation_.subscription(); }
  std::string name() const;
  // The configuration this session works with (its own thread): refreshed before each read.
  const Config& config() const { return *settings_; }

  // What a command's reply asks of the connection (from the session's own thread).
  void after_reply(std::function<void()> action) { after_reply_.push_back(std::move(action)); }
  void change_format(bool json) { format_change_ = json; }  // with the reply (FORMAT)
  void close_after_reply();                                  // the reply is the last line

 private:
  friend class Control;
  friend class Registry;  // name_
  void on_line(std::string_view line) override;
  void on_line_too_long() override;
  void on_telnet_reply(std::string_view bytes) override;

  void on_readable();
  void on_wake();     // lines were queued, or a close was requested
  void on_timer();    // the idle timeout, or the grace to send the last lines
  void flush();
  void reply(const protocol::Reply& reply);
  void arm_timer();

  void refresh_settings();

  Control& control_;
  uint64_t settings_generation_;          // read before settings_: a reload between is seen again
  std::shared_ptr<const Config> settings_;
  std::atomic<uint32_t> outbox_limit_;  // control.outbox_bytes, for the threads that post
  int fd_;
  uint64_t id_;
  Endpoint peer_;
  uint64_t started_ns_;
  protocol::LineReader reader_;
  RateLimit rate_;
  Conversation conversation_;
  bool json_ = false;                    // guarded by out_mutex_
  std::optional<bool> format_change_;    // FORMAT's new form, applied with its reply
  bool close_with_reply_ = false;        // DESCONECTAR: the session closes with its reply
  bool closing_ = false;     // close once the outbox is sent
  bool reading_ = true;      // input paused while our own replies wait to be read
  std::vector<std::function<void()>> after_reply_;

  std::mutex out_mutex_;     // guards outbox_, close_requested_, running_, wake_sent_, dropped_events_
  std::string outbox_;
  bool close_requested_ = false;
  bool running_ = false;     // the thread is in its loop and may be signalled
  bool wake_sent_ = false;   // one SIGUSR1 in flight is enough
  uint64_t dropped_events_ = 0;  // events a subscribed session could not take, not told yet

  std::string name_;         // guarded by the Registry's lock

  pthread_t thread_{};
  bool stop_ = false;        // leave the loop
  bool want_write_ = false;  // the outbox waits for room in the socket
  uint64_t deadline_ns_ = 0; // monotonic; 0 = no timer
};

// Installs the (empty) SIGUSR1 handler that interrupts a session thread's ppoll().
void install_session_wakeup();

class Control {
 public:
  explicit Control(ChildContext& ctx);
  void accept_ready();
  void expire_orphans();
  // The configuration's outputs into the subscriber table, at start and on every reload.
  void apply_outputs(const Config& config);
  void shutdown(const std::string& reason);   // tell every session, wait for them (bounded)
  void hand_over();                           // replaced by a reload: sessions end, subscriptions stay
  void request_shutdown(const std::string& by);  // a moderator's SHUTDOWN
  // The configuration in force: ctx.config at start, then what the last reload made it
  // (the supervisor validated the file and sent SIGHUP). A session takes its own snapshot
  // when settings_generation() changed, so the lock is held for a copy of a pointer only.
  std::shared_ptr<const Config> settings() const;
  uint64_t settings_generation() const { return settings_generation_.load(std::memory_order_acquire); }
  void reload_settings();  // main thread

  void session_started(Session& session);     // EVENT JOIN to the others
  void session_ended(Session& session);       // EVENT LEAVE, calls hung up
  // To every other session; a presence event (JOIN, LEAVE, RENAME) only to the named ones
  // when control.presence_events is "named".
  size_t send_to_others(const Session& from, const protocol::Event& event, bool presence = false);
  // EVENT SOURCE stalled|live to every session when ingest.stalled changes.
  void watch_source();
  // EVENT UNREACHABLE <port> to the session whose subscription the fan-out found unreachable
  // (pausing it first), when fanout.unreachable changes.
  void watch_unreachable();

  ChildContext& ctx;
  SubscriberTable table;
  control_stats& stats;
  Registry registry;
  std::atomic<bool> stopping{false};
  std::atomic<bool> handing_over{false};  // ending sessions leave their subscriptions

 private:
  void start_thread(std::shared_ptr<Session> session);
  size_t send_to_sessions(const Session* except, const protocol::Event& event, bool presence);
  void announce_source(bool live);
  uint64_t stalls_seen_;  // ingest.stalls when last looked at
  uint64_t unreachable_seen_ = ~0ull;  // fanout.unreachable when last looked at (none yet)
  bool announced_live_;   // what the sessions were last told (or would have been)
  pthread_attr_t thread_attr_;  // of every session thread
  // A connection flood logs a few lines a second, each saying how many it left out.
  log::Throttle refusals_log_{kNsPerSecond};
  log::Throttle connections_log_{kNsPerSecond, 20}, disconnections_log_{kNsPerSecond, 20};
  mutable std::mutex settings_mutex_;  // guards settings_
  std::shared_ptr<const Config> settings_;
  std::atomic<uint64_t> settings_generation_{0};
  std::mutex reason_mutex_;     // guards shutdown_reason_
  std::string shutdown_reason_;
};


}  // namespace vrelay
