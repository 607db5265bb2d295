// vrelayd's control process: accepts control sessions on the main thread (libev), enforces
// the session limits, and runs each session on a thread of its own with a small stack.
#include "control.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "log.hpp"

namespace vrelay {

Control::Control(ChildContext& c)
    : ctx(c), table(c.segment, uint64_t(c.config.control.orphan_grace_s) * 1000000000ull),
      stats(c.segment.stats().control) {}

namespace {
int g_reserve_fd = -1;  // released at the descriptor limit so one connection can be shed

void refuse(int fd, const char* why) {
  std::string line = protocol::err_line(protocol::ErrorCode::kBusy, why);
  ssize_t ignored = send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)ignored;
  close(fd);
}
}  // namespace

void Control::accept_ready() {
  while (true) {
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(ctx.sockets.control, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && g_reserve_fd >= 0) {
        // Out of descriptors: shed the waiting connection instead of spinning on it.
        close(g_reserve_fd);
        int shed = accept4(ctx.sockets.control, nullptr, nullptr, SOCK_CLOEXEC);
        stats.sessions_refused.fetch_add(1, std::memory_order_relaxed);
        if (shed >= 0) refuse(shed, "the relay is out of file descriptors");
        g_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        LOG_WARN("out of file descriptors: refused a control connection");
      }
      return;
    }
    Endpoint peer = Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    std::shared_ptr<Session> session;
    const char* refusal = nullptr;
    {
      std::lock_guard lock(mutex_);
      uint32_t& from_ip = per_ip_[peer.host()];
      if (sessions_.size() >= ctx.config.control.max_sessions) {
        refusal = "too many sessions, try again later";
      } else if (from_ip >= ctx.config.control.max_sessions_per_ip) {
        refusal = "too many sessions from your address";
      } else {
        ++from_ip;
        session = std::make_shared<Session>(*this, fd, next_id_++, peer);
        sessions_[session->id()] = session;
      }
      if (from_ip == 0) per_ip_.erase(peer.host());
    }
    if (refusal) {
      stats.sessions_refused.fetch_add(1, std::memory_order_relaxed);  // counted before it is seen
      refuse(fd, refusal);
      LOG_INFO("refused %s: %s", peer.to_string().c_str(), refusal);
      continue;
    }
    stats.sessions_total.fetch_add(1, std::memory_order_relaxed);
    stats.sessions_open.fetch_add(1, std::memory_order_relaxed);
    start_thread(session);
  }
}

void Control::start_thread(std::shared_ptr<Session> session) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, size_t(ctx.config.control.thread_stack_kib) * 1024);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  // Session threads never take signals: the main thread's libev loop handles them.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  auto* arg = new std::shared_ptr<Session>(session);
  pthread_t thread;
  int rc = pthread_create(&thread, &attr, [](void* p) -> void* {
    std::unique_ptr<std::shared_ptr<Session>> owned(static_cast<std::shared_ptr<Session>*>(p));
    (*owned)->run();
    return nullptr;
  }, arg);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    delete arg;
    LOG_WARN("cannot start a session thread: %s", strerror(rc));
    stats.sessions_refused.fetch_add(1, std::memory_order_relaxed);
    std::string line = protocol::err_line(protocol::ErrorCode::kBusy, "the relay cannot take more sessions");
    ssize_t ignored = send(session->fd(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)ignored;
    session_ended(*session);  // the last reference goes: the socket closes
  }
}

void Control::session_ended(Session& session) {
  std::lock_guard lock(mutex_);
  if (!sessions_.erase(session.id())) return;
  auto it = per_ip_.find(session.peer().host());
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
  stats.sessions_open.fetch_sub(1, std::memory_order_relaxed);
  all_ended_.notify_all();
}

void Control::expire_orphans() {
  int removed = table.expire_orphans(now_ns());
  if (removed) LOG_INFO("removed %d subscriptions of a previous control process nobody took over", removed);
}

void Control::shutdown(const std::string& reason) {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, s] : sessions_) all.push_back(s);
  }
  for (auto& s : all) s->post(protocol::event_line("SHUTDOWN", reason), true);
  std::unique_lock lock(mutex_);
  all_ended_.wait_for(lock, std::chrono::seconds(3), [&] { return sessions_.empty(); });
}

int run_control(ChildContext& ctx) {
  ChildLoop child(ctx);
  Control control(ctx);
  control.table.orphan_all();
  g_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

  ev_io acceptor;
  ev_io_init(&acceptor, [](struct ev_loop*, ev_io* w, int) { static_cast<Control*>(w->data)->accept_ready(); },
             ctx.sockets.control, EV_READ);
  acceptor.data = &control;
  ev_io_start(child.loop(), &acceptor);
  ev_timer orphans;
  ev_timer_init(&orphans, [](struct ev_loop*, ev_timer* w, int) { static_cast<Control*>(w->data)->expire_orphans(); },
                1., 1.);
  orphans.data = &control;
  ev_timer_start(child.loop(), &orphans);

  LOG_INFO("accepting control sessions on %s", ctx.segment.header().control_address);
  child.run();
  ev_io_stop(child.loop(), &acceptor);
  control.shutdown("the relay is stopping");
  return 0;
}

}  // namespace vrelay
