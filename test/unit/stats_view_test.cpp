// Unit tests of stats_view (snapshot, JSON, Prometheus text) and of vrelaystat's text
// renderings, on a real segment this test creates (and removes) with values it stored.
#include <gtest/gtest.h>

#include <cstring>

#include <unistd.h>

#include <map>
#include <set>
#include <sstream>

#include "shm.hpp"
#include "stats_view.hpp"
#include "subscribers.hpp"
#include "text.hpp"

using namespace vrelay;

namespace {

int g_segments = 0;

// The words of a line, split at runs of spaces. (No <regex>: under -fsanitize, GCC 12
// warns about libstdc++'s regex code, and warnings are errors.)
std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// What follows `name` and its padding on the line of `text` that begins with `name `.
std::string after_name(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name + " ", 0) == 0) return line.substr(line.find_first_not_of(' ', name.size()));
  return "(no line for " + name + ")";
}

// A sample line of the text format: NAME, optional {LABELS}, one space, a number.
bool parse_sample(const std::string& line, std::string* name, bool* labelled, std::string* value) {
  size_t end = line.find_first_of("{ ");
  if (end == std::string::npos || end == 0) return false;
  *name = line.substr(0, end);
  for (char c : *name)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':')) return false;
  *labelled = line[end] == '{';
  if (*labelled) {
    end = line.find('}', end);
    if (end == std::string::npos || end + 1 >= line.size() || line[end + 1] != ' ') return false;
    ++end;
  }
  *value = line.substr(end + 1);
  char* stop = nullptr;
  strtod(value->c_str(), &stop);
  return !value->empty() && *stop == '\0' && value->find(' ') == std::string::npos;
}

class StatsView : public ::testing::Test {
 protected:
  void SetUp() override {
    instance_ = "ut-stat-" + std::to_string(getpid()) + "-" + std::to_string(g_segments++);
    segment_ = Segment::create(instance_, {4, 16, 1500});
    Header& h = segment_->header();
    strncpy(h.control_address, "127.0.0.1:7700", sizeof h.control_address - 1);
    strncpy(h.ingest_address, "127.0.0.1:65534", sizeof h.ingest_address - 1);
    Stats& st = segment_->stats();
    st.ingest.datagrams.store(42);
    st.ingest.bytes.store(42 * 1316);
    st.ingest.rate_bytes.store(525000);
    st.fanout.sent_datagrams.store(84);
    st.control.sessions_total.store(3);
    st.supervisor.started_ns.store(1500000000ull * 1000000000ull);
    for (uint32_t r = 0; r < kRoleCount; ++r) {
      ProcessSlot& p = segment_->process(Role(r));
      p.pid.store(1000 + int(r));
      p.state.store(uint32_t(ProcessState::kReady));
      p.started_ns.store(h.created_ns);
      p.restarts.store(r);
    }
    add_subscriber(1, "127.0.0.1:5004", SubscriberState::kPlaying, 7, 7 * 1316, 1, true);
    add_subscriber(3, "[::1]:5006", SubscriberState::kPaused, 0, 0, 0, false);
    segment_->publish();
  }
  void TearDown() override {
    segment_.reset();
    Segment::remove(instance_);
  }

  // A subscription as control writes it; `counted` says whether fan-out took it in yet.
  void add_subscriber(uint32_t index, const char* address, SubscriberState state, uint64_t datagrams, uint64_t bytes,
                      uint64_t owner, bool counted) {
    SubscriberSlot& slot = segment_->subscribers()[index];
    auto ep = parse_endpoint(address);
    ASSERT_TRUE(ep) << ep.error();
    {
      SubscriberWrite write(slot, segment_->table());
      write.set_destination(*ep);
      slot.incarnation.store(100 + index);
      slot.since_ns.store(wall_ns());
      slot.owner.store(owner);
      write.set_owner_name(owner ? "ana" : "");
      slot.state.store(uint32_t(state));
    }
    slot.counted_incarnation.store(counted ? 100 + index : 0);
    slot.datagrams.store(datagrams);
    slot.bytes.store(bytes);
  }

  std::string instance_;
  std::unique_ptr<Segment> segment_;
};

