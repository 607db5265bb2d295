// What the relay tells about itself: counters against known traffic, the source's stall
// and recovery (gauge, events, STATS), the generator source, and the log file.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "counter_stream.hpp"
#include "harness.hpp"

namespace vrelay::test {
namespace {


// A line of log.file: "2026-11-22T05:40:03.038060Z info control[5531]: text": the time,
// the level in words, the process and its pid; no journald prefix. (No <regex>: GCC 12
// warns inside libstdc++'s regex under the sanitizers, and warnings are errors.)
bool is_file_log_line(const std::string& line) {
  const std::string time_shape = "dddd-dd-ddTdd:dd:dd.ddddddZ ";
  if (line.size() < time_shape.size()) return false;
  for (size_t i = 0; i < time_shape.size(); ++i)
    if (time_shape[i] == 'd' ? !isdigit(static_cast<unsigned char>(line[i])) : line[i] != time_shape[i]) return false;
  std::istringstream rest(line.substr(time_shape.size()));
  std::string level, process;
  rest >> level >> process;
  bool known_level = level == "error" || level == "warning" || level == "notice" || level == "info" || level == "debug";
  size_t open = process.find('[');
  return known_level && open != std::string::npos && open > 0 && process.ends_with("]:") &&
         process.find_first_not_of("0123456789", open + 1) == process.size() - 2;
}

TEST(Counters, MatchKnownTraffic) {
  Relay relay;
  Viewer va(relay), vb(relay);
  UdpSink &a = va.sink, &b = vb.sink;
  ASSERT_EQ(vb.session.command("BOGUS").substr(0, 19), "ERR unknown-command");

  constexpr uint64_t kCount = 500;
  uint64_t bytes = 0;
  UdpSource source(relay.ingest_port());
  for (uint64_t i = 0; i < kCount; ++i) {
    source.send(test_payload(i));
    bytes += test_payload(i).size();
    ASSERT_TRUE(is_payload(a.receive(), i));  // paced by the slower of the two sinks
    ASSERT_TRUE(is_payload(b.receive(), i));
  }
  // Every figure below from the one snapshot in which the fan-out has counted it all.
  Counters c;
  ASSERT_TRUE(wait_until([&] {  // each counter is updated after the sends it counts
    c = relay.counters();
    return c["fanout.sent_datagrams"] == 2 * kCount && c["fanout.datagrams"] == kCount;
  }));
  EXPECT_EQ(c["ingest.datagrams"], kCount);
  EXPECT_EQ(c["ingest.bytes"], bytes);
  EXPECT_EQ(c["fanout.datagrams"], kCount);
  EXPECT_EQ(c["fanout.sent_bytes"], 2 * bytes);
  EXPECT_EQ(c["fanout.send_errors"], 0u);
  EXPECT_EQ(c["fanout.ring_lag"], 0u);
  EXPECT_EQ(c["fanout.playing"], 2u);
  EXPECT_GE(c["ingest.batches"], 1u);
  EXPECT_LE(c["ingest.batches"], kCount);
  EXPECT_EQ(c["ingest.drops_ring_full"] + c["ingest.drops_oversize"] + c["ingest.drops_foreign_sender"], 0u);
  EXPECT_EQ(c["control.commands_ok"], 2u);
  EXPECT_EQ(c["control.commands_err"], 1u);
  EXPECT_EQ(c["control.sessions_open"], 2u);
  EXPECT_EQ(c["control.subscribers"], 2u);
  EXPECT_EQ(c["ingest.stalled"], 0u);
  // Per subscriber: each got every datagram and every byte.
  EXPECT_EQ(c.subscribers().size(), 2u);
  for (const SubscriberView& sub : c.subscribers()) {
    EXPECT_EQ(sub.datagrams, kCount);
    EXPECT_EQ(sub.bytes, bytes);
    EXPECT_EQ(sub.errors, 0u);
  }
  // The rate is per second over its window, about one second (a loaded machine may run
  // the timer late): at most all of the traffic over a window of 2/3 s. Both rates of
  // the same window: one snapshot.
  Counters rate;
  ASSERT_TRUE(wait_until([&] {
    rate = relay.counters();
    return rate["ingest.rate_datagrams"] > 0;
  }, 3000ms));
  EXPECT_LE(rate["ingest.rate_datagrams"], kCount * 3 / 2);
  EXPECT_LE(rate["ingest.rate_bytes"], bytes * 3 / 2);
}

TEST(Source, StallAndRecoveryAreCountedAndAnnounced) {
  // Presence events only to named sessions: these two hear nothing but the source's.
  Relay relay("ingest:\n  stall_timeout: 1\ncontrol:\n  presence_events: named\n");
  Stats& stats = relay.shm().stats();
  Session text(relay.control_port()), json(relay.control_port());
  ASSERT_EQ(json.command("FORMAT JSON"), R"({"ok":true,"text":""})");
  // No source yet: stalled, but nothing went wrong, so no event and no stall counted.
  ASSERT_TRUE(wait_until([&] { return stats.ingest.stalled.load() == 1u; }));
  EXPECT_NE(text.command("STATS").find("source=stalled"), std::string::npos);

  UdpSource source(relay.ingest_port());
  source.send(test_payload(1));
  EXPECT_EQ(text.next_event(), "EVENT SOURCE live");
  EXPECT_EQ(json.next_event(), R"({"event":"source","state":"live"})");
  EXPECT_EQ(stats.ingest.stalled.load(), 0u);
  EXPECT_NE(text.command("STATS").find("source=live"), std::string::npos);

  // Nothing for stall_timeout: stalled, said once.
  auto quiet_since = Clock::now();
  EXPECT_EQ(text.next_event(3000ms), "EVENT SOURCE stalled");
  EXPECT_GE(Clock::now() - quiet_since, 800ms);  // not before the timeout (less the 0.1 s checks)
  EXPECT_EQ(json.next_event(), R"({"event":"source","state":"stalled"})");
  Counters stalled = relay.counters();  // the gauge and the count of one moment
  EXPECT_EQ(stalled["ingest.stalls"], 1u);
  EXPECT_EQ(stalled["ingest.stalled"], 1u);
  EXPECT_NE(text.command("STATS").find("source=stalled"), std::string::npos);

  source.send(test_payload(2));
  EXPECT_EQ(text.next_event(), "EVENT SOURCE live");
  EXPECT_EQ(json.next_event(), R"({"event":"source","state":"live"})");
  EXPECT_EQ(stats.ingest.stalls.load(), 1u);
  EXPECT_NE(relay.log().find("source stalled"), std::string::npos);
}

TEST(Source, StalledStateSurvivesAnIngestRestart) {
  Relay relay("ingest:\n  stall_timeout: 1\ncontrol:\n  presence_events: named\n");
  Stats& stats = relay.shm().stats();
  Session s(relay.control_port());
  UdpSource source(relay.ingest_port());
  source.send(test_payload(1));
  ASSERT_EQ(s.next_event(), "EVENT SOURCE live");
  pid_t ingest = relay.child_pid(kIngest);
  ASSERT_EQ(kill(ingest, SIGKILL), 0);
  ASSERT_TRUE(relay.wait_restarted(kIngest, ingest));
  // The new ingest process takes the state over: one stall, told once.
  EXPECT_EQ(s.next_event(3000ms), "EVENT SOURCE stalled");
  EXPECT_EQ(stats.ingest.stalls.load(), 1u);
  source.send(test_payload(2));
  EXPECT_EQ(s.next_event(), "EVENT SOURCE live");
}

// The counter stream of the generator, as a subscriber receives it.
std::optional<CounterDatagram> next_counter(UdpSink& sink) {
  auto got = sink.receive();
  if (!got) return std::nullopt;
  return decode_counter(got->data(), got->size());
}

TEST(Generator, SendsTheCounterStreamAtItsInterval) {
  auto before = Clock::now();
  Relay relay("ingest:\n  source: generator\n  interval_ms: 10\n");
  auto ready = Clock::now();
  Viewer viewer(relay);
  UdpSink& sink = viewer.sink;
  auto first = next_counter(sink);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->value, 2 * first->index);
  uint64_t expected = first->index;
  for (int i = 0; i < 100; ++i) {  // one second of stream, in order, none missing
    auto got = next_counter(sink);
    ASSERT_TRUE(got) << "after index " << expected;
    ASSERT_EQ(got->index, ++expected);
    ASSERT_EQ(got->value, 2 * got->index);
  }
  // The generator keeps to its schedule (10 ms a datagram since it started, between `before`
  // and `ready`): never ahead of it, and behind by no more than a starved second (a
  // loaded machine delays ticks; the next one catches up). No bound on how long the loop
  // took: that is the machine's.
  Stats& stats = relay.shm().stats();
  auto read_from = Clock::now();
  uint64_t generated = stats.ingest.generated.load();
  auto read_until = Clock::now();
  auto due = [](Clock::duration d) { return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(d).count() / 10); };
  EXPECT_GE(generated, expected);
  EXPECT_LE(generated, due(read_until - before) + 1) << "ahead of its schedule";
  EXPECT_GE(generated + 100, due(read_from - ready)) << "more than a second behind its schedule";
  // Every generated datagram is accepted or dropped. The generator goes on meanwhile and
  // counts a tick in two stores: the figures agree between ticks, read in one snapshot.
  Counters c;
  EXPECT_TRUE(wait_until([&] {
    c = relay.counters();
    return c["ingest.datagrams"] + c["ingest.drops_ring_full"] == c["ingest.generated"];
  }));
  EXPECT_EQ(c["ingest.stalled"], 0u);
}

