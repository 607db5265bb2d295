// vrelayd's supervisor process: a single-threaded libev loop that creates the shared memory,
// binds every socket, forks the ingest, fan-out and control children (and the http child
// when http.listen is set), restarts a child that dies (capped exponential backoff),
// reports readiness (stdout line and sd_notify), and stops everything on SIGTERM/SIGINT,
// removing the segment. It does no client I/O.
#include "supervisor.hpp"

#include <dirent.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "child.hpp"
#include "log.hpp"
#include "net.hpp"
#include "privileges.hpp"
#include "proctitle.hpp"

namespace vrelay {
namespace {

constexpr double kStopGraceSeconds = 5.0;   // SIGTERM, then SIGKILL after this
constexpr double kBackoffFirst = 0.1;
constexpr double kBackoffMax = 5.0;
constexpr double kStableSeconds = 10.0;     // a child that lived this long restarts fast again
constexpr uint64_t kHungNs = 10'000'000'000; // a ready child whose heartbeat is older is killed

void raise_descriptor_limit(const Config& config);

struct Child {
  Role role;
  pid_t pid = 0;
  double started = 0;
  double backoff = kBackoffFirst;
  bool replacing = false;  // stopped by a reload: started again at once, with the new configuration
  ev_child watcher{};
  ev_timer restart_timer{};
};

struct Supervisor {
  Config config;  // the one in force: a reload replaces it
  SupervisorOptions options;
  std::unique_ptr<InstanceLock> lock;  // held for as long as any process of the relay lives
  std::unique_ptr<Segment> segment;
  Sockets sockets;
  Child children[kRoleCount];
  struct ev_loop* loop = nullptr;
  ev_signal sigterm{}, sigint{}, sighup{}, sigusr1{};
  ev_timer poll_timer{}, kill_timer{}, watchdog_timer{};
  bool announced = false;
  bool stopping = false;
  // A reload changed the segment's sizes: the children are stopping; once every one has,
  // the state moves to a segment of the new sizes and they start on it (resize_segment).
  bool resizing = false;
  int exit_status = 0;
  int ready_pipe = -1;  // detached mode: the waiting parent reads the ready line here

  Supervisor(const Config& c, const SupervisorOptions& o) : config(c), options(o) {}

