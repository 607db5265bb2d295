// Integration tests of vrelaystat (client/vrelaystat): the real tool against a real vrelayd
// and against segments this test makes broken on purpose. Simplest first: what -1, -j and
// --subscribers print; the exit status and message of every unusable segment; the live
// view re-attaching across a restart of vrelayd; the full-screen view on a terminal.
#include <signal.h>
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

// A status of Program::wait (exit status, 128 + signal, or -1) in words.
std::string describe(int status) {
  if (status == -1) return "did not exit in time";
  if (status >= 128) return std::string("killed by signal ") + strsignal(status - 128);
  return "exit status " + std::to_string(status);
}

::testing::AssertionResult exited_with(int status, int code) {
  if (status == code) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected exit status " << code << ", got: " << describe(status);
}

// Runs vrelaystat with `args` to its end (bounded), capturing standard output and error;
// VRELAY_INSTANCE of the test's environment is not passed on.
ProgramResult run_stat(std::vector<std::string> args, std::chrono::milliseconds limit = 10000ms) {
  args.insert(args.begin(), VRELAYSTAT_PATH);
  return run_program(std::move(args), limit, {"VRELAY_INSTANCE"});
}

// vrelaystat running in the background (the live view), its standard output read as it
// comes: from a file, or from a terminal (a pty) with `terminal`.
class LiveStat {
 public:
  explicit LiveStat(std::vector<std::string> args, bool terminal = false)
      : program_(with_path(std::move(args)), terminal ? std::vector<std::string>{"TERM=xterm"} : std::vector<std::string>{},
                 terminal ? std::optional(Program::Terminal{100, 200}) : std::nullopt) {}  // the whole frame fits

  // Reads until `found(text from offset)` holds, the program ends, or `limit` passes.
  bool wait_for(const std::function<bool(const std::string&)>& found, size_t from = 0,
                std::chrono::milliseconds limit = 10000ms) {
    size_t checked = std::string::npos;  // the size of the text `found` last saw
    auto holds = [&] {
      const std::string& t = program_.out();
      if (t.size() == checked) return false;  // nothing new since: the same answer
      checked = t.size();
      return found(t.substr(std::min(from, t.size())));
    };
    wait_until([&] { return !program_.running() || holds(); }, limit);
    checked = std::string::npos;
    return holds();  // also what came just before it ended
  }
  bool wait_for_text(const std::string& needle, size_t from = 0, std::chrono::milliseconds limit = 10000ms) {
    return wait_for([&](const std::string& t) { return t.find(needle) != std::string::npos; }, from, limit);
  }
  // Everything up to the end of the output (bounded).
  void read_to_end(std::chrono::milliseconds limit = 5000ms) {
    wait_for([](const std::string&) { return false; }, 0, limit);
  }
  void send(const std::string& keys) {
    ASSERT_EQ(write(program_.terminal(), keys.data(), keys.size()), ssize_t(keys.size()));
  }
  int signal_and_wait(int signo, std::chrono::milliseconds limit = 5000ms) {
    program_.signal(signo);
    return wait_end(limit);
  }
  int wait_end(std::chrono::milliseconds limit = 5000ms) { return program_.wait(limit); }
  const std::string& text() { return program_.out(); }
  int fd() const { return program_.terminal(); }

 private:
  static std::vector<std::string> with_path(std::vector<std::string> args) {
    args.insert(args.begin(), VRELAYSTAT_PATH);
    return args;
  }
  Program program_;
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
  Viewer viewer(relay);
  UdpSink& sink = viewer.sink;
  UdpSource source(relay.ingest_port());
  constexpr uint64_t kCount = 57;
  for (uint64_t i = 0; i < kCount; ++i) source.send(test_payload(i));
  for (uint64_t i = 0; i < kCount; ++i) ASSERT_TRUE(is_payload(sink.receive(), i));
  ASSERT_TRUE(wait_until([&] {
    Counters c = relay.counters();
    return c["ingest.datagrams"] == kCount && c["fanout.sent_datagrams"] == kCount && c.subscribers().size() == 1 &&
           c.subscribers()[0].datagrams == kCount;
  })) << "the relay's counters never reached " << kCount;
  const std::string n = std::to_string(kCount);

