// One control session (PROTOCOL.md): its thread, its line discipline and its commands.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "control.hpp"
#include "log.hpp"
#include "version.hpp"

namespace vrelay {

using protocol::CommandId;
using protocol::ErrorCode;

namespace {
constexpr size_t kOutboxLimit = 1 << 20;   // a session that lets this much pile up is cut off
constexpr double kCloseGraceSeconds = 2.0; // to send the last lines before closing
}  // namespace

Session::Session(Control& control, int fd, uint64_t id, const Endpoint& peer)
    : control_(control), fd_(fd), id_(id), peer_(peer), name_("guest-" + std::to_string(id)),
      reader_(control.ctx.config.control.max_line) {}

Session::~Session() {
  if (fd_ >= 0) close(fd_);
}

void Session::post(const std::string& line, bool then_close) {
  std::lock_guard lock(out_mutex_);
  if (outbox_.size() + line.size() > kOutboxLimit) {
    close_requested_ = true;  // a reader this slow is cut off, never waited for
  } else {
    outbox_ += line;
  }
  if (then_close) close_requested_ = true;
  if (loop_alive_) ev_async_send(loop_, &wake_);
}

void Session::reply(std::string line) {
  auto& counter = line.compare(0, 2, "OK") == 0 ? control_.stats.commands_ok : control_.stats.commands_err;
  counter.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(out_mutex_);
  outbox_ += line;
}

void Session::run() {
  loop_ = ev_loop_new(unsigned(EVBACKEND_POLL) | unsigned(EVFLAG_NOENV) | unsigned(EVFLAG_NOSIGMASK));
  ev_io_init(&read_watcher_, [](struct ev_loop*, ev_io* w, int) { static_cast<Session*>(w->data)->on_readable(); },
             fd_, EV_READ);
  ev_io_init(&write_watcher_, [](struct ev_loop*, ev_io* w, int) { static_cast<Session*>(w->data)->flush(); }, fd_,
             EV_WRITE);
  ev_async_init(&wake_, [](struct ev_loop*, ev_async* w, int) {
    auto* self = static_cast<Session*>(w->data);
    {
      std::lock_guard lock(self->out_mutex_);
      if (self->close_requested_ && !self->closing_) {
        self->closing_ = true;
        self->arm_idle();
      }
    }
    self->flush();
  });
  ev_init(&timer_, [](struct ev_loop* loop, ev_timer* w, int) {
    auto* self = static_cast<Session*>(w->data);
    if (self->closing_) {  // the peer did not take the last lines in time
      ev_break(loop, EVBREAK_ALL);
      return;
    }
    self->control_.stats.idle_timeouts.fetch_add(1, std::memory_order_relaxed);
    LOG_INFO("%s (%s): idle timeout", self->name_.c_str(), self->peer_.to_string().c_str());
    self->post(protocol::event_line("BYE", "idle"), true);
  });
  for (auto* w : {reinterpret_cast<ev_watcher*>(&read_watcher_), reinterpret_cast<ev_watcher*>(&write_watcher_),
                  reinterpret_cast<ev_watcher*>(&wake_), reinterpret_cast<ev_watcher*>(&timer_)})
    w->data = this;
  ev_io_start(loop_, &read_watcher_);
  ev_async_start(loop_, &wake_);
  arm_idle();

  {
    std::lock_guard lock(out_mutex_);
    loop_alive_ = true;
    outbox_.insert(0, protocol::event_line("HELLO", std::string("vrelay ") + VRELAY_VERSION + " " + name_));
    if (close_requested_) closing_ = true;
  }
  LOG_DEBUG("%s connected from %s", name_.c_str(), peer_.to_string().c_str());
  flush();
  ev_run(loop_, 0);

  {
    std::lock_guard lock(out_mutex_);
    loop_alive_ = false;
  }
  end_subscription();
  ev_loop_destroy(loop_);
  loop_ = nullptr;
  shutdown(fd_, SHUT_RDWR);
  LOG_DEBUG("%s (%s) ended", name_.c_str(), peer_.to_string().c_str());
  control_.session_ended(*this);
}

void Session::arm_idle() {
  double after = closing_ ? kCloseGraceSeconds : double(control_.ctx.config.control.idle_timeout_s);
  if (after <= 0) {
    ev_timer_stop(loop_, &timer_);
    return;
  }
  timer_.repeat = after;
  ev_timer_again(loop_, &timer_);
}

void Session::on_readable() {
  char buffer[4096];
  ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    ev_break(loop_, EVBREAK_ALL);  // the peer left: as DESCONECTAR
    return;
  }
  if (n < 0) return;
  if (!closing_) reader_.feed(buffer, size_t(n), *this);
  flush();
}

