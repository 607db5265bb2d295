// vrelay-probe: receives a UDP stream on a port and checks it (see man/vrelay-probe.1).
// One thread: poll() on the UDP socket, a signalfd (SIGINT, SIGTERM) and, with --subscribe,
// the control session; datagrams are read in recvmmsg batches into buffers allocated once
// and handed to the Analyzer (analysis.cpp); reports are made by report.cpp.
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "analysis.hpp"
#include "clock.hpp"
#include "control.hpp"
#include "net.hpp"
#include "report.hpp"
#include "version.hpp"

namespace {

using namespace vrelay;
using namespace vrelay::probe;

constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2;
constexpr unsigned kBatch = 64;               // datagrams per recvmmsg
constexpr size_t kMaxDatagram = 65536;        // larger than any UDP payload: never truncated
constexpr int kReceiveBuffer = 8 << 20;       // asked for; the kernel caps it (rmem_max)
constexpr double kKeepaliveS = 60;            // PING after this long (relay idle timeout 300 s)

const char* kUsage =
    "Usage: vrelay-probe [OPTIONS] PORT\n"
    "Receives a UDP stream on PORT and checks it: datagrams, bytes, bitrate and, by the\n"
    "stream's kind (vrelay's counter stream, RTP, raw MPEG-TS), losses, reordering,\n"
    "duplicates and MPEG-TS continuity errors. A status line goes to standard error once a\n"
    "second; the final report goes to standard output at the end (Ctrl-C, SIGTERM, or an\n"
    "option below).\n"
    "\n"
    "  -s, --subscribe HOST:PORT\n"
    "                         subscribe PORT to the relay whose control port is HOST:PORT\n"
    "                         (CONECTAR PORT) and leave at the end (DESCONECTAR)\n"
    "  -b, --bind ADDR        the local address to receive on (default 0.0.0.0)\n"
    "  -c, --count N          stop after N datagrams\n"
    "  -d, --duration SECONDS stop SECONDS after the start\n"
    "  -i, --idle SECONDS     stop when no datagram came for SECONDS, counted from the\n"
    "                         start and again from each datagram\n"
    "  -j, --json             print the final report as one JSON object\n"
    "  -q, --quiet            no status lines\n"
    "  -t, --timeout SECONDS  with --subscribe: wait at most this long to connect and for\n"
    "                         each reply of the relay (default 10)\n"
    "  -V, --version          print the version and exit\n"
    "  -h, --help             print this help and exit\n"
    "\n"
    "Exit status: 0 a normal end, 1 a runtime failure (bind failed, subscription refused,\n"
    "connection to the relay lost), 2 a usage error.\n";

int usage_error(const std::string& message) {
  fprintf(stderr, "vrelay-probe: %s\nTry 'vrelay-probe --help'.\n", message.c_str());
  return kExitUsage;
}

struct Options {
  uint16_t port = 0;
  std::string bind = "0.0.0.0";
  std::string control_host, control_port;  // --subscribe
  uint64_t count = 0;                      // 0 = no limit
  double duration_s = 0, idle_s = 0;       // 0 = no limit
  double timeout_s = 10;
  bool json = false, quiet = false;
};

bool parse_seconds(const char* text, double max, double* out) {
  char* end = nullptr;
  errno = 0;
  double v = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !(v > 0 && v <= max)) return false;
  *out = v;
  return true;
}

bool parse_count(const char* text, uint64_t* out) {
  if (*text == '\0' || strlen(text) > 19) return false;
  for (const char* p = text; *p; ++p)
    if (*p < '0' || *p > '9') return false;
  uint64_t v = strtoull(text, nullptr, 10);
  if (v == 0) return false;
  *out = v;
  return true;
}

// What the receive loop needs, allocated once.
struct Batch {
  std::vector<uint8_t> data = std::vector<uint8_t>(size_t(kBatch) * kMaxDatagram);
  mmsghdr messages[kBatch]{};
  iovec iovecs[kBatch]{};
  Batch() {
    for (unsigned i = 0; i < kBatch; ++i) {
      iovecs[i] = {data.data() + size_t(i) * kMaxDatagram, kMaxDatagram};
      messages[i].msg_hdr.msg_iov = &iovecs[i];
      messages[i].msg_hdr.msg_iovlen = 1;
    }
  }
};

