// vrelaystat: shows the processes, counters and subscribers of a running vrelay instance,
// read from its shared-memory segment (mapped read-only: it never talks to vrelayd nor
// writes the segment). A live view that re-attaches when vrelayd restarts, or one print
// (-1, -j, --subscribers). The text itself is made in text.cpp.
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shm.hpp"
#include "stats_view.hpp"
#include "text.hpp"
#include "version.hpp"

namespace {

using namespace vrelay;

constexpr int kExitOk = 0;
constexpr int kExitSegment = 1;  // no usable segment
constexpr int kExitUsage = 2;

const char* kUsage =
    "Usage: vrelaystat [OPTIONS]\n"
    "Shows the processes, counters and subscribers of a running vrelay relay (vrelayd(8)),\n"
    "read from its shared memory (/dev/shm/vrelay.INSTANCE) without talking to it.\n"
    "Without -1, -j or --subscribers: a live view refreshed every interval; q or Ctrl-C\n"
    "quits. When vrelayd stops or restarts, the view waits for it and re-attaches.\n"
    "\n"
    "  -n, --instance NAME    the relay's instance (default: $VRELAY_INSTANCE, else\n"
    "                         'default')\n"
    "  -1, --once             print every counter once (name, value, description) and exit\n"
    "  -j, --json             print the whole status once as JSON (as /status.json) and exit\n"
    "      --subscribers      print the subscriber table once and exit (with -j: as a JSON\n"
    "                         array)\n"
    "  -f, --filter PATTERN   only the counters whose name matches the glob PATTERN\n"
    "                         ('ingest.*'); may be given more than once\n"
    "  -i, --interval SECONDS the live view's refresh interval, 0.1 to 3600 (default 1)\n"
    "  -V, --version          print the version and exit\n"
    "  -h, --help             print this help and exit\n"
    "\n"
    "When standard output is not a terminal, the live view prints each refresh as plain\n"
    "text, followed by an empty line, until it is interrupted.\n"
    "Exit status: 0 OK; 1 no usable segment (no such instance, not readable, another\n"
    "layout version, truncated or corrupt); 2 a usage error.\n";

enum { kOptSubscribers = 256 };

struct Options {
  std::string instance = "default";
  bool once = false, json = false, subscribers = false;
  std::vector<std::string> filters;
  double interval_s = 1.0;
};

int usage_error(const std::string& message) {
  fprintf(stderr, "vrelaystat: %s\nTry 'vrelaystat --help'.\n", message.c_str());
  return kExitUsage;
}


std::string shm_path(const std::string& instance) { return "/dev/shm/" + Segment::shm_name(instance); }

// Segment::open's reason (without the segment's name), with the path people know and what
// to do about it.
std::string describe_open_error(const std::string& instance, SegmentProblem problem, const std::string& reason) {
  const std::string path = shm_path(instance);
  switch (problem) {
    case SegmentProblem::kMissing:
      return "no vrelay instance '" + instance + "' is running (" + path + " does not exist)";
    case SegmentProblem::kDenied:
      return "instance '" + instance + "': cannot read " + path +
             ": permission denied (the segment has mode 0640: run vrelaystat as vrelayd's user, a member of its "
             "group, or root)";
    default: break;
  }
  std::string text = "instance '" + instance + "': " + path + ": " + reason;
  if (problem == SegmentProblem::kOtherVersion) return text;  // names both versions and the remedy
  if (problem == SegmentProblem::kStarting) return text + "; try again in a moment";
  return text + "; if no vrelayd runs with --instance " + instance + ", the file is stale or not vrelay's: remove it";
}

Result<std::unique_ptr<Segment>> open_segment(const std::string& instance) {
  struct stat st;
  if (stat(shm_path(instance).c_str(), &st) != 0 && errno == ENOENT)
    return Failure{describe_open_error(instance, SegmentProblem::kMissing, "")};
  try {
    return Segment::open(instance, true);
  } catch (const SegmentError& e) {
    return Failure{describe_open_error(instance, e.problem(), e.reason())};
  } catch (const std::exception& e) {
    return Failure{describe_open_error(instance, SegmentProblem::kOther, e.what())};
  }
}

bool write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

// ---- Re-attaching ----------------------------------------------------------------------

// Who owns the segment that the name points to now: a look at its header alone, so that a
// segment a new vrelayd created under the same name is noticed while we still map the old
// one (which stays mapped, and readable, after its vrelayd removed the name).
struct Owner {
  bool exists = false;
  bool has_header = false;
  int32_t pid = 0;
  uint64_t created_ns = 0;
};

Owner current_owner(const std::string& instance) {
  Owner owner;
  int fd = shm_open(("/" + Segment::shm_name(instance)).c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) {
    owner.exists = errno != ENOENT;
    return owner;
  }
  owner.exists = true;
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size >= off_t(sizeof(Header))) {
    void* p = mmap(nullptr, sizeof(Header), PROT_READ, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      // Both fields are written before the version word is published and never change.
      const Header* h = static_cast<const Header*>(p);
      owner.has_header = true;
      owner.pid = h->supervisor_pid;
      owner.created_ns = h->created_ns;
      munmap(p, sizeof(Header));
    }
  }
  close(fd);
  return owner;
}

