// vrelayctl: the control session every mode uses, and the one-shot mode
// (`vrelayctl [-s HOST:PORT] COMMAND [ARGS]`).
#include "client.hpp"
#include "net.hpp"

#include <strings.h>

#include <csignal>
#include <cstdio>

namespace vrelay::ctl {

namespace {
// "10 s", "0.5 s".
std::string seconds(double s) {
  char buf[32];
  snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}
}  // namespace

void complain(const std::string& message) {
  fflush(stdout);
  fprintf(stderr, "vrelayctl: %s\n", message.c_str());
}

Session::Session(struct ev_loop* loop, const Options& options) : loop_(loop), options_(options) {
  ev_init(&timer_, [](struct ev_loop*, ev_timer* w, int) {
    auto* self = static_cast<Session*>(w->data);
    auto fn = std::move(self->timer_fn_);
    self->timer_fn_ = nullptr;
    if (fn) fn();
  });
  timer_.data = this;
  ev_init(&keepalive_, [](struct ev_loop*, ev_timer* w, int) {
    auto* self = static_cast<Session*>(w->data);
    if (!self->leaving_ && !self->finished_) self->send("PING", nullptr);
  });
  keepalive_.data = this;
}

Session::~Session() {
  ev_timer_stop(loop_, &timer_);
  ev_timer_stop(loop_, &keepalive_);
  for (auto& s : signals_) ev_signal_stop(loop_, s.get());
}

int Session::run() {
  auto fd = connect_tcp(options_.host, options_.port, options_.timeout_s);
  if (!fd) {
    report("cannot connect to the relay at " + options_.server + ": " + fd.error());
    return kExitUnreachable;
  }
  conn_ = std::make_unique<Connection>(loop_, *fd, *this);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    auto w = std::make_unique<ev_signal>();
    ev_signal_init(w.get(), [](struct ev_loop*, ev_signal* s, int) {
      auto* self = static_cast<Session*>(s->data);
      if (!self->finished_) self->on_signal(s->signum);
    }, sig);
    w->data = this;
    ev_signal_start(loop_, w.get());
    signals_.push_back(std::move(w));
  }
  start_timer(options_.timeout_s, [this] {
    report("the relay at " + options_.server + " sent no greeting within " + seconds(options_.timeout_s));
    finish(kExitNoAnswer);
  });
  ev_run(loop_, 0);
  return status_;
}

void Session::watch_terminal_signals(std::function<void(int)> fn) {
  terminal_fn_ = std::move(fn);
  for (int sig : {SIGTSTP, SIGCONT, SIGWINCH}) {
    auto w = std::make_unique<ev_signal>();
    ev_signal_init(w.get(), [](struct ev_loop*, ev_signal* s, int) {
      auto* self = static_cast<Session*>(s->data);
      if (self->terminal_fn_) self->terminal_fn_(s->signum);
    }, sig);
    w->data = this;
    ev_signal_start(loop_, w.get());
    signals_.push_back(std::move(w));
  }
}

void Session::report(const std::string& message) { complain(message); }

void Session::start_timer(double seconds, std::function<void()> fn) {
  ev_timer_stop(loop_, &timer_);
  timer_fn_ = std::move(fn);
  ev_timer_set(&timer_, seconds, 0.);
  ev_timer_start(loop_, &timer_);
}

void Session::expect_reply_within(double limit, const std::string& what) {
  reply_timer_ = true;
  start_timer(limit, [this, limit, what] {
    report("no reply from the relay at " + options_.server + " within " + seconds(limit) + " (" + what + ")");
    finish(kExitNoAnswer);
  });
}

void Session::send(const std::string& line, ReplyFn fn) {
  pending_.push_back(std::move(fn));
  if (conn_) conn_->send_line(line);
  if (ev_is_active(&keepalive_)) ev_timer_again(loop_, &keepalive_);  // the relay just heard from us
}

void Session::json_then(std::function<void()> next) {
  if (!options_.json) {
    next();
    return;
  }
  send("FORMAT JSON", [this, next](const std::string& raw, const ServerLine& reply) {
    if (reply.kind != ServerLine::Kind::kOk) {
      report("the relay at " + options_.server + " cannot reply in JSON (FORMAT JSON: " + printable(raw) + ")");
      finish(kExitNoAnswer);
      return;
    }
    next();
  });
  expect_reply_within(options_.timeout_s, "FORMAT JSON");
}

void Session::start_keepalive() {
  if (options_.keepalive_s <= 0) return;
  keepalive_.repeat = options_.keepalive_s;
  ev_timer_again(loop_, &keepalive_);
}

