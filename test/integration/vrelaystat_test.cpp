// Integration tests of vrelaystat (client/vrelaystat): the real tool against a real vrelayd
// and against segments this test makes broken on purpose. Simplest first: what -1, -j and
// --subscribers print; the exit status and message of every unusable segment; the live
// view re-attaching across a restart of vrelayd; the full-screen view on a terminal.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "stats_view.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : int(left);
}

std::vector<char*> make_argv(std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return argv;
}

// Waits (bounded) for `pid` to end; its waitpid status, or -1 if it did not end in time.
int wait_exit(pid_t pid, std::chrono::milliseconds limit) {
  int status = 0;
  bool ended = wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; }, limit);
  return ended ? status : -1;
}

std::string describe(int status) {
  if (status == -1) return "did not exit in time";
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "exit status " + std::to_string(WEXITSTATUS(status));
}

::testing::AssertionResult exited_with(int status, int code) {
  if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == code) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected exit status " << code << ", got: " << describe(status);
}

struct Result {
  int status = -1;  // waitpid status, -1 if it had to be killed
  std::string out, err;
};

// Runs vrelaystat with `args` to its end (bounded), capturing standard output and error.
Result run_stat(std::vector<std::string> args, std::chrono::milliseconds limit = 10000ms) {
  args.insert(args.begin(), VRELAYSTAT_PATH);
  auto argv = make_argv(args);
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    unsetenv("VRELAY_INSTANCE");
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  Result r;
  auto deadline = Clock::now() + limit;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* into[2] = {&r.out, &r.err};
  int open = 2;
  while (open > 0 && poll(fds, 2, remaining_ms(deadline)) > 0) {
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        into[i]->append(buf, size_t(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  r.status = wait_exit(pid, std::chrono::milliseconds(std::max(remaining_ms(deadline), 100)));
  if (r.status == -1) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  return r;
}

// vrelaystat running in the background (the live view), its output read as it comes: from
// a pipe, or from a terminal (a pty) with `terminal`.
class LiveStat {
 public:
  explicit LiveStat(std::vector<std::string> args, bool terminal = false) {
    args.insert(args.begin(), VRELAYSTAT_PATH);
    auto argv = make_argv(args);
    if (terminal) {
      winsize ws{};
      ws.ws_row = 100;  // the whole frame fits
      ws.ws_col = 200;
      pid_ = forkpty(&fd_, nullptr, nullptr, &ws);
      if (pid_ == 0) {
        setenv("TERM", "xterm", 1);
        execv(argv[0], argv.data());
        _exit(127);
      }
    } else {
      int out[2];
      if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
      pid_ = fork();
      if (pid_ == 0) {
        dup2(out[1], 1);
        dup2(out[1], 2);
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        execv(argv[0], argv.data());
        _exit(127);
      }
      close(out[1]);
      fd_ = out[0];
    }
    if (pid_ < 0) throw std::runtime_error("fork");
  }
  ~LiveStat() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }

  // Reads until `found(text from offset)` holds, the output ends, or `limit` passes.
  bool wait_for(const std::function<bool(const std::string&)>& found, size_t from = 0,
                std::chrono::milliseconds limit = 10000ms) {
    auto deadline = Clock::now() + limit;
    while (!found(text_.substr(std::min(from, text_.size())))) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
      char buf[8192];
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return false;  // EOF (or EIO: the terminal's last user left)
      text_.append(buf, size_t(n));
    }
    return true;
  }
  bool wait_for_text(const std::string& needle, size_t from = 0, std::chrono::milliseconds limit = 10000ms) {
    return wait_for([&](const std::string& t) { return t.find(needle) != std::string::npos; }, from, limit);
  }
  // Everything up to the end of the output (bounded).
  void read_to_end(std::chrono::milliseconds limit = 5000ms) {
    wait_for([](const std::string&) { return false; }, 0, limit);
  }
  void send(const std::string& keys) { ASSERT_EQ(write(fd_, keys.data(), keys.size()), ssize_t(keys.size())); }
  int signal_and_wait(int signo, std::chrono::milliseconds limit = 5000ms) {
    kill(pid_, signo);
    return wait_end(limit);
  }
  int wait_end(std::chrono::milliseconds limit = 5000ms) {
    int status = wait_exit(pid_, limit);
    if (status != -1) pid_ = -1;
    return status;
  }
  const std::string& text() const { return text_; }
  int fd() const { return fd_; }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string text_;
};

// A unique instance name for segments this test makes itself, removed at the end.
class OwnInstance {
 public:
  explicit OwnInstance(const std::string& what) {
    static int count = 0;
    name_ = "st-" + what + "-" + std::to_string(getpid()) + "-" + std::to_string(count++);
  }
  ~OwnInstance() { unlink(path().c_str()); }
  const std::string& name() const { return name_; }
  std::string path() const { return "/dev/shm/vrelay." + name_; }

 private:
  std::string name_;
};

// Whether one frame of the live view's plain output (a frame begins with a line
// "vrelaystat VERSION  instance ...") holds every one of `needles`.
bool has_frame_with(const std::string& text, const std::vector<std::string>& needles) {
  size_t start = 0;
  while ((start = text.find("vrelaystat ", start)) != std::string::npos) {
    if (start > 0 && text[start - 1] != '\n') {
      start += 1;
      continue;
    }
    size_t end = text.find("\nvrelaystat ", start);
    std::string frame = text.substr(start, end == std::string::npos ? std::string::npos : end + 1 - start);
    bool all = true;
    for (const std::string& n : needles) all = all && frame.find(n) != std::string::npos;
    if (all) return true;
    if (end == std::string::npos) return false;
    start = end + 1;
  }
  return false;
}

// The words of a line, split at runs of spaces. (No <regex>: under -fsanitize, GCC 12
// warns about libstdc++'s regex code, and warnings are errors.)
std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// The lines of `text` that begin with `prefix`.
std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  return out;
}

