// The crowd of bench/soak.sh: N viewers (a UDP socket and a control session each, CONECTAR
// to the socket's port), the control sessions of the vrelay-probe processes the script runs
// (--probe PORT: the probe only receives; holding its session here lets it outlive a killed
// control process), and a few chat sessions (NAME, then MSG and BROADCAST at a modest rate).
// One thread, one epoll: 1,000 viewers cost about what the stream costs the kernel to deliver.
//
// Every viewer checks vrelay's counter stream exactly, with vrelay-probe's own SequenceTracker
// (same definitions of lost, duplicates, out of order), and notes when each gap, duplicate or
// reordering arrived (wall clock), so the script can tell the ones a killed child explains
// (--windows FILE, read at the end) from the others. Sessions that the relay closes (its
// control process was killed) reconnect and send CONECTAR again, adopting their orphaned
// subscription; chat sessions reconnect and take their name again.
//
//   soak_viewers --control HOST:PORT --viewers N [--probe PORT]... [--chatters K]
//                [--chat-every SECONDS] [--state FILE] [--windows FILE] [--per-viewer FILE]
//                [--marks FILE]
//
// Runs until SIGTERM or SIGINT, then prints its report (key=value lines) on standard output.
// Prints "soak_viewers: ready" on standard error once every session has been ready once.
// Exit status: 0 after the report, 1 when setup failed, 2 a usage error.
#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "analysis.hpp"
#include "clock.hpp"
#include "control_client.hpp"
#include "counter_stream.hpp"
#include "net.hpp"

using namespace vrelay;

namespace {

constexpr unsigned kBatch = 32;                  // datagrams per recvmmsg
constexpr size_t kBuffer = 64;                   // a counter datagram is 24 bytes; MSG_TRUNC tells longer
constexpr int kViewerBuffer = 1 << 20;           // 1 MiB: seconds of stream if this thread stalls
constexpr size_t kInFlight = 256;                // sessions waiting for HELLO at once, as Crowd
constexpr uint64_t kStepLimit = 10 * kNsPerSecond;  // HELLO, CONECTAR, NAME: each within this
constexpr uint64_t kBehindNs = 2 * kNsPerSecond;    // a viewer this far behind the newest is stuck
constexpr size_t kMaxMarks = 200000;             // timeline entries kept (the rest are counted)
constexpr uint64_t kStallNs = 100 * kNsPerMs;    // a longer silence of one viewer is noted
constexpr uint64_t kTickNs = 10 * kNsPerMs;      // reconnects, chat and timeouts run this often

enum Tag : uint32_t { kUdp = 1, kSession = 2, kSignal = 3 };
uint64_t tag(Tag t, uint32_t index) { return uint64_t(t) << 32 | index; }

// One anomaly in a viewer's sequence, when it arrived: count datagrams (a stall: its length
// in microseconds, from the datagram before to the one that ended it).
struct Mark {
  enum Kind : uint8_t { kGap, kDuplicate, kReorder, kStall } kind;
  uint32_t viewer;
  uint64_t wall_ns, count;
};
const char* kMarkNames[] = {"gap", "duplicate", "reorder", "stall"};

struct Viewer {
  int fd = -1;
  uint16_t port = 0;
  probe::SequenceTracker seq;
  uint64_t last_ns = 0;  // monotonic, last datagram
  uint64_t corrupt = 0, foreign = 0;
};

struct Session {
  enum class Role { kViewer, kProbe, kChatter } role;
  enum class State { kDown, kHello, kSubscribing, kNaming, kReady } state = State::kDown;
  int fd = -1;
  uint16_t udp_port = 0;
  std::string name;        // chatters
  std::string input;
  uint64_t since = 0;      // monotonic: entered this state
  uint64_t retry_at = 0;   // kDown: reconnect then; kSubscribing/kNaming after an ERR: resend then
  bool resend = false;
  uint64_t down_since = 0; // for how long a dropped session took to be ready again
  bool ever_ready = false;
  struct Pending {
    uint64_t sent_ns;
    bool broadcast;
  };
  std::deque<Pending> pending;  // chat: the commands not answered yet
};

struct Options {
  std::string control_host, control_port;
  size_t viewers = 0, chatters = 4;
  std::vector<uint16_t> probes;
  double chat_every_s = 1;
  std::string state_file, windows_file, per_viewer_file, marks_file;
};

struct Counts {
  uint64_t connects = 0, drops = 0, refused = 0, step_timeouts = 0, reconnects = 0, adopted_ok = 0;
  uint64_t subscribe_errors = 0, name_errors = 0, stray_lines = 0, viewer_events = 0, broadcasts_seen = 0;
  uint64_t chat_sent = 0, chat_ok = 0, chat_err = 0, chat_err_absent = 0, chat_unanswered = 0;
  uint64_t msgs_received = 0, chat_broadcasts_received = 0;
  uint64_t max_reply_ns = 0, max_msg_reply_ns = 0, max_broadcast_reply_ns = 0, replies_over_1s = 0;
  uint64_t max_reconnect_ns = 0, marks_dropped = 0, stalls_dropped = 0, max_busy_ns = 0;
  std::string last_error;
};

class Soak {
 public:
  explicit Soak(const Options& o) : o_(o), rng_(uint32_t(monotonic_ns())) {}