  void bind_sockets();
  void reload();
  void keep_restart_only_keys(Config& next) const;
  Sockets bind_changed(const Config& next) const;
  void put_in_force(Config next, const Sockets& fresh);
  void check_resize(const Config& next) const;
  void close_http_socket();  // http.listen turned off
  void begin_resize();
  void resize_segment();
  void replace(Role role);
  bool enabled(Role role) const { return role != kHttp || config.http.enabled; }
  void spawn(Role role);
  [[noreturn]] void become_child(Role role);
  void on_child_exit(Child& child, int status);
  void check_ready();
  void check_hung();
  void tell_status() const;
  bool all_alive();
  void begin_stop(int status);
  void finish_if_stopped();
};

// Past net.core.[rw]mem_max where the process may (root): SO_SNDBUFFORCE, SO_RCVBUFFORCE;
// else as large as the kernel allows. A buffer is never worth failing to start for.
void set_buffer(int fd, int option, uint32_t bytes) {
  int forced = option == SO_SNDBUF ? SO_SNDBUFFORCE : SO_RCVBUFFORCE;
  if (!try_option(fd, SOL_SOCKET, forced, int(bytes)) && !try_option(fd, SOL_SOCKET, option, int(bytes)))
    LOG_WARN("cannot set a socket buffer of %u bytes (%s): the kernel's default stays", bytes, strerror(errno));
}

// The listening sockets, at start and when a reload changes their address.
int listening_socket(const Endpoint& address, int backlog, const char* what) {
  int fd = bind_socket(address, SOCK_STREAM);
  if (listen(fd, backlog) != 0) {
    int error = errno;
    close(fd);
    throw std::runtime_error(std::string("listen on ") + what + ": " + strerror(error));
  }
  set_nonblocking(fd, what);
  return fd;
}
int control_socket(const Config& config) { return listening_socket(config.control.listen, 1024, "the control socket"); }
int http_socket(const Config& config) { return listening_socket(config.http.listen, 64, "the HTTP socket"); }
// A multicast group's socket, joined. An interface this host does not have is an error of
// the configuration (ConfigError: exit status 2 at start), named by its key.
int multicast_socket(const Config::Ingest& ingest) {
  auto interface = find_interface(ingest.interface);
  if (!interface) throw ConfigError("ingest.interface: " + interface.error());
  auto fd = bind_multicast(ingest.listen, interface->index, ingest.ssm_source);
  if (!fd) throw std::runtime_error("ingest.listen: " + fd.error());
  LOG_INFO("joined the multicast group %s on %s (interface %u)%s", ingest.listen.host().c_str(), interface->name.c_str(),
           interface->index, ingest.ssm_source ? (", source " + ingest.ssm_source->host()).c_str() : "");
  return *fd;
}

int ingest_socket(const Config& config) {
  int fd = config.ingest.listen.is_multicast() ? multicast_socket(config.ingest)
                                               : bind_socket(config.ingest.listen, SOCK_DGRAM);
  set_buffer(fd, SO_RCVBUF, config.ingest.socket_buffer);
  // Arrival times for the exact PAUSE/RESUME cut-offs.
  set_option(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS on the ingest socket");
  set_nonblocking(fd, "the ingest socket");
  return fd;
}

LayoutParams layout_of(const Config& config) {
  return {config.fanout.max_subscribers, ring_slot_count(config), config.ingest.max_datagram};
}
bool same_layout(const LayoutParams& a, const Header& h) {
  return a.max_subscribers == h.max_subscribers && a.ring_slots == h.ring_slots && a.max_datagram == h.max_datagram;
}

// Whether a reload keeps the ingest socket: the address, and for a group how it is joined.
bool same_ingest_socket(const Config::Ingest& a, const Config::Ingest& b) {
  return a.listen == b.listen && a.interface == b.interface && a.ssm_source == b.ssm_source;
}

// The listening sockets a reload bound, when it is refused after all.
void close_listening(const Sockets& bound) {
  for (int fd : {bound.control, bound.ingest, bound.http})
    if (fd >= 0) close(fd);
}

void set_text(char (&field)[64], const std::string& text) {
  std::memset(field, 0, sizeof field);
  strncpy(field, text.c_str(), sizeof field - 1);
}

void set_address(char (&field)[64], int fd) {
  std::string text = fd >= 0 ? local_endpoint(fd).to_string() : "";
  set_text(field, text);
}

void Supervisor::bind_sockets() {
  sockets.control = control_socket(config);
  sockets.ingest = ingest_socket(config);

  // The copies leave from one port, on a dual-stack socket [::]:PORT (for IPv6 viewers) and
  // an IPv4 socket 0.0.0.0:PORT (an IPv4 viewer through a dual-stack socket costs more per
  // send); without IPv6 in the kernel, the IPv4 socket alone. The fan-out binds each
  // subscriber's connected socket to that port too (SO_REUSEADDR on all), so viewers see
  // one source address, the same across fan-out restarts.
  auto fanout_socket = [&](int family, uint16_t port) {
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (family == AF_INET6) set_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0, "IPV6_V6ONLY on the fan-out socket");
    set_option(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR on the fan-out socket");
    set_buffer(fd, SO_SNDBUF, config.fanout.socket_buffer);
    Endpoint any = local_endpoint(fd);  // the wildcard of its family
    any.set_port(port);
    if (bind(fd, any.addr(), any.length) != 0)
      throw std::runtime_error(std::string("cannot bind the fan-out socket: ") + strerror(errno));
    return fd;
  };
  sockets.fanout = fanout_socket(AF_INET6, 0);
  uint16_t fanout_port = sockets.fanout >= 0 ? local_endpoint(sockets.fanout).port() : 0;
  sockets.fanout4 = fanout_socket(AF_INET, fanout_port);
  if (sockets.fanout4 < 0) throw std::runtime_error(std::string("fan-out socket: ") + strerror(errno));
  if (sockets.fanout < 0) sockets.fanout = sockets.fanout4;

  sockets.wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (sockets.wake < 0) throw std::runtime_error(std::string("eventfd: ") + strerror(errno));

  if (config.http.enabled) sockets.http = http_socket(config);
  Header& h = segment->header();
  set_address(h.control_address, sockets.control);
  set_address(h.ingest_address, sockets.ingest);
  set_address(h.fanout_address, sockets.fanout);
  set_address(h.http_address, sockets.http);
  set_text(h.upstream_address, config.ingest.upstream);  // a long name is shown cut short
}

// SIGHUP, systemd's ExecReload= or a moderator's RELOAD. The file is read and validated in
// full, and the sockets of new listen addresses are bound, before anything changes: on any
// error the configuration in force stays, the error is logged (file, line and key) and
// counted. Then every key is in force: the children whose keys changed are replaced (the
// ring and the sockets' buffers hold the stream meanwhile: no datagram is lost), control
// takes its keys in place (its sessions stay) unless its own address changed.
void Supervisor::reload() {
  if (stopping) return;
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(monotonic_ns() / 1000));
  LOG_NOTICE("reloading the configuration");
  Sockets fresh;
  try {
    Config next = options.reload_config();
    keep_restart_only_keys(next);
    check_resize(next);
    fresh = bind_changed(next);
    if (next.log.file != config.log.file)
      if (Status opened = log::use_file(next.log.file); !opened) throw std::runtime_error("log.file: " + opened.error());
    put_in_force(std::move(next), fresh);
    segment->stats().supervisor.reloads.fetch_add(1, std::memory_order_release);
    LOG_NOTICE("configuration reloaded");
  } catch (const std::exception& e) {
    close_listening(fresh);
    LOG_ERROR("reload refused, the configuration in force stays: %s", e.what());
    Header& h = segment->header();
    std::memset(h.reload_error, 0, sizeof h.reload_error);
    strncpy(h.reload_error, e.what(), sizeof h.reload_error - 1);
    segment->stats().supervisor.reload_failures.fetch_add(1, std::memory_order_release);
  }
  sd_notify(0, "READY=1\nSTATUS=relaying");
}

// Three keys wait for a restart. `instance` names the relay itself (its lock, its segment,
// what every tool attaches to): another instance is another relay. `user` and `group` are
// chosen while vrelayd is still root, and root is given up for good right after.
void Supervisor::keep_restart_only_keys(Config& next) const {
  auto keep = [&](auto& value, const auto& in_force, const char* key, const char* why) {
    if (value == in_force) return;
    LOG_WARN("%s: a new value takes a restart (%s); it stays as it is", key, why);
    value = in_force;
  };
  keep(next.instance, config.instance, "instance", "it names this relay, its lock and its shared memory");
  keep(next.user, config.user, "user", "root, needed to change the account, was given up at start");
  keep(next.group, config.group, "group", "root, needed to change the account, was given up at start");
  if (next.log.file.empty() && !config.log.file.empty())
    keep(next.log.file, config.log.file, "log.file (back to stderr)", "stderr was let go when vrelayd detached");
}

// New sizes of the shared memory (fanout.max_subscribers, ingest.ring_slots, ring_bytes,
// max_datagram) are checked before anything changes: the descriptors a larger table needs,
// and room for every subscription in a smaller one.
void Supervisor::check_resize(const Config& next) const {
  const Header& h = segment->header();
  if (same_layout(layout_of(next), h)) return;
  raise_descriptor_limit(next);
  uint32_t in_use = 0;
  for (uint32_t i = 0; i < h.max_subscribers; ++i)
    in_use += segment->subscribers()[i].state.load(std::memory_order_relaxed) != uint32_t(SubscriberState::kFree);
  if (in_use > next.fanout.max_subscribers)
    throw ConfigError("fanout.max_subscribers: " + std::to_string(next.fanout.max_subscribers) + " is fewer than the " +
                      std::to_string(in_use) + " subscriptions in use");
}

Sockets Supervisor::bind_changed(const Config& next) const {
  Sockets fresh;
  try {
    if (!(next.control.listen == config.control.listen)) fresh.control = control_socket(next);
    if (!same_ingest_socket(next.ingest, config.ingest)) fresh.ingest = ingest_socket(next);
    if (next.http.enabled && (!config.http.enabled || !(next.http.listen == config.http.listen)))
      fresh.http = http_socket(next);
  } catch (...) {
    close_listening(fresh);
    throw;
  }
  return fresh;
}

void Supervisor::put_in_force(Config next, const Sockets& fresh) {
  Config old = std::exchange(config, std::move(next));
  log::set_level(config.log.level);
  Header& h = segment->header();
  auto swap_in = [&](int& in_use, int replacement, char (&address)[64]) {
    if (replacement < 0) return false;
    if (in_use >= 0) close(in_use);
    in_use = replacement;
    set_address(address, in_use);
    LOG_NOTICE("now listening on %s", address);
    return true;
  };
  bool new_control = swap_in(sockets.control, fresh.control, h.control_address);
  bool new_ingest = swap_in(sockets.ingest, fresh.ingest, h.ingest_address);
  bool new_http = swap_in(sockets.http, fresh.http, h.http_address);
  if (!new_ingest && config.ingest.socket_buffer != old.ingest.socket_buffer)
    set_buffer(sockets.ingest, SO_RCVBUF, config.ingest.socket_buffer);
  if (config.fanout.socket_buffer != old.fanout.socket_buffer)
    for (int fd : {sockets.fanout, sockets.fanout4}) set_buffer(fd, SO_SNDBUF, config.fanout.socket_buffer);

  if (config.ingest.upstream != old.ingest.upstream) set_text(h.upstream_address, config.ingest.upstream);
  if (!same_layout(layout_of(config), h)) {
    if (!config.http.enabled) close_http_socket();  // not started again: disabled
    begin_resize();  // every child starts again, on the new segment
    return;
  }
  bool log_changed = !(config.log == old.log);
  if (new_ingest || log_changed || !(config.ingest == old.ingest)) replace(kIngest);
  if (log_changed || !(config.fanout == old.fanout)) replace(kFanout);
  if (new_control) {
    replace(kControl);  // its sessions end; their subscriptions wait as orphans
  } else if (children[kControl].pid > 0) {
    kill(children[kControl].pid, SIGHUP);  // it reads the file again and keeps its sessions
  }
  if (!config.http.enabled && old.http.enabled) {
    if (children[kHttp].pid > 0) kill(children[kHttp].pid, SIGTERM);  // not started again: disabled
    ev_timer_stop(loop, &children[kHttp].restart_timer);
    close_http_socket();
  } else if (config.http.enabled && !old.http.enabled) {
    spawn(kHttp);
  } else if (config.http.enabled && (new_http || log_changed || !(config.http == old.http))) {
    replace(kHttp);  // its /stream viewers are cut: they reconnect
  }
}

void Supervisor::close_http_socket() {
  if (sockets.http < 0) return;
  close(sockets.http);
  sockets.http = -1;
  set_address(segment->header().http_address, -1);
}

// Every child stops as for a replacement (control hands its sessions' subscriptions over as
// orphans); none starts again until resize_segment() has made the new segment. Meanwhile
// the stream waits in the ingest socket's buffer.
void Supervisor::begin_resize() {
  resizing = true;
  LOG_NOTICE("the shared memory is resized: every process starts again on the new one");
  for (auto& child : children) {
    ev_timer_stop(loop, &child.restart_timer);
    if (child.pid > 0) kill(child.pid, SIGUSR2);
  }
  for (auto& child : children)
    if (child.pid > 0) return;
  resize_segment();
}

// The new segment replaces the old under its name; the old one goes once unmapped.
void Supervisor::resize_segment() {
  resizing = false;
  try {
    std::unique_ptr<Segment> resized = Segment::create(config.instance, layout_of(config));
    Segment::CarriedOver carried = resized->carry_over_from(*segment);
    resized->publish();
    std::swap(segment, resized);
    const Header& h = segment->header();
    LOG_NOTICE("shared memory resized: %u subscribers, %u ring slots of %u bytes; subscriptions kept: %u, "
               "datagrams kept: %lu",
               h.max_subscribers, h.ring_slots, h.max_datagram, carried.subscriptions, (unsigned long)carried.datagrams);
    if (carried.unsent)
      LOG_WARN("the smaller ring dropped %lu datagrams the fan-out had not sent yet", (unsigned long)carried.unsent);
    if (carried.left_out)
      LOG_ERROR("the smaller table had no room for %u subscriptions: they ended", carried.left_out);
  } catch (const std::exception& e) {
    LOG_ERROR("cannot resize the shared memory, the old one stays in use: %s", e.what());
  }
  for (uint32_t r = 0; r < kRoleCount; ++r) {
    Child& child = children[r];
    child.replacing = false;
    if (enabled(Role(r))) spawn(Role(r));
  }
}

// A child whose configuration changed stops (SIGUSR2) and starts again at once with the
// new one; one not running now starts with it when its backoff ends.
void Supervisor::replace(Role role) {
  Child& child = children[role];
  if (child.pid <= 0) return;
  child.replacing = true;
  kill(child.pid, SIGUSR2);  // stop, and leave the relay's state to the next one
}

// Everything a child must not keep (other roles' sockets, libev's fds) is closed here.
void close_all_but(std::set<int> keep) {
  keep.insert({0, 1, 2});
  std::vector<int> to_close;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* entry = readdir(dir)) {
      int fd = atoi(entry->d_name);
      if (entry->d_name[0] != '.' && fd != dirfd(dir) && !keep.count(fd)) to_close.push_back(fd);
    }
    closedir(dir);
  }
  for (int fd : to_close) close(fd);
}