int run(const Options& options) {
  // Signals are read from a signalfd, never handled: block them before anything else.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  int signal_fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) {
    fprintf(stderr, "vrelay-probe: signalfd: %s\n", strerror(errno));
    return kExitFailure;
  }

  // Bind before subscribing, so that the first datagram the relay sends finds the port.
  bool v6 = options.bind.find(':') != std::string::npos;
  std::string spec = (v6 ? "[" + options.bind + "]" : options.bind) + ":" + std::to_string(options.port);
  auto endpoint = parse_endpoint(spec);
  if (!endpoint) {  // checked as a usage error already; kept for safety
    fprintf(stderr, "vrelay-probe: --bind: %s\n", endpoint.error().c_str());
    return kExitUsage;
  }
  int udp_fd;
  try {
    udp_fd = bind_socket(*endpoint, SOCK_DGRAM);
  } catch (const std::exception& e) {
    fprintf(stderr, "vrelay-probe: %s\n", e.what());
    return kExitFailure;
  }
  int size = kReceiveBuffer;
  if (setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0)  // best effort: said, not fatal
    fprintf(stderr, "vrelay-probe: cannot set an %d-byte receive buffer: %s\n", size, strerror(errno));
  // Tests wait for this line (the port is bound) before they send.
  if (!options.quiet) fprintf(stderr, "vrelay-probe: receiving on %s\n", local_endpoint(udp_fd).to_string().c_str());

  auto batch = std::make_unique<Batch>();
  Analyzer analyzer;
  RunInfo run;
  auto report = [&] {
    if (options.json)
      printf("%s\n", report_json(analyzer, run).dump().c_str());
    else
      fputs(report_text(analyzer, run).c_str(), stdout);
    fflush(stdout);
  };

  ControlSession control;
  control.set_interrupt_fd(signal_fd);  // Ctrl-C while waiting for the relay
  if (!options.control_host.empty()) {
    Status subscribed = control.open(options.control_host, options.control_port, options.timeout_s);
    if (subscribed) subscribed = control.subscribe(options.port, options.timeout_s);
    if (!subscribed) {
      if (control.interrupted()) {  // a clean end, before anything arrived
        run.end = "signal";
        report();
        return kExitOk;
      }
      fprintf(stderr, "vrelay-probe: %s\n", subscribed.error().c_str());
      return kExitFailure;
    }
    if (!options.quiet)
      fprintf(stderr, "vrelay-probe: subscribed UDP port %u at %s:%s\n", options.port, options.control_host.c_str(),
              options.control_port.c_str());
  }

  int status = kExitOk;
  const uint64_t start = monotonic_ns();
  uint64_t next_live = start + 1000000000u;
  uint64_t last_live = start, last_sent = start, last_datagram = start;
  Totals previous = analyzer.totals();
  bool done = false;

  while (!done) {
    uint64_t now = monotonic_ns();
    // The nearest deadline decides how long poll() may sleep.
    uint64_t wake = next_live;
    if (options.duration_s > 0) wake = std::min(wake, start + seconds_to_ns(options.duration_s));
    if (options.idle_s > 0) wake = std::min(wake, last_datagram + seconds_to_ns(options.idle_s));
    if (control.connected()) wake = std::min(wake, last_sent + seconds_to_ns(kKeepaliveS));
    int timeout_ms = wake > now ? int((wake - now + 999999) / 1000000) : 0;

    pollfd fds[3] = {{udp_fd, POLLIN, 0}, {signal_fd, POLLIN, 0}, {control.fd(), POLLIN, 0}};
    int n = poll(fds, control.connected() ? 3 : 2, timeout_ms);
    if (n < 0 && errno != EINTR) {
      fprintf(stderr, "vrelay-probe: poll: %s\n", strerror(errno));
      run.end = "error";
      status = kExitFailure;
      break;
    }
    if (n > 0 && (fds[0].revents & POLLIN)) {
      for (;;) {  // drain what is waiting, one batch per call
        unsigned want = kBatch;
        if (options.count > 0) want = unsigned(std::min<uint64_t>(kBatch, options.count - analyzer.totals().datagrams));
        int got = recvmmsg(udp_fd, batch->messages, want, MSG_DONTWAIT, nullptr);
        if (got < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          fprintf(stderr, "vrelay-probe: receive: %s\n", strerror(errno));
          run.end = "error";
          status = kExitFailure;
          done = true;
          break;
        }
        uint64_t arrival = monotonic_ns();
        for (int i = 0; i < got; ++i)
          analyzer.feed(batch->data.data() + size_t(i) * kMaxDatagram, batch->messages[i].msg_len, arrival);
        if (got > 0) last_datagram = arrival;
        if (options.count > 0 && analyzer.totals().datagrams >= options.count) {
          run.end = "count";
          done = true;
          break;
        }
        if (unsigned(got) < want) break;  // nothing more waiting
      }
    }
    if (!done && n > 0 && (fds[1].revents & POLLIN)) {
      signalfd_siginfo info;
      while (read(signal_fd, &info, sizeof info) == ssize_t(sizeof info)) {
      }
      run.end = "signal";
      done = true;
    }
    if (!done && n > 0 && control.connected() && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (Status serviced = control.service(); !serviced) {
        fprintf(stderr, "vrelay-probe: %s\n", serviced.error().c_str());
        run.end = "error";
        status = kExitFailure;
        done = true;
      }
    }
    now = monotonic_ns();
    if (!done && options.duration_s > 0 && now >= start + seconds_to_ns(options.duration_s)) {
      run.end = "duration";
      done = true;
    }
    if (!done && options.idle_s > 0 && now >= last_datagram + seconds_to_ns(options.idle_s)) {
      run.end = "idle";
      done = true;
    }
    if (!done && control.connected() && now >= last_sent + seconds_to_ns(kKeepaliveS)) {
      last_sent = now;
      if (Status pinged = control.ping(); !pinged) {
        fprintf(stderr, "vrelay-probe: %s\n", pinged.error().c_str());
        run.end = "error";
        status = kExitFailure;
        done = true;
      }
    }
    if (!done && now >= next_live) {
      if (!options.quiet) {
        std::string line = live_line(analyzer, previous, to_seconds(now - last_live), to_seconds(now - start));
        fprintf(stderr, "%s\n", line.c_str());
      }
      previous = analyzer.totals();
      last_live = now;
      while (next_live <= now) next_live += 1000000000u;
    }
  }
  run.duration_s = to_seconds(monotonic_ns() - start);
  close(udp_fd);

  if (control.connected()) {
    if (Status left = control.unsubscribe(options.timeout_s); !left) {
      if (control.interrupted()) {  // a second Ctrl-C: closing the session ends it too
        fprintf(stderr, "vrelay-probe: interrupted: not waiting for the reply to DESCONECTAR\n");
      } else {
        fprintf(stderr, "vrelay-probe: %s\n", left.error().c_str());
        status = kExitFailure;
      }
    }
  }
  report();
  close(signal_fd);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  static const option long_options[] = {
      {"subscribe", required_argument, nullptr, 's'},
      {"bind", required_argument, nullptr, 'b'},
      {"count", required_argument, nullptr, 'c'},
      {"duration", required_argument, nullptr, 'd'},
      {"idle", required_argument, nullptr, 'i'},
      {"json", no_argument, nullptr, 'j'},
      {"quiet", no_argument, nullptr, 'q'},
      {"timeout", required_argument, nullptr, 't'},
      {"version", no_argument, nullptr, 'V'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  Options options;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, ":s:b:c:d:i:jqt:Vh", long_options, nullptr)) != -1) {
    switch (opt) {
      case 's': {
        auto server = split_host_port(optarg);
        if (!server) return usage_error("--subscribe: " + server.error());
        options.control_host = server->host;
        options.control_port = server->port;
        break;
      }
      case 'b': options.bind = optarg; break;
      case 'c':
        if (!parse_count(optarg, &options.count))
          return usage_error("--count expects a number of datagrams from 1 to 9999999999999999999");
        break;
      case 'd':
        if (!parse_seconds(optarg, 31536000, &options.duration_s))
          return usage_error("--duration expects a number of seconds, more than 0 and at most 31536000");
        break;
      case 'i':
        if (!parse_seconds(optarg, 31536000, &options.idle_s))
          return usage_error("--idle expects a number of seconds, more than 0 and at most 31536000");
        break;
      case 'j': options.json = true; break;
      case 'q': options.quiet = true; break;
      case 't':
        if (!parse_seconds(optarg, 3600, &options.timeout_s))
          return usage_error("--timeout expects a number of seconds, more than 0 and at most 3600");
        break;
      case 'V': printf("vrelay-probe %s\n", VRELAY_VERSION); return kExitOk;
      case 'h': fputs(kUsage, stdout); return kExitOk;
      case ':': return usage_error(std::string("option '") + argv[optind - 1] + "' needs a value");
      default: return usage_error(std::string("unknown option '") + argv[optind - 1] + "'");
    }
  }
  if (optind == argc) return usage_error("expected the UDP PORT to receive on");
  if (argc - optind > 1) return usage_error(std::string("unexpected argument '") + argv[optind + 1] + "'");
  auto port = parse_port(argv[optind], 1, 65535);
  if (!port) return usage_error(std::string("PORT must be a number from 1 to 65535, not '") + argv[optind] + "'");
  options.port = *port;
  bool v6 = options.bind.find(':') != std::string::npos;
  if (!parse_endpoint((v6 ? "[" + options.bind + "]" : options.bind) + ":0"))
    return usage_error("--bind expects a numeric IPv4 or IPv6 address, not '" + options.bind + "'");
  return run(options);
}