// Fails, with the reason, once the mapped segment is no longer the running relay's.
Status still_current(const Segment& segment, const std::string& instance) {
  if (segment.shrunk())  // checked first: reading the header of a shrunk file could fault
    return Failure{"the segment file shrank under its mapping (truncated)"};
  const Header& h = segment.header();
  std::string who = "vrelayd (pid " + std::to_string(h.supervisor_pid) + ")";
  if (h.supervisor_pid > 0 && kill(h.supervisor_pid, 0) != 0 && errno == ESRCH) return Failure{who + " has exited"};
  Owner owner = current_owner(instance);
  if (!owner.exists) return Failure{who + " has removed its segment (it stopped)"};
  if (!owner.has_header || owner.pid != h.supervisor_pid || owner.created_ns != h.created_ns)
    return Failure{"another vrelayd has replaced " + who};
  return {};
}

// ---- The terminal ----------------------------------------------------------------------

volatile sig_atomic_t g_quit = 0, g_resize = 0, g_continued = 0;

void on_signal(int signo) {
  if (signo == SIGWINCH) g_resize = 1;
  else if (signo == SIGCONT) g_continued = 1;
  else g_quit = 1;
}

// The live view's output: full-screen with ANSI escapes on a terminal (the alternate
// screen, no cursor, keys read one by one), plain frames otherwise. Signals are blocked
// except while waiting in ppoll(), so none is missed between a check and the wait.
class Screen {
 public:
  enum Event { kTimeout, kQuit, kRedraw };

