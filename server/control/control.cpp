// vrelayd's control process: accepts control sessions on the main thread (libev), enforces
// the session limits, runs each session on a thread of its own with a small stack, and
// keeps the registry the sessions share: names, calls, moderation.
#include "control.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "log.hpp"

namespace vrelay {

using protocol::ErrorCode;
using protocol::Event;
using protocol::Fields;

namespace {
// Sessions this process can hold: one descriptor each, plus a reserve for everything else.
uint32_t sessions_that_fit(uint32_t wanted) {
  constexpr rlim_t kReserve = 64;
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_cur == RLIM_INFINITY) return wanted;
  rlim_t room = nofile.rlim_cur > kReserve ? nofile.rlim_cur - kReserve : 0;
  if (room >= wanted) return wanted;
  LOG_WARN("control.max_sessions=%u does not fit the descriptor limit (%lu): at most %lu sessions; raise LimitNOFILE",
           wanted, (unsigned long)nofile.rlim_cur, (unsigned long)room);
  return uint32_t(room);
}
}  // namespace

Control::Control(ChildContext& c)
    : ctx(c), table(c.segment, uint64_t(c.config.control.orphan_grace_s) * kNsPerSecond, c.sockets.wake),
      stats(c.segment.stats().control),
      registry(sessions_that_fit(c.config.control.max_sessions), c.config.control.max_sessions_per_ip),
      settings_(std::make_shared<const Config>(c.config)) {
  // Session threads never take signals (the main thread's loop handles them): they are born
  // with every signal blocked, without a sigprocmask around each pthread_create.
  sigset_t all;
  sigfillset(&all);
  pthread_attr_init(&thread_attr_);
  pthread_attr_setstacksize(&thread_attr_, size_t(c.config.control.thread_stack_kib) * 1024);
  pthread_attr_setdetachstate(&thread_attr_, PTHREAD_CREATE_DETACHED);
  pthread_attr_setsigmask_np(&thread_attr_, &all);
  stalls_seen_ = c.segment.stats().ingest.stalls.load(std::memory_order_relaxed);
  announced_live_ = c.segment.stats().ingest.stalled.load(std::memory_order_relaxed) == 0 &&
                    c.segment.stats().ingest.last_datagram_ns.load(std::memory_order_relaxed) != 0;
}

namespace {
int g_reserve_fd = -1;  // released at the descriptor limit so one connection can be shed

void refuse(int fd, const char* why) {
  std::string line = protocol::err_line(ErrorCode::kBusy, why);
  ssize_t ignored = send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)ignored;
  close(fd);
}
}  // namespace

void Control::accept_ready() {
  // A bounded batch per wake-up, so a connection storm never starves this loop's timers.
  for (int accepted = 0; accepted < 256; ++accepted) {
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
        if (auto note = refusals_log_.due(monotonic_ns(), "refused"))
          LOG_WARN("out of file descriptors: refused a control connection%s", note->c_str());
      }
      return;
    }
    if (stopping.load()) {
      refuse(fd, "the relay is stopping");
      continue;
    }
    Endpoint peer = Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    std::shared_ptr<Session> session;
    auto admission = registry.admit(peer, [&](uint64_t id) { return std::make_shared<Session>(*this, fd, id, peer); },
                                    &session);
    if (admission != Registry::Admission::kAdmitted) {
      const char* refusal = admission == Registry::Admission::kRelayFull ? "too many sessions, try again later"
                                                                          : "too many sessions from your address";
      stats.sessions_refused.fetch_add(1, std::memory_order_relaxed);  // counted before it is seen
      refuse(fd, refusal);
      if (auto note = refusals_log_.due(monotonic_ns(), "refused"))
        LOG_INFO("refused %s: %s%s", peer.to_string().c_str(), refusal, note->c_str());
      continue;
    }
    stats.sessions_total.fetch_add(1, std::memory_order_relaxed);
    stats.sessions_open.fetch_add(1, std::memory_order_relaxed);
    // Logged here, on the main thread: formatting a log line takes more stack than a
    // session thread otherwise ever touches.
    if (auto note = connections_log_.due(monotonic_ns(), "connections"))
      LOG_INFO("%s (%s) connected%s", session->name_.c_str(), peer.to_string().c_str(), note->c_str());
    start_thread(session);
  }
}

