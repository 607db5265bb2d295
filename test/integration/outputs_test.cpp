// Fixed outputs (vrelay.yaml(5) `outputs:`): destinations that receive the stream with no
// session, through the same fan-out path, shown under their names, changed by a reload.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

std::string outputs_yaml(const std::vector<std::pair<std::string, uint16_t>>& outputs) {
  std::string yaml = "outputs:\n";
  for (const auto& [name, port] : outputs)
    yaml += "  - {name: " + name + ", to: \"127.0.0.1:" + std::to_string(port) + "\"}\n";
  return outputs.empty() ? "outputs: []\n" : yaml;
}

// Sends datagrams [first, last) and expects each, in order and once, at every sink.
void expect_stream(UdpSource& source, const std::vector<UdpSink*>& sinks, uint64_t first, uint64_t last) {
  for (uint64_t i = first; i < last; ++i) source.send(test_payload(i));
  for (UdpSink* sink : sinks)
    for (uint64_t i = first; i < last; ++i) ASSERT_TRUE(is_payload(sink->receive(), i)) << i;
}

const SubscriberView* find_output(const Counters& counters, const std::string& name) {
  for (const SubscriberView& v : counters.subscribers())
    if (v.output && v.owner_name == name) return &v;
  return nullptr;
}

// The fan-out counts a batch once sendmmsg returned, which may be after the sink read it.
Counters once_counted(Relay& relay, const std::string& name, uint64_t datagrams) {
  Counters c;
  EXPECT_TRUE(wait_until([&] {
    c = relay.counters();
    const SubscriberView* v = find_output(c, name);
    return v && v->datagrams >= datagrams;
  })) << name;
  return c;
}

// SIGHUP and wait until the supervisor counted the reload.
void reload(Relay& relay, const std::string& yaml) {
  std::ofstream(relay.config_path()) << yaml;
  uint64_t before = relay.counters()["supervisor.reloads"];
  ASSERT_EQ(kill(relay.pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_until([&] { return relay.counters()["supervisor.reloads"] > before; })) << relay.log();
}

}  // namespace

TEST(Outputs, ReceiveTheStreamWithoutASessionAndShowUnderTheirNames) {
  UdpSink a, b;
  Relay relay(outputs_yaml({{"lan", a.port()}, {"recorder", b.port()}}));
  ASSERT_TRUE(wait_until([&] { return relay.counters()["fanout.sockets"] == 2; })) << relay.log();
  UdpSource source(relay.ingest_port());
  expect_stream(source, {&a, &b}, 0, 200);
  EXPECT_EQ(a.drain() + b.drain(), 0u);

  Session session(relay.control_port());
  EXPECT_EQ(session.command("LIST"), "OK 3 " + std::string("guest-1") + " output:lan output:recorder")
      << "the session's own name first";
  std::string info = session.command("INFO output:lan");
  EXPECT_EQ(info.rfind("OK name=output:lan addr=127.0.0.1:" + std::to_string(a.port()) + " udp=" +
                           std::to_string(a.port()) + " state=playing since=", 0),
            0u)
      << info;
  EXPECT_EQ(session.command("INFO output:nobody").rfind("ERR no-such-user", 0), 0u);
  std::string stats = session.command("STATS");
  EXPECT_NE(stats.find(" subscribers=2 "), std::string::npos) << stats;
  EXPECT_NE(stats.find(" outputs=2"), std::string::npos) << stats;

  Counters counters = once_counted(relay, "lan", 200);
  const SubscriberView* lan = find_output(counters, "lan");
  ASSERT_NE(lan, nullptr);
  EXPECT_EQ(lan->port, a.port());
  EXPECT_EQ(lan->datagrams, 200u);
  EXPECT_FALSE(lan->orphan);
  std::string metrics = prometheus_text(counters.snapshot());
  EXPECT_NE(metrics.find("port=\"" + std::to_string(a.port()) + "\",output=\"lan\"} 200"), std::string::npos) << metrics;
  std::string json = snapshot_json(counters.snapshot()).dump();
  EXPECT_NE(json.find("\"owner_name\":\"recorder\",\"output\":true"), std::string::npos) << json;
}

TEST(Outputs, AViewerCannotTakeAnOutputsDestination) {
  UdpSink a;
  Relay relay(outputs_yaml({{"lan", a.port()}}));
  Session session(relay.control_port());
  std::string reply = session.command("CONECTAR " + std::to_string(a.port()));
  EXPECT_EQ(reply.rfind("ERR busy", 0), 0u) << reply;
  EXPECT_EQ(relay.counters()["control.subscribers"], 1u);
}

TEST(Outputs, AReloadAddsChangesAndRemovesThemWithoutAGapForTheOthers) {
  UdpSink kept, removed, added;
  Relay relay(outputs_yaml({{"kept", kept.port()}, {"removed", removed.port()}}));
  ASSERT_TRUE(wait_until([&] { return relay.counters()["fanout.sockets"] == 2; })) << relay.log();
  UdpSource source(relay.ingest_port());
  expect_stream(source, {&kept, &removed}, 0, 50);

  reload(relay, outputs_yaml({{"kept", kept.port()}, {"added", added.port()}}));
  ASSERT_TRUE(wait_until([&] {
    Counters c = relay.counters();
    return find_output(c, "added") && !find_output(c, "removed") && c["fanout.sockets"] == 2;
  })) << relay.log();
  expect_stream(source, {&kept, &added}, 50, 100);
  EXPECT_EQ(removed.drain(), 0u) << "a removed output gets nothing more";
  Counters after = once_counted(relay, "kept", 100);
  EXPECT_EQ(find_output(after, "kept")->datagrams, 100u) << "the kept output is the same subscription";

  // Moved: the same name, another destination.
  reload(relay, outputs_yaml({{"kept", removed.port()}}));
  ASSERT_TRUE(wait_until([&] {
    Counters c = relay.counters();
    const SubscriberView* moved = find_output(c, "kept");
    return moved && moved->port == removed.port() && c.subscribers().size() == 1;
  })) << relay.log();
  expect_stream(source, {&removed}, 100, 120);
  EXPECT_EQ(kept.drain() + added.drain(), 0u);
}

TEST(Outputs, StayOutputsWhenControlIsKilled) {
  UdpSink a;
  Relay relay(outputs_yaml({{"lan", a.port()}}));
  ASSERT_TRUE(wait_until([&] { return relay.counters()["fanout.sockets"] == 1; })) << relay.log();
  UdpSource source(relay.ingest_port());
  expect_stream(source, {&a}, 0, 20);
  pid_t control = relay.child_pid(kControl);
  ASSERT_EQ(kill(control, SIGKILL), 0);
  ASSERT_TRUE(relay.wait_restarted(kControl, control)) << relay.log();
  expect_stream(source, {&a}, 20, 40);
  Counters c = once_counted(relay, "lan", 40);
  ASSERT_EQ(c.subscribers().size(), 1u) << "no second slot for the same output";
  EXPECT_TRUE(c.subscribers()[0].output);
  EXPECT_FALSE(c.subscribers()[0].orphan);
  EXPECT_EQ(c.subscribers()[0].datagrams, 40u);
  EXPECT_EQ(c["control.subscribers"], 1u);
}
