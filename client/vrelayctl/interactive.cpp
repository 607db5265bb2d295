// vrelayctl: the original client's form, `vrelayctl <ServerIP> <ServerPort> <PuertoVLC>`:
// subscribe PuertoVLC, then send every line typed on the console and print the relay's
// lines (replies and events, as the relay writes them) as they arrive.
#include <csignal>
#include <memory>

#include "client.hpp"
#include "console.hpp"

namespace vrelay::ctl {

namespace {

constexpr const char* kPrompt = "vrelay> ";

class Interactive : public Session, public Console::Handler {
 public:
  Interactive(struct ev_loop* loop, const Options& options) : Session(loop, options) {}

 private:
  void on_ready(const std::string& hello) override {
    console_ = std::make_unique<Console>(loop_, *this, kPrompt);
    watch_terminal_signals([this](int sig) {
      if (!console_) return;
      if (sig == SIGTSTP) console_->suspend();
      else if (sig == SIGCONT) console_->resume();
      else console_->resized();
    });
    console_->print(printable(hello));
    std::string subscribe = "CONECTAR " + std::to_string(options_.udp_port);
    if (console_->editing()) console_->print(kPrompt + subscribe);  // as if typed
    send(subscribe, [this](const std::string& raw, const ServerLine&) { console_->print(printable(raw)); });
    start_keepalive();
  }

  void on_input_line(const std::string& line) override {
    if (leaving()) return;
    if (line.find_first_not_of(" \t") == std::string::npos) return;  // the relay would not answer
    std::string why;
    if (!sendable(line, &why)) {
      console_->note("vrelayctl: not sent: " + why);
      return;
    }
    std::vector<std::string> words;
    std::string rest;
    take_words(line, 1, &words, &rest);
    if (is_disconnect_word(words[0])) {
      // The user leaves by hand: the relay answers OK and closes; that is a clean end.
      console_->stop_input();
      leave(kExitOk, [this](const std::string& raw, const ServerLine&) { console_->print(printable(raw)); });
      return;
    }
    send(line, [this](const std::string& raw, const ServerLine&) { console_->print(printable(raw)); });
  }

  void on_input_eof() override { leave_now(); }

  void leave_now() {
    if (leaving()) return;
    if (console_) console_->leave_with("DESCONECTAR");
    leave(kExitOk, [this](const std::string& raw, const ServerLine&) {
      if (console_) console_->print(printable(raw));
    });
  }

  void on_event(const std::string& raw, const ServerLine&) override { console_->print(printable(raw)); }

  void on_unexpected(const std::string& raw) override {
    if (console_) console_->print(printable(raw));
  }

  void on_closed(const std::string& why) override {
    report("the relay closed the connection" + (why.empty() ? "" : ": " + why));
    finish(kExitErr);
  }

  void on_signal(int sig) override {
    if (sig == SIGINT && console_ && console_->clear_input()) return;  // Ctrl-C drops a partial line
    if (leaving()) {  // a second Ctrl-C: do not wait any longer
      finish(kExitOk);
      return;
    }
    leave_now();
  }

  void report(const std::string& message) override {
    if (console_) console_->stop();
    complain(message);
  }

  std::unique_ptr<Console> console_;

 public:
  ~Interactive() override {
    if (console_) console_->stop();
  }
};

}  // namespace

int run_positional(const Options& options) {
  struct ev_loop* loop = ev_default_loop(0);
  Interactive session(loop, options);
  return session.run();
}

}  // namespace vrelay::ctl
