// relay_bench: vrelayd's fan-out against a minimal reference relay, in one run, same load,
// on loopback. Relays: "reference" (reference_relay --mode plain: recvmmsg + one sendmmsg
// from one unconnected socket), "reference-gso" (reference_relay --mode gso: a connected
// socket per viewer, UDP GSO) and "vrelayd" (the real daemon; every viewer subscribes with
// its own control session, CONECTAR <port>).
//
// Load: N viewers are UDP sockets on 127.0.0.1 drained by one receiver thread (epoll +
// recvmmsg, MSG_TRUNC into 32-byte buffers: only the header is copied out, so the viewers
// cost as little as possible). The main thread is the source: 1316-byte datagrams (7 TS
// packets, as VLC sends) paced at R per second on CLOCK_MONOTONIC deadlines (late wake-ups
// send what fell due, so the average rate holds), each starting with its sequence number,
// its CLOCK_MONOTONIC send time and the trial's number.
//
// A trial at rate R: a quiet relay, 0.3 s of warm-up, D seconds measured (bounded by a
// datagram count and a wall-clock limit), then a grace wait until nothing has arrived for
// 200 ms (2 s at most). Measured: loss = 1 - delivered / (sent * N), each (viewer, seq) counted
// once (duplicates apart); latency (receive time - send time) p50/p99 over every copy, in a
// log-linear histogram; the relay's CPU (utime + stime of its processes, /proc/PID/stat) from
// the end of the warm-up to the end of the grace wait, per delivered copy. A trial passes
// with loss < 0.1 % and p99 <= 50 ms.
//
// On loopback the sender's system time includes the delivery into the viewers' sockets
// (softirq), and the cost per copy falls as the load grows (batches get longer when a relay
// runs behind): compare relays at the same load only. "receiver CPU" is the receiver
// thread's share of one core: near 100 %, the viewers, not the relay, set the limit.
//
// Scenarios: for each N, the highest rate that passes (start low, x1.5 until a failure, then
// bisection; a rate fails when two trials at it fail), reported as R * N * (1 - loss)
// delivered datagrams/s; and the fixed loads of issue 8 (300/s x 1000, 100/s x 1000, 500/s x
// 100 viewers). Markdown tables on stdout, one row per relay and its ratio to "reference";
// progress on stderr.
//
//   relay_bench [--relays reference,reference-gso,vrelayd] [--viewers 100,1000]
//               [--duration S] [--fixed-only] [--smoke]
// More relays: vrelayd-nogso (fanout.gso: off), vrelayd-delay-US (fanout.max_batch_delay: US).
// --fixed-only: the fixed loads, without the search for the maximum.
// --smoke: 10 viewers, reference and vrelayd, one trial at 200/s for 1 s; exit 0 only if
// each relay delivered with loss < 1 %.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

constexpr size_t kDatagramSize = 1316;
constexpr double kWarmupSeconds = 0.3;
constexpr double kPassLoss = 0.001;             // < 0.1 %
constexpr double kPassP99Us = 50000;            // <= 50 ms
constexpr int64_t kQuietNs = 200'000'000;       // grace: nothing arrived for 200 ms...
constexpr int64_t kGraceLimitNs = 2'000'000'000;  // ...or 2 s, whichever comes first
constexpr int64_t kSettleQuietNs = 100'000'000;   // before a trial: the last one's backlog is gone
constexpr int64_t kSettleLimitNs = 20'000'000'000;
constexpr uint64_t kTrackedCopies = 1ull << 26;  // bits of the (viewer, seq) bitmap: 8 MiB
constexpr int kViewerBuffer = 4 << 20;
constexpr double kSearchStartCopies = 50000;    // copies/s of the first search trial
constexpr double kSearchGrowth = 1.5;
constexpr int kSearchGrowTrials = 14, kSearchDownTrials = 3, kSearchBisections = 4;

struct FixedLoad {
  double rate;
  unsigned viewers;
};
constexpr FixedLoad kFixedLoads[] = {{300, 1000}, {100, 1000}, {500, 100}};  // issue 8

