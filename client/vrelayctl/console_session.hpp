// vrelayctl: a session with a console (the original positional form and chat): line
// editing on the terminal, Ctrl-C and Ctrl-Z handled as a shell user expects.
#pragma once
#include <csignal>
#include <memory>

#include "client.hpp"
#include "console.hpp"

namespace vrelay::ctl {

class ConsoleSession : public Session, public Console::Handler {
 public:
  using Session::Session;
  ~ConsoleSession() override {
    if (console_) console_->stop();
  }

 protected:
  // Starts the console with this prompt, following suspend/resume and window resizes.
  void start_console(const std::string& prompt) {
    console_ = std::make_unique<Console>(loop_, *this, prompt);
    watch_terminal_signals([this](int sig) {
      if (!console_) return;
      if (sig == SIGTSTP) console_->suspend();
      else if (sig == SIGCONT) console_->resume();
      else console_->resized();
    });
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

  // How the mode leaves at Ctrl-C, Ctrl-D or a signal.
  virtual void leave_now() = 0;

  std::unique_ptr<Console> console_;
};

}  // namespace vrelay::ctl