  Status setup();
  void run();
  void report();

 private:
  void open_session(size_t i);
  void close_session(size_t i, bool count_drop);
  void on_session(size_t i, uint32_t events);
  void on_line(size_t i, const std::string& line);
  void ready(size_t i);
  bool send_line(size_t i, const std::string& line);
  void on_udp(size_t v);
  void mark(Mark::Kind kind, size_t v, uint64_t count);
  void tick(uint64_t now);
  void chat(uint64_t now);
  void write_state(uint64_t now);
  size_t ready_count() const;
  void fail_note(const std::string& why) { counts_.last_error = why.substr(0, 300); }

  Options o_;
  Endpoint control_;
  int epoll_ = -1, signal_fd_ = -1;
  std::vector<Viewer> viewers_;
  std::vector<Session> sessions_;
  std::vector<Mark> marks_, stalls_;
  Counts counts_;
  std::mt19937 rng_;
  size_t in_flight_ = 0;
  bool announced_ready_ = false, stop_ = false;
  uint64_t start_ns_ = 0, next_chat_ = 0, next_state_ = 0, next_tick_ = 0, chat_round_ = 0;
  mmsghdr msgs_[kBatch]{};
  iovec iov_[kBatch]{};
  char buffers_[kBatch][kBuffer]{};
};

Status Soak::setup() {
  auto ep = parse_endpoint(o_.control_host + ":" + o_.control_port);
  if (!ep) return Failure{ep.error()};
  control_ = *ep;
  // Two descriptors a viewer (UDP + TCP) and then some: take the hard limit.
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal_fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.u64 = tag(kSignal, 0);
  epoll_ctl(epoll_, EPOLL_CTL_ADD, signal_fd_, &e);

  viewers_ = std::vector<Viewer>(o_.viewers);
  for (size_t v = 0; v < viewers_.size(); ++v) {
    Viewer& w = viewers_[v];
    w.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (w.fd < 0) return Failure{std::string("socket: ") + strerror(errno)};
    // FORCE as root passes net.core.rmem_max; otherwise the capped size is what we get.
    if (setsockopt(w.fd, SOL_SOCKET, SO_RCVBUFFORCE, &kViewerBuffer, sizeof kViewerBuffer) != 0)
      setsockopt(w.fd, SOL_SOCKET, SO_RCVBUF, &kViewerBuffer, sizeof kViewerBuffer);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    // Any address: the relay sends to the session's address, 127.0.0.1 for the soak, the
    // viewer namespace's eth0 address in test/netns/topology.sh --bench.
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t length = sizeof a;
    if (bind(w.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(w.fd, reinterpret_cast<sockaddr*>(&a), &length) != 0)
      return Failure{std::string("bind a viewer socket: ") + strerror(errno)};
    w.port = ntohs(a.sin_port);
    e.events = EPOLLIN;
    e.data.u64 = tag(kUdp, uint32_t(v));
    epoll_ctl(epoll_, EPOLL_CTL_ADD, w.fd, &e);
    Session s;
    s.role = Session::Role::kViewer;
    s.udp_port = w.port;
    sessions_.push_back(std::move(s));
  }
  for (uint16_t port : o_.probes) {
    Session s;
    s.role = Session::Role::kProbe;
    s.udp_port = port;
    sessions_.push_back(std::move(s));
  }
  for (size_t c = 0; c < o_.chatters; ++c) {
    Session s;
    s.role = Session::Role::kChatter;
    s.name = "soak-chat-" + std::to_string(c);
    sessions_.push_back(std::move(s));
  }
  for (size_t i = 0; i < kBatch; ++i) {
    iov_[i] = {buffers_[i], kBuffer};
    msgs_[i].msg_hdr.msg_iov = &iov_[i];
    msgs_[i].msg_hdr.msg_iovlen = 1;
  }
  marks_.reserve(4096);
  start_ns_ = monotonic_ns();
  return {};
}

void Soak::open_session(size_t i) {
  Session& s = sessions_[i];
  s.fd = socket(control_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.fd < 0) {
    fail_note(std::string("socket: ") + strerror(errno));
    s.retry_at = monotonic_ns() + kNsPerSecond;
    return;
  }
  ++counts_.connects;
  if (connect(s.fd, control_.addr(), control_.length) != 0 && errno != EINPROGRESS) {
    fail_note(std::string("connect: ") + strerror(errno));
    ::close(s.fd);
    s.fd = -1;
    s.retry_at = monotonic_ns() + kNsPerSecond;
    return;
  }
  epoll_event e{};
  e.events = EPOLLIN | EPOLLRDHUP;
  e.data.u64 = tag(kSession, uint32_t(i));
  epoll_ctl(epoll_, EPOLL_CTL_ADD, s.fd, &e);
  s.state = Session::State::kHello;
  s.since = monotonic_ns();
  s.input.clear();
  ++in_flight_;
}

// A session the relay closed or that failed: down, reconnecting soon (spread over 0.1-0.5 s,
// so a restarted control process is not met by every client in the same millisecond).
void Soak::close_session(size_t i, bool count_drop) {
  Session& s = sessions_[i];
  if (s.fd >= 0) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, s.fd, nullptr);
    ::close(s.fd);
    s.fd = -1;
  }
  if (s.state == Session::State::kHello) --in_flight_;
  uint64_t now = monotonic_ns();
  if (s.state == Session::State::kReady || s.down_since == 0) s.down_since = now;
  if (count_drop) ++counts_.drops;
  counts_.chat_unanswered += s.pending.size();
  s.pending.clear();
  s.state = Session::State::kDown;
  s.retry_at = now + 100 * kNsPerMs + std::uniform_int_distribution<uint64_t>(0, 400)(rng_) * kNsPerMs;
  s.resend = false;
}