  ProgramResult once = run_stat({"-n", relay.instance(), "-1"});
  ASSERT_TRUE(exited_with(once.status, 0)) << once.err;
  EXPECT_EQ(once.err, "");
  EXPECT_EQ(after_name(once.out, "ingest.datagrams"), n + "  Datagrams accepted into the ring") << once.out;
  EXPECT_EQ(after_name(once.out, "fanout.sent_datagrams"), n + "  Copies sent to subscribers") << once.out;
  size_t lines = 0;
  for (char c : once.out) lines += c == '\n';
  EXPECT_EQ(lines, kCounterCount) << once.out;

  ProgramResult filtered = run_stat({"-n", relay.instance(), "-1", "-f", "fanout.sent_*"});
  ASSERT_TRUE(exited_with(filtered.status, 0)) << filtered.err;
  EXPECT_EQ(after_name(filtered.out, "fanout.sent_datagrams"), n + "  Copies sent to subscribers") << filtered.out;
  EXPECT_TRUE(lines_starting(filtered.out, "ingest.").empty()) << filtered.out;

  ProgramResult json = run_stat({"-n", relay.instance(), "-j"});
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

  ProgramResult table = run_stat({"-n", relay.instance(), "--subscribers"});
  ASSERT_TRUE(exited_with(table.status, 0)) << table.err;
  EXPECT_EQ(table.out.rfind("SLOT  ADDRESS", 0), 0u) << table.out;
  auto rows = lines_starting(table.out, " ");
  ASSERT_EQ(rows.size(), 1u) << table.out;
  auto w = words(rows[0]);  // slot address port state since datagrams bytes errors refused orphan session
  ASSERT_EQ(w.size(), 11u) << rows[0];
  EXPECT_EQ(w[1], "127.0.0.1");
  EXPECT_EQ(w[2], std::to_string(sink.port()));
  EXPECT_EQ(w[3], "playing");
  EXPECT_EQ(w[5], n);
  EXPECT_EQ(w[7], "0");
  EXPECT_EQ(w[8], "0");
  EXPECT_EQ(w[9], "no");
  EXPECT_EQ(w[10].rfind("guest-", 0), 0u) << rows[0];  // the session that subscribed took no NAME

  ProgramResult table_json = run_stat({"-n", relay.instance(), "--subscribers", "-j"});
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
    ProgramResult r = run_stat(args);
    EXPECT_TRUE(exited_with(r.status, 2)) << args[0];
    EXPECT_EQ(r.err.rfind("vrelaystat: ", 0), 0u) << r.err;
    EXPECT_EQ(r.out, "");
  }
  ProgramResult help = run_stat({"--help"});
  EXPECT_TRUE(exited_with(help.status, 0));
  EXPECT_NE(help.out.find("  -1, --once "), std::string::npos) << help.out;
  ProgramResult version = run_stat({"-V"});
  EXPECT_TRUE(exited_with(version.status, 0));
  EXPECT_EQ(version.out.rfind("vrelaystat ", 0), 0u);
}

TEST(Vrelaystat, MissingInstanceExitsWithOneAndSaysSo) {
  OwnInstance missing("missing");
  for (std::vector<std::string> extra : std::vector<std::vector<std::string>>{{"-1"}, {"-j"}, {"--subscribers"}, {}}) {
    std::vector<std::string> args = {"-n", missing.name()};
    args.insert(args.end(), extra.begin(), extra.end());
    ProgramResult r = run_stat(args);
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
      ProgramResult r = run_stat({"-n", bad->name(), mode});
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
    ProgramResult r = run_stat({"-n", other.name(), mode});
    EXPECT_TRUE(exited_with(r.status, 1)) << mode;
    std::string theirs = std::to_string(kLayoutMajor + 1) + ".3";
    std::string ours = std::to_string(kLayoutMajor) + "." + std::to_string(kLayoutMinor);
    EXPECT_NE(r.err.find("layout version " + theirs + " is not the version this program reads (" + ours + ")"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("same vrelay release"), std::string::npos) << r.err;
  }
  ProgramResult r = run_stat({"-n", magic.name(), "-1"});
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