void Supervisor::become_child(Role role) {
  // Undo what the supervisor's libev set up: signal handlers and the signal mask.
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE, SIGUSR1}) signal(sig, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != segment->header().supervisor_pid) _exit(0);  // the supervisor died already

  Sockets mine;
  std::set<int> keep;
  switch (role) {
    case kIngest: mine.ingest = sockets.ingest; mine.wake = sockets.wake; break;
    case kFanout: mine.fanout = sockets.fanout; mine.fanout4 = sockets.fanout4; mine.wake = sockets.wake; break;
    case kControl: mine.control = sockets.control; mine.wake = sockets.wake; break;  // fast starts begin at once
    case kHttp: mine.http = sockets.http; break;
    default: break;
  }
  for (int fd : {mine.control, mine.ingest, mine.fanout, mine.fanout4, mine.wake, mine.http, lock->fd()})
    if (fd >= 0) keep.insert(fd);
  close_all_but(keep);  // the ready pipe too: only the supervisor may answer the waiting parent

  std::string title = std::string("vrelayd: ") + role_name(role);
  proctitle_set(title.c_str());
  log::set_role(role_name(role));

  ChildContext ctx{config, options.reload_config, *segment, mine, role};
  int status = 0;
  switch (role) {
    case kIngest: status = run_ingest(ctx); break;
    case kFanout: status = run_fanout(ctx); break;
    case kControl: status = run_control(ctx); break;
    case kHttp: status = run_http(ctx); break;
    default: break;
  }
  _exit(status);
}