int64_t wall_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return int64_t(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

void sleep_until_ns(int64_t when) {
  timespec t{time_t(when / 1'000'000'000), long(when % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, nullptr) == EINTR) {
  }
}

// What every datagram starts with; the rest is TS-like filler.
struct Header {
  uint64_t seq;
  int64_t sent_ns;  // CLOCK_MONOTONIC
  uint64_t trial;   // late copies of an earlier trial are told apart
};

// ---- latency histogram: microseconds, 0-15 exact, then 16 buckets per power of two --------

class Histogram {
 public:
  void add(uint64_t us) {
    ++counts_[bucket(us)];
    ++total_;
  }
  uint64_t total() const { return total_; }
  double percentile(double p) const {  // the bucket's middle; 0 if empty
    if (!total_) return 0;
    uint64_t rank = uint64_t(std::ceil(p / 100.0 * double(total_))), seen = 0;
    for (int b = 0; b < kBuckets; ++b)
      if ((seen += counts_[b]) >= std::max<uint64_t>(rank, 1)) return middle(b);
    return middle(kBuckets - 1);
  }

 private:
  static constexpr int kSub = 16, kBuckets = kSub * 40;
  static int bucket(uint64_t us) {
    if (us < kSub) return int(us);
    int e = 63 - __builtin_clzll(us);  // >= 4
    int b = kSub + (e - 4) * kSub + int((us >> (e - 4)) & (kSub - 1));
    return std::min(b, kBuckets - 1);
  }
  static double middle(int b) {
    if (b < kSub) return b;
    int e = (b - kSub) / kSub + 4, sub = (b - kSub) % kSub;
    double width = double(1ull << (e - 4));
    return double(kSub + sub) * width + width / 2;
  }
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
};

// ---- the viewers: N sockets, one receiver thread ------------------------------------------

struct Received {
  uint64_t delivered = 0, duplicates = 0, stale = 0, malformed = 0;
  Histogram latency;
};

class Viewers {
 public:
  explicit Viewers(unsigned count)
      : words_per_viewer_((kTrackedCopies / count + 63) / 64), seen_(size_t(count) * words_per_viewer_) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    for (unsigned i = 0; i < count; ++i) {
      int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) throw std::runtime_error(std::string("viewer socket: ") + strerror(errno));
      fds_.push_back(fd);
      if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &kViewerBuffer, sizeof kViewerBuffer) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kViewerBuffer, sizeof kViewerBuffer);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t length = sizeof a;
      if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
          getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) != 0)
        throw std::runtime_error(std::string("viewer bind: ") + strerror(errno));
      ports_.push_back(ntohs(a.sin_port));
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.u32 = i;
      epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &e);
    }
    thread_ = std::thread([this] { receive_loop(); });
  }
  ~Viewers() {
    stop_ = true;
    thread_.join();
    for (int fd : fds_) close(fd);
    close(epoll_);
  }
  Viewers(const Viewers&) = delete;
  Viewers& operator=(const Viewers&) = delete;

  const std::vector<uint16_t>& ports() const { return ports_; }
  unsigned count() const { return unsigned(fds_.size()); }
  uint64_t seq_capacity() const { return words_per_viewer_ * 64; }  // per trial
  pid_t receiver_tid() const { return receiver_tid_.load(); }

  // From now on copies of `trial` with seq >= first_measured count.
  void begin_trial(uint64_t trial, uint64_t first_measured) {
    std::lock_guard lock(mutex_);
    std::fill(seen_.begin(), seen_.end(), 0);
    trial_ = trial;
    first_measured_ = first_measured;
    received_ = Received{};
  }
  Received end_trial() {
    std::lock_guard lock(mutex_);
    trial_ = 0;
    return received_;
  }
  // Waits until nothing has arrived for `quiet_ns`, at most `limit_ns`; false at the limit.
  bool wait_quiet(int64_t quiet_ns, int64_t limit_ns) const {
    int64_t start = wall_ns();
    while (true) {
      int64_t now = wall_ns(), last = last_arrival_ns_.load(std::memory_order_relaxed);
      if (now - std::max(last, start) >= quiet_ns) return true;
      if (now - start >= limit_ns) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval of a bounded wait
    }
  }

 private:
  void receive_loop() {
    receiver_tid_ = gettid();
    constexpr unsigned kBatch = 64;
    char buffers[kBatch][sizeof(Header) + 8];
    iovec iov[kBatch];
    mmsghdr msgs[kBatch];
    for (unsigned i = 0; i < kBatch; ++i) {
      iov[i] = {buffers[i], sizeof buffers[i]};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    epoll_event events[256];
    while (!stop_.load(std::memory_order_relaxed)) {
      int ready = epoll_wait(epoll_, events, 256, 20);
      for (int e = 0; e < ready; ++e) {
        unsigned viewer = events[e].data.u32;
        int n;
        do {
          // MSG_TRUNC: msg_len is the datagram's real size although only the header is copied.
          n = recvmmsg(fds_[viewer], msgs, kBatch, MSG_DONTWAIT | MSG_TRUNC, nullptr);
          if (n <= 0) break;
          int64_t now = wall_ns();
          last_arrival_ns_.store(now, std::memory_order_relaxed);
          std::lock_guard lock(mutex_);
          for (int i = 0; i < n; ++i) account(viewer, buffers[i], msgs[i].msg_len, now);
        } while (n == int(kBatch));
      }
    }
  }

  void account(unsigned viewer, const char* data, size_t length, int64_t now) {
    if (length != kDatagramSize) {
      ++received_.malformed;
      return;
    }
    Header h;
    std::memcpy(&h, data, sizeof h);
    if (h.trial != trial_ || trial_ == 0) {
      ++received_.stale;
      return;
    }
    if (h.seq < first_measured_ || h.seq >= seq_capacity()) return;  // the warm-up
    uint64_t& word = seen_[size_t(viewer) * words_per_viewer_ + h.seq / 64];
    uint64_t bit = 1ull << (h.seq % 64);
    if (word & bit) {
      ++received_.duplicates;
      return;
    }
    word |= bit;
    ++received_.delivered;
    received_.latency.add(uint64_t(std::max<int64_t>(0, now - h.sent_ns)) / 1000);
  }

  std::vector<int> fds_;
  std::vector<uint16_t> ports_;
  int epoll_ = -1;
  const uint64_t words_per_viewer_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> last_arrival_ns_{0};
  std::atomic<pid_t> receiver_tid_{0};
  std::mutex mutex_;  // taken once per recvmmsg by the receiver; guards what follows
  std::vector<uint64_t> seen_;
  uint64_t trial_ = 0, first_measured_ = 0;
  Received received_;
  std::thread thread_;
};

