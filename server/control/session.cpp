// One control session (PROTOCOL.md): its thread, its loop, its line discipline and its
// outbox. The commands themselves are in commands.cpp.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "control.hpp"
#include "log.hpp"
#include "version.hpp"

namespace vrelay {

using protocol::ErrorCode;

namespace {
constexpr double kCloseGraceSeconds = 2.0;  // to send the last lines before closing
}  // namespace

Session::Session(Control& control, int fd, uint64_t id, const Endpoint& peer)
    : control_(control), fd_(fd), id_(id), peer_(peer), started_ns_(now_ns()),
      reader_(control.ctx.config.control.max_line),
      rate_(control.ctx.config.control.rate_limit, control.ctx.config.control.rate_burst) {}

Session::~Session() {
  if (fd_ >= 0) close(fd_);
}

std::string Session::name() const { return control_.name_of(*this); }

bool Session::watching() const {
  int slot = subscription();
  return slot >= 0 && control_.ctx.segment.subscribers()[slot].state.load(std::memory_order_relaxed) ==
                          uint32_t(SubscriberState::kPlaying);
}

void Session::post(const protocol::Event& event, bool then_close) {
  post_rendered(protocol::render(event, false), protocol::render(event, true), then_close);
}

void Session::post_rendered(const std::string& text_line, const std::string& json_line, bool then_close) {
  bool cut_off = false;
  {
    std::lock_guard lock(out_mutex_);
    const std::string& line = json_ ? json_line : text_line;  // the form in force at this point
    if (close_requested_ && !then_close) return;  // leaving: nothing more to say
    if (outbox_.size() + line.size() > control_.ctx.config.control.outbox_bytes) {
      cut_off = !close_requested_;
      close_requested_ = true;  // a reader this slow is cut off, never waited for
    } else {
      outbox_ += line;
    }
    if (then_close) close_requested_ = true;
    if (loop_alive_) ev_async_send(loop_, &wake_);
  }
  if (cut_off) {
    control_.stats.slow_disconnects.fetch_add(1, std::memory_order_relaxed);
    LOG_NOTICE("%s: disconnected, it does not read what it is sent", peer_.to_string().c_str());
  }
}

void Session::reply(const protocol::Reply& r) {
  auto& counter = r.ok ? control_.stats.commands_ok : control_.stats.commands_err;
  counter.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(out_mutex_);
  // FORMAT switches under the lock its reply is queued with: every line after that reply,
  // events from other threads included, is in the new form, and none before it.
  if (format_change_) json_ = *std::exchange(format_change_, std::nullopt);
  outbox_ += protocol::render(r, json_);
}

void Session::run() {
  loop_ = ev_loop_new(unsigned(EVBACKEND_POLL) | unsigned(EVFLAG_NOENV) | unsigned(EVFLAG_NOSIGMASK));
  ev_io_init(&read_watcher_, [](struct ev_loop*, ev_io* w, int) { static_cast<Session*>(w->data)->on_readable(); },
             fd_, EV_READ);
  ev_io_init(&write_watcher_, [](struct ev_loop*, ev_io* w, int) { static_cast<Session*>(w->data)->flush(); }, fd_,
             EV_WRITE);
  ev_async_init(&wake_, [](struct ev_loop*, ev_async* w, int) {
    auto* self = static_cast<Session*>(w->data);
    bool close_now;
    {
      std::lock_guard lock(self->out_mutex_);
      close_now = self->close_requested_ && !self->closing_;
    }
    if (close_now) {
      self->closing_ = true;
      self->arm_timer();
    }
    self->flush();
  });
  ev_init(&timer_, [](struct ev_loop* loop, ev_timer* w, int) {
    auto* self = static_cast<Session*>(w->data);
    if (self->closing_) {  // the peer did not take the last lines in time
      ev_break(loop, EVBREAK_ALL);
      return;
    }
    if (self->watching()) {  // a viewer watching the stream is not idle; keepalive finds dead peers
      self->arm_timer();
      return;
    }
    self->control_.stats.idle_timeouts.fetch_add(1, std::memory_order_relaxed);
    LOG_INFO("%s (%s): idle timeout", self->name().c_str(), self->peer_.to_string().c_str());
    self->post(protocol::Event{"BYE", "idle", protocol::Fields{{"reason", "idle"}}}, true);
  });
  for (auto* w : {reinterpret_cast<ev_watcher*>(&read_watcher_), reinterpret_cast<ev_watcher*>(&write_watcher_),
                  reinterpret_cast<ev_watcher*>(&wake_), reinterpret_cast<ev_watcher*>(&timer_)})
    w->data = this;
  ev_io_start(loop_, &read_watcher_);
  ev_async_start(loop_, &wake_);
  arm_timer();
  // A viewer's host that vanishes (no FIN, no RST) is found within about 2 minutes.
  int on = 1, idle = 60, interval = 10, count = 6;
  setsockopt(fd_, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  setsockopt(fd_, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd_, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd_, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);

  std::string hello = protocol::event_line("HELLO", std::string("vrelay ") + VRELAY_VERSION + " " + name());
  {
    std::lock_guard lock(out_mutex_);
    loop_alive_ = true;
    outbox_.insert(0, hello);
    if (close_requested_) closing_ = true;
  }
  LOG_DEBUG("%s connected from %s", name().c_str(), peer_.to_string().c_str());
  flush();
  control_.session_started(*this);
  ev_run(loop_, 0);

  {
    std::lock_guard lock(out_mutex_);
    loop_alive_ = false;
  }
  end_subscription();
  ev_loop_destroy(loop_);
  loop_ = nullptr;
  shutdown(fd_, SHUT_RDWR);
  LOG_DEBUG("%s (%s) ended", name().c_str(), peer_.to_string().c_str());
  control_.session_ended(*this);
}

void Session::arm_timer() {
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
  if (!closing_) {
    arm_timer();  // any input is activity, an over-long line or a telnet NOP too
    reader_.feed(buffer, size_t(n), *this);
  }
  flush();
}

void Session::flush() {
  bool broken = false;
  size_t left;
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
    left = outbox_.size();
  }
  if (broken) {
    ev_break(loop_, EVBREAK_ALL);
    return;
  }
  // A client that sends commands without reading the replies is not read either until it
  // catches up: its own replies never grow the outbox past half the limit.
  bool backlog = left > control_.ctx.config.control.outbox_bytes / 2;
  if (backlog && reading_) ev_io_stop(loop_, &read_watcher_);
  if (!backlog && !reading_) ev_io_start(loop_, &read_watcher_);
  reading_ = !backlog;
  if (left) {
    ev_io_start(loop_, &write_watcher_);
  } else {
    ev_io_stop(loop_, &write_watcher_);
    if (closing_) ev_break(loop_, EVBREAK_ALL);
  }
}

void Session::on_line(std::string_view line) {
  if (closing_) return;  // lines pipelined after DESCONECTAR, KICK or SHUTDOWN are not run
  protocol::Parsed parsed = protocol::parse(line);
  if (!parsed.ok && parsed.message.empty()) return;  // blank line: no reply
  if (!rate_.allow(double(monotonic_ns()) / 1e9)) {
    control_.stats.rate_limited.fetch_add(1, std::memory_order_relaxed);
    reply(protocol::err(ErrorCode::kTooFast, "more than " + std::to_string(control_.ctx.config.control.rate_limit) +
                                                 " lines per second; slow down"));
    return;
  }
  reply(parsed.ok ? execute(parsed) : protocol::err(parsed.error, parsed.message));
  // Events a command causes (to this session too) follow its reply.
  auto actions = std::move(after_reply_);
  after_reply_.clear();
  for (auto& action : actions) action();
}

void Session::on_line_too_long() {
  reply(protocol::err(ErrorCode::kLineTooLong,
                      "lines are limited to " + std::to_string(control_.ctx.config.control.max_line) + " bytes"));
}

void Session::on_telnet_reply(std::string_view bytes) {
  std::lock_guard lock(out_mutex_);
  outbox_.append(bytes);
}

void Session::end_subscription() {
  int slot = subscription_.exchange(-1);
  if (slot < 0) return;
  control_.table.release(slot);
  LOG_INFO("%s (%s): subscription ended", name().c_str(), peer_.to_string().c_str());
}

}  // namespace vrelay