void Supervisor::spawn(Role role) {
  Child& child = children[role];
  ProcessSlot& slot = segment->process(role);
  slot.state.store(uint32_t(ProcessState::kStarting), std::memory_order_release);
  pid_t pid = fork();
  if (pid < 0) {
    LOG_ERROR("cannot fork the %s process: %s", role_name(role), strerror(errno));
    ev_timer_set(&child.restart_timer, child.backoff, 0.);
    ev_timer_start(loop, &child.restart_timer);
    return;
  }
  if (pid == 0) become_child(role);
  child.pid = pid;
  child.started = ev_now(loop);
  slot.pid.store(pid, std::memory_order_relaxed);
  slot.started_ns.store(wall_ns(), std::memory_order_relaxed);
  ev_child_set(&child.watcher, pid, 0);
  ev_child_start(loop, &child.watcher);
  LOG_INFO("started the %s process, pid %d", role_name(role), pid);
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + strsignal(WTERMSIG(status)) + (WCOREDUMP(status) ? " (core dumped)" : "");
  return "stopped";
}

void Supervisor::on_child_exit(Child& child, int status) {
  ev_child_stop(loop, &child.watcher);
  ProcessSlot& slot = segment->process(child.role);
  slot.pid.store(0, std::memory_order_relaxed);
  slot.state.store(uint32_t(ProcessState::kStopped), std::memory_order_release);
  child.pid = 0;
  if (stopping) {
    LOG_INFO("the %s process %s", role_name(child.role), describe_exit(status).c_str());
    finish_if_stopped();
    return;
  }
  if (!enabled(child.role) && !resizing) return;  // a reload turned it off
  if (resizing) {
    for (auto& other : children)
      if (other.pid > 0) return;
    resize_segment();
    return;
  }
  if (std::exchange(child.replacing, false)) {
    LOG_INFO("replacing the %s process with the new configuration", role_name(child.role));
    spawn(child.role);
    return;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == kExitConfig) {
    LOG_ERROR("the %s process cannot work with this configuration; stopping vrelayd", role_name(child.role));
    begin_stop(1);
    return;
  }
  if (ev_now(loop) - child.started >= kStableSeconds) child.backoff = kBackoffFirst;
  LOG_WARN("the %s process %s; restarting it in %.1f s", role_name(child.role), describe_exit(status).c_str(),
           child.backoff);
  slot.restarts.fetch_add(1, std::memory_order_relaxed);
  segment->stats().supervisor.child_restarts.fetch_add(1, std::memory_order_relaxed);
  slot.state.store(uint32_t(ProcessState::kBackoff), std::memory_order_release);
  ev_timer_set(&child.restart_timer, child.backoff, 0.);
  ev_timer_start(loop, &child.restart_timer);
  child.backoff = std::min(child.backoff * 2, kBackoffMax);
}