// What follows the counter's name and its padding on its line of -1, or why there is none.
std::string after_name(const std::string& text, const std::string& name) {
  auto lines = lines_starting(text, name + " ");
  if (lines.size() != 1) return std::to_string(lines.size()) + " lines for " + name;
  return lines[0].substr(lines[0].find_first_not_of(' ', name.size()));
}

TEST(Vrelaystat, OnceJsonAndSubscribersShowWhatTheRelayCounted) {
  Relay relay;
  UdpSink sink;
  Session session(relay.control_port());
  ASSERT_EQ(session.command("CONECTAR " + std::to_string(sink.port())), "OK");
  UdpSource source(relay.ingest_port());
  constexpr uint64_t kCount = 57;
  for (uint64_t i = 0; i < kCount; ++i) source.send(test_payload(i));
  for (uint64_t i = 0; i < kCount; ++i) ASSERT_TRUE(is_payload(sink.receive(), i));
  ASSERT_TRUE(wait_until([&] {
    Snapshot s = take_snapshot(relay.shm());
    return s.counter("ingest", "datagrams") == kCount && s.counter("fanout", "sent_datagrams") == kCount &&
           s.subscribers.size() == 1 && s.subscribers[0].datagrams == kCount;
  })) << "the relay's counters never reached " << kCount;
  const std::string n = std::to_string(kCount);

  Result once = run_stat({"-n", relay.instance(), "-1"});
  ASSERT_TRUE(exited_with(once.status, 0)) << once.err;
  EXPECT_EQ(once.err, "");
  EXPECT_EQ(after_name(once.out, "ingest.datagrams"), n + "  Datagrams accepted into the ring") << once.out;
  EXPECT_EQ(after_name(once.out, "fanout.sent_datagrams"), n + "  Copies sent to subscribers") << once.out;
  size_t lines = 0;
  for (char c : once.out) lines += c == '\n';
  EXPECT_EQ(lines, kCounterCount) << once.out;

  Result filtered = run_stat({"-n", relay.instance(), "-1", "-f", "fanout.sent_*"});
  ASSERT_TRUE(exited_with(filtered.status, 0)) << filtered.err;
  EXPECT_EQ(after_name(filtered.out, "fanout.sent_datagrams"), n + "  Copies sent to subscribers") << filtered.out;
  EXPECT_TRUE(lines_starting(filtered.out, "ingest.").empty()) << filtered.out;

  Result json = run_stat({"-n", relay.instance(), "-j"});
  ASSERT_TRUE(exited_with(json.status, 0)) << json.err;
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(json.out)) << json.out;
  EXPECT_EQ(j["instance"], relay.instance());
  EXPECT_EQ(j["supervisor_pid"], relay.pid());
  EXPECT_EQ(j["counters"]["ingest.datagrams"], kCount);
  EXPECT_EQ(j["counters"]["fanout.sent_datagrams"], kCount);
  ASSERT_EQ(j["processes"].size(), size_t(kRoleCount) - 1);  // http is off: not listed
  EXPECT_EQ(j["processes"][int(kIngest)]["pid"], relay.child_pid(kIngest));
  ASSERT_EQ(j["subscribers"].size(), 1u) << json.out;
  EXPECT_EQ(j["subscribers"][0]["address"], "127.0.0.1");
  EXPECT_EQ(j["subscribers"][0]["port"], sink.port());
  EXPECT_EQ(j["subscribers"][0]["state"], "playing");
  EXPECT_EQ(j["subscribers"][0]["datagrams"], kCount);

  Result table = run_stat({"-n", relay.instance(), "--subscribers"});
  ASSERT_TRUE(exited_with(table.status, 0)) << table.err;
  EXPECT_EQ(table.out.rfind("SLOT  ADDRESS", 0), 0u) << table.out;
  auto rows = lines_starting(table.out, " ");
  ASSERT_EQ(rows.size(), 1u) << table.out;
  auto w = words(rows[0]);  // slot address port state since datagrams bytes errors refused orphan
  ASSERT_EQ(w.size(), 10u) << rows[0];
  EXPECT_EQ(w[1], "127.0.0.1");
  EXPECT_EQ(w[2], std::to_string(sink.port()));
  EXPECT_EQ(w[3], "playing");
  EXPECT_EQ(w[5], n);
  EXPECT_EQ(w[7], "0");
  EXPECT_EQ(w[8], "0");
  EXPECT_EQ(w[9], "no");

  Result table_json = run_stat({"-n", relay.instance(), "--subscribers", "-j"});
  ASSERT_TRUE(exited_with(table_json.status, 0)) << table_json.err;
  nlohmann::json subs;
  ASSERT_NO_THROW(subs = nlohmann::json::parse(table_json.out)) << table_json.out;
  ASSERT_TRUE(subs.is_array());
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_EQ(subs[0]["port"], sink.port());
  EXPECT_EQ(subs[0]["state"], "playing");
}