TEST_F(StatsView, SnapshotHoldsTheStoredValues) {
  Snapshot s = take_snapshot(*segment_);
  EXPECT_EQ(s.instance, instance_);
  EXPECT_EQ(s.control_address, "127.0.0.1:7700");
  EXPECT_EQ(s.supervisor_pid, getpid());
  ASSERT_EQ(s.counters.size(), kCounterCount);
  EXPECT_EQ(s.counter("ingest", "datagrams"), 42u);
  EXPECT_EQ(s.counter("fanout", "sent_datagrams"), 84u);
  EXPECT_EQ(s.counter("control", "sessions_total"), 3u);
  EXPECT_EQ(s.counter("ingest", "no_such_counter"), 0u);
  ASSERT_EQ(s.processes.size(), size_t(kRoleCount) - 1);  // http is off: not listed
  EXPECT_EQ(s.processes[kFanout].pid, 1001);
  EXPECT_EQ(s.processes[kControl].restarts, 2u);

  ASSERT_EQ(s.subscribers.size(), 2u);
  EXPECT_EQ(s.subscribers[0].slot, 1u);
  EXPECT_EQ(s.subscribers[0].address, "127.0.0.1");
  EXPECT_EQ(s.subscribers[0].port, 5004);
  EXPECT_EQ(s.subscribers[0].state, SubscriberState::kPlaying);
  EXPECT_EQ(s.subscribers[0].datagrams, 7u);
  EXPECT_FALSE(s.subscribers[0].orphan);
  EXPECT_EQ(s.subscribers[1].slot, 3u);
  EXPECT_EQ(s.subscribers[1].address, "::1");
  EXPECT_EQ(s.subscribers[1].state, SubscriberState::kPaused);
  EXPECT_TRUE(s.subscribers[1].orphan);

  EXPECT_TRUE(take_snapshot(*segment_, false).subscribers.empty());
}

// Found by the shm fuzz target: vrelaystat -j aborted on a planted instance name that was
// not UTF-8 (the JSON library throws). Header text is ASCII, anything else a '?'.
TEST_F(StatsView, HeaderTextThatIsNotPrintableAsciiIsShownAsQuestionMarks) {
  std::strcpy(segment_->header().instance, "caf\xe9\x01");
  Snapshot s = take_snapshot(*segment_);
  EXPECT_EQ(s.instance, "caf??");
  EXPECT_NO_THROW(snapshot_json(s).dump());
}

// The owner's name is stored bounded (40 bytes) and read back as stored; control bytes a
// damaged segment might hold show as '?', so the JSON stays valid.
TEST_F(StatsView, OwnerNameIsBoundedAndPrintable) {
  SubscriberSlot& slot = segment_->subscribers()[1];
  {
    SubscriberWrite write(slot, segment_->table());
    write.set_owner_name(std::string(50, 'x'));
  }
  EXPECT_EQ(take_snapshot(*segment_).subscribers[0].owner_name, std::string(8 * kOwnerNameWords, 'x'));
  {
    SubscriberWrite write(slot, segment_->table());
    write.set_owner_name("a\x01\x7f\xc3\xa9");  // UTF-8 is kept as is
  }
  Snapshot s = take_snapshot(*segment_);
  EXPECT_EQ(s.subscribers[0].owner_name, "a??\xc3\xa9");
  EXPECT_NO_THROW(snapshot_json(s).dump());
  EXPECT_EQ(s.subscribers[1].owner_name, "") << "an orphan has no owner";
}

// The bitrate history: oldest first, the last kBitrateHistory samples once the ring wrapped.
TEST_F(StatsView, BitrateHistoryIsOldestFirstAndBounded) {
  StreamInfo& stream = segment_->stream();
  EXPECT_TRUE(take_snapshot(*segment_).bitrate_history.empty());
  auto add = [&](uint64_t value) {  // as ingest's tick writes it
    uint64_t n = stream.bitrate_samples.load();
    stream.bitrate_history[n % kBitrateHistory].store(value);
    stream.bitrate_samples.store(n + 1);
  };
  for (uint64_t i = 1; i <= 3; ++i) add(i * 1000);
  EXPECT_EQ(take_snapshot(*segment_).bitrate_history, (std::vector<uint64_t>{1000, 2000, 3000}));
  for (uint64_t i = 4; i <= kBitrateHistory + 10; ++i) add(i * 1000);
  std::vector<uint64_t> h = take_snapshot(*segment_).bitrate_history;
  ASSERT_EQ(h.size(), kBitrateHistory);
  EXPECT_EQ(h.front(), 11000u);
  EXPECT_EQ(h.back(), (kBitrateHistory + 10) * 1000);
  auto j = snapshot_json(take_snapshot(*segment_));
  EXPECT_EQ(j["history"]["bytes_per_s"].size(), kBitrateHistory);
  EXPECT_EQ(j["history"]["bytes_per_s"].back(), (kBitrateHistory + 10) * 1000);
}