void Session::on_server_line(std::string_view line) {
  if (finished_) return;
  std::string raw(line);
  if (!greeted_) {
    if (parse_hello(raw, &version_, &my_name_)) {
      greeted_ = true;
      ev_timer_stop(loop_, &timer_);
      timer_fn_ = nullptr;
      if (!leaving_) on_ready(raw);  // (after an early Ctrl-C, only DESCONECTAR goes)
      return;
    }
    ServerLine first = classify(raw);
    if (first.kind == ServerLine::Kind::kErr)
      report("the relay at " + options_.server + " refused the session: " + printable(raw));
    else
      report(options_.server + " does not answer as a vrelay relay (it sent '" + printable(raw) + "')");
    finish(kExitNoAnswer);
    return;
  }
  ServerLine parsed = classify(raw);  // text or JSON (--json)
  if (parsed.is_event()) {
    on_event(raw, parsed);
    return;
  }
  if (pending_.empty()) {
    on_unexpected(raw);
    return;
  }
  ReplyFn fn = std::move(pending_.front());
  pending_.pop_front();
  if (reply_timer_) {
    reply_timer_ = false;
    ev_timer_stop(loop_, &timer_);
    timer_fn_ = nullptr;
  }
  if (fn) fn(raw, parsed);
}

void Session::on_unexpected(const std::string& raw) { report("unexpected line from the relay: " + printable(raw)); }

void Session::on_server_closed(const std::string& why) {
  if (finished_) return;
  if (leaving_) {
    finish(leave_status_);
    return;
  }
  on_closed(why);
}

void Session::leave(int status, ReplyFn on_reply, double bound) {
  if (leaving_) return;
  leaving_ = true;
  leave_status_ = status;
  if (!conn_ || !conn_->is_open()) {
    finish(status);
    return;
  }
  auto replied = std::make_shared<bool>(false);
  send("DESCONECTAR", [on_reply, replied](const std::string& raw, const ServerLine& reply) {
    *replied = true;
    if (on_reply) on_reply(raw, reply);
  });
  reply_timer_ = false;
  start_timer(bound, [this, bound, replied] {
    if (!*replied)
      report("the relay did not answer DESCONECTAR within " + seconds(bound) + "; closing the connection");
    finish(leave_status_);
  });
}

void Session::finish(int status) {
  if (finished_) return;
  finished_ = true;
  status_ = status;
  ev_timer_stop(loop_, &timer_);
  ev_timer_stop(loop_, &keepalive_);
  if (conn_) conn_->close();
  ev_break(loop_, EVBREAK_ALL);
}

// ---- one-shot mode ----

namespace {

class OneShot : public Session {
 public:
  OneShot(struct ev_loop* loop, const Options& options, std::string command)
      : Session(loop, options), command_(std::move(command)) {}

 private:
  void on_ready(const std::string&) override { json_then([this] { send_command(); }); }

  void send_command() {
    std::string rest;
    take_words(command_, 1, &words_, &rest);
    bool disconnect = !words_.empty() && is_disconnect_word(words_[0]);
    send(command_, [this, disconnect](const std::string& raw, const ServerLine& reply) {
      printf("%s\n", printable(raw).c_str());
      fflush(stdout);
      int status;
      if (reply.kind == ServerLine::Kind::kOk) {
        status = kExitOk;
      } else if (reply.kind == ServerLine::Kind::kErr) {
        status = kExitErr;
      } else {
        report("the reply is neither OK nor ERR");
        status = kExitNoAnswer;
      }
      if (status == kExitOk && !words_.empty() &&
          (strcasecmp(words_[0].c_str(), "CONECTAR") == 0 || strcasecmp(words_[0].c_str(), "CONNECT") == 0))
        complain("note: the subscription ends with this session; 'vrelayctl watch PORT' keeps one open");
      got_reply_ = true;
      status_after_ = status;
      if (!disconnect) conn_->shutdown_write();  // the relay ends the session, then closes
      // Wait (briefly) for the relay to close, so the session ends cleanly on both sides.
      start_close_wait();
    });
    expect_reply_within(options_.timeout_s, command_);
  }

  void start_close_wait() {
    ev_timer_init(&close_wait_, [](struct ev_loop*, ev_timer* w, int) {
      auto* self = static_cast<OneShot*>(w->data);
      self->finish(self->status_after_);
    }, 2.0, 0.);
    close_wait_.data = this;
    ev_timer_start(loop_, &close_wait_);
  }

  void on_event(const std::string&, const ServerLine&) override {}  // not shown in one-shot mode

  void on_closed(const std::string& why) override {
    ev_timer_stop(loop_, &close_wait_);
    if (got_reply_) {
      finish(status_after_);
      return;
    }
    report("the relay at " + options_.server + " closed the connection before replying" + (why.empty() ? "" : ": " + why));
    finish(kExitNoAnswer);
  }

  void on_signal(int) override { finish(130); }

  std::string command_;
  std::vector<std::string> words_;
  bool got_reply_ = false;
  int status_after_ = 0;
  ev_timer close_wait_{};

 public:
  ~OneShot() override { ev_timer_stop(loop_, &close_wait_); }
};

}  // namespace

int run_oneshot(const Options& options) {
  std::string command = join_words(options.command);
  if (Status can_send = sendable(command); !can_send) {
    complain("cannot send that command: " + can_send.error());
    return kExitUsage;
  }
  struct ev_loop* loop = ev_default_loop(0);
  OneShot session(loop, options, command);
  return session.run();
}

}  // namespace vrelay::ctl