bool Soak::send_line(size_t i, const std::string& line) {
  Session& s = sessions_[i];
  std::string bytes = line + "\r\n";
  // A few bytes on a connection whose replies we read: a short write means it is broken.
  ssize_t n = send(s.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n == ssize_t(bytes.size())) return true;
  fail_note("send '" + line + "': " + (n < 0 ? strerror(errno) : "short write"));
  close_session(i, true);
  return false;
}

void Soak::ready(size_t i) {
  Session& s = sessions_[i];
  uint64_t now = monotonic_ns();
  if (s.ever_ready) {
    ++counts_.reconnects;
    counts_.max_reconnect_ns = std::max(counts_.max_reconnect_ns, now - s.down_since);
  }
  s.ever_ready = true;
  s.down_since = 0;
  s.state = Session::State::kReady;
  s.since = now;
}

void Soak::on_line(size_t i, const std::string& line) {
  Session& s = sessions_[i];
  uint64_t now = monotonic_ns();
  if (s.state == Session::State::kHello) {
    --in_flight_;
    if (!control::parse_hello(line)) {
      control::Line refusal = control::classify(line);
      if (refusal.kind == control::Line::Kind::kErr && refusal.type == "busy") ++counts_.refused;
      fail_note("session " + std::to_string(i) + ": instead of HELLO: " + line);
      s.state = Session::State::kSubscribing;  // not in flight any more
      close_session(i, false);
      s.retry_at = now + kNsPerSecond;
      return;
    }
    s.since = now;
    if (s.role == Session::Role::kChatter) {
      s.state = Session::State::kNaming;
      send_line(i, "NAME " + s.name);
    } else {
      s.state = Session::State::kSubscribing;
      send_line(i, "CONECTAR " + std::to_string(s.udp_port));
    }
    return;
  }
  control::Line l = control::classify(line);
  if (l.is_event()) {
    if (s.role == Session::Role::kChatter) {
      if (l.type == "MSG") ++counts_.msgs_received;
      if (l.type == "BROADCAST") ++counts_.chat_broadcasts_received;
    } else {
      ++counts_.viewer_events;
      if (l.type == "BROADCAST") ++counts_.broadcasts_seen;
    }
    return;
  }
  bool ok = l.kind == control::Line::Kind::kOk;
  switch (s.state) {
    case Session::State::kSubscribing:
    case Session::State::kNaming:
      if (ok) {
        if (s.state == Session::State::kSubscribing && s.ever_ready) ++counts_.adopted_ok;
        ready(i);
      } else {
        // CONECTAR refused (the old subscription not released yet?) or the name still held
        // by our previous session: said, and asked again in a second.
        ++(s.state == Session::State::kSubscribing ? counts_.subscribe_errors : counts_.name_errors);
        fail_note("session " + std::to_string(i) + ": " + line);
        s.resend = true;
        s.retry_at = now + kNsPerSecond;
      }
      return;
    case Session::State::kReady:
      if (s.role != Session::Role::kChatter || s.pending.empty()) {
        ++counts_.stray_lines;
        fail_note("session " + std::to_string(i) + ": stray line: " + line);
        return;
      }
      {
        uint64_t took = now - s.pending.front().sent_ns;
        counts_.max_reply_ns = std::max(counts_.max_reply_ns, took);
        uint64_t& kind = s.pending.front().broadcast ? counts_.max_broadcast_reply_ns : counts_.max_msg_reply_ns;
        kind = std::max(kind, took);
        counts_.replies_over_1s += took > kNsPerSecond;
      }
      s.pending.pop_front();
      if (ok) {
        ++counts_.chat_ok;
      } else if (l.type == "no-such-user") {
        ++counts_.chat_err_absent;  // its peer is reconnecting after a control kill
      } else {
        ++counts_.chat_err;
        fail_note(s.name + ": " + line);
      }
      return;
    default: return;
  }
}