TEST(Generator, IndexGoesOnAcrossAnIngestRestart) {
  Relay relay("ingest:\n  source: generator\n  interval_ms: 5\n");
  Viewer viewer(relay);
  UdpSink& sink = viewer.sink;
  auto before = next_counter(sink);
  ASSERT_TRUE(before);
  pid_t ingest = relay.child_pid(kIngest);
  ASSERT_EQ(kill(ingest, SIGKILL), 0);
  ASSERT_TRUE(relay.wait_restarted(kIngest, ingest));
  uint64_t generated_at_restart = relay.shm().stats().ingest.generated.load();
  sink.drain();
  // Every datagram now comes from the new process: its indexes continue, never restart at 1.
  for (int i = 0; i < 20; ++i) {
    auto got = next_counter(sink);
    ASSERT_TRUE(got);
    EXPECT_GT(got->index, before->index);
    if (i == 19) {
      EXPECT_GT(got->index, generated_at_restart);
    }
  }
}

TEST(Log, FileHasEveryProcessAndIsReopenedOnSigusr1) {
  std::string path = "/tmp/vrelay-log-test-" + std::to_string(getpid()) + ".log";
  std::remove(path.c_str());
  std::remove((path + ".1").c_str());
  Relay relay("log:\n  file: " + path + "\n");

  ASSERT_TRUE(wait_until([&] {
    std::string log = read_file(path);
    return log.find("supervisor[") != std::string::npos && log.find("ingest[") != std::string::npos &&
           log.find("fanout[") != std::string::npos && log.find("control[") != std::string::npos;
  }));
  std::istringstream lines(read_file(path));
  for (std::string line; std::getline(lines, line);) EXPECT_TRUE(is_file_log_line(line)) << line;

  // logrotate: move the file away, then SIGUSR1; every process writes to a new file.
  ASSERT_EQ(std::rename(path.c_str(), (path + ".1").c_str()), 0);
  uint64_t reopens = relay.shm().stats().supervisor.log_reopens.load();
  ASSERT_EQ(kill(relay.pid(), SIGUSR1), 0);
  ASSERT_TRUE(wait_until([&] { return relay.shm().stats().supervisor.log_reopens.load() == reopens + 1; }));
  // Children reopen at their next heartbeat; then a session makes control log, a datagram
  // makes ingest log.
  struct stat st;
  ASSERT_TRUE(wait_until([&] { return stat(path.c_str(), &st) == 0; }));
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  bool control_moved = wait_until([&] {
    Session s(relay.control_port());
    return read_file(path).find("control[") != std::string::npos;
  }, 5000ms);
  EXPECT_TRUE(control_moved) << read_file(path);
  UdpSource source(relay.ingest_port());
  source.send(test_payload(1));
  EXPECT_TRUE(wait_until([&] { return read_file(path).find("source live") != std::string::npos; }, 5000ms))
      << read_file(path);
  EXPECT_NE(read_file(path).find("SIGUSR1: log file reopened"), std::string::npos);
  relay.stop();
  std::remove(path.c_str());
  std::remove((path + ".1").c_str());
}

TEST(Log, ControlBytesAndTokensNeverReachTheLog) {
  std::string token_path = "/tmp/vrelay-token-" + std::to_string(getpid());
  std::ofstream(token_path) << "s3cret-token-42\n";
  Relay relay("moderators:\n  token_files: [" + token_path + "]\n");
  Session s(relay.control_port());
  ASSERT_EQ(s.command("NAME evil\x1b[31mname").substr(0, 3), "ERR");
  ASSERT_EQ(s.command("AUTH s3cret-token-42"), "OK");
  Session other(relay.control_port());
  ASSERT_EQ(other.command("AUTH s3cret-token-43").substr(0, 3), "ERR");
  relay.stop();
  std::string log = relay.log();
  EXPECT_EQ(log.find("s3cret"), std::string::npos) << log;
  EXPECT_EQ(log.find('\x1b'), std::string::npos) << log;
  EXPECT_NE(log.find("is a moderator"), std::string::npos) << log;
  std::remove(token_path.c_str());
}

}  // namespace
}  // namespace vrelay::test