// ---- the source -----------------------------------------------------------------------------

struct Sent {
  uint64_t total = 0, measured = 0, errors = 0;
  int64_t measure_start_ns = 0, end_ns = 0;
};

class Source {
 public:
  explicit Source(uint16_t ingest_port) : payload_(kDatagramSize, char(0x47)) {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ingest_.sin_family = AF_INET;
    ingest_.sin_port = htons(ingest_port);
    ingest_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  ~Source() { close(fd_); }
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;

  // Sends datagrams 0..total-1 at `rate` per second, stopping at `limit_ns`; calls
  // `at_measure_start` right before datagram `warm`.
  Sent send(double rate, uint64_t total, uint64_t warm, uint64_t trial, int64_t limit_ns,
            const std::function<void()>& at_measure_start) {
    Sent s;
    const int64_t start = wall_ns();
    const double interval_ns = 1e9 / rate;
    uint64_t i = 0;
    while (i < total) {
      int64_t now = wall_ns();
      if (now >= limit_ns) break;
      uint64_t due = std::min<uint64_t>(total, uint64_t(double(now - start) / interval_ns) + 1);
      for (; i < due; ++i) {
        if (i == warm) {
          at_measure_start();
          s.measure_start_ns = wall_ns();
        }
        Header h{i, wall_ns(), trial};
        std::memcpy(payload_.data(), &h, sizeof h);
        if (sendto(fd_, payload_.data(), payload_.size(), 0, reinterpret_cast<sockaddr*>(&ingest_), sizeof ingest_) < 0)
          ++s.errors;
      }
      sleep_until_ns(start + int64_t(double(i) * interval_ns));
    }
    s.end_ns = wall_ns();
    s.total = i;
    s.measured = i > warm ? i - warm : 0;
    return s;
  }

 private:
  int fd_ = -1;
  sockaddr_in ingest_{};
  std::string payload_;
};

// ---- the relays under test ------------------------------------------------------------------

// CPU seconds (user + system) a process (or a thread: "self/task/TID") has used, from
// /proc/PID/stat; 0 if it is gone.
double cpu_seconds(const std::string& pid) {
  std::string text = read_file("/proc/" + pid + "/stat");
  auto paren = text.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return 0;
  std::istringstream in(text.substr(paren + 2));
  std::string field;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {  // fields 14 and 15 (1-based)
    if (i == 14) utime = std::stoul(field);
    if (i == 15) stime = std::stoul(field);
  }
  return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

// Whether a process is there and not a zombie (state Z or X in /proc/PID/stat).
bool alive(pid_t pid) {
  std::string text = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z' && text[paren + 2] != 'X';
}

double cpu_seconds(const std::vector<pid_t>& pids) {
  double sum = 0;
  for (pid_t p : pids) sum += cpu_seconds(std::to_string(p));
  return sum;
}

class Target {
 public:
  virtual ~Target() = default;
  virtual uint16_t ingest_port() const = 0;
  virtual std::vector<pid_t> pids() = 0;  // whose CPU counts
  virtual std::string trouble() = 0;      // "" while healthy, else what went wrong
};

std::string own_directory() {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return ".";
  std::string p(path, size_t(n));
  return p.substr(0, p.rfind('/'));
}

// reference_relay, from the directory of this executable.
class ReferenceRelay : public Target {
 public:
  ReferenceRelay(const std::string& mode, const std::vector<uint16_t>& ports) {
    std::string stem = "/tmp/relay_bench-" + std::to_string(getpid()) + "-" + mode;
    destinations_path_ = stem + ".destinations";
    log_path_ = stem + ".log";
    {
      std::ofstream out(destinations_path_);
      for (uint16_t p : ports) out << "127.0.0.1:" << p << "\n";
    }
    std::string path = own_directory() + "/reference_relay";
    std::vector<std::string> args = {path, "--ingest", "127.0.0.1:0",
                                     "--destinations", destinations_path_, "--mode", mode};
    int out = -1;
    pid_ = start_program(args, log_path_, &out);
    std::string line = read_first_line(out, 5000ms);
    close(out);
    auto colon = line.rfind(':');
    if (line.rfind("ready ingest=", 0) != 0 || colon == std::string::npos) {
      std::string why = path + " did not report ready: '" + line + "' " + trouble();
      stop();
      throw std::runtime_error(why);
    }
    ingest_port_ = uint16_t(std::atoi(line.c_str() + colon + 1));
  }
  ~ReferenceRelay() override { stop(); }
  uint16_t ingest_port() const override { return ingest_port_; }
  std::vector<pid_t> pids() override { return {pid_}; }
  std::string trouble() override {
    int status;
    if (pid_ <= 0 || waitpid(pid_, &status, WNOHANG) != pid_) return "";
    pid_ = -1;
    std::string how = WIFEXITED(status) ? "with status " + std::to_string(WEXITSTATUS(status))
                                        : "on signal " + std::to_string(WTERMSIG(status));
    return "reference_relay exited " + how + ": " + read_file(log_path_);
  }

 private:
  // SIGTERM, then SIGKILL if it is still there after 5 s; the files go.
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int64_t deadline = wall_ns() + 5'000'000'000;
      while (waitpid(pid_, nullptr, WNOHANG) == 0) {
        if (wall_ns() > deadline) {
          kill(pid_, SIGKILL);
          waitpid(pid_, nullptr, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // poll interval of a bounded wait
      }
    }
    pid_ = -1;
    unlink(destinations_path_.c_str());
    unlink(log_path_.c_str());
  }

  // The first line written on `fd` within `limit_ms`, without its newline.
  pid_t pid_ = -1;
  uint16_t ingest_port_ = 0;
  std::string destinations_path_, log_path_;
};

// The real vrelayd (test harness), one control session per viewer.
class Vrelayd : public Target {
 public:
  // `fanout_keys`: more keys of the fanout section ("  max_batch_delay: 1000\n").
  Vrelayd(const std::vector<uint16_t>& ports, const std::string& fanout_keys)
      : relay_(configuration(ports.size()) + fanout_keys) {
    for (uint16_t port : ports) {
      sessions_.push_back(std::make_unique<Session>(relay_.control_port()));
      std::string reply = sessions_.back()->command("CONECTAR " + std::to_string(port));
      if (reply != "OK") throw std::runtime_error("CONECTAR " + std::to_string(port) + ": " + reply);
    }
  }
  ~Vrelayd() override {
    sessions_.clear();
    relay_.stop(5000ms);
  }
  uint16_t ingest_port() const override { return relay_.ingest_port(); }
  std::vector<pid_t> pids() override {
    return {relay_.pid(), relay_.child_pid(kIngest), relay_.child_pid(kFanout), relay_.child_pid(kControl)};
  }
  std::string trouble() override {
    if (!alive(relay_.pid())) return "vrelayd exited: " + log_tail();
    uint64_t restarts = relay_.restarts(kIngest) + relay_.restarts(kFanout) + relay_.restarts(kControl);
    if (restarts) return "vrelayd restarted a child " + std::to_string(restarts) + " time(s): " + log_tail();
    return "";
  }

 private:
  // Room for every viewer's session and subscription; nothing that speaks up on its own
  // during a run (idle timeouts, JOIN events to every session, "source stalled" events).
  static std::string configuration(size_t viewers) {
    std::string room = std::to_string(std::max<size_t>(2048, viewers + 64));
    return "control:\n  max_sessions: " + room + "\n  max_sessions_per_ip: " + room +
           "\n  idle_timeout: 0\n  presence_events: named\n"
           "ingest:\n  stall_timeout: 3600\n"
           "fanout:\n  max_subscribers: " + room + "\n";
  }
  std::string log_tail() const {
    std::string log = relay_.log();
    return log.size() > 2000 ? "..." + log.substr(log.size() - 2000) : log;
  }
  Relay relay_;
  std::vector<std::unique_ptr<Session>> sessions_;
};

// "vrelayd", "vrelayd-nogso" (fanout.gso: off) or "vrelayd-delay-US" (fanout.max_batch_delay).
const std::string kDelayVariant = "vrelayd-delay-";

bool known_relay(const std::string& relay) {
  if (relay.rfind(kDelayVariant, 0) == 0)
    return relay.size() > kDelayVariant.size() &&
           relay.find_first_not_of("0123456789", kDelayVariant.size()) == std::string::npos;
  return relay == "reference" || relay == "reference-gso" || relay == "vrelayd" || relay == "vrelayd-nogso";
}

std::unique_ptr<Target> start(const std::string& relay, const std::vector<uint16_t>& ports) {
  if (relay == "reference") return std::make_unique<ReferenceRelay>("plain", ports);
  if (relay == "reference-gso") return std::make_unique<ReferenceRelay>("gso", ports);
  if (relay == "vrelayd-nogso") return std::make_unique<Vrelayd>(ports, "  gso: off\n");
  if (relay.rfind(kDelayVariant, 0) == 0)
    return std::make_unique<Vrelayd>(ports, "  max_batch_delay: " + relay.substr(kDelayVariant.size()) + "\n");
  return std::make_unique<Vrelayd>(ports, "");
}

// ---- one trial --------------------------------------------------------------------------------

struct Trial {
  double rate = 0;
  uint64_t sent = 0, delivered = 0, duplicates = 0;
  double loss = 1, p50_us = 0, p99_us = 0, cpu_us = 0;  // cpu_us: per delivered copy
  double receiver_busy = 0;  // CPU of the viewers' receiver thread / measured window
  bool passed = false;
};

uint64_t g_trial = 0;

// One line on stderr per trial, with what should not happen if it did.
void print_progress(const Trial& t, unsigned viewers, const Received& got, const Sent& sent, uint64_t planned) {
  std::string odd;
  if (got.duplicates) odd += ", " + std::to_string(got.duplicates) + " duplicates";
  if (got.stale) odd += ", " + std::to_string(got.stale) + " copies of an earlier trial";
  if (got.malformed) odd += ", " + std::to_string(got.malformed) + " datagrams of the wrong size";
  if (sent.total < planned) odd += ", the source stopped at its time limit";
  if (sent.errors) odd += ", " + std::to_string(sent.errors) + " source send errors";
  std::fprintf(stderr,
               "  %8.0f/s x %u: sent %lu, loss %.3f%%, p50 %.0f us, p99 %.0f us, CPU %.2f us/copy, receiver %.0f%%%s"
               " -> %s\n",
               t.rate, viewers, (unsigned long)t.sent, 100 * t.loss, t.p50_us, t.p99_us, t.cpu_us,
               100 * t.receiver_busy, odd.c_str(), t.passed ? "pass" : "FAIL");
}

Trial run_trial(Target& relay, Viewers& viewers, Source& source, double rate, double seconds) {
  if (!viewers.wait_quiet(kSettleQuietNs, kSettleLimitNs))
    std::fprintf(stderr, "  (copies of the last trial still arriving after %.0f s)\n", kSettleLimitNs / 1e9);
  uint64_t trial = ++g_trial;
  uint64_t warm = uint64_t(std::llround(rate * kWarmupSeconds));
  uint64_t total = std::min(viewers.seq_capacity(), warm + uint64_t(std::llround(rate * seconds)));
  std::vector<pid_t> pids = relay.pids();
  viewers.begin_trial(trial, warm);
  std::string receiver = "self/task/" + std::to_string(viewers.receiver_tid());
  double cpu_before = 0, receiver_before = 0;
  int64_t limit = wall_ns() + int64_t((kWarmupSeconds + seconds + 1) * 1e9);
  Sent sent = source.send(rate, total, warm, trial, limit, [&] {
    cpu_before = cpu_seconds(pids);
    receiver_before = cpu_seconds(receiver);
  });
  viewers.wait_quiet(kQuietNs, kGraceLimitNs);
  double cpu = cpu_seconds(pids) - cpu_before, receiver_cpu = cpu_seconds(receiver) - receiver_before;
  double window = double(wall_ns() - sent.measure_start_ns) / 1e9;
  Received got = viewers.end_trial();
  if (std::string why = relay.trouble(); !why.empty()) throw std::runtime_error(why);

  Trial t;
  t.rate = rate;
  t.sent = sent.measured;
  t.delivered = got.delivered;
  t.duplicates = got.duplicates;
  double expected = double(sent.measured) * viewers.count();
  t.loss = expected > 0 ? 1 - double(got.delivered) / expected : 1;
  t.p50_us = got.latency.percentile(50);
  t.p99_us = got.latency.percentile(99);
  t.cpu_us = got.delivered ? cpu * 1e6 / double(got.delivered) : 0;
  t.receiver_busy = sent.measure_start_ns ? receiver_cpu / window : 0;
  t.passed = sent.measured > 0 && t.loss < kPassLoss && t.p99_us <= kPassP99Us;
  print_progress(t, viewers.count(), got, sent, total);
  return t;
}

// The highest rate that passes: x1.5 from a low start until a failure (halving if the start
// already fails), then bisection. A rate fails only if a second trial at it fails too: one
// stall of the machine must not end the search. Every trial counts in `trials`.
std::optional<Trial> search(const std::function<Trial(double)>& run, unsigned viewers, int* trials) {
  auto trial_at = [&](double rate) {
    Trial t = run(rate);
    ++*trials;
    if (!t.passed) {
      t = run(rate);
      ++*trials;
    }
    return t;
  };
  std::optional<Trial> best;
  std::optional<double> failed;
  double rate = std::max(10.0, kSearchStartCopies / viewers);
  for (int i = 0; i < kSearchGrowTrials && !failed; ++i, rate *= kSearchGrowth) {
    Trial t = trial_at(rate);
    if (t.passed) best = t;
    else failed = rate;
  }
  for (int i = 0; i < kSearchDownTrials && !best && failed; ++i) {
    rate = *failed / 2;
    Trial t = trial_at(rate);
    if (t.passed) best = t;
    else failed = rate;
  }
  for (int i = 0; i < kSearchBisections && best && failed; ++i) {
    Trial t = trial_at((best->rate + *failed) / 2);
    if (t.passed) best = t;
    else failed = t.rate;
  }
  return best;
}

// ---- results and their tables ---------------------------------------------------------------

struct Row {
  std::string relay;
  std::string error;  // the relay failed: why
  std::optional<Trial> trial;  // the best passing one for a search
  int trials = 0;
};

struct Scenario {
  bool is_search;
  unsigned viewers;
  double rate;  // fixed loads
  std::vector<Row> rows;
};

std::string grouped(double value, int decimals = 0) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  std::string s = text;
  size_t end = s.find('.') == std::string::npos ? s.size() : s.find('.');
  for (size_t i = end; i > 3 + (s[0] == '-'); i -= 3) s.insert(i - 3, ",");
  return s;
}

std::string percent(double fraction) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f%%", 100 * fraction);
  return text;
}