void Supervisor::check_ready() {
  if (announced || stopping) return;
  for (uint32_t r = 0; r < kRoleCount; ++r)
    if (enabled(Role(r)) &&
        segment->process(Role(r)).state.load(std::memory_order_acquire) != uint32_t(ProcessState::kReady))
      return;
  announced = true;
  const Header& h = segment->header();
  std::string line = std::string("vrelayd ready control=") + h.control_address + " ingest=" + h.ingest_address +
                     " instance=" + h.instance + " pid=" + std::to_string(getpid()) +
                     (config.http.enabled ? std::string(" http=") + h.http_address : std::string()) + "\n";
  if (ready_pipe >= 0) {
    ssize_t ignored = write(ready_pipe, line.data(), line.size());
    (void)ignored;
    close(ready_pipe);
    ready_pipe = -1;
    // Detached from a terminal now: start-up errors were shown there; a redirected stderr
    // is kept, since it is the log.
    if (isatty(STDERR_FILENO)) {
      int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
      dup2(null, STDERR_FILENO);
      close(null);
    }
  } else {
    fputs(line.c_str(), stdout);
    fflush(stdout);
  }
  sd_notify(0, "READY=1\nSTATUS=relaying");
  LOG_NOTICE("ready: control on %s, ingest on %s%s%s", h.control_address, h.ingest_address,
             config.http.enabled ? ", http on " : "", config.http.enabled ? h.http_address : "");
}

