// Integration tests, first the simplest: vrelayd starts, reports ready, shows its processes,
// refuses bad command lines and configurations, and stops cleanly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

std::string cmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.substr(0, text.find('\0'));
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = "/tmp/vrelay-test-" + std::to_string(getpid()) + "-" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(Startup, ReadyLineNamesBoundAddressesAlsoStoredInShm) {
  Relay relay;
  EXPECT_NE(relay.control_port(), 0);
  EXPECT_NE(relay.ingest_port(), 0);
  const Header& h = relay.shm().header();
  EXPECT_EQ(std::string(h.control_address), "127.0.0.1:" + std::to_string(relay.control_port()));
  EXPECT_EQ(std::string(h.ingest_address), "127.0.0.1:" + std::to_string(relay.ingest_port()));
  EXPECT_EQ(h.supervisor_pid, relay.pid());
  EXPECT_EQ(std::string(h.instance), relay.instance());
}

TEST(Startup, ChildrenShowTheirRoleInPs) {
  Relay relay;
  EXPECT_EQ(cmdline(relay.child_pid(kIngest)), "vrelayd: ingest");
  EXPECT_EQ(cmdline(relay.child_pid(kFanout)), "vrelayd: fanout");
  EXPECT_EQ(cmdline(relay.child_pid(kControl)), "vrelayd: control");
  for (Role r : {kIngest, kFanout, kControl})
    EXPECT_EQ(relay.shm().process(r).state.load(), uint32_t(ProcessState::kReady));
}

TEST(Startup, SigtermStopsEveryProcessAndRemovesTheSegment) {
  Relay relay;
  pid_t children[] = {relay.child_pid(kIngest), relay.child_pid(kFanout), relay.child_pid(kControl)};
  std::string segment = "/dev/shm/vrelay." + relay.instance();
  ASSERT_EQ(access(segment.c_str(), F_OK), 0);
  EXPECT_EQ(relay.stop(), 0);
  for (pid_t pid : children)
    EXPECT_TRUE(wait_until([&] { return kill(pid, 0) != 0; })) << "child " << pid << " still alive";
  EXPECT_NE(access(segment.c_str(), F_OK), 0) << segment << " left behind";
}

TEST(Startup, PositionalFormSetsTheControlAddress) {
  Relay relay("", {"127.0.0.1", "0"});
  EXPECT_NE(relay.control_port(), 0);
  Session s(relay.control_port());
  EXPECT_EQ(s.command("PING"), "OK PONG");
}

TEST(Startup, TwoInstancesRunSideBySideButNotTwiceTheSameName) {
  Relay a;
  Relay b;
  EXPECT_NE(a.instance(), b.instance());
  ProgramResult again = run_vrelayd({"-F", "--control", "127.0.0.1:0", "--ingest", "127.0.0.1:0", "--instance", a.instance()});
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.output().find("already running"), std::string::npos) << again.output();
  Session s(a.control_port());  // the first is untouched
  EXPECT_EQ(s.command("PING"), "OK PONG");
}

