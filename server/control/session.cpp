// One control session (vrelay-protocol(7)): its thread, its loop, its line discipline and its
// outbox. Its Conversation runs the commands (commands.cpp).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
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
constexpr int kSendBufferBytes = 64 * 1024;
}  // namespace

Session::Session(Control& control, int fd, uint64_t id, const Endpoint& peer)
    : control_(control), settings_generation_(control.settings_generation()), settings_(control.settings()),
      outbox_limit_(settings_->control.outbox_bytes), fd_(fd), id_(id), peer_(peer), started_ns_(wall_ns()),
      reader_(settings_->control.max_line), rate_(settings_->control.rate_limit, settings_->control.rate_burst),
      conversation_(control, *this) {}

void Session::refresh_settings() {
  uint64_t generation = control_.settings_generation();
  if (generation == settings_generation_) return;
  settings_generation_ = generation;  // before the snapshot, as at the start
  auto previous = std::move(settings_);
  settings_ = control_.settings();
  const Config::Control& now = settings_->control;
  reader_.set_max_line(now.max_line);
  if (now.rate_limit != previous->control.rate_limit || now.rate_burst != previous->control.rate_burst)
    rate_ = RateLimit(now.rate_limit, now.rate_burst);
  outbox_limit_.store(now.outbox_bytes, std::memory_order_relaxed);
  if (now.idle_timeout_s != previous->control.idle_timeout_s && !closing_) arm_timer();
}

Session::~Session() {
  if (fd_ >= 0) close(fd_);
}

std::string Session::name() const { return control_.registry.name_of(*this); }