TEST_F(StatsView, SnapshotSkipsASlotLeftMidWriteWithoutWaiting) {
  segment_->subscribers()[1].seq.fetch_add(1);  // odd: a writer died mid-update
  Snapshot s = take_snapshot(*segment_);
  ASSERT_EQ(s.subscribers.size(), 1u);
  EXPECT_EQ(s.subscribers[0].slot, 3u);
}

TEST_F(StatsView, JsonHasEveryKeyAndTheStoredValues) {
  segment_->stats().http.streams.store(3);  // viewers of /stream
  auto j = snapshot_json(take_snapshot(*segment_));
  std::vector<std::string> keys;
  for (auto& [key, value] : j.items()) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"instance", "version", "supervisor_pid", "created_ns", "taken_ns", "uptime_s",
                                            "control_address", "ingest_address", "http_address", "fanout_address", "source", "upstream_address",
                                            "upstream", "ring",
                                            "max_subscribers", "stream_viewers", "processes", "counters", "subscribers", "history"}));
  EXPECT_EQ(j["instance"], instance_);
  EXPECT_EQ(j["max_subscribers"], 4);
  EXPECT_EQ(j["stream_viewers"], 3);
  EXPECT_EQ(j["ring"]["slots"], 16);
  ASSERT_EQ(j["counters"].size(), kCounterCount);
  for (size_t i = 0; i < kCounterCount; ++i) EXPECT_TRUE(j["counters"].contains(counter_name(kCounters[i])));
  EXPECT_EQ(j["counters"]["ingest.datagrams"], 42);
  EXPECT_EQ(j["counters"]["fanout.sent_datagrams"], 84);

  ASSERT_EQ(j["processes"].size(), size_t(kRoleCount) - 1);
  EXPECT_EQ(j["processes"][1]["role"], "fanout");
  EXPECT_EQ(j["processes"][1]["pid"], 1001);
  EXPECT_EQ(j["processes"][1]["state"], "ready");

  ASSERT_EQ(j["subscribers"].size(), 2u);
  const auto& sub = j["subscribers"][0];
  for (const char* key : {"slot", "address", "port", "state", "since_ns", "orphan", "owner_name", "datagrams", "bytes",
                          "errors", "refusals"})
    EXPECT_TRUE(sub.contains(key)) << key;
  EXPECT_EQ(sub["owner_name"], "ana");
  EXPECT_EQ(j["subscribers"][1]["owner_name"], "");
  EXPECT_EQ(j["history"]["interval_s"], 1);
  EXPECT_TRUE(j["history"]["bytes_per_s"].is_array());
  EXPECT_EQ(sub["port"], 5004);
  EXPECT_EQ(sub["state"], "playing");
  EXPECT_EQ(sub["datagrams"], 7);
  EXPECT_EQ(j["subscribers"][1]["orphan"], true);
  // The text parses back.
  EXPECT_EQ(nlohmann::json::parse(j.dump())["counters"]["control.sessions_total"], 3);
}

