// vrelayctl watch PORT [--play]: subscribe UDP PORT of this machine to the stream, keep the
// session open and print the relay's lines as they arrive, until Ctrl-C or SIGTERM, which
// send DESCONECTAR (bounded wait for its OK) and stop the player if --play started one.
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "client.hpp"
#include "player.hpp"

namespace vrelay::ctl {

namespace {

class Watch : public Session {
 public:
  Watch(struct ev_loop* loop, const Options& options) : Session(loop, options) {}
  ~Watch() override {
    ev_child_stop(loop_, &child_);
    player_.stop();
  }

 private:
  static void print_line(const std::string& raw) {
    printf("%s\n", printable(raw).c_str());
    fflush(stdout);
  }

  void on_ready(const std::string& hello) override {
    if (!options_.json) print_line(hello);  // (with --json, standard output is JSON lines only)
    json_then([this] { subscribe(); });
  }

  void subscribe() {
    start_keepalive();
    std::string line = "CONECTAR " + std::to_string(options_.udp_port);
    send(line, [this](const std::string& raw, const ServerLine& reply) {
      print_line(raw);
      if (leaving()) return;  // Ctrl-C came first: no player
      if (reply.kind != ServerLine::Kind::kOk) {
        finish(kExitErr);
        return;
      }
      if (options_.play) {
        if (Status started = player_.start(options_.udp_port); !started) {
          complain(started.error());
          leave(kExitErr);
          return;
        }
        ev_child_init(&child_, [](struct ev_loop*, ev_child* w, int) {
          static_cast<Watch*>(w->data)->player_exited(w->rstatus);
        }, player_.pid(), 0);
        child_.data = this;
        ev_child_start(loop_, &child_);
        complain("playing udp://@:" + std::to_string(options_.udp_port) + " with cvlc" +
                 (player_.user().empty() ? "" : " as user " + player_.user()) + " (pid " +
                 std::to_string(player_.pid()) + "); Ctrl-C stops");
      } else {
        complain("the relay sends the stream to UDP port " + std::to_string(options_.udp_port) +
                 " of this machine; Ctrl-C stops");
      }
    });
    expect_reply_within(options_.timeout_s, line);
  }

  void player_exited(int wait_status) {
    ev_child_stop(loop_, &child_);
    player_.exited(wait_status);
    if (leaving() || finished()) return;
    bool clean = WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
    complain(std::string("the player exited") +
             (WIFEXITED(wait_status) ? " with status " + std::to_string(WEXITSTATUS(wait_status))
                                     : " on signal " + std::to_string(WTERMSIG(wait_status))));
    leave(clean ? kExitOk : kExitErr, [](const std::string& raw, const ServerLine&) { print_line(raw); });
  }

  void on_event(const std::string& raw, const ServerLine&) override { print_line(raw); }
  void on_unexpected(const std::string& raw) override { print_line(raw); }

  void on_closed(const std::string& why) override {
    report("the relay closed the connection" + (why.empty() ? "" : ": " + why));
    finish(kExitErr);
  }

  void on_signal(int sig) override {
    // The terminal echoed ^C without a newline: the reply goes on a line of its own.
    if (sig == SIGINT && isatty(STDOUT_FILENO)) print_line("");
    if (leaving()) {  // a second Ctrl-C: stop waiting
      finish(kExitOk);
      return;
    }
    leave(kExitOk, [](const std::string& raw, const ServerLine&) { print_line(raw); });
  }

  Player player_;
  ev_child child_{};
};

}  // namespace

int run_watch(const Options& options) {
  struct ev_loop* loop = ev_default_loop(0);
  int status;
  {
    Watch session(loop, options);
    status = session.run();
  }  // the player is stopped here
  return status;
}

}  // namespace vrelay::ctl