  Screen() {
    const char* term = getenv("TERM");
    full_ = isatty(STDOUT_FILENO) && !(term && strcmp(term, "dumb") == 0);
    keys_ = full_ && isatty(STDIN_FILENO);
    sigset_t block;
    sigemptyset(&block);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGCONT}) sigaddset(&block, s);
    sigprocmask(SIG_BLOCK, &block, &wait_mask_);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGCONT}) {
      struct sigaction sa {};
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      sigaction(s, &sa, nullptr);
    }
    signal(SIGPIPE, SIG_IGN);  // a closed output ends the view through write()'s EPIPE
    sigdelset(&wait_mask_, SIGINT);
    sigdelset(&wait_mask_, SIGTERM);
    sigdelset(&wait_mask_, SIGHUP);
    sigdelset(&wait_mask_, SIGWINCH);
    sigdelset(&wait_mask_, SIGCONT);
    if (keys_) keys_ = saved_valid_ = tcgetattr(STDIN_FILENO, &saved_) == 0;
    enter();
  }
  ~Screen() { leave(); }
  Screen(const Screen&) = delete;
  Screen& operator=(const Screen&) = delete;

  // False when the output is gone (a closed pipe).
  bool draw(const std::vector<std::string>& frame) {
    std::string out;
    if (full_) {
      winsize ws{};
      size_t columns = 0, rows = 0;
      if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) columns = ws.ws_col, rows = ws.ws_row;
      out = "\x1b[H";  // home, then each line over the old one: no flicker
      auto lines = vstat::fit(frame, columns, rows);
      for (size_t i = 0; i < lines.size(); ++i) out += lines[i] + (i + 1 < lines.size() ? "\x1b[K\n" : "\x1b[K");
      out += "\x1b[J";  // clear below
    } else {
      for (const std::string& line : frame) out += line + "\n";
      out += "\n";
    }
    return write_all(STDOUT_FILENO, out);
  }

  // Waits up to `seconds` for a key or a signal.
  Event wait(double seconds) {
    uint64_t deadline = monotonic_ns() + seconds_to_ns(seconds);
    while (true) {
      if (g_quit) return kQuit;
      if (g_continued) {  // after a stop from outside: the shell may have reset the terminal
        g_continued = 0;
        enter();
        return kRedraw;
      }
      if (g_resize) {
        g_resize = 0;
        return kRedraw;
      }
      uint64_t now = monotonic_ns();
      if (now >= deadline) return kTimeout;
      uint64_t left = deadline - now;
      timespec timeout = to_timespec(left);
      pollfd p{STDIN_FILENO, POLLIN, 0};
      int n = ppoll(&p, keys_ ? 1 : 0, &timeout, &wait_mask_);
      if (n <= 0) continue;  // the time is up, or a signal: both checked above
      if (!(p.revents & (POLLIN | POLLHUP))) {
        keys_ = false;  // POLLERR or POLLNVAL: stop reading keys rather than spin
        continue;
      }
      char keys[64];
      ssize_t got = read(STDIN_FILENO, keys, sizeof keys);
      if (got <= 0) {
        keys_ = false;  // the terminal is gone: signals still end the view
        continue;
      }
      for (ssize_t i = 0; i < got; ++i) {
        char c = keys[i];
        if (c == 'q' || c == 'Q' || c == 0x03 /* Ctrl-C */) return kQuit;
        if (c == 0x1A /* Ctrl-Z */) {
          suspend();
          return kRedraw;
        }
        if (c == 0x0C /* Ctrl-L */) return kRedraw;
      }
    }
  }

 private:
  void enter() {
    if (!full_) return;
    if (keys_) {  // keys without Enter and without echo; Ctrl-C and Ctrl-Z read as keys
      termios raw = saved_;
      raw.c_lflag &= tcflag_t(~(ICANON | ECHO | ISIG | IEXTEN));
      raw.c_cc[VMIN] = 1;
      raw.c_cc[VTIME] = 0;
      tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    write_all(STDOUT_FILENO, "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");  // alternate screen, no cursor
    entered_ = true;
  }
  void leave() {
    if (!entered_) return;
    if (saved_valid_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);  // even if keys_ was turned off since
    write_all(STDOUT_FILENO, "\x1b[?25h\x1b[?1049l");
    entered_ = false;
  }
  void suspend() {  // Ctrl-Z, as the terminal would do it: give the terminal back, stop
    leave();
    signal(SIGTSTP, SIG_DFL);
    kill(getpid(), SIGTSTP);
    g_continued = 0;  // SIGCONT is pending (blocked); we redraw now anyway
    enter();
  }

  bool full_ = false, keys_ = false, entered_ = false, saved_valid_ = false;
  termios saved_{};
  sigset_t wait_mask_{};
};