TEST_F(StatsView, PrometheusFamiliesHaveOneHelpAndOneTypeBeforeTheirSamples) {
  std::string text = prometheus_text(take_snapshot(*segment_));
  ASSERT_FALSE(text.empty());
  ASSERT_EQ(text.back(), '\n');
  std::map<std::string, int> help, type;
  std::map<std::string, std::string> kind;
  std::map<std::string, double> values;  // unlabelled samples
  std::set<std::string> sampled;
  std::string name, value;
  bool labelled = false;
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_EQ(sampled.count(name), 0u) << "HELP after samples: " << line;
      ++help[name];
    } else if (line.rfind("# TYPE ", 0) == 0) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_EQ(sampled.count(name), 0u) << "TYPE after samples: " << line;
      ++type[name];
      kind[name] = line.substr(line.rfind(' ') + 1);
    } else if (parse_sample(line, &name, &labelled, &value)) {
      ++samples;
      sampled.insert(name);
      EXPECT_EQ(help[name], 1) << "sample without exactly one HELP before it: " << line;
      EXPECT_EQ(type[name], 1) << "sample without exactly one TYPE before it: " << line;
      if (!labelled) values[name] = std::stod(value);
    } else {
      ADD_FAILURE() << "not a HELP, TYPE or sample line: '" << line << "'";
    }
  }
  EXPECT_GT(samples, int(kCounterCount));
  for (auto& [name, n] : help) EXPECT_EQ(n, 1) << name;
  for (auto& [name, n] : type) EXPECT_EQ(n, 1) << name;
  for (auto& [name, k] : kind) {
    EXPECT_TRUE(k == "counter" || k == "gauge") << name << " " << k;
    if (k == "counter") {
      EXPECT_TRUE(name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0) << name;
      EXPECT_EQ(name.find("_total_total"), std::string::npos) << name;
    }
  }
  EXPECT_EQ(values["vrelay_ingest_datagrams_total"], 42);
  EXPECT_EQ(values["vrelay_fanout_sent_datagrams_total"], 84);
  EXPECT_EQ(values["vrelay_control_sessions_total"], 3);
  EXPECT_EQ(values["vrelay_ingest_rate_bytes"], 525000);
  EXPECT_EQ(values["vrelay_supervisor_started_seconds"], 1500000000.0);  // _ns made seconds
  EXPECT_NE(text.find("vrelay_subscriber_datagrams_total{slot=\"1\",address=\"127.0.0.1\",port=\"5004\"} 7\n"),
            std::string::npos);
  EXPECT_NE(text.find("vrelay_process_restarts_total{process=\"control\"} 2\n"), std::string::npos);
}

// ---- vrelaystat's text (client/vrelaystat/text.cpp) ----

TEST_F(StatsView, VrelaystatOnceHasOneLinePerCounterWithValueAndHelp) {
  std::string text = vstat::once_text(take_snapshot(*segment_, false), {});
  size_t lines = 0;
  for (char c : text) lines += c == '\n';
  EXPECT_EQ(lines, kCounterCount);
  EXPECT_EQ(after_name(text, "ingest.datagrams"), "42  Datagrams accepted into the ring") << text;
  EXPECT_EQ(after_name(text, "fanout.sent_datagrams"), "84  Copies sent to subscribers") << text;
}

TEST_F(StatsView, VrelaystatFilterKeepsOnlyMatchingCounters) {
  Snapshot s = take_snapshot(*segment_, false);
  std::string text = vstat::once_text(s, {"fanout.sent_*", "*.sessions_total"});
  EXPECT_EQ(text.find("ingest."), std::string::npos) << text;
  EXPECT_NE(text.find("fanout.sent_datagrams"), std::string::npos);
  EXPECT_NE(text.find("fanout.sent_bytes"), std::string::npos);
  EXPECT_NE(text.find("control.sessions_total"), std::string::npos);
  EXPECT_EQ(text.find("control.sessions_open"), std::string::npos);
  auto j = vstat::json_output(s, {"ingest.datagrams"});
  EXPECT_EQ(j["counters"].size(), 1u);
  EXPECT_EQ(j["counters"]["ingest.datagrams"], 42);
  EXPECT_TRUE(vstat::once_text(s, {"nothing.*"}).empty());
}

TEST_F(StatsView, VrelaystatSubscriberTableShowsEverySubscription) {
  std::string text = vstat::subscribers_text(take_snapshot(*segment_));
  std::istringstream in(text);
  std::string header, first, second, extra;
  std::getline(in, header);
  std::getline(in, first);
  std::getline(in, second);
  EXPECT_FALSE(std::getline(in, extra)) << text;
  EXPECT_EQ(header.rfind("SLOT  ADDRESS", 0), 0u) << header;
  auto w = words(first);
  ASSERT_EQ(w.size(), 11u) << first;
  EXPECT_EQ(w, (std::vector<std::string>{"1", "127.0.0.1", "5004", "playing", w[4], "7", "9212", "0", "0", "no", "ana"})) << first;
  EXPECT_EQ(w[4].size(), 19u) << "SINCE is YYYY-MM-DDThh:mm:ss: " << first;
  w = words(second);
  ASSERT_EQ(w.size(), 11u) << second;
  EXPECT_EQ(w, (std::vector<std::string>{"3", "::1", "5006", "paused", w[4], "0", "0", "0", "0", "yes", "-"})) << second;
}

