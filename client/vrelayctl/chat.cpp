// vrelayctl chat [--name NAME]: a chat view of the relay's sessions. Messages, joins,
// leaves, renames, kicks and the shutdown show as readable lines as they happen; a typed
// line goes to everyone (BROADCAST), lines starting with / are commands (/help).
#include <csignal>
#include <ctime>
#include <memory>

#include "console_session.hpp"

namespace vrelay::ctl {

namespace {

class Chat : public ConsoleSession {
 public:
  Chat(struct ev_loop* loop, const Options& options) : ConsoleSession(loop, options) {}

 private:
  std::string prompt() const { return my_name_ + "> "; }

  // Before the console exists (the name is being set) lines wait here.
  void show(const std::string& line) {
    if (console_) console_->print(line);
    else early_.push_back(line);
  }

  void on_ready(const std::string&) override {
    if (options_.name.empty() || options_.name == my_name_) {
      open_view();
      return;
    }
    send("NAME " + options_.name, [this](const std::string& raw, const ServerLine& reply) {
      if (leaving()) return;
      if (reply.kind == ServerLine::Kind::kOk) {
        my_name_ = options_.name;
        open_view();
        return;
      }
      if (reply.type == "name-taken")
        report("the name '" + options_.name + "' is taken on this relay; choose another with --name");
      else
        report("the relay refused the name '" + options_.name + "': " + printable(raw));
      finish(kExitErr);
    });
    expect_reply_within(options_.timeout_s, "NAME " + options_.name);
  }

  void open_view() {
    start_console(prompt());
    console_->print(printable("* connected to vrelay " + version_ + " at " + options_.server + " as " + my_name_));
    console_->print("* /help lists the commands, /quit leaves");
    for (auto& l : early_) console_->print(l);
    early_.clear();
    send_command(ChatInput{ChatInput::Kind::kSend, ChatInput::What::kList, "LIST", "", "", ""});
    start_keepalive();
  }

  void send_command(const ChatInput& in) {
    if (Status can_send = sendable(in.line); !can_send) {
      console_->print("! not sent: " + can_send.error());
      return;
    }
    send(in.line, [this, in](const std::string& raw, const ServerLine& reply) { show_reply(in, raw, reply); });
  }

  // Replies are shown briefly; an ERR always.
  void show_reply(const ChatInput& in, const std::string& raw, const ServerLine& reply) {
    if (reply.kind != ServerLine::Kind::kOk) {
      show("! " + printable(raw));
      return;
    }
    const std::string& text = reply.text;
    switch (in.what) {
      case ChatInput::What::kBroadcast:
        if (text == "0") show("* (nobody else is connected)");
        break;
      case ChatInput::What::kMsg:
        break;
      case ChatInput::What::kList: {
        std::vector<std::string> count;
        std::string names;
        if (take_words(text, 1, &count, &names)) show(printable("* " + count[0] + " online: " + names));
        else show(printable("* " + text));
        break;
      }
      case ChatInput::What::kInfo:
        show(printable("* " + text));
        break;
      case ChatInput::What::kName:
        my_name_ = in.target;
        show(printable("* you are now " + my_name_));
        console_->set_prompt(prompt());
        break;
      case ChatInput::What::kCall:
        show(printable("* calling " + in.target + "; you receive on UDP port " + in.port));
        break;
      case ChatInput::What::kAnswer:
        show(printable("* answered " + in.target + "; you receive on UDP port " + in.port));
        break;
      case ChatInput::What::kHangup:
        show(printable("* hung up on " + in.target));
        break;
      case ChatInput::What::kRaw:
        show(printable(raw));
        break;
    }
  }

  void on_input_line(const std::string& line) override {
    if (leaving()) return;
    ChatInput in = parse_chat_input(line, my_name_);
    switch (in.kind) {
      case ChatInput::Kind::kNothing:
        return;
      case ChatInput::Kind::kQuit:
        console_->stop_input();
        leave(kExitOk);
        return;
      case ChatInput::Kind::kLocal:
        if (in.text.empty()) {
          for (auto& l : chat_help()) console_->print(l);
        } else {
          console_->print(in.text);
        }
        return;
      case ChatInput::Kind::kSend:
        break;
    }
    if (Status can_send = sendable(in.line); !can_send) {
      console_->print("! not sent: " + can_send.error());
      return;
    }
    if (in.what == ChatInput::What::kRaw) {  // /raw DESCONECTAR (or an alias) is a way to leave
      std::vector<std::string> words;
      std::string rest;
      if (take_words(in.line, 1, &words, &rest) && is_disconnect_word(words[0])) {
        console_->stop_input();
        leave(kExitOk, [this](const std::string& raw, const ServerLine&) { show(printable(raw)); });
        return;
      }
    }
    // A message replaces its input line by the way others see it.
    std::time_t now = std::time(nullptr);
    if (in.what == ChatInput::What::kBroadcast) {
      console_->erase_entered(line);
      console_->print(printable(clock_prefix(now) + "<" + my_name_ + "> " + in.text));
    } else if (in.what == ChatInput::What::kMsg) {
      console_->erase_entered(line);
      console_->print(printable(clock_prefix(now) + "(private to " + in.target + ") <" + my_name_ + "> " + in.text));
    }
    send_command(in);
  }

  void on_input_eof() override { leave_now(); }

  void leave_now() override {
    if (leaving()) return;
    if (console_) console_->leave_with("/quit");
    leave(kExitOk);
  }

  void on_event(const std::string& raw, const ServerLine& event) override {
    // Our own rename (a relay may tell us too): the prompt follows.
    if (event.type == "RENAME") {
      std::vector<std::string> w;
      std::string rest;
      if (take_words(event.text, 2, &w, &rest) && w[0] == my_name_ && w[1] != my_name_) {
        my_name_ = w[1];
        if (console_) console_->set_prompt(prompt());
        show(printable("* you are now " + my_name_));
        return;
      }
    }
    (void)raw;
    if (auto text = format_chat_event(event, my_name_, std::time(nullptr))) show(printable(*text));
  }

  void on_unexpected(const std::string& raw) override { show(printable(raw)); }

  void on_closed(const std::string& why) override {
    report("the relay closed the connection" + (why.empty() ? "" : ": " + why));
    finish(kExitErr);
  }

  std::vector<std::string> early_;
};

}  // namespace

int run_chat(const Options& options) {
  struct ev_loop* loop = ev_default_loop(0);
  Chat session(loop, options);
  return session.run();
}

}  // namespace vrelay::ctl