void Session::flush() {
  bool broken = false;
  bool done;
  {
    std::lock_guard lock(out_mutex_);
    size_t sent = 0;
    while (sent < outbox_.size()) {
      ssize_t n = send(fd_, outbox_.data() + sent, outbox_.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += size_t(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        broken = n < 0 && errno != EAGAIN && errno != EWOULDBLOCK;
        break;
      }
    }
    outbox_.erase(0, sent);
    done = outbox_.empty();
  }
  if (broken) {
    ev_break(loop_, EVBREAK_ALL);
  } else if (!done) {
    ev_io_start(loop_, &write_watcher_);
  } else {
    ev_io_stop(loop_, &write_watcher_);
    if (closing_) ev_break(loop_, EVBREAK_ALL);
  }
}

void Session::on_line(std::string_view line) {
  if (closing_) return;  // lines pipelined after DESCONECTAR are not executed
  arm_idle();
  protocol::Parsed parsed = protocol::parse(line);
  if (!parsed.ok) {
    if (!parsed.message.empty()) reply(protocol::err_line(parsed.error, parsed.message));
    return;
  }
  reply(execute(parsed));
}

void Session::on_line_too_long() {
  reply(protocol::err_line(ErrorCode::kLineTooLong,
                           "lines are limited to " + std::to_string(control_.ctx.config.control.max_line) + " bytes"));
}

void Session::on_telnet_reply(std::string_view bytes) {
  std::lock_guard lock(out_mutex_);
  outbox_.append(bytes);
}

void Session::end_subscription() {
  if (subscription_ < 0) return;
  control_.table.release(subscription_);
  LOG_INFO("%s (%s): subscription ended", name_.c_str(), peer_.to_string().c_str());
  subscription_ = -1;
}

std::string Session::execute(const protocol::Parsed& command) {
  const Config& config = control_.ctx.config;
  switch (command.spec->id) {
    case CommandId::kConnect: {
      auto port = parse_port(command.args[0], config.control.port_min, config.control.port_max);
      if (!port)
        return protocol::err_line(ErrorCode::kBadPort, "the port must be a number from " +
                                                           std::to_string(config.control.port_min) + " to " +
                                                           std::to_string(config.control.port_max));
      if (subscription_ >= 0) return protocol::err_line(ErrorCode::kAlreadyConnected, "this session already receives the stream");
      Endpoint destination = peer_;  // always the peer's own address: never another host
      destination.set_port(*port);
      bool adopted = false;
      int slot = control_.table.subscribe(destination, id_, &adopted);
      if (slot < 0) return protocol::err_line(ErrorCode::kBusy, "the subscriber table is full");
      subscription_ = slot;
      LOG_INFO("%s (%s): %s the stream to %s", name_.c_str(), peer_.to_string().c_str(),
               adopted ? "took over" : "subscribed", destination.to_string().c_str());
      return protocol::ok_line();
    }
    case CommandId::kPause:
      if (subscription_ < 0) return protocol::err_line(ErrorCode::kNotConnected, "CONECTAR first");
      control_.table.pause(subscription_);
      return protocol::ok_line();
    case CommandId::kResume:
      if (subscription_ < 0) return protocol::err_line(ErrorCode::kNotConnected, "CONECTAR first");
      control_.table.resume(subscription_);
      return protocol::ok_line();
    case CommandId::kDisconnect:
      end_subscription();
      closing_ = true;
      arm_idle();
      return protocol::ok_line();
    case CommandId::kPing:
      return protocol::ok_line("PONG");
    case CommandId::kEcho:
      return protocol::ok_line(command.args.empty() ? std::string_view() : command.args[0]);
    case CommandId::kHelp:
      return protocol::ok_line(protocol::help_text());
  }
  return protocol::err_line(ErrorCode::kUnknownCommand, "not implemented");
}

}  // namespace vrelay
