// vrelayctl: what every mode shares: the options, and a control session on a libev loop
// (connect, the HELLO greeting, one reply per line sent matched in order, events, bounded
// waits, leaving with DESCONECTAR, signals).
#pragma once
#include <ev.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "connection.hpp"
#include "text.hpp"

namespace vrelay::ctl {

// Exit status of vrelayctl.
// The exit statuses, as vrelayctl(1) documents them: a script can tell a relay that is not
// there (3) or does not answer (4) from a mistake of its own (2).
enum Exit : int { kExitOk = 0, kExitErr = 1, kExitUsage = 2, kExitUnreachable = 3, kExitNoAnswer = 4 };

struct Options {
  std::string host = "127.0.0.1";
  std::string port = kDefaultPort;
  std::string server;        // as shown in messages: HOST:PORT
  bool json = false;         // --json
  double timeout_s = 10;     // --timeout: connecting, and each reply vrelayctl waits for
  double keepalive_s = 60;   // --keepalive: PING after this long without a line sent (0 = never)
  std::vector<std::string> command;  // one-shot: the words of the command
  unsigned udp_port = 0;     // watch and the positional form
  bool play = false;         // watch --play
  std::string name;          // chat --name
};

// Prints "vrelayctl: message" on standard error.
void complain(const std::string& message);

class Session : public Connection::Handler {
 public:
  using ReplyFn = std::function<void(const std::string& raw, const ServerLine& reply)>;

  Session(struct ev_loop* loop, const Options& options);
  ~Session() override;

  // Connects and runs the loop until finish(); returns the exit status.
  int run();

 protected:
  // Called once the relay's greeting has come (name = this session's name).
  virtual void on_ready(const std::string& hello_line) = 0;
  virtual void on_event(const std::string& raw, const ServerLine& event) = 0;
  // The relay closed the connection (or it broke: why is then not empty).
  virtual void on_closed(const std::string& why) = 0;
  // SIGINT, SIGTERM, SIGHUP.
  virtual void on_signal(int signal) = 0;
  // A reply line that answers no line we sent.
  virtual void on_unexpected(const std::string& raw);
  // A message that ends or troubles the session ("vrelayctl: ..." on standard error; the
  // interactive modes first give the terminal back).
  virtual void report(const std::string& message);

  // Sends a line (already checked with sendable()); fn gets its reply.
  void send(const std::string& line, ReplyFn fn);
  // Fails with a message and kExitUsage unless a reply comes within the timeout.
  void expect_reply_within(double seconds, const std::string& what);
  // Sends DESCONECTAR; on its OK (or the relay closing) finishes with `status`. After
  // `bound` seconds without either, closes anyway. on_reply, if set, sees the reply.
  void leave(int status, ReplyFn on_reply = nullptr, double bound = 3.0);
  void finish(int status);
  bool leaving() const { return leaving_; }
  bool finished() const { return finished_; }

  // From now on, sends PING (its reply unseen) whenever no line was sent for
  // options.keepalive_s seconds, so that the relay's idle timeout does not end a session
  // that is watching or waiting.
  void start_keepalive();

  // With --json, sends FORMAT JSON first (a relay that refuses it ends the session with
  // kExitUsage); then, or right away without --json, runs next.
  void json_then(std::function<void()> next);

  // Watches SIGTSTP/SIGCONT (suspend/resume on a terminal) and SIGWINCH for a console.
  void watch_terminal_signals(std::function<void(int)> fn);

  struct ev_loop* loop_;
  const Options& options_;
  std::unique_ptr<Connection> conn_;
  std::string my_name_;
  std::string version_;

 private:
  void on_server_line(std::string_view line) override;
  void on_server_closed(const std::string& why) override;
  void start_timer(double seconds, std::function<void()> fn);

  std::deque<ReplyFn> pending_;
  bool greeted_ = false;
  bool reply_timer_ = false;  // the timer waits for the next reply
  bool leaving_ = false;
  bool finished_ = false;
  int leave_status_ = 0;
  int status_ = 0;
  ev_timer timer_{};
  std::function<void()> timer_fn_;
  ev_timer keepalive_{};
  std::vector<std::unique_ptr<ev_signal>> signals_;
  std::function<void(int)> terminal_fn_;
};

// The modes (client.cpp, interactive.cpp, watch.cpp, chat.cpp).
int run_oneshot(const Options& options);
int run_positional(const Options& options);
int run_watch(const Options& options);
int run_chat(const Options& options);

}  // namespace vrelay::ctl