TEST(Vrelaystat, UsageErrorsExitWithTwo) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"--interval", "0"}, {"-i", "x"}, {"-n", "../etc"}, {"--bogus"}, {"-n"}, {"extra"}}) {
    Result r = run_stat(args);
    EXPECT_TRUE(exited_with(r.status, 2)) << args[0];
    EXPECT_EQ(r.err.rfind("vrelaystat: ", 0), 0u) << r.err;
    EXPECT_EQ(r.out, "");
  }
  Result help = run_stat({"--help"});
  EXPECT_TRUE(exited_with(help.status, 0));
  EXPECT_NE(help.out.find("  -1, --once "), std::string::npos) << help.out;
  Result version = run_stat({"-V"});
  EXPECT_TRUE(exited_with(version.status, 0));
  EXPECT_EQ(version.out.rfind("vrelaystat ", 0), 0u);
}

TEST(Vrelaystat, MissingInstanceExitsWithOneAndSaysSo) {
  OwnInstance missing("missing");
  for (std::vector<std::string> extra : std::vector<std::vector<std::string>>{{"-1"}, {"-j"}, {"--subscribers"}, {}}) {
    std::vector<std::string> args = {"-n", missing.name()};
    args.insert(args.end(), extra.begin(), extra.end());
    Result r = run_stat(args);
    EXPECT_TRUE(exited_with(r.status, 1)) << (extra.empty() ? "live view" : extra[0]);
    EXPECT_EQ(r.err, "vrelaystat: no vrelay instance '" + missing.name() + "' is running (" + missing.path() +
                         " does not exist)\n");
    EXPECT_EQ(r.out, "");
  }
}