bool Supervisor::all_alive() {
  uint64_t now = monotonic_ns();
  for (uint32_t r = 0; r < kRoleCount; ++r) {
    if (!enabled(Role(r))) continue;
    const ProcessSlot& slot = segment->process(Role(r));
    if (slot.state.load(std::memory_order_acquire) != uint32_t(ProcessState::kReady)) return false;
    if (now - slot.heartbeat_ns.load(std::memory_order_relaxed) > kHungNs) return false;
  }
  return true;
}

// A child that stopped beating (stuck in a loop or a syscall) is killed; the normal
// restart path then replaces it.
void Supervisor::check_hung() {
  uint64_t now = monotonic_ns();
  for (auto& child : children) {
    const ProcessSlot& slot = segment->process(child.role);
    if (child.pid <= 0 || slot.state.load(std::memory_order_acquire) != uint32_t(ProcessState::kReady)) continue;
    uint64_t beat = slot.heartbeat_ns.load(std::memory_order_relaxed);
    if (now > beat && now - beat > kHungNs) {
      LOG_ERROR("the %s process (pid %d) has not answered for %.0f s; killing it", role_name(child.role), child.pid,
                to_seconds(now - beat));
      kill(child.pid, SIGKILL);
    }
  }
}

// The live figures `systemctl status vrelayd` shows (STATUS=), refreshed with the hang check.
void Supervisor::tell_status() const {
  if (!announced || stopping) return;
  const Stats& stats = segment->stats();
  bool waiting = stats.ingest.last_datagram_ns.load(std::memory_order_relaxed) == 0;
  bool stalled = stats.ingest.stalled.load(std::memory_order_relaxed) != 0;
  uint64_t over_http = stats.http.streams.load(std::memory_order_relaxed);
  sd_notifyf(0, "STATUS=source %s, %.2f Mbit/s in; %lu viewers playing (%lu over HTTP), %lu subscriptions; %lu sessions",
             waiting ? "waiting" : stalled ? "stalled" : "live",
             double(stats.ingest.rate_bytes.load(std::memory_order_relaxed)) * 8 / 1e6,
             (unsigned long)(stats.fanout.playing.load(std::memory_order_relaxed) + over_http), (unsigned long)over_http,
             (unsigned long)stats.control.subscribers.load(std::memory_order_relaxed),
             (unsigned long)stats.control.sessions_open.load(std::memory_order_relaxed));
}