void Control::start_thread(std::shared_ptr<Session> session) {
  auto* arg = new std::shared_ptr<Session>(session);
  pthread_t thread;
  int rc = pthread_create(&thread, &thread_attr_, [](void* p) -> void* {
    std::unique_ptr<std::shared_ptr<Session>> owned(static_cast<std::shared_ptr<Session>*>(p));
    (*owned)->run();
    return nullptr;
  }, arg);
  if (rc != 0) {
    delete arg;
    LOG_WARN("cannot start a session thread: %s", strerror(rc));
    stats.sessions_refused.fetch_add(1, std::memory_order_relaxed);
    std::string line = protocol::err_line(ErrorCode::kBusy, "the relay cannot take more sessions");
    ssize_t ignored = send(session->fd(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)ignored;
    session_ended(*session);  // the last reference goes: the socket closes
  }
}

void Control::session_started(Session& session) {
  // Only the sessions that were there before hear the JOIN: a later one sees this one in
  // LIST already, whichever thread runs first. With nobody to tell, nothing is rendered:
  // this runs on the new session's thread, whose every touched stack page stays its RSS.
  auto earlier = registry.audience(nullptr, settings()->control.presence_to_named_only, &session);
  if (earlier.empty()) return;
  std::string name = registry.name_of(session);
  Event event{"JOIN", name, Fields{{"name", name}}};
  std::string text = protocol::render(event, false), json = protocol::render(event, true);
  for (auto& s : earlier) s->post_rendered(text, json);
}

void Control::session_ended(Session& session) {
  Registry::Removal gone;
  if (!registry.remove(session, &gone)) return;
  stats.sessions_open.fetch_sub(1, std::memory_order_relaxed);
  if (auto note = disconnections_log_.due(monotonic_ns(), "disconnections"))
    LOG_INFO("%s (%s) disconnected%s", gone.name.c_str(), session.peer().to_string().c_str(), note->c_str());
  // Calls of a session that leaves end: the other side hears a HANGUP.
  for (auto& peer : gone.hung_up) peer->post(Event{"HANGUP", gone.name, Fields{{"from", gone.name}}});
  if (!stopping.load()) send_to_others(session, Event{"LEAVE", gone.name, Fields{{"name", gone.name}}}, true);
}

size_t Control::send_to_others(const Session& from, const Event& event, bool presence) {
  return send_to_sessions(&from, event, presence);
}

size_t Control::send_to_sessions(const Session* except, const Event& event, bool presence) {
  // Render once per format, then queue to each: the sender never waits for a reader.
  auto others = registry.audience(except, presence && settings()->control.presence_to_named_only);
  std::string text = protocol::render(event, false), json = protocol::render(event, true);
  for (auto& s : others) s->post_rendered(text, json);
  return others.size();
}

void Control::watch_source() {
  // Ingest counts each fall into a stall (stalls) and keeps the state (stalled); "no
  // source yet" is stalled without a stall, so it is not announced. A stall and recovery
  // between two checks are both announced, in order.
  const ingest_stats& ingest = ctx.segment.stats().ingest;
  uint64_t stalls = ingest.stalls.load(std::memory_order_relaxed);
  bool live = ingest.stalled.load(std::memory_order_relaxed) == 0;
  if (stalls != stalls_seen_) {
    stalls_seen_ = stalls;
    // A fall into a stall means the source was live before it: a check that came too late
    // to see that (a loaded host, a stall_timeout under the check interval) says it first.
    if (!announced_live_) announce_source(true);
    announce_source(false);
  }
  if (live && !announced_live_) announce_source(true);
}

void Control::watch_unreachable() {
  uint64_t marked = ctx.segment.stats().fanout.unreachable.load(std::memory_order_acquire);
  if (marked == unreachable_seen_) return;  // the first look also takes marks left before a restart
  unreachable_seen_ = marked;
  for (const SubscriberTable::Unreachable& u : table.pause_unreachable()) {
    std::shared_ptr<Session> owner;
    {
      owner = registry.by_id(u.owner);
    }
    LOG_NOTICE("subscription to port %u paused: its port refused every datagram for %u s%s", unsigned(u.port),
               settings()->fanout.unreachable_pause_s, owner ? "" : " (an orphan)");
    if (owner)
      owner->post(Event{"UNREACHABLE", std::to_string(u.port), Fields{{"port", u.port}}});
  }
}

void Control::announce_source(bool live) {
  announced_live_ = live;
  const char* state = live ? "live" : "stalled";
  size_t told = send_to_sessions(nullptr, Event{"SOURCE", state, Fields{{"state", state}}}, false);
  LOG_INFO("source %s: told %zu sessions", state, told);
}

std::shared_ptr<const Config> Control::settings() const {
  std::lock_guard lock(settings_mutex_);
  return settings_;
}

// SIGHUP from the supervisor, which has read and validated the file: read it again (the
// same way, command-line overrides included) and put it in force. The file changed since,
// and is now wrong: the settings in force stay, as the supervisor's would.
void Control::reload_settings() {
  std::shared_ptr<const Config> next;
  try {
    next = std::make_shared<const Config>(ctx.reload_config());
  } catch (const std::exception& e) {
    LOG_ERROR("reload: %s; the configuration in force stays", e.what());
    return;
  }
  log::set_level(next->log.level);
  if (next->log.file != settings()->log.file && !next->log.file.empty())
    if (Status opened = log::use_file(next->log.file); !opened) LOG_ERROR("reload: log.file: %s", opened.error().c_str());
  registry.set_limits(sessions_that_fit(next->control.max_sessions), next->control.max_sessions_per_ip);
  pthread_attr_setstacksize(&thread_attr_, size_t(next->control.thread_stack_kib) * 1024);
  {
    std::lock_guard lock(settings_mutex_);
    settings_ = std::move(next);
  }
  settings_generation_.fetch_add(1, std::memory_order_release);
  apply_outputs(*settings());
  // Idle sessions take the new limits at their next line; wake them to do it now.
  for (auto& session : registry.audience(nullptr, false)) session->post_rendered("", "", false);
  LOG_INFO("reload: the control settings are in force");
}

void Control::apply_outputs(const Config& config) {
  for (const std::string& problem : table.set_outputs(config.outputs)) LOG_ERROR("%s", problem.c_str());
  for (const Config::Output& o : config.outputs)
    LOG_INFO("output %s: sending to %s%s%s", o.name.c_str(), o.to.to_string().c_str(),
             o.interface.empty() ? "" : " on ", o.interface.c_str());
}

void Control::expire_orphans() {
  int removed = table.expire_orphans(monotonic_ns());
  if (removed) LOG_INFO("removed %d subscriptions of a previous control process nobody took over", removed);
}

void Control::request_shutdown(const std::string& by) {
  {
    std::lock_guard lock(reason_mutex_);
    shutdown_reason_ = "the relay is stopping (SHUTDOWN by " + by + ")";
  }
  LOG_NOTICE("SHUTDOWN requested by moderator %s", by.c_str());
  kill(getppid(), SIGTERM);  // the supervisor stops every process, this one included
}

// Replaced by a reload (a new control.listen): every session ends, but its subscription
// stays for the next control process, which makes it an orphan its owner can take back.
void Control::hand_over() {
  stopping.store(true);
  handing_over.store(true);
  Event bye{"BYE", "reload", Fields{{"reason", "reload"}}};
  std::string as_text = protocol::render(bye, false), as_json = protocol::render(bye, true);
  for (auto& s : registry.audience(nullptr, false)) s->post_rendered(as_text, as_json, true);
  registry.wait_until_empty(std::chrono::seconds(3));
}

void Control::shutdown(const std::string& reason) {
  stopping.store(true);
  auto all = registry.audience(nullptr, false);
  std::string text;
  {
    std::lock_guard lock(reason_mutex_);
    text = shutdown_reason_.empty() ? reason : shutdown_reason_;
  }
  Event event{"SHUTDOWN", text, Fields{{"text", text}}};
  std::string as_text = protocol::render(event, false), as_json = protocol::render(event, true);
  for (auto& s : all) s->post_rendered(as_text, as_json, true);
  registry.wait_until_empty(std::chrono::seconds(3));
}

int run_control(ChildContext& ctx) {
  ChildLoop child(ctx);
  install_session_wakeup();
  Control control(ctx);
  control.table.orphan_all();
  control.apply_outputs(ctx.config);
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
  ev_timer source;  // ingest's stall checks run every 100 ms too
  ev_timer_init(&source, [](struct ev_loop*, ev_timer* w, int) {
    auto* control = static_cast<Control*>(w->data);
    control->watch_source();
    control->watch_unreachable();
  }, 0.1, 0.1);
  source.data = &control;
  ev_timer_start(child.loop(), &source);

  child.on_reload([&control] { control.reload_settings(); });

  LOG_INFO("accepting control sessions on %s", ctx.segment.header().control_address);
  child.run();
  ev_io_stop(child.loop(), &acceptor);
  if (child.replaced()) control.hand_over();
  else control.shutdown("the relay is stopping");
  return 0;
}

}  // namespace vrelay