TEST(Vrelaystat, TruncatedSegmentExitsWithOne) {
  OwnInstance empty("empty"), tiny("tiny"), header_only("header");
  std::ofstream(empty.path(), std::ios::binary).close();
  std::ofstream(tiny.path(), std::ios::binary) << "!VRRELY1xx";
  {  // a valid header whose segment was cut right after it
    Layout l = Layout::compute({4, 16, 1500});
    Header h{};
    h.magic = kShmMagic;
    h.version.store(layout_version(kLayoutMajor, kLayoutMinor));
    h.header_size = sizeof(Header);
    h.total_size = l.total;
    h.max_subscribers = 4;
    h.ring_slots = 16;
    h.max_datagram = 1500;
    std::ofstream(header_only.path(), std::ios::binary).write(reinterpret_cast<const char*>(&h), sizeof h);
  }
  for (const OwnInstance* bad : {&empty, &tiny, &header_only})
    for (const char* mode : {"-1", "-j"}) {
      Result r = run_stat({"-n", bad->name(), mode});
      EXPECT_TRUE(exited_with(r.status, 1)) << bad->name() << " " << mode;
      EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
      EXPECT_EQ(r.err.rfind("vrelaystat: instance '" + bad->name() + "': ", 0), 0u) << r.err;
      EXPECT_EQ(r.out, "");
    }
}