void Supervisor::begin_stop(int status) {
  if (stopping) return;
  stopping = true;
  exit_status = status;
  sd_notify(0, "STOPPING=1");
  LOG_NOTICE("stopping");
  for (auto& child : children) {
    ev_timer_stop(loop, &child.restart_timer);
    if (child.pid > 0) kill(child.pid, SIGTERM);
  }
  ev_timer_set(&kill_timer, kStopGraceSeconds, 0.);
  ev_timer_start(loop, &kill_timer);
  finish_if_stopped();
}

void Supervisor::finish_if_stopped() {
  for (auto& child : children)
    if (child.pid > 0) return;
  ev_break(loop, EVBREAK_ALL);
}

// Raises the descriptor limit (children inherit it): control holds one per session, the
// fan-out one per subscriber. Past the hard limit only with CAP_SYS_RESOURCE. Too few for
// the fan-out is an error at start; too few for max_sessions lowers it (control warns).
void raise_descriptor_limit(const Config& config) {
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) != 0) return;
  rlim_t wanted = std::max<rlim_t>(rlim_t(config.control.max_sessions) * 2 + 1024, fanout_descriptors(config));
  if (nofile.rlim_max < wanted) {
    rlimit raised{wanted, wanted};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return;
  }
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);
  if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur < fanout_descriptors(config))
    throw std::runtime_error("fanout.max_subscribers=" + std::to_string(config.fanout.max_subscribers) + " needs " +
                             std::to_string(fanout_descriptors(config)) + " descriptors (a socket per subscriber) " +
                             "but the limit is " + std::to_string(nofile.rlim_cur) +
                             ": raise LimitNOFILE (ulimit -n) or lower fanout.max_subscribers");
  if (nofile.rlim_max < wanted)
    LOG_WARN("the descriptor limit (%lu) is too low for control.max_sessions=%u; raise LimitNOFILE",
             (unsigned long)nofile.rlim_max, config.control.max_sessions);
}

// libev callbacks: the watcher's data field points back to the supervisor.
Supervisor* owner(void* data) { return static_cast<Supervisor*>(data); }

}  // namespace

