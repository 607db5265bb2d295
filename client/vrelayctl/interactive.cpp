// vrelayctl: the original client's form, `vrelayctl <ServerIP> <ServerPort> <PuertoVLC>`:
// subscribe PuertoVLC, then send every line typed on the console and print the relay's
// lines (replies and events, as the relay writes them) as they arrive.
#include <csignal>
#include <memory>

#include "console_session.hpp"

namespace vrelay::ctl {

namespace {

constexpr const char* kPrompt = "vrelay> ";

class Interactive : public ConsoleSession {
 public:
  Interactive(struct ev_loop* loop, const Options& options) : ConsoleSession(loop, options) {}

 private:
  void on_ready(const std::string& hello) override {
    start_console(kPrompt);
    console_->print(printable(hello));
    std::string subscribe = "CONECTAR " + std::to_string(options_.udp_port);
    if (console_->editing()) console_->print(kPrompt + subscribe);  // as if typed
    send(subscribe, [this](const std::string& raw, const ServerLine&) { console_->print(printable(raw)); });
    start_keepalive();
  }

  void on_input_line(const std::string& line) override {
    if (leaving()) return;
    if (line.find_first_not_of(" \t") == std::string::npos) return;  // the relay would not answer
    if (Status can_send = sendable(line); !can_send) {
      console_->note("vrelayctl: not sent: " + can_send.error());
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

  void leave_now() override {
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

};

}  // namespace

int run_positional(const Options& options) {
  struct ev_loop* loop = ev_default_loop(0);
  Interactive session(loop, options);
  return session.run();
}

}  // namespace vrelay::ctl
