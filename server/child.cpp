// Helpers every child process of vrelayd uses to report its state to the supervisor.
#include "child.hpp"

#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>

#include "log.hpp"

namespace vrelay {

void mark_ready(ChildContext& ctx) {
  ProcessSlot& slot = ctx.segment.process(ctx.role);
  slot.heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed);
  slot.state.store(uint32_t(ProcessState::kReady), std::memory_order_release);
}

void heartbeat(ChildContext& ctx) {
  ctx.segment.process(ctx.role).heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed);
}

namespace {
// The supervisor counts every SIGUSR1 in log_reopens; a child reopens log.file when it sees
// the count change, within a heartbeat.
void reopen_log_if_asked(ChildContext& ctx, uint64_t* seen) {
  uint64_t asked = ctx.segment.stats().supervisor.log_reopens.load(std::memory_order_relaxed);
  if (asked == *seen) return;
  *seen = asked;
  if (Status reopened = log::reopen(); !reopened) LOG_ERROR("%s", reopened.error().c_str());
}
}  // namespace

ChildLoop::ChildLoop(ChildContext& ctx) : ctx_(ctx), loop_(ev_loop_new(unsigned(EVFLAG_AUTO) | unsigned(EVFLAG_NOENV))) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGHUP);  // a reload: only for a child that asked (on_reload), never fatal
  sigaddset(&stop, SIGUSR2);  // replaced by a reload: stop as on SIGTERM (replaced())
  sigprocmask(SIG_BLOCK, &stop, nullptr);  // threads started later inherit the mask
  signal_fd_ = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
  ev_io_init(&signals_, [](struct ev_loop* loop, ev_io* w, int) {
    auto* self = static_cast<ChildLoop*>(w->data);
    signalfd_siginfo info;
    if (read(w->fd, &info, sizeof info) != ssize_t(sizeof info)) return;
    if (info.ssi_signo == SIGHUP) {
      if (self->on_reload_) self->on_reload_();
      return;
    }
    self->replaced_ = info.ssi_signo == SIGUSR2;
    ev_break(loop, EVBREAK_ALL);
  }, signal_fd_, EV_READ);
  signals_.data = this;
  ev_io_start(loop_, &signals_);
  // `systemctl kill -s USR1` reaches every process of the unit: only the supervisor acts on
  // it (control installs its own handler, to wake session threads).
  signal(SIGUSR1, SIG_IGN);
  log_reopens_seen_ = ctx.segment.stats().supervisor.log_reopens.load(std::memory_order_relaxed);
  ev_timer_init(&beat_, [](struct ev_loop*, ev_timer* w, int) {
    auto* self = static_cast<ChildLoop*>(w->data);
    heartbeat(self->ctx_);
    reopen_log_if_asked(self->ctx_, &self->log_reopens_seen_);
  }, 1., 1.);
  beat_.data = this;
  ev_timer_start(loop_, &beat_);
}

ChildLoop::~ChildLoop() {
  ev_loop_destroy(loop_);
  close(signal_fd_);
}

void ChildLoop::run() {
  mark_ready(ctx_);
  ev_run(loop_, 0);
}

void ChildLoop::stop() { ev_break(loop_, EVBREAK_ALL); }

}  // namespace vrelay