int run_supervisor(const Config& config, const SupervisorOptions& options) {
  signal(SIGPIPE, SIG_IGN);
  // Detached mode: the original process waits for the ready line, prints it and exits.
  int ready_pipe = -1;
  if (!options.foreground) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return 1;
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid > 0) {
      close(fds[1]);
      char buf[512];
      ssize_t n = read(fds[0], buf, sizeof buf);
      if (n <= 0) {
        fprintf(stderr, "vrelayd: failed to start (see the log)\n");
        return 1;
      }
      fwrite(buf, 1, size_t(n), stdout);
      return 0;
    }
    close(fds[0]);
    ready_pipe = fds[1];
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    if (null > 2) close(null);
  }

  Supervisor sup(config, options);
  sup.ready_pipe = ready_pipe;
  log::set_role("supervisor");
  proctitle_set("vrelayd: supervisor");
  try {
    auto [account, warning] = service_account(config, options.allow_root);
    sup.lock = std::make_unique<InstanceLock>(config.instance);
    raise_descriptor_limit(config);
    sup.segment = Segment::create(config.instance,
                                  {config.fanout.max_subscribers, ring_slot_count(config), config.ingest.max_datagram});
    sup.bind_sockets();
    // What needs root is done: from here every process is the service account's.
    if (account) {
      sup.segment->give_to(account->uid, account->gid);
      if (Status given = log::give_to(account->uid, account->gid); !given) throw std::runtime_error(given.error());
      drop_privileges(*account);
      LOG_NOTICE("running as user %s, group %s, without capabilities", account->user.c_str(), account->group.c_str());
    } else if (geteuid() == 0) {
      LOG_WARN("running as root (--allow-root): every process parses network input with full privileges");
    } else {
      drop_capabilities();  // what let it bind (AmbientCapabilities=) is not needed any more
    }
    if (!warning.empty()) LOG_WARN("%s", warning.c_str());
  } catch (const std::exception& e) {
    // A key the host cannot satisfy (an interface it does not have) is a configuration error.
    bool config_error = dynamic_cast<const ConfigError*>(&e) != nullptr;
    LOG_ERROR("%s", e.what());
    fprintf(stderr, "vrelayd: %s%s\n", config_error ? "configuration error: " : "", e.what());
    if (sup.segment) Segment::remove(config.instance);  // ours: it was created (another relay's never is)
    return config_error ? 2 : 1;
  }
  sup.segment->stats().supervisor.started_ns.store(wall_ns(), std::memory_order_relaxed);
  sup.segment->publish();

  sup.loop = ev_default_loop(EVFLAG_AUTO);
  auto on_stop_signal = [](struct ev_loop*, ev_signal* w, int) {
    LOG_NOTICE("received %s", strsignal(w->signum));
    owner(w->data)->begin_stop(0);
  };
  ev_signal_init(&sup.sigterm, on_stop_signal, SIGTERM);
  ev_signal_init(&sup.sigint, on_stop_signal, SIGINT);
  ev_signal_init(&sup.sighup, [](struct ev_loop*, ev_signal* w, int) { owner(w->data)->reload(); }, SIGHUP);
  // SIGUSR1: logrotate moved log.file away. The supervisor reopens it now; the children
  // see log_reopens change at their next heartbeat (no signal needed: control uses SIGUSR1
  // to wake its session threads).
  ev_signal_init(&sup.sigusr1, [](struct ev_loop*, ev_signal* w, int) {
    Status reopened = log::reopen();
    owner(w->data)->segment->stats().supervisor.log_reopens.fetch_add(1, std::memory_order_relaxed);
    if (reopened) LOG_NOTICE("SIGUSR1: log file reopened");
    else LOG_ERROR("SIGUSR1: %s", reopened.error().c_str());
  }, SIGUSR1);
  for (ev_signal* s : {&sup.sigterm, &sup.sigint, &sup.sighup, &sup.sigusr1}) {
    s->data = &sup;
    ev_signal_start(sup.loop, s);
  }
  ev_timer_init(&sup.poll_timer, [](struct ev_loop*, ev_timer* w, int) { owner(w->data)->check_ready(); }, 0.01, 0.01);
  sup.poll_timer.data = &sup;
  ev_timer_start(sup.loop, &sup.poll_timer);
  // systemd's watchdog (WatchdogSec=): pinged while every child is ready and beating.
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    ev_timer_init(&sup.watchdog_timer, [](struct ev_loop*, ev_timer* w, int) {
      Supervisor* s = owner(w->data);
      s->check_hung();
      s->tell_status();
      if (s->announced && s->all_alive()) sd_notify(0, "WATCHDOG=1");
    }, 0., double(watchdog_usec) / 2e6);
  } else {
    ev_timer_init(&sup.watchdog_timer, [](struct ev_loop*, ev_timer* w, int) {
      owner(w->data)->check_hung();
      owner(w->data)->tell_status();
    }, 1., 1.);
  }
  sup.watchdog_timer.data = &sup;
  ev_timer_start(sup.loop, &sup.watchdog_timer);
  ev_timer_init(&sup.kill_timer, [](struct ev_loop*, ev_timer* w, int) {
    Supervisor* s = owner(w->data);
    for (auto& child : s->children)
      if (child.pid > 0) {
        LOG_WARN("the %s process did not stop in %.0f s; killing it", role_name(child.role), kStopGraceSeconds);
        kill(child.pid, SIGKILL);
      }
  }, 0., 0.);
  sup.kill_timer.data = &sup;

  for (uint32_t r = 0; r < kRoleCount; ++r) {
    Child& child = sup.children[r];
    child.role = Role(r);
    ev_child_init(&child.watcher, [](struct ev_loop*, ev_child* w, int) {
      Supervisor* s = owner(w->data);
      for (auto& c : s->children)
        if (&c.watcher == w) s->on_child_exit(c, w->rstatus);
    }, 0, 0);
    child.watcher.data = &sup;
    ev_timer_init(&child.restart_timer, [](struct ev_loop*, ev_timer* w, int) {
      Supervisor* s = owner(w->data);
      for (auto& c : s->children)
        if (&c.restart_timer == w) s->spawn(c.role);
    }, 0., 0.);
    child.restart_timer.data = &sup;
  }
  for (uint32_t r = 0; r < kRoleCount; ++r)
    if (sup.enabled(Role(r))) sup.spawn(Role(r));

  ev_run(sup.loop, 0);

  Segment::remove(config.instance);
  LOG_NOTICE("stopped");
  return sup.exit_status;
}

}  // namespace vrelay