// Issue 11: anyone may write /dev/shm/vrelay.NAME naming a process of theirs called
// "vrelayd-something"; that is not a running relay, and the segment is replaced.
TEST(Startup, ADecoySegmentNamingAnotherProgramDoesNotBlockTheRelay) {
  std::string instance = "decoy-" + std::to_string(getpid());
  int out = -1;
  pid_t decoy = start_program({"/bin/bash", "-c", "exec -a vrelayd-decoy sleep 30"}, "/dev/null", &out);
  ASSERT_TRUE(wait_until([&] {  // once bash has become the decoy
    std::ifstream cmd("/proc/" + std::to_string(decoy) + "/cmdline");
    std::string text((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    return text.rfind("vrelayd-decoy", 0) == 0;
  }));
  {
    auto planted = Segment::create(instance, {4, 16, 1500});
    planted->header().supervisor_pid = decoy;
    planted->publish();
  }
  std::unique_ptr<Segment> ours;
  EXPECT_NO_THROW(ours = Segment::create(instance, {4, 16, 1500})) << "the decoy was taken for a running relay";
  kill(decoy, SIGKILL);
  waitpid(decoy, nullptr, 0);
  if (out >= 0) close(out);
  Segment::remove(instance);
}

// The instance lock is held by every process of a relay: once a killed supervisor's children
// have gone (their parent-death signal), the instance starts again.
TEST(Startup, AnInstanceWhoseSupervisorWasKilledStartsAgain) {
  Relay first;
  ASSERT_EQ(kill(first.pid(), SIGKILL), 0);
  Relay second("", {"--instance", first.instance()});
  Session s(second.control_port());
  EXPECT_EQ(s.command("PING"), "OK PONG");
}

// Issue 11.3: a segment someone else planted under the relay's name, naming a real running
// relay's supervisor (so the old pid check took it for a running instance), neither stops
// the relay from starting nor is used by it. The lock decides.
TEST(Startup, ASegmentPlantedByAnotherUserNeitherBlocksNorIsUsed) {
  if (geteuid() != 0) GTEST_SKIP() << "planting a file of another user needs root";
  Relay running("", {"--allow-root"});  // a root relay, as the old check trusted
  std::string instance = "planted-" + std::to_string(getpid());
  {
    auto planted = Segment::create(instance, {4, 16, 1500});
    planted->header().supervisor_pid = running.pid();
    planted->publish();
  }
  std::string file = "/dev/shm/" + Segment::shm_name(instance);
  ASSERT_EQ(chown(file.c_str(), 4242, 4242), 0);  // an unprivileged user's
  Relay ours("", {"--instance", instance});
  EXPECT_EQ(ours.shm().header().supervisor_pid, ours.pid()) << "the planted segment was used";
  struct stat st;
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_NE(st.st_uid, 4242u);
  Session s(ours.control_port());
  EXPECT_EQ(s.command("PING"), "OK PONG");
}

// Issue 11.2: started as root, every process of the relay runs as the service account
// (here nobody: no vrelay account on a test machine) with no capability; the segment and
// the log file are that account's; and the relay relays.
TEST(Privileges, StartedAsRootEveryProcessRunsAsTheServiceAccountWithoutCapabilities) {
  if (geteuid() != 0) GTEST_SKIP() << "dropping root needs root";
  std::string log = "/tmp/vrelay-test-" + std::to_string(getpid()) + "-drop.log";
  Relay relay("log:\n  file: " + log + "\n");
  std::vector<pid_t> pids{relay.pid(), relay.child_pid(kIngest), relay.child_pid(kFanout), relay.child_pid(kControl)};
  for (pid_t pid : pids) {
    std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
    EXPECT_NE(status.find("\nUid:\t65534\t65534\t65534\t65534\n"), std::string::npos) << status;
    EXPECT_NE(status.find("\nGid:\t65534\t65534\t65534\t65534\n"), std::string::npos) << status;
    EXPECT_NE(status.find("\nGroups:\t65534 \n"), std::string::npos) << status;
    for (const char* set : {"CapPrm", "CapEff", "CapAmb"})
      EXPECT_NE(status.find(std::string("\n") + set + ":\t0000000000000000\n"), std::string::npos) << set << "\n" << status;
    EXPECT_NE(status.find("\nNoNewPrivs:\t1\n"), std::string::npos) << status;
  }
  struct stat st;
  ASSERT_EQ(stat(("/dev/shm/" + Segment::shm_name(relay.instance())).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  ASSERT_EQ(stat(log.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_NE(read_file(log).find("running as nobody"), std::string::npos) << read_file(log);

  Viewer viewer(relay);
  UdpSource source(relay.ingest_port());
  source.send(test_payload(0));
  EXPECT_TRUE(is_payload(viewer.sink.receive(), 0));
  EXPECT_EQ(relay.stop(), 0);
  unlink(log.c_str());
}

TEST(Privileges, TheUserAndGroupKeysNameTheAccount) {
  if (geteuid() != 0) GTEST_SKIP() << "dropping root needs root";
  Relay relay("user: daemon\ngroup: nogroup\n");
  std::string status = read_file("/proc/" + std::to_string(relay.child_pid(kControl)) + "/status");
  EXPECT_NE(status.find("\nUid:\t1\t1\t1\t1\n"), std::string::npos) << status;
  EXPECT_NE(status.find("\nGid:\t65534\t65534\t65534\t65534\n"), std::string::npos) << status;
  struct stat st;
  ASSERT_EQ(stat(("/dev/shm/" + Segment::shm_name(relay.instance())).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1u);
  EXPECT_EQ(st.st_gid, 65534u);
}

// As User=vrelay with AmbientCapabilities=CAP_NET_BIND_SERVICE would start it: another
// user that may bind a low port. It binds one, then no process keeps a capability.
TEST(Privileges, StartedAsAnotherUserWithCapabilitiesItKeepsNoneOnceBound) {
  if (geteuid() != 0) GTEST_SKIP() << "starting as another user needs root";
  if (access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "setpriv (util-linux) is missing";
  uint16_t low = 0;
  for (uint16_t port = 900; port < 1000 && !low; ++port) {  // a free port below 1024
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) low = port;
    close(fd);
  }
  ASSERT_NE(low, 0);
  std::string instance = "caps-" + std::to_string(getpid());
  std::string log = "/tmp/vrelay-test-" + instance + ".log";
  int out = -1;
  pid_t pid = start_program({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service", VRELAYD_PATH, "-F",
                             "--instance", instance, "--control", "127.0.0.1:" + std::to_string(low), "--ingest",
                             "127.0.0.1:0"},
                            log, &out);
  std::string ready = read_first_line(out, 10s);
  close(out);
  EXPECT_EQ(ready.rfind("vrelayd ready control=127.0.0.1:" + std::to_string(low) + " ", 0), 0u) << ready << read_file(log);
  if (ready.rfind("vrelayd ready", 0) == 0) {
    auto segment = Segment::open(instance, true);
    for (pid_t p : {pid, pid_t(segment->process(kIngest).pid.load()), pid_t(segment->process(kControl).pid.load())}) {
      std::string status = read_file("/proc/" + std::to_string(p) + "/status");
      EXPECT_NE(status.find("\nUid:\t65534\t65534\t65534\t65534\n"), std::string::npos) << status;
      for (const char* set : {"CapPrm", "CapEff", "CapAmb"})
        EXPECT_NE(status.find(std::string("\n") + set + ":\t0000000000000000\n"), std::string::npos) << set << "\n" << status;
    }
  }
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  Segment::remove(instance);
  unlink(log.c_str());
}

TEST(Privileges, OnlyAllowRootKeepsRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  Relay relay("", {"--allow-root"});
  std::string status = read_file("/proc/" + std::to_string(relay.child_pid(kControl)) + "/status");
  EXPECT_NE(status.find("\nUid:\t0\t0\t0\t0\n"), std::string::npos) << status;
  EXPECT_NE(relay.log().find("running as root (--allow-root)"), std::string::npos) << relay.log();

  std::string config = write_temp("root.yaml", "user: root\n");
  ProgramResult as_root = run_vrelayd({"-F", "--control", "127.0.0.1:0", "--ingest", "127.0.0.1:0", "-c", config});
  EXPECT_EQ(as_root.status, 1);
  EXPECT_NE(as_root.output().find("only vrelayd --allow-root keeps root"), std::string::npos) << as_root.output();
  std::string missing = write_temp("missing.yaml", "user: no-such-account\n");
  ProgramResult unknown = run_vrelayd({"-F", "--control", "127.0.0.1:0", "--ingest", "127.0.0.1:0", "-c", missing});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.output().find("user: no account named 'no-such-account'"), std::string::npos) << unknown.output();
  std::string bad = write_temp("bad.yaml", "user: \"a b\"\n");
  ProgramResult invalid = run_vrelayd({"--check-config", "-c", bad});
  EXPECT_EQ(invalid.status, 2);
  EXPECT_NE(invalid.output().find("user"), std::string::npos) << invalid.output();
  for (const std::string& path : {config, missing, bad}) unlink(path.c_str());
}

// Log lines: the <priority> prefix only for the journal (JOURNAL_STREAM names stderr);
// anywhere else, a terminal or a file, the time and the level in words.
TEST(Startup, LogLinesCarryThePriorityPrefixOnlyForTheJournal) {
  for (bool journal : {false, true}) {
    std::string log = "/tmp/vrelay-test-" + std::to_string(getpid()) + "-journal.log";
    std::ofstream(log).flush();
    struct stat st;
    ASSERT_EQ(stat(log.c_str(), &st), 0);
    std::vector<std::string> environment{"JOURNAL_STREAM"};  // unset, as on a terminal
    if (journal) environment = {"JOURNAL_STREAM=" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)};
    int out = -1;
    pid_t pid = start_program({VRELAYD_PATH, "-F", "--allow-root", "--instance", "journal-" + std::to_string(getpid()),
                               "--control", "127.0.0.1:0", "--ingest", "127.0.0.1:0"},
                              log, &out, environment);
    EXPECT_EQ(read_first_line(out, 10s).rfind("vrelayd ready", 0), 0u);
    close(out);
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    std::string first = read_file(log).substr(0, read_file(log).find('\n'));
    if (journal) EXPECT_EQ(first.rfind("<4>supervisor: running as root", 0), 0u) << first;
    else EXPECT_NE(first.find("Z warning supervisor["), std::string::npos) << first;
    unlink(log.c_str());
  }
}

TEST(Startup, BusyPortIsAClearError) {
  Relay a;
  ProgramResult r = run_vrelayd({"-F", "--control", "127.0.0.1:" + std::to_string(a.control_port()), "--ingest",
                                 "127.0.0.1:0", "--instance", "busy-" + std::to_string(getpid())});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output().find("cannot bind 127.0.0.1:" + std::to_string(a.control_port())), std::string::npos) << r.output();
  EXPECT_NE(access(("/dev/shm/vrelay.busy-" + std::to_string(getpid())).c_str(), F_OK), 0);
}

TEST(CommandLine, HelpVersionAndErrors) {
  ProgramResult help = run_vrelayd({"--help"});
  EXPECT_EQ(help.status, 0);
  for (auto opt : {"--config", "--control", "--ingest", "--instance", "--foreground", "--check-config", "--version"})
    EXPECT_NE(help.output().find(opt), std::string::npos) << opt;
  ProgramResult version = run_vrelayd({"--version"});
  EXPECT_EQ(version.status, 0);
  EXPECT_EQ(version.output().rfind("vrelayd ", 0), 0u) << version.output();
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"--frobnicate"}, {"--control"}, {"--control", "nonsense", "--check-config"},
           {"--ingest", "1.2.3.4:99999", "--check-config"}, {"1.2.3.4"}, {"a", "b", "c"},
           {"--instance", "a/b", "--check-config"}}) {
    ProgramResult r = run_vrelayd(bad);
    EXPECT_EQ(r.status, 2) << testing::PrintToString(bad) << ": " << r.output();
    EXPECT_NE(r.output().find("vrelayd: "), std::string::npos) << testing::PrintToString(bad);
  }
}

TEST(CommandLine, CheckConfig) {
  ProgramResult ok = run_vrelayd({"--check-config"});
  EXPECT_EQ(ok.status, 0) << ok.output();
  std::string good = write_temp("good.yaml", "control:\n  listen: 127.0.0.1:7999\n");
  EXPECT_EQ(run_vrelayd({"--check-config", "-c", good}).status, 0);
  std::string bad = write_temp("bad.yaml", "control:\n  listen: 127.0.0.1:7999\n  idle_timout: 3\n");
  ProgramResult r = run_vrelayd({"--check-config", "-c", bad});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output().find(bad + ":3: control.idle_timout: unknown key"), std::string::npos) << r.output();
  ProgramResult missing = run_vrelayd({"--check-config", "-c", "/nonexistent.yaml"});
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.output().find("/nonexistent.yaml"), std::string::npos);
  unlink(good.c_str());
  unlink(bad.c_str());
}