int run_live(const Options& options, std::unique_ptr<Segment> segment) {
  Screen screen;
  std::optional<Snapshot> previous;
  uint64_t previous_ns = 0;
  std::string reason;
  while (true) {
    if (segment) {
      if (Status current = still_current(*segment, options.instance); !current) {
        reason = current.error();
        segment.reset();
        previous.reset();
      }
    }
    if (!segment) {
      auto opened = open_segment(options.instance);
      if (opened) {
        segment = std::move(*opened);
        reason.clear();
      } else {
        reason = reason.empty() ? opened.error() : reason + "; " + opened.error();
      }
    }
    std::vector<std::string> frame;
    if (segment) {
      Snapshot current = take_snapshot(*segment);
      uint64_t now = monotonic_ns();
      double elapsed = previous ? to_seconds(now - previous_ns) : 0;
      frame = vstat::live_frame(current, previous ? &*previous : nullptr, elapsed, options.filters);
      previous = std::move(current);
      previous_ns = now;
    } else {
      frame = vstat::waiting_frame(options.instance, reason, wall_ns());
      reason.clear();
    }
    if (!screen.draw(frame)) return kExitOk;
    // Waiting for vrelayd: look again at least every second.
    double wait = segment ? options.interval_s : std::min(options.interval_s, 1.0);
    if (screen.wait(wait) == Screen::kQuit) return kExitOk;
  }
}

bool parse_interval(const char* text, double* out) {
  char* end = nullptr;
  errno = 0;
  double v = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !(v >= 0.1 && v <= 3600)) return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  static const option long_options[] = {
      {"instance", required_argument, nullptr, 'n'},
      {"once", no_argument, nullptr, '1'},
      {"json", no_argument, nullptr, 'j'},
      {"subscribers", no_argument, nullptr, kOptSubscribers},
      {"filter", required_argument, nullptr, 'f'},
      {"interval", required_argument, nullptr, 'i'},
      {"version", no_argument, nullptr, 'V'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  Options options;
  bool instance_given = false;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, ":n:1jf:i:Vh", long_options, nullptr)) != -1) {
    switch (opt) {
      case 'n': options.instance = optarg; instance_given = true; break;
      case '1': options.once = true; break;
      case 'j': options.json = true; break;
      case kOptSubscribers: options.subscribers = true; break;
      case 'f': options.filters.push_back(optarg); break;
      case 'i':
        if (!parse_interval(optarg, &options.interval_s))
          return usage_error("--interval expects a number of seconds from 0.1 to 3600");
        break;
      case 'V': printf("vrelaystat %s\n", VRELAY_VERSION); return kExitOk;
      case 'h': fputs(kUsage, stdout); return kExitOk;
      case ':': return usage_error(std::string("option '") + argv[optind - 1] + "' needs a value");
      default: return usage_error(std::string("unknown option '") + argv[optind - 1] + "'");
    }
  }
  if (optind < argc) return usage_error(std::string("unexpected argument '") + argv[optind] + "'");
  if (!instance_given) {
    const char* env = getenv("VRELAY_INSTANCE");
    if (env && *env) {
      options.instance = env;
      if (Status valid = Segment::valid_instance_name(options.instance); !valid)
        return usage_error("VRELAY_INSTANCE: " + valid.error());
    }
  }
  if (Status valid = Segment::valid_instance_name(options.instance); !valid)
    return usage_error("--instance: " + valid.error());

  auto opened = open_segment(options.instance);
  if (!opened) {
    fprintf(stderr, "vrelaystat: %s\n", opened.error().c_str());
    return kExitSegment;
  }
  std::unique_ptr<Segment> segment = std::move(*opened);

  if (options.subscribers) {
    Snapshot s = take_snapshot(*segment);
    if (options.json) puts(snapshot_json(s)["subscribers"].dump(2).c_str());
    else fputs(vstat::subscribers_text(s).c_str(), stdout);
    return kExitOk;
  }
  if (options.json) {
    puts(vstat::json_output(take_snapshot(*segment, true), options.filters).dump(2).c_str());
    return kExitOk;
  }
  if (options.once) {
    fputs(vstat::once_text(take_snapshot(*segment, false), options.filters).c_str(), stdout);
    return kExitOk;
  }
  return run_live(options, std::move(segment));
}