void Soak::on_session(size_t i, uint32_t events) {
  Session& s = sessions_[i];
  char buf[4096];
  bool closed = false;
  for (;;) {
    ssize_t n = recv(s.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      s.input.append(buf, size_t(n));
      if (size_t(n) < sizeof buf) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    closed = true;
    break;
  }
  size_t start = 0, nl;
  while (s.fd >= 0 && (nl = s.input.find('\n', start)) != std::string::npos) {
    size_t end = nl > start && s.input[nl - 1] == '\r' ? nl - 1 : nl;
    std::string line = s.input.substr(start, end - start);
    start = nl + 1;
    on_line(i, line);
  }
  if (s.fd < 0) return;  // on_line closed it
  s.input.erase(0, start);
  if (closed || (events & (EPOLLERR | EPOLLHUP))) close_session(i, true);
}

void Soak::mark(Mark::Kind kind, size_t v, uint64_t count) {
  // Stalls apart: many of them (a loaded host) must not crowd out the anomalies.
  std::vector<Mark>& to = kind == Mark::kStall ? stalls_ : marks_;
  if (to.size() >= kMaxMarks) {
    ++(kind == Mark::kStall ? counts_.stalls_dropped : counts_.marks_dropped);
    return;
  }
  to.push_back(Mark{kind, uint32_t(v), wall_ns(), count});
}

void Soak::on_udp(size_t v) {
  Viewer& w = viewers_[v];
  for (;;) {
    int got = recvmmsg(w.fd, msgs_, kBatch, MSG_DONTWAIT | MSG_TRUNC, nullptr);
    if (got <= 0) return;
    uint64_t now = monotonic_ns();
    if (w.last_ns != 0 && now - w.last_ns > kStallNs) mark(Mark::kStall, v, (now - w.last_ns) / 1000);
    for (int k = 0; k < got; ++k) {
      auto d = decode_counter(buffers_[k], msgs_[k].msg_len);
      if (!d) {
        ++w.foreign;
        continue;
      }
      if (d->value != counter_value(d->index)) ++w.corrupt;
      bool first = !w.seq.any();
      uint64_t highest = w.seq.highest(), dups = w.seq.duplicates(), late = w.seq.out_of_order();
      w.seq.add(d->index);
      if (!first && d->index > highest + 1) mark(Mark::kGap, v, d->index - highest - 1);
      if (w.seq.duplicates() > dups) mark(Mark::kDuplicate, v, 1);
      else if (w.seq.out_of_order() > late) mark(Mark::kReorder, v, 1);
    }
    w.last_ns = now;
    if (unsigned(got) < kBatch) return;
  }
}

size_t Soak::ready_count() const {
  size_t n = 0;
  for (const Session& s : sessions_) n += s.state == Session::State::kReady;
  return n;
}

void Soak::chat(uint64_t now) {
  // Each chatter sends a MSG to the next one every round, and a BROADCAST (which every
  // viewer's session receives too) every fifth round.
  ++chat_round_;
  size_t first = viewers_.size() + o_.probes.size();
  for (size_t c = 0; c < o_.chatters; ++c) {
    size_t i = first + c;
    if (sessions_[i].state != Session::State::kReady) continue;
    std::string to = "soak-chat-" + std::to_string((c + 1) % o_.chatters);
    bool broadcast = chat_round_ % 5 == c % 5;
    std::string line = broadcast ? "BROADCAST soak round " + std::to_string(chat_round_)
                                 : "MSG " + to + " soak round " + std::to_string(chat_round_);
    if (!send_line(i, line)) continue;
    sessions_[i].pending.push_back({now, broadcast});
    ++counts_.chat_sent;
  }
}

void Soak::tick(uint64_t now) {
  for (size_t i = 0; i < sessions_.size(); ++i) {
    Session& s = sessions_[i];
    switch (s.state) {
      case Session::State::kDown:
        if (now >= s.retry_at && in_flight_ < kInFlight) open_session(i);
        break;
      case Session::State::kHello:
      case Session::State::kSubscribing:
      case Session::State::kNaming:
        if (s.resend && now >= s.retry_at) {
          s.resend = false;
          s.since = now;
          send_line(i, s.state == Session::State::kNaming ? "NAME " + s.name : "CONECTAR " + std::to_string(s.udp_port));
        } else if (!s.resend && now - s.since > kStepLimit) {
          ++counts_.step_timeouts;
          fail_note("session " + std::to_string(i) + ": no answer within 10 s");
          close_session(i, false);
        }
        break;
      case Session::State::kReady:
        if (!s.pending.empty())  // a reply still owed counts as long as it is owed
          counts_.max_reply_ns = std::max(counts_.max_reply_ns, now - s.pending.front().sent_ns);
        break;
    }
  }
  if (o_.chatters > 0 && now >= next_chat_) {
    if (next_chat_ != 0) chat(now);
    next_chat_ = now + seconds_to_ns(o_.chat_every_s);
  }
  if (!announced_ready_ && ready_count() == sessions_.size()) {
    announced_ready_ = true;
    fprintf(stderr, "soak_viewers: ready: %zu sessions (%zu viewers, %zu probes, %zu chatters) in %.1f s\n",
            sessions_.size(), viewers_.size(), o_.probes.size(), o_.chatters, to_seconds(now - start_ns_));
  }
  if (now >= next_state_) {
    write_state(now);
    next_state_ = now + kNsPerSecond;
  }
}

// The figures of the moment, for the script's waits and samples: written to a temporary file
// and renamed, so a reader never sees half of it.
void Soak::write_state(uint64_t now) {
  if (o_.state_file.empty()) return;
  uint64_t newest = 0, received = 0, lost = 0, dups = 0, reorders = 0;
  for (const Viewer& w : viewers_) {
    newest = std::max(newest, w.last_ns);
    received += w.seq.received();
    lost += w.seq.lost();
    dups += w.seq.duplicates();
    reorders += w.seq.out_of_order();
  }
  size_t receiving = 0;
  for (const Viewer& w : viewers_) receiving += w.last_ns != 0 && w.last_ns + kBehindNs >= now;
  std::string tmp = o_.state_file + ".tmp";
  FILE* f = fopen(tmp.c_str(), "w");
  if (!f) return;
  fprintf(f,
          "uptime_s=%.1f\nsessions=%zu\nready=%zu\nreceiving=%zu\nviewers=%zu\nreceived=%lu\nlost=%lu\n"
          "duplicates=%lu\nout_of_order=%lu\nreconnects=%lu\nchat_sent=%lu\nchat_ok=%lu\nchat_err=%lu\n"
          "max_reply_ms=%.1f\nmax_busy_ms=%.1f\n",
          to_seconds(now - start_ns_), sessions_.size(), ready_count(), receiving, viewers_.size(), received, lost,
          dups, reorders, counts_.reconnects, counts_.chat_sent, counts_.chat_ok, counts_.chat_err,
          double(counts_.max_reply_ns) / 1e6, double(counts_.max_busy_ns) / 1e6);
  fclose(f);
  rename(tmp.c_str(), o_.state_file.c_str());
}

void Soak::run() {
  epoll_event events[512];
  while (!stop_) {
    int n = epoll_wait(epoll_, events, 512, 10);
    uint64_t woke = monotonic_ns();
    for (int k = 0; k < n; ++k) {
      uint32_t index = uint32_t(events[k].data.u64);
      switch (Tag(events[k].data.u64 >> 32)) {
        case kUdp: on_udp(index); break;
        case kSession:
          if (sessions_[index].fd >= 0) on_session(index, events[k].events);
          break;
        case kSignal: stop_ = true; break;
      }
    }
    uint64_t now = monotonic_ns();
    if (now >= next_tick_) {  // not after every wake-up: 1,000 sessions to look at each time
      tick(now);
      next_tick_ = now + kTickNs;
      now = monotonic_ns();
    }
    // How long this thread kept itself from reading: a long one would make stalls of its own.
    counts_.max_busy_ns = std::max(counts_.max_busy_ns, now - woke);
    if (now - woke > 200 * kNsPerMs)
      fprintf(stderr, "soak_viewers: busy for %.0f ms at %.1f s (%d events)\n", double(now - woke) / 1e6,
              to_seconds(now - start_ns_), n);
  }
}

// The windows the script wrote, one a line: ROLE START_WALL_NS END_WALL_NS.
struct Window {
  std::string role;
  uint64_t from, to;
};

std::vector<Window> read_windows(const std::string& path) {
  std::vector<Window> out;
  std::ifstream in(path);
  Window w;
  while (in >> w.role >> w.from >> w.to) out.push_back(w);
  return out;
}

void Soak::report() {
  uint64_t now = monotonic_ns();
  std::vector<Window> windows = o_.windows_file.empty() ? std::vector<Window>{} : read_windows(o_.windows_file);
  // Where each anomaly falls: a fan-out or ingest window explains it; a control window does
  // not (the fan-out goes on sending while control restarts), nor does any other moment.
  uint64_t in_stream_window[4] = {}, in_control_window[4] = {}, outside[4] = {};
  // The longest stall of a viewer, by the kind of window it ended in.
  uint64_t stall_us[4] = {};  // ingest, fanout, control, outside
  std::ofstream marks_out;
  if (!o_.marks_file.empty()) marks_out.open(o_.marks_file);
  std::vector<Mark> all = marks_;
  all.insert(all.end(), stalls_.begin(), stalls_.end());
  for (const Mark& m : all) {
    const char* where = "outside";
    const Window* in = nullptr;
    for (const Window& w : windows)
      if (m.wall_ns >= w.from && m.wall_ns <= w.to) {
        in = &w;
        where = w.role == "control" ? "control" : "stream";
        if (w.role != "control") break;
      }
    if (marks_out.is_open())
      marks_out << m.wall_ns << ' ' << kMarkNames[m.kind] << ' ' << m.viewer << ' ' << m.count << ' '
                << (in ? in->role : "-") << '\n';
    if (m.kind == Mark::kStall) {
      int k = !in ? 3 : in->role == "ingest" ? 0 : in->role == "fanout" ? 1 : 2;
      stall_us[k] = std::max(stall_us[k], m.count);
      continue;
    }
    uint64_t* bucket = std::strcmp(where, "stream") == 0 ? in_stream_window
                       : std::strcmp(where, "control") == 0 ? in_control_window : outside;
    bucket[m.kind] += m.count;
  }
  uint64_t newest = 0;
  for (const Viewer& w : viewers_) newest = std::max(newest, w.last_ns);
  uint64_t received = 0, lost = 0, dups = 0, reorders = 0, corrupt = 0, foreign = 0, worst_lost = 0, worst_dups = 0;
  size_t with_loss = 0, with_dups = 0, behind = 0, silent = 0;
  std::ofstream per_viewer;
  if (!o_.per_viewer_file.empty()) {
    per_viewer.open(o_.per_viewer_file);
    per_viewer << "viewer\tport\treceived\tlost\tduplicates\tout_of_order\tlowest\thighest\n";
  }
  for (size_t v = 0; v < viewers_.size(); ++v) {
    const Viewer& w = viewers_[v];
    const auto& s = w.seq;
    received += s.received();
    lost += s.lost();
    dups += s.duplicates();
    reorders += s.out_of_order();
    corrupt += w.corrupt;
    foreign += w.foreign;
    worst_lost = std::max(worst_lost, s.lost());
    worst_dups = std::max(worst_dups, s.duplicates());
    with_loss += s.lost() > 0;
    with_dups += s.duplicates() > 0;
    if (w.last_ns == 0) ++silent;
    else if (w.last_ns + kBehindNs < newest) ++behind;
    if (per_viewer.is_open())
      per_viewer << v << '\t' << w.port << '\t' << s.received() << '\t' << s.lost() << '\t' << s.duplicates() << '\t'
                 << s.out_of_order() << '\t' << s.lowest() << '\t' << s.highest() << '\n';
  }
  size_t chat_ready = 0, sessions_ready = ready_count();
  for (const Session& s : sessions_) chat_ready += s.role == Session::Role::kChatter && s.state == Session::State::kReady;
  printf("duration_s=%.1f\n", to_seconds(now - start_ns_));
  printf("viewers=%zu\nprobe_sessions=%zu\nchatters=%zu\nsessions_ready=%zu\nsessions=%zu\n", viewers_.size(),
         o_.probes.size(), o_.chatters, sessions_ready, sessions_.size());
  printf("received=%lu\nlost=%lu\nduplicates=%lu\nout_of_order=%lu\ncorrupt=%lu\nforeign=%lu\n", received, lost, dups,
         reorders, corrupt, foreign);
  printf("viewers_with_loss=%zu\nworst_viewer_lost=%lu\nviewers_with_duplicates=%zu\nworst_viewer_duplicates=%lu\n",
         with_loss, worst_lost, with_dups, worst_dups);
  printf("viewers_behind=%zu\nviewers_silent=%zu\n", behind, silent);
  printf("windows=%zu\n", windows.size());
  printf("gap_in_stream_windows=%lu\ngap_in_control_windows=%lu\ngap_outside=%lu\n", in_stream_window[Mark::kGap],
         in_control_window[Mark::kGap], outside[Mark::kGap]);
  printf("dup_in_stream_windows=%lu\ndup_in_control_windows=%lu\ndup_outside=%lu\n", in_stream_window[Mark::kDuplicate],
         in_control_window[Mark::kDuplicate], outside[Mark::kDuplicate]);
  printf("reorder_in_stream_windows=%lu\nreorder_in_control_windows=%lu\nreorder_outside=%lu\n",
         in_stream_window[Mark::kReorder], in_control_window[Mark::kReorder], outside[Mark::kReorder]);
  printf("max_stall_ms_ingest=%.1f\nmax_stall_ms_fanout=%.1f\nmax_stall_ms_control=%.1f\nmax_stall_ms_outside=%.1f\n",
         double(stall_us[0]) / 1e3, double(stall_us[1]) / 1e3, double(stall_us[2]) / 1e3, double(stall_us[3]) / 1e3);
  printf("max_busy_ms=%.1f\nmarks_dropped=%lu\nstalls=%zu\nstalls_dropped=%lu\n", double(counts_.max_busy_ns) / 1e6,
         counts_.marks_dropped, stalls_.size(), counts_.stalls_dropped);
  printf("connects=%lu\ndrops=%lu\nrefused=%lu\nstep_timeouts=%lu\nreconnects=%lu\nadopted_ok=%lu\n", counts_.connects,
         counts_.drops, counts_.refused, counts_.step_timeouts, counts_.reconnects, counts_.adopted_ok);
  printf("max_reconnect_ms=%.1f\nsubscribe_errors=%lu\nname_errors=%lu\nstray_lines=%lu\n",
         double(counts_.max_reconnect_ns) / 1e6, counts_.subscribe_errors, counts_.name_errors, counts_.stray_lines);
  printf("viewer_events=%lu\nviewer_broadcasts=%lu\n", counts_.viewer_events, counts_.broadcasts_seen);
  printf("chat_ready=%zu\nchat_sent=%lu\nchat_ok=%lu\nchat_err=%lu\nchat_err_absent=%lu\nchat_unanswered=%lu\n",
         chat_ready, counts_.chat_sent, counts_.chat_ok, counts_.chat_err, counts_.chat_err_absent,
         counts_.chat_unanswered);
  printf("chat_msgs_received=%lu\nchat_broadcasts_received=%lu\nmax_reply_ms=%.1f\n", counts_.msgs_received,
         counts_.chat_broadcasts_received, double(counts_.max_reply_ns) / 1e6);
  printf("max_msg_reply_ms=%.1f\nmax_broadcast_reply_ms=%.1f\nreplies_over_1s=%lu\n",
         double(counts_.max_msg_reply_ns) / 1e6, double(counts_.max_broadcast_reply_ns) / 1e6, counts_.replies_over_1s);
  printf("last_error=%s\n", counts_.last_error.c_str());
  fflush(stdout);
  // Sessions first, so that the relay ends the subscriptions before the ports close.
  for (Session& s : sessions_)
    if (s.fd >= 0) ::close(s.fd);
  for (Viewer& w : viewers_) ::close(w.fd);
}

int usage(const char* why) {
  fprintf(stderr,
          "soak_viewers: %s\nUsage: soak_viewers --control HOST:PORT --viewers N [--probe PORT]... [--chatters K]\n"
          "       [--chat-every SECONDS] [--state FILE] [--windows FILE] [--per-viewer FILE] [--marks FILE]\n",
          why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  static const option long_options[] = {
      {"control", required_argument, nullptr, 'c'},   {"viewers", required_argument, nullptr, 'n'},
      {"probe", required_argument, nullptr, 'p'},     {"chatters", required_argument, nullptr, 'k'},
      {"chat-every", required_argument, nullptr, 'e'}, {"state", required_argument, nullptr, 's'},
      {"windows", required_argument, nullptr, 'w'},   {"per-viewer", required_argument, nullptr, 'v'},
      {"marks", required_argument, nullptr, 'm'},
      {nullptr, 0, nullptr, 0},
  };
  Options o;
  int opt;
  while ((opt = getopt_long(argc, argv, "", long_options, nullptr)) != -1) {
    switch (opt) {
      case 'c': {
        auto server = split_host_port(optarg);
        if (!server) return usage(server.error().c_str());
        o.control_host = server->host;
        o.control_port = server->port;
        break;
      }
      case 'n': o.viewers = strtoul(optarg, nullptr, 10); break;
      case 'p': {
        auto port = parse_port(optarg, 1, 65535);
        if (!port) return usage("--probe expects a UDP port");
        o.probes.push_back(*port);
        break;
      }
      case 'k': o.chatters = strtoul(optarg, nullptr, 10); break;
      case 'e': o.chat_every_s = strtod(optarg, nullptr); break;
      case 's': o.state_file = optarg; break;
      case 'w': o.windows_file = optarg; break;
      case 'v': o.per_viewer_file = optarg; break;
      case 'm': o.marks_file = optarg; break;
      default: return usage("unknown option");
    }
  }
  if (o.control_host.empty()) return usage("--control is required");
  if (o.chatters == 1) return usage("--chatters: 0, or at least 2 (they write to each other)");
  if (!(o.chat_every_s >= 0.01)) return usage("--chat-every expects seconds, at least 0.01");
  auto soak = std::make_unique<Soak>(o);  // large (a sequence window per viewer): on the heap
  if (Status ready = soak->setup(); !ready) {
    fprintf(stderr, "soak_viewers: %s\n", ready.error().c_str());
    return 1;
  }
  soak->run();
  soak->report();
  return 0;
}