// The summary line counts the viewers of /stream next to the subscribers, when the HTTP
// endpoint is on.
TEST_F(StatsView, VrelaystatLiveFrameShowsTheHttpViewersWhenHttpIsOn) {
  segment_->stats().http.streams.store(2);
  Snapshot s = take_snapshot(*segment_);
  EXPECT_EQ(vstat::live_frame(s, nullptr, 0, {})[1].find("http viewers"), std::string::npos) << "http is off";
  s.http_address = "127.0.0.1:7701";
  std::string summary = vstat::live_frame(s, nullptr, 0, {})[1];
  EXPECT_NE(summary.find("subscribers 2/4  http viewers 2  ring"), std::string::npos) << summary;
}

TEST_F(StatsView, VrelaystatLiveFrameShowsRatesOnlyForCountersAfterTheFirstFrame) {
  Snapshot first = take_snapshot(*segment_);
  segment_->stats().ingest.datagrams.store(142);  // +100 in 2 s
  Snapshot second = take_snapshot(*segment_);
  auto words_of = [](const std::vector<std::string>& frame, const std::string& name) {
    for (const std::string& l : frame)
      if (l.rfind(name + " ", 0) == 0) return words(l);
    return std::vector<std::string>();
  };
  auto frame1 = vstat::live_frame(first, nullptr, 0, {});
  EXPECT_NE(frame1[0].find("pid " + std::to_string(getpid())), std::string::npos) << frame1[0];
  EXPECT_NE(frame1[1].find("bitrate 4.20 Mbit/s"), std::string::npos) << frame1[1];
  auto w = words_of(frame1, "ingest.datagrams");
  ASSERT_GE(w.size(), 3u);
  EXPECT_EQ(w[1], "42");
  EXPECT_EQ(w[2], "Datagrams") << "a rate in the first frame";
  auto frame2 = vstat::live_frame(second, &first, 2.0, {});
  w = words_of(frame2, "ingest.datagrams");
  ASSERT_GE(w.size(), 4u);
  EXPECT_EQ(w[1], "142");
  EXPECT_EQ(w[2], "50.0");
  EXPECT_EQ(w[3], "Datagrams");
  w = words_of(frame2, "ingest.rate_bytes");  // a gauge: no rate
  ASSERT_GE(w.size(), 3u);
  EXPECT_EQ(w[1], "525000");
  EXPECT_EQ(w[2], "Bytes");
  EXPECT_FALSE(words_of(frame2, "fanout.playing").empty());
  w = words_of(frame2, "fanout");
  ASSERT_GE(w.size(), 5u);
  EXPECT_EQ(w[1], "1001");
  EXPECT_EQ(w[2], "ready");
  EXPECT_EQ(w[4], "1") << "restarts";
}

TEST(VrelaystatText, FitCutsLinesAndSaysWhatItLeftOut) {
  std::vector<std::string> lines = {"abcdef", "b", "c", "d", "e"};
  auto out = vstat::fit(lines, 3, 3);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], "abc");
  EXPECT_EQ(out[2], "...");  // "... 3 more lines", cut at 3 columns
  out = vstat::fit(lines, 100, 3);
  EXPECT_EQ(out[2].rfind("... 3 more lines", 0), 0u) << out[2];
  EXPECT_EQ(vstat::fit(lines, 0, 0), lines);
}

TEST(VrelaystatText, Formats) {
  EXPECT_EQ(vstat::format_duration(0), "-");
  EXPECT_EQ(vstat::format_duration(3723ull * 1000000000ull), "01:02:03");
  EXPECT_EQ(vstat::format_duration((86400ull * 2 + 5) * 1000000000ull), "2d 00:00:05");
  EXPECT_EQ(vstat::format_bitrate(4200000), "4.20 Mbit/s");
  EXPECT_EQ(vstat::format_bitrate(812000), "812.0 kbit/s");
  EXPECT_EQ(vstat::format_bitrate(96), "96 bit/s");
  EXPECT_TRUE(vstat::counter_selected({}, "ingest.datagrams"));
  EXPECT_TRUE(vstat::counter_selected({"ingest.*"}, "ingest.datagrams"));
  EXPECT_FALSE(vstat::counter_selected({"ingest.*"}, "fanout.datagrams"));
  EXPECT_TRUE(vstat::counter_selected({"x", "*.datagrams"}, "fanout.datagrams"));
}

}  // namespace