TEST(CommandLine, OptionsOverrideTheFile) {
  Relay relay("control:\n  listen: 127.0.0.1:1\ningest:\n  listen: 127.0.0.1:2\n",
              {"--control", "127.0.0.1:0", "--ingest", "127.0.0.1:0"});
  EXPECT_NE(relay.control_port(), 1);
  EXPECT_NE(relay.ingest_port(), 2);
}

}  // namespace

namespace {

// A stand-in for systemd's notification socket.
class NotifySocket {
 public:
  NotifySocket() : path_("/tmp/vrelay-notify-" + std::to_string(getpid()) + ".sock") {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    unlink(path_.c_str());
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    chmod(path_.c_str(), 0777);  // as systemd's: a relay that dropped root still reaches it
  }
  ~NotifySocket() {
    close(fd_);
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  // Waits for a message containing `text`.
  bool wait_for(const std::string& text, std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[1024];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n > 0 && std::string(buf, size_t(n)).find(text) != std::string::npos) return true;
    }
    return false;
  }

 private:
  std::string path_;
  int fd_;
};

TEST(Startup, SystemdReadyAndWatchdog) {
  NotifySocket notify;
  Relay relay("", {}, {"NOTIFY_SOCKET=" + notify.path(), "WATCHDOG_USEC=200000"});
  EXPECT_TRUE(notify.wait_for("READY=1", 5000ms));
  EXPECT_TRUE(notify.wait_for("WATCHDOG=1", 5000ms));
  // Live figures for `systemctl status`.
  UdpSource source(relay.ingest_port());
  source.send(test_payload(0));
  EXPECT_TRUE(notify.wait_for("STATUS=source live, ", 5000ms));
  // A reload (Type=notify-reload): RELOADING=1 with the monotonic time, then READY=1.
  ASSERT_EQ(kill(relay.pid(), SIGHUP), 0);
  EXPECT_TRUE(notify.wait_for("RELOADING=1\nMONOTONIC_USEC=", 5000ms));
  EXPECT_TRUE(notify.wait_for("READY=1", 5000ms));
  EXPECT_EQ(relay.stop(), 0);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", 5000ms));
}

}  // namespace