void Session::close_after_reply() {
  closing_ = true;
  arm_timer();
  close_with_reply_ = true;  // OK is the last line: no event from others follows it
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
    if (outbox_.size() + line.size() > outbox_limit_.load(std::memory_order_relaxed)) {
      if (!then_close && subscription() >= 0) {
        // Chat never costs a viewer its stream: what it cannot take is dropped and counted,
        // and it hears how much once it has read the rest (flush).
        ++dropped_events_;
        control_.stats.events_dropped.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      cut_off = !close_requested_;
      close_requested_ = true;  // a reader this slow is cut off, never waited for
    } else {
      outbox_ += line;
    }
    if (then_close) close_requested_ = true;
    if (running_ && !wake_sent_) {
      wake_sent_ = true;
      pthread_kill(thread_, SIGUSR1);
    }
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
  // events from other threads included, is in the new form, and none before it. So does
  // DESCONECTAR's close: no event can slip in after its OK.
  if (format_change_) json_ = *std::exchange(format_change_, std::nullopt);
  outbox_ += protocol::render(r, json_);
  if (close_with_reply_) close_requested_ = true;
}

void install_session_wakeup() {
  struct sigaction wake {};
  wake.sa_handler = [](int) {};  // only interrupts ppoll()
  sigemptyset(&wake.sa_mask);
  sigaction(SIGUSR1, &wake, nullptr);
}

void Session::run() {
  thread_ = pthread_self();
  // A viewer's host that vanishes (no FIN, no RST) is found within about 2 minutes; the
  // idle timeout still ends a session whose keepalive could not be set.
  if (!try_option(fd_, SOL_SOCKET, SO_KEEPALIVE, 1) || !try_option(fd_, IPPROTO_TCP, TCP_KEEPIDLE, 60) ||
      !try_option(fd_, IPPROTO_TCP, TCP_KEEPINTVL, 10) || !try_option(fd_, IPPROTO_TCP, TCP_KEEPCNT, 6))
    LOG_DEBUG("%s: no TCP keepalive (%s)", peer_.to_string().c_str(), strerror(errno));
  // A fixed send buffer (the kernel doubles it): autotuned, a session that does not read
  // would hold megabytes in the kernel on top of control.outbox_bytes.
  if (!try_option(fd_, SOL_SOCKET, SO_SNDBUF, kSendBufferBytes))
    LOG_DEBUG("%s: no fixed send buffer (%s)", peer_.to_string().c_str(), strerror(errno));
  arm_timer();

  std::string hello = protocol::event_line("HELLO", std::string("vrelay ") + VRELAY_VERSION + " " + name());
  {
    std::lock_guard lock(out_mutex_);
    running_ = true;
    outbox_.insert(0, hello);
  }
  LOG_DEBUG("%s connected from %s", name().c_str(), peer_.to_string().c_str());
  on_wake();
  control_.session_started(*this);

  // The thread blocks every signal (see Control::start_thread) but SIGUSR1 inside ppoll():
  // a wake-up sent while it works stays pending and ends the next ppoll() at once.
  sigset_t wait_mask;
  sigfillset(&wait_mask);
  sigdelset(&wait_mask, SIGUSR1);
  while (!stop_) {
    refresh_settings();
    timespec timeout{}, *limit = nullptr;
    if (deadline_ns_) {
      uint64_t now = monotonic_ns(), left = deadline_ns_ > now ? deadline_ns_ - now : 0;
      timeout = to_timespec(left);
      limit = &timeout;
    }
    pollfd p{fd_, short((reading_ ? POLLIN : 0) | (want_write_ ? POLLOUT : 0)), 0};
    int r = ppoll(&p, 1, limit, &wait_mask);
    if (r < 0) {
      if (errno == EINTR) on_wake();
      continue;
    }
    if (r == 0) {
      on_timer();
      continue;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) on_readable();
    if (!stop_ && (p.revents & POLLOUT)) flush();
  }

  {
    std::lock_guard lock(out_mutex_);
    running_ = false;
  }
  if (!control_.handing_over.load()) conversation_.end_subscription();
  shutdown(fd_, SHUT_RDWR);
  LOG_DEBUG("%s (%s) ended", name().c_str(), peer_.to_string().c_str());
  control_.session_ended(*this);
}

void Session::on_wake() {
  bool close_now;
  {
    std::lock_guard lock(out_mutex_);
    wake_sent_ = false;
    close_now = close_requested_ && !closing_;
  }
  if (close_now) {
    closing_ = true;
    arm_timer();
  }
  flush();
}

void Session::on_timer() {
  if (closing_) {  // the peer did not take the last lines in time
    stop_ = true;
    return;
  }
  if (conversation_.watching()) {  // a viewer watching the stream is not idle; keepalive finds dead peers
    arm_timer();
    return;
  }
  control_.stats.idle_timeouts.fetch_add(1, std::memory_order_relaxed);
  LOG_INFO("%s (%s): idle timeout", name().c_str(), peer_.to_string().c_str());
  post(protocol::Event{"BYE", "idle", protocol::Fields{{"reason", "idle"}}}, true);
}

void Session::arm_timer() {
  double after = closing_ ? kCloseGraceSeconds : double(config().control.idle_timeout_s);
  deadline_ns_ = after <= 0 ? 0 : monotonic_ns() + seconds_to_ns(after);
}

void Session::on_readable() {
  // Small: a larger array would push every frame below it onto one more page of each
  // session's stack (a long line just takes more reads).
  char buffer[1024];
  ssize_t n = recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    stop_ = true;  // the peer left: as DESCONECTAR
    return;
  }
  if (n < 0) return;
  if (!closing_) reader_.feed(buffer, size_t(n), *this);
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
    // Events were dropped while it did not read: once it has read most of what waited, say so.
    if (dropped_events_ && outbox_.size() <= outbox_limit_.load(std::memory_order_relaxed) / 2) {
      outbox_ += protocol::render(
          protocol::Event{"DROPPED", std::to_string(dropped_events_), protocol::Fields{{"count", dropped_events_}}}, json_);
      dropped_events_ = 0;
    }
    left = outbox_.size();
  }
  if (broken) {
    stop_ = true;
    return;
  }
  // A client that sends commands without reading the replies is not read either until it
  // catches up: its own replies never grow the outbox past half the limit.
  reading_ = left <= outbox_limit_.load(std::memory_order_relaxed) / 2;
  want_write_ = left > 0;
  if (!left && closing_) stop_ = true;
}

void Session::on_line(std::string_view line) {
  if (closing_) return;  // lines pipelined after DESCONECTAR, KICK or SHUTDOWN are not run
  // A whole line is activity, an empty one too; bytes trickled without ever ending a line
  // are not, or one byte a minute would hold a session forever.
  arm_timer();
  protocol::Parsed parsed = protocol::parse(line);
  if (!parsed.ok && parsed.message.empty()) return;  // blank line: no reply
  if (!rate_.allow(to_seconds(monotonic_ns()))) {
    control_.stats.rate_limited.fetch_add(1, std::memory_order_relaxed);
    reply(protocol::err(ErrorCode::kTooFast, "more than " + std::to_string(config().control.rate_limit) +
                                                 " lines per second; slow down"));
    return;
  }
  reply(parsed.ok ? conversation_.execute(parsed) : protocol::err(parsed.error, parsed.message));
  // Events a command causes (to this session too) follow its reply.
  auto actions = std::move(after_reply_);
  after_reply_.clear();
  for (auto& action : actions) action();
}

void Session::on_line_too_long() {
  arm_timer();  // a line, if a long one
  reply(protocol::err(ErrorCode::kLineTooLong,
                      "lines are limited to " + std::to_string(config().control.max_line) + " bytes"));
}

void Session::on_telnet_reply(std::string_view bytes) {
  std::lock_guard lock(out_mutex_);
  outbox_.append(bytes);
}

}  // namespace vrelay