double max_delivered(const Trial& t, unsigned viewers) { return t.rate * viewers * (1 - t.loss); }

// "vrelayd/reference = 0.84x" of value(row) / value(reference row), or "" without one.
std::string ratio(const Scenario& s, const Row& row, const std::function<double(const Trial&)>& value) {
  for (const Row& r : s.rows)
    if (r.relay == "reference" && r.trial && row.trial) {
      if (&r == &row) return "(baseline)";
      double base = value(*r.trial);
      if (base <= 0) return "n/a";
      char text[96];
      std::snprintf(text, sizeof text, "%s/reference = %.2fx", row.relay.c_str(), value(*row.trial) / base);
      return text;
    }
  return "n/a";
}

void print_scenario(const Scenario& s, double seconds) {
  if (s.is_search) {
    std::printf("\n### Max delivered rate, %u viewers (loss < 0.1%%, p99 <= 50 ms; %.1f s trials)\n\n", s.viewers,
                seconds);
    std::printf("| relay | max delivered datagrams/s | vs reference | at source rate /s | loss | p50 us | p99 us |"
                " CPU us per delivered datagram | receiver CPU | trials |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
  } else {
    std::printf("\n### %s datagrams/s x %s viewers (%.1f s)\n\n", grouped(s.rate).c_str(), grouped(s.viewers).c_str(),
                seconds);
    std::printf("| relay | sent | delivered copies | duplicates | loss | p50 us | p99 us | CPU us per delivered datagram |"
                " CPU vs reference | receiver CPU |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
  }
  for (const Row& r : s.rows) {
    if (!r.error.empty() || !r.trial) {
      std::printf("| %s | %s |\n", r.relay.c_str(),
                  r.error.empty() ? "no rate passed" : ("failed: " + r.error.substr(0, 200)).c_str());
      continue;
    }
    const Trial& t = *r.trial;
    if (s.is_search)
      std::printf("| %s | %s | %s | %s | %s | %s | %s | %.2f | %.0f%% | %d |\n", r.relay.c_str(),
                  grouped(max_delivered(t, s.viewers)).c_str(),
                  ratio(s, r, [&](const Trial& x) { return max_delivered(x, s.viewers); }).c_str(),
                  grouped(t.rate).c_str(), percent(t.loss).c_str(), grouped(t.p50_us).c_str(), grouped(t.p99_us).c_str(),
                  t.cpu_us, 100 * t.receiver_busy, r.trials);
    else
      std::printf("| %s | %s | %s | %s | %s | %s | %s | %.2f | %s | %.0f%% |\n", r.relay.c_str(),
                  grouped(double(t.sent)).c_str(), grouped(double(t.delivered)).c_str(),
                  grouped(double(t.duplicates)).c_str(), percent(t.loss).c_str(), grouped(t.p50_us).c_str(),
                  grouped(t.p99_us).c_str(), t.cpu_us, ratio(s, r, [](const Trial& x) { return x.cpu_us; }).c_str(),
                  100 * t.receiver_busy);
  }
}

void print_machine(const std::string& command_line) {
  std::string cpu = "unknown CPU";
  std::istringstream info(read_file("/proc/cpuinfo"));
  for (std::string line; std::getline(info, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  utsname u{};
  uname(&u);
  char date[64];
  time_t now = time(nullptr);
  strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
  std::printf("## relay_bench, %s\n\n%s, %ld CPUs, %s %s %s; `%s`\n", date, cpu.c_str(), sysconf(_SC_NPROCESSORS_ONLN),
              u.sysname, u.release, u.machine, command_line.c_str());
  std::printf("\n1316-byte datagrams on loopback; viewers drained by one thread of the benchmark (epoll + recvmmsg);"
              " CPU = utime + stime of the relay's processes per delivered copy; receiver CPU = the benchmark's receiver"
              " thread, in %% of one core over the measured window (near 100%%: the viewers, not the relay, set the"
              " limit).\n");
}

// ---- command line -----------------------------------------------------------------------------

struct Options {
  std::vector<std::string> relays = {"reference", "reference-gso", "vrelayd"};
  std::vector<unsigned> viewers = {100, 1000};
  double seconds = 2;
  bool smoke = false;
  bool fixed_only = false;  // the fixed loads, no search for the maximum
};

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "relay_bench: %s\nusage: relay_bench [--relays reference,reference-gso,vrelayd] "
               "[--viewers 100,1000] [--duration S] [--fixed-only] [--smoke]\n", why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--smoke" || a == "--fixed-only") {
      (a == "--smoke" ? o.smoke : o.fixed_only) = true;
      continue;
    }
    if (i + 1 >= argc) usage(a + " needs a value");
    std::string v = argv[++i];
    if (a == "--relays") {
      o.relays = split(v);
      for (auto& r : o.relays)
        if (!known_relay(r)) usage("unknown relay " + r);
    } else if (a == "--viewers") {
      o.viewers.clear();
      for (auto& n : split(v)) o.viewers.push_back(unsigned(std::strtoul(n.c_str(), nullptr, 10)));
      for (unsigned n : o.viewers)
        if (n == 0 || n > 10000) usage("viewers: 1 to 10000");
    } else if (a == "--duration") {
      o.seconds = std::strtod(v.c_str(), nullptr);
      if (!(o.seconds >= 0.1 && o.seconds <= 60)) usage("duration: 0.1 to 60 seconds");
    } else {
      usage("unknown option " + a);
    }
  }
  if (o.relays.empty() || o.viewers.empty()) usage("nothing to measure");
  if (o.smoke) {
    o.relays = {"reference", "vrelayd"};
    o.viewers = {10};
    o.seconds = 1;
  }
  return o;
}

void raise_descriptor_limit() {
  rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

std::vector<Scenario> scenarios_for(const Options& o) {
  std::vector<Scenario> out;
  if (o.smoke) return {{false, 10, 200, {}}};
  for (unsigned n : o.viewers) {
    if (!o.fixed_only) out.push_back({true, n, 0, {}});
    for (const FixedLoad& f : kFixedLoads)
      if (f.viewers == n) out.push_back({false, n, f.rate, {}});
  }
  return out;
}

// Runs every scenario of `viewers` viewers on one freshly started relay.
void measure(const std::string& relay, unsigned viewers, double seconds, std::vector<Scenario>& scenarios) {
  std::fprintf(stderr, "%s, %u viewers\n", relay.c_str(), viewers);
  std::vector<Scenario*> mine;
  for (Scenario& s : scenarios)
    if (s.viewers == viewers) mine.push_back(&s);
  size_t done = 0;
  try {
    Viewers sinks(viewers);
    std::unique_ptr<Target> target = start(relay, sinks.ports());
    Source source(target->ingest_port());
    auto trial_at = [&](double rate) { return run_trial(*target, sinks, source, rate, seconds); };
    for (Scenario* s : mine) {
      Row row{relay, "", std::nullopt, 0};
      if (s->is_search) {
        row.trial = search(trial_at, viewers, &row.trials);
      } else {
        row.trial = trial_at(s->rate);
        row.trials = 1;
      }
      s->rows.push_back(row);
      ++done;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  %s failed: %s\n", relay.c_str(), e.what());
    for (size_t i = done; i < mine.size(); ++i) mine[i]->rows.push_back({relay, e.what(), std::nullopt, 0});
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse(argc, argv);
  std::string command_line = "relay_bench";
  for (int i = 1; i < argc; ++i) command_line += std::string(" ") + argv[i];
  signal(SIGPIPE, SIG_IGN);
  raise_descriptor_limit();

  auto started = std::chrono::steady_clock::now();
  std::vector<Scenario> scenarios = scenarios_for(options);
  for (unsigned n : options.viewers)
    for (const std::string& relay : options.relays) measure(relay, n, options.seconds, scenarios);

  print_machine(command_line);
  for (const Scenario& s : scenarios) print_scenario(s, options.seconds);
  double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() / 60;
  std::printf("\nWhole run: %.1f minutes.\n", minutes);

  int status = 0;
  for (const Scenario& s : scenarios)
    for (const Row& r : s.rows) {
      if (!r.error.empty()) status = 1;
      if (options.smoke && r.error.empty() && (!r.trial || r.trial->loss >= 0.01)) {
        std::printf("smoke: %s lost %s of its copies (limit 1%%)\n", r.relay.c_str(),
                    r.trial ? percent(r.trial->loss).c_str() : "all");
        status = 1;
      }
      if (options.smoke && !r.error.empty()) std::printf("smoke: %s failed: %s\n", r.relay.c_str(), r.error.c_str());
    }
  if (options.smoke && status == 0) std::printf("smoke: every relay delivered with loss < 1%%\n");
  return status;
}
