// Helpers every child process of vrelayd uses to report its state to the supervisor.
#include "child.hpp"

#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>

namespace vrelay {

void mark_ready(ChildContext& ctx) {
  ProcessSlot& slot = ctx.segment.process(ctx.role);
  slot.heartbeat_ns.store(now_ns(), std::memory_order_relaxed);
  slot.state.store(uint32_t(ProcessState::kReady), std::memory_order_release);
}

void heartbeat(ChildContext& ctx) {
  ctx.segment.process(ctx.role).heartbeat_ns.store(now_ns(), std::memory_order_relaxed);
}

ChildLoop::ChildLoop(ChildContext& ctx) : ctx_(ctx), loop_(ev_loop_new(unsigned(EVFLAG_AUTO) | unsigned(EVFLAG_NOENV))) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);  // threads started later inherit the mask
  signal_fd_ = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
  ev_io_init(&signals_, [](struct ev_loop* loop, ev_io* w, int) {
    signalfd_siginfo info;
    if (read(w->fd, &info, sizeof info) == ssize_t(sizeof info)) ev_break(loop, EVBREAK_ALL);
  }, signal_fd_, EV_READ);
  ev_io_start(loop_, &signals_);
  ev_timer_init(&beat_, [](struct ev_loop*, ev_timer* w, int) { heartbeat(*static_cast<ChildContext*>(w->data)); },
                1., 1.);
  beat_.data = &ctx_;
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