TEST(Vrelaystat, OtherLayoutVersionBadMagicAndStartingSegmentExitWithOne) {
  OwnInstance other("version"), magic("magic"), starting("starting");
  auto a = Segment::create(other.name(), {4, 16, 1500});
  a->header().version.store(layout_version(kLayoutMajor + 1, 3));
  auto b = Segment::create(magic.name(), {4, 16, 1500});
  b->publish();
  b->header().magic = 0x4242424242424242ull;
  auto c = Segment::create(starting.name(), {4, 16, 1500});  // never published: version 0

  for (const char* mode : {"-1", "--subscribers"}) {
    Result r = run_stat({"-n", other.name(), mode});
    EXPECT_TRUE(exited_with(r.status, 1)) << mode;
    std::string theirs = std::to_string(kLayoutMajor + 1) + ".3";
    std::string ours = std::to_string(kLayoutMajor) + "." + std::to_string(kLayoutMinor);
    EXPECT_NE(r.err.find("layout version " + theirs + " is not the version this program reads (" + ours + ")"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("same vrelay release"), std::string::npos) << r.err;
  }
  Result r = run_stat({"-n", magic.name(), "-1"});
  EXPECT_TRUE(exited_with(r.status, 1));
  EXPECT_NE(r.err.find("bad magic"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("remove it"), std::string::npos) << r.err;
  r = run_stat({"-n", starting.name(), "-j"});
  EXPECT_TRUE(exited_with(r.status, 1));
  EXPECT_NE(r.err.find("vrelayd is starting"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(Vrelaystat, LiveViewReattachesWhenVrelaydRestartsUnderTheSameInstance) {
  const std::string name = "st-reattach-" + std::to_string(getpid());
  auto first = std::make_unique<Relay>("", std::vector<std::string>{"--instance", name});
  const pid_t first_pid = first->pid();
  LiveStat stat({"-n", name, "-i", "0.2"});
  ASSERT_TRUE(stat.wait_for_text(" pid " + std::to_string(first_pid) + "  ")) << stat.text();
  ASSERT_TRUE(stat.wait_for_text("ingest.datagrams")) << stat.text();

  size_t mark = stat.text().size();
  ASSERT_EQ(first->stop(), 0);
  first.reset();
  ASSERT_TRUE(stat.wait_for_text("waiting for vrelayd (instance " + name + ")...", mark)) << stat.text().substr(mark);

  mark = stat.text().size();
  Relay second("", {"--instance", name});
  ASSERT_NE(second.pid(), first_pid);
  auto seg = Segment::open(name, true);
  const std::string ingest_pid = std::to_string(seg->process(kIngest).pid.load());
  // A frame of the new relay: its pid, its uptime from zero, its processes ready.
  const std::vector<std::string> needles = {" pid " + std::to_string(second.pid()) + "  ", "\nuptime 00:00:0",
                                            "\ningest   " + std::string(8 - std::min<size_t>(8, ingest_pid.size()), ' ') +
                                                ingest_pid + "  ready "};
  ASSERT_TRUE(stat.wait_for([&](const std::string& t) { return has_frame_with(t, needles); }, mark))
      << stat.text().substr(mark);
  EXPECT_EQ(stat.text().find(" pid " + std::to_string(first_pid) + "  ", mark), std::string::npos)
      << "the old relay shown after the new one started";

  EXPECT_TRUE(exited_with(stat.signal_and_wait(SIGTERM), 0));
}

// The same, with segments this test makes, whose owner (this process) stays alive: the
// view must notice by the name alone that the segment went away or was replaced.
TEST(Vrelaystat, LiveViewNoticesARemovedOrReplacedSegmentWhileItsOwnerLives) {
  OwnInstance own("replace");
  auto make = [&](uint64_t datagrams) {
    auto seg = Segment::create(own.name(), {4, 16, 1500});
    seg->stats().ingest.datagrams.store(datagrams);
    seg->publish();
    return seg;
  };
  auto first = make(1111111111);
  LiveStat stat({"-n", own.name(), "-i", "0.2"});
  ASSERT_TRUE(stat.wait_for_text(" 1111111111 ")) << stat.text();

  size_t mark = stat.text().size();
  Segment::remove(own.name());  // still mapped here and in vrelaystat
  ASSERT_TRUE(stat.wait_for_text("waiting for vrelayd (instance " + own.name() + ")...", mark)) << stat.text().substr(mark);
  mark = stat.text().size();
  auto second = make(2222222222);
  ASSERT_TRUE(stat.wait_for_text(" 2222222222 ", mark)) << stat.text().substr(mark);

  mark = stat.text().size();
  auto third = make(3333333333);  // replaced at once, without a gap
  ASSERT_TRUE(stat.wait_for_text(" 3333333333 ", mark)) << stat.text().substr(mark);
  EXPECT_TRUE(exited_with(stat.signal_and_wait(SIGINT), 0));
}

// Issue 11: a segment file truncated under the live view (by its owner or root) must not
// kill vrelaystat with SIGBUS; it lets the mapping go and says why.
TEST(Vrelaystat, LiveViewSurvivesASegmentThatShrinksUnderIt) {
  OwnInstance own("shrink");
  auto seg = Segment::create(own.name(), {4, 16, 1500});
  seg->stats().ingest.datagrams.store(4444444444);
  seg->publish();
  LiveStat stat({"-n", own.name(), "-i", "0.2"});
  ASSERT_TRUE(stat.wait_for_text(" 4444444444 ")) << stat.text();
  size_t mark = stat.text().size();
  ASSERT_EQ(truncate(("/dev/shm/" + Segment::shm_name(own.name())).c_str(), 4096), 0);
  ASSERT_TRUE(stat.wait_for_text("shrank", mark)) << stat.text().substr(mark);
  EXPECT_TRUE(exited_with(stat.signal_and_wait(SIGINT), 0)) << "not killed by SIGBUS";
}

TEST(Vrelaystat, FullScreenOnATerminalQuitsOnQAndRestoresIt) {
  Relay relay;
  LiveStat stat({"-n", relay.instance(), "-i", "0.2"}, true);
  ASSERT_TRUE(stat.wait_for_text("\x1b[?1049h")) << "no alternate screen: " << stat.text();
  ASSERT_TRUE(stat.wait_for_text("control.orphans_expired")) << stat.text();  // a whole frame
  EXPECT_NE(stat.text().find("\x1b[H"), std::string::npos);
  termios during{};
  ASSERT_EQ(tcgetattr(stat.fd(), &during), 0);
  EXPECT_FALSE(during.c_lflag & ECHO) << "keys are echoed during the view";

  stat.send("q");
  EXPECT_TRUE(exited_with(stat.wait_end(), 0));
  termios after{};
  ASSERT_EQ(tcgetattr(stat.fd(), &after), 0);
  EXPECT_TRUE(after.c_lflag & ECHO) << "echo not restored";
  EXPECT_TRUE(after.c_lflag & ICANON) << "line mode not restored";
  stat.read_to_end();
  size_t leave = stat.text().rfind("\x1b[?1049l");
  ASSERT_NE(leave, std::string::npos) << "the alternate screen was not left";
  EXPECT_NE(stat.text().find("\x1b[?25h"), std::string::npos) << "the cursor was not shown again";
}

}  // namespace
