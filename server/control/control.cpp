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

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = char(tolower(static_cast<unsigned char>(c)));
  return out;
}

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
      stats(c.segment.stats().control), max_sessions_(sessions_that_fit(c.config.control.max_sessions)) {
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
        LOG_WARN("out of file descriptors: refused a control connection");
      }
      return;
    }
    if (stopping.load()) {
      refuse(fd, "the relay is stopping");
      continue;
    }
    Endpoint peer = Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    std::shared_ptr<Session> session;
    const char* refusal = nullptr;
    {
      std::lock_guard lock(mutex_);
      uint32_t& from_ip = per_ip_[peer.host()];
      if (sessions_.size() >= max_sessions_) {
        refusal = "too many sessions, try again later";
      } else if (from_ip >= ctx.config.control.max_sessions_per_ip) {
        refusal = "too many sessions from your address";
      } else {
        ++from_ip;
        session = std::make_shared<Session>(*this, fd, next_id_++, peer);
        session->name_ = "guest-" + std::to_string(session->id());
        names_[session->name_] = session->id();
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
    // Logged here, on the main thread: formatting a log line takes more stack than a
    // session thread otherwise ever touches.
    LOG_INFO("%s (%s) connected", session->name_.c_str(), peer.to_string().c_str());
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

size_t Control::session_count() {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

void Control::session_started(Session& session) {
  // Only the sessions that were there before hear the JOIN: a later one sees this one in
  // LIST already, whichever thread runs first. With nobody to tell, nothing is rendered:
  // this runs on the new session's thread, whose every touched stack page stays its RSS.
  std::string name = name_of(session);
  bool named_only = ctx.config.control.presence_to_named_only;
  std::vector<std::shared_ptr<Session>> earlier;
  {
    std::lock_guard lock(mutex_);
    // With presence to named sessions only, the walk is over those: a storm of anonymous
    // connections costs each one nothing here.
    const auto& audience = named_only ? named_sessions_ : sessions_;
    for (auto it = audience.begin(); it != audience.end() && it->first < session.id(); ++it)
      earlier.push_back(it->second);
  }
  if (earlier.empty()) return;
  Event event{"JOIN", name, Fields{{"name", name}}};
  std::string text = protocol::render(event, false), json = protocol::render(event, true);
  for (auto& s : earlier) s->post_rendered(text, json);
}

void Control::session_ended(Session& session) {
  std::string name;
  std::vector<std::pair<std::shared_ptr<Session>, std::string>> hung_up;  // peer, who hung up
  {
    std::lock_guard lock(mutex_);
    if (!sessions_.erase(session.id())) return;
    named_sessions_.erase(session.id());
    name = session.name_;
    names_.erase(lower(name));
    auto it = per_ip_.find(session.peer().host());
    if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
    // Calls of a session that leaves end: the other side hears a HANGUP.
    for (auto c = calls_.begin(); c != calls_.end();) {
      if (c->caller == session.id() || c->callee == session.id()) {
        uint64_t other = c->caller == session.id() ? c->callee : c->caller;
        if (auto peer = sessions_.find(other); peer != sessions_.end()) hung_up.emplace_back(peer->second, name);
        c = calls_.erase(c);
      } else {
        ++c;
      }
    }
    stats.sessions_open.fetch_sub(1, std::memory_order_relaxed);
    all_ended_.notify_all();
  }
  LOG_INFO("%s (%s) disconnected", name.c_str(), session.peer().to_string().c_str());
  for (auto& [peer, who] : hung_up) peer->post(Event{"HANGUP", who, Fields{{"from", who}}});
  if (!stopping.load()) send_to_others(session, Event{"LEAVE", name, Fields{{"name", name}}}, true);
}

std::string Control::name_of(const Session& session) {
  std::lock_guard lock(mutex_);
  return session.name_;
}

namespace {
bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 32) return false;
  for (char c : name)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
  std::string l = lower(name);
  return l.rfind("guest-", 0) != 0 && l != "server";
}
}  // namespace

protocol::Reply Control::rename(Session& session, const std::string& wanted) {
  if (!valid_name(wanted))
    return protocol::err(ErrorCode::kBadArgument,
                         "a name is 1 to 32 of A-Z a-z 0-9 _ . - and not guest-* or server");
  std::string old;
  {
    std::lock_guard lock(mutex_);
    old = session.name_;
    if (old == wanted) return protocol::ok();
    auto it = names_.find(lower(wanted));
    if (it != names_.end() && it->second != session.id())
      return protocol::err(ErrorCode::kNameTaken, "'" + wanted + "' is taken");
    names_.erase(lower(old));
    names_[lower(wanted)] = session.id();  // the check and the claim under one lock: one winner
    session.name_ = wanted;
    if (auto s = sessions_.find(session.id()); s != sessions_.end()) named_sessions_[session.id()] = s->second;
  }
  LOG_INFO("%s (%s) is now %s", old.c_str(), session.peer().to_string().c_str(), wanted.c_str());
  session.after_reply([this, &session, old, wanted] {
    send_to_others(session, Event{"RENAME", old + " " + wanted, Fields{{"old", old}, {"new", wanted}}}, true);
  });
  return protocol::ok();
}

std::vector<std::string> Control::names() {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  out.reserve(sessions_.size());
  for (auto& [id, s] : sessions_) out.push_back(s->name_);
  return out;
}

std::shared_ptr<Session> Control::find(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = names_.find(lower(name));
  if (it == names_.end()) return nullptr;
  auto s = sessions_.find(it->second);
  return s == sessions_.end() ? nullptr : s->second;
}

size_t Control::send_to_others(const Session& from, const Event& event, bool presence) {
  return send_to_sessions(&from, event, presence);
}

size_t Control::send_to_sessions(const Session* except, const Event& event, bool presence) {
  // Render once per format, then queue to each: the sender never waits for a reader.
  std::string text = protocol::render(event, false), json = protocol::render(event, true);
  bool named_only = presence && ctx.config.control.presence_to_named_only;
  std::vector<std::shared_ptr<Session>> others;
  {
    std::lock_guard lock(mutex_);
    const auto& audience = named_only ? named_sessions_ : sessions_;
    others.reserve(audience.size());
    for (auto& [id, s] : audience)
      if (!except || id != except->id()) others.push_back(s);
  }
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
      std::lock_guard lock(mutex_);
      auto it = sessions_.find(u.owner);
      if (it != sessions_.end()) owner = it->second;
    }
    LOG_NOTICE("subscription to port %u paused: its port refused every datagram for %u s%s", unsigned(u.port),
               ctx.config.fanout.unreachable_pause_s, owner ? "" : " (an orphan)");
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

protocol::Reply Control::call(Session& from, const std::string& to, uint16_t port) {
  std::shared_ptr<Session> callee = find(to);
  if (!callee) return no_such_user(to);
  if (callee.get() == &from) return protocol::err(ErrorCode::kBadArgument, "you cannot call yourself");
  std::string caller_name;
  {
    std::lock_guard lock(mutex_);
    caller_name = from.name_;
    // A new CALL to the same session replaces the pending one.
    calls_.erase(std::remove_if(calls_.begin(), calls_.end(),
                                [&](const Call& c) { return c.caller == from.id() && c.callee == callee->id(); }),
                 calls_.end());
    calls_.push_back({from.id(), callee->id(), false});
  }
  std::string ip = from.peer().host();
  from.after_reply([callee, caller_name, ip, port] {
    callee->post(Event{"CALL", caller_name + " " + ip + " " + std::to_string(port),
                       Fields{{"from", caller_name}, {"ip", ip}, {"port", port}}});
  });
  return protocol::ok();
}

protocol::Reply Control::answer(Session& from, const std::string& caller_name, uint16_t port) {
  std::shared_ptr<Session> caller = find(caller_name);
  std::string my_name;
  {
    std::lock_guard lock(mutex_);
    my_name = from.name_;
    auto c = std::find_if(calls_.begin(), calls_.end(), [&](const Call& call) {
      return caller && call.caller == caller->id() && call.callee == from.id() && !call.answered;
    });
    if (c == calls_.end()) return protocol::err(ErrorCode::kNoSuchCall, "no pending call from '" + caller_name + "'");
    c->answered = true;
  }
  std::string ip = from.peer().host();
  from.after_reply([caller, my_name, ip, port] {
    caller->post(Event{"ANSWER", my_name + " " + ip + " " + std::to_string(port),
                       Fields{{"from", my_name}, {"ip", ip}, {"port", port}}});
  });
  return protocol::ok();
}

protocol::Reply Control::hangup(Session& from, const std::string& other_name) {
  std::shared_ptr<Session> other = find(other_name);
  std::string my_name;
  {
    std::lock_guard lock(mutex_);
    my_name = from.name_;
    auto c = std::find_if(calls_.begin(), calls_.end(), [&](const Call& call) {
      return other && ((call.caller == from.id() && call.callee == other->id()) ||
                       (call.callee == from.id() && call.caller == other->id()));
    });
    if (c == calls_.end()) return protocol::err(ErrorCode::kNoSuchCall, "no call with '" + other_name + "'");
    calls_.erase(c);
  }
  from.after_reply([other, my_name] { other->post(Event{"HANGUP", my_name, Fields{{"from", my_name}}}); });
  return protocol::ok();
}

uint32_t Control::auth_failed(const Endpoint& peer) {
  std::lock_guard lock(mutex_);
  constexpr uint64_t kForgetNs = 600'000'000'000;  // ten quiet minutes wipe the slate
  if (auth_failures_.size() > 100000) auth_failures_.clear();  // bounded memory under a flood
  uint64_t now = monotonic_ns();
  Failures& f = auth_failures_[peer.host()];
  if (f.count && now - f.last_ns > kForgetNs) f.count = 0;
  f.last_ns = now;
  return ++f.count;
}

void Control::auth_succeeded(const Endpoint& peer) {
  std::lock_guard lock(mutex_);
  auth_failures_.erase(peer.host());
}

void Control::expire_orphans() {
  int removed = table.expire_orphans(monotonic_ns());
  if (removed) LOG_INFO("removed %d subscriptions of a previous control process nobody took over", removed);
}

void Control::request_shutdown(const std::string& by) {
  {
    std::lock_guard lock(mutex_);
    shutdown_reason_ = "the relay is stopping (SHUTDOWN by " + by + ")";
  }
  LOG_NOTICE("SHUTDOWN requested by moderator %s", by.c_str());
  kill(getppid(), SIGTERM);  // the supervisor stops every process, this one included
}

void Control::shutdown(const std::string& reason) {
  stopping.store(true);
  std::vector<std::shared_ptr<Session>> all;
  std::string text;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, s] : sessions_) all.push_back(s);
    text = shutdown_reason_.empty() ? reason : shutdown_reason_;
  }
  Event event{"SHUTDOWN", text, Fields{{"text", text}}};
  std::string as_text = protocol::render(event, false), as_json = protocol::render(event, true);
  for (auto& s : all) s->post_rendered(as_text, as_json, true);
  std::unique_lock lock(mutex_);
  all_ended_.wait_for(lock, std::chrono::seconds(3), [&] { return sessions_.empty(); });
}

int run_control(ChildContext& ctx) {
  ChildLoop child(ctx);
  install_session_wakeup();
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
  ev_timer source;  // ingest's stall checks run every 100 ms too
  ev_timer_init(&source, [](struct ev_loop*, ev_timer* w, int) {
    auto* control = static_cast<Control*>(w->data);
    control->watch_source();
    control->watch_unreachable();
  }, 0.1, 0.1);
  source.data = &control;
  ev_timer_start(child.loop(), &source);

  LOG_INFO("accepting control sessions on %s", ctx.segment.header().control_address);
  child.run();
  ev_io_stop(child.loop(), &acceptor);
  control.shutdown("the relay is stopping");
  return 0;
}

}  // namespace vrelay
