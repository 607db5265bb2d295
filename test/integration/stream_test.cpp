// Integration tests of the data path: datagrams from the source reach every playing
// subscriber byte for byte and in order; PAUSE/RESUME/DESCONECTAR and a dropped session
// take effect exactly; what must not be relayed is dropped and counted.
#include <gtest/gtest.h>

#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

// Sends datagrams [first, first+count) in chunks and checks that every sink in `receiving`
// gets each one, identical and in order. Chunks keep the socket buffers from overflowing.
void deliver(UdpSource& source, std::vector<UdpSink*> receiving, uint64_t first, uint64_t count) {
  constexpr uint64_t kChunk = 200;
  for (uint64_t start = first; start < first + count; start += kChunk) {
    uint64_t end = std::min(first + count, start + kChunk);
    for (uint64_t i = start; i < end; ++i) source.send(test_payload(i));
    for (UdpSink* sink : receiving)
      for (uint64_t i = start; i < end; ++i) {
        auto got = sink->receive();
        ASSERT_TRUE(got) << "datagram " << i << " never arrived at port " << sink->port();
        ASSERT_TRUE(is_payload(got, i)) << "datagram " << i << " differs or is out of order at port " << sink->port();
      }
  }
}

TEST(Stream, ThreeSubscribersReceiveTenThousandMixedDatagramsIdenticalAndInOrder) {
  Relay relay;
  Viewer viewers[3] = {Viewer(relay), Viewer(relay), Viewer(relay)};
  UdpSource source(relay.ingest_port());
  deliver(source, {&viewers[0].sink, &viewers[1].sink, &viewers[2].sink}, 0, 10000);
  for (Viewer& v : viewers) EXPECT_EQ(v.sink.drain(), 0u) << "extra datagrams";

  Stats& stats = relay.shm().stats();
  EXPECT_TRUE(wait_until([&] { return stats.fanout.sent_datagrams.load() == 30000u; }));
  uint64_t bytes = 0;
  for (uint64_t i = 0; i < 10000; ++i) bytes += test_payload(i).size();
  Counters c = relay.counters();  // the relay's and the subscribers' figures of one moment
  EXPECT_EQ(c["ingest.datagrams"], 10000u);
  EXPECT_EQ(c["ingest.bytes"], bytes);
  EXPECT_EQ(c["fanout.sent_bytes"], 3 * bytes);
  EXPECT_EQ(c["fanout.send_errors"], 0u);
  // Per-subscriber counters in the subscriber table.
  int counted = 0;
  for (const SubscriberView& sub : c.subscribers()) {
    if (sub.state != SubscriberState::kPlaying) continue;
    EXPECT_EQ(sub.datagrams, 10000u);
    EXPECT_EQ(sub.bytes, bytes);
    ++counted;
  }
  EXPECT_EQ(counted, 3);
}

TEST(Stream, PausedSubscriberGetsNothingAndResumesWithNewDatagramsOnly) {
  Relay relay;
  Viewer a(relay);
  UdpSink& playing = a.sink;
  UdpSink paused;
  Session b(relay.control_port());
  ASSERT_EQ(b.command("CONNECT " + std::to_string(paused.port())), "OK");  // the English alias too
  UdpSource source(relay.ingest_port());
  deliver(source, {&playing, &paused}, 0, 100);

  ASSERT_EQ(b.command("INTERRUMPIR"), "OK");
  deliver(source, {&playing}, 100, 500);  // once the other got them, the fan-out is past them
  EXPECT_EQ(paused.drain(), 0u) << "a paused subscriber received datagrams";

  ASSERT_EQ(b.command("CONTINUAR"), "OK");
  deliver(source, {&playing, &paused}, 600, 100);  // exactly the new ones: no catch-up
  EXPECT_EQ(paused.drain(), 0u);
  ASSERT_EQ(b.command("PAUSE"), "OK");
  ASSERT_EQ(b.command("RESUME"), "OK");
  deliver(source, {&playing, &paused}, 700, 10);
}

TEST(Stream, DisconnectAndADroppedSessionStopDelivery) {
  Relay relay;
  Viewer stays(relay), leaves(relay), dropped(relay);
  UdpSource source(relay.ingest_port());
  deliver(source, {&stays.sink, &leaves.sink, &dropped.sink}, 0, 50);

  ASSERT_EQ(leaves.session.command("DESCONECTAR"), "OK");
  EXPECT_TRUE(leaves.session.closed_by_peer());
  dropped.session.close();  // no command: the end of the connection is a DESCONECTAR
  Stats& stats = relay.shm().stats();
  ASSERT_TRUE(wait_until([&] { return stats.control.subscribers.load() == 1; }));
  deliver(source, {&stays.sink}, 50, 300);
  EXPECT_EQ(leaves.sink.drain(), 0u);
  EXPECT_EQ(dropped.sink.drain(), 0u);
}

TEST(Stream, UnreachableSubscriberDoesNotHoldBackTheOthers) {
  Relay relay;
  uint16_t nobody = free_udp_port();  // nothing listens there: ICMP port unreachable
  Session b(relay.control_port());
  ASSERT_EQ(b.command("CONECTAR " + std::to_string(nobody)), "OK");
  Viewer good(relay);  // subscribed after the unreachable one
  UdpSource source(relay.ingest_port());
  deliver(source, {&good.sink}, 0, 2000);
  EXPECT_TRUE(wait_until([&] { return relay.shm().stats().fanout.datagrams.load() == 2000u; }));
}

TEST(Stream, OversizeDatagramsAreDroppedAndCountedNeverTruncated) {
  Relay relay("ingest:\n  max_datagram: 1000\n");
  Viewer viewer(relay);
  UdpSink& sink = viewer.sink;
  UdpSource source(relay.ingest_port());
  source.send(std::string(1000, 'a'));   // exactly the limit: relayed
  source.send(std::string(1001, 'b'));   // one byte more: dropped
  source.send(std::string(9000, 'c'));
  source.send(std::string(188, 'd'));
  EXPECT_EQ(sink.receive(), std::string(1000, 'a'));
  EXPECT_EQ(sink.receive(), std::string(188, 'd'));
  Stats& stats = relay.shm().stats();
  EXPECT_TRUE(wait_until([&] { return stats.ingest.drops_oversize.load() == 2u; }));
  EXPECT_EQ(stats.ingest.datagrams.load(), 2u);
  EXPECT_EQ(sink.drain(), 0u);
}

TEST(Stream, ForeignSendersAreDroppedAndCounted) {
  Relay relay("ingest:\n  allow: [127.0.0.1/32]\n");
  Viewer viewer(relay);
  UdpSink& sink = viewer.sink;
  UdpSource stranger(relay.ingest_port(), "127.0.0.2");
  UdpSource source(relay.ingest_port());
  for (int i = 0; i < 5; ++i) stranger.send("intruder");
  source.send(test_payload(1));
  for (int i = 0; i < 5; ++i) stranger.send("intruder");
  source.send(test_payload(2));
  EXPECT_TRUE(is_payload(sink.receive(), 1));
  EXPECT_TRUE(is_payload(sink.receive(), 2));
  Stats& stats = relay.shm().stats();
  EXPECT_TRUE(wait_until([&] { return stats.ingest.drops_foreign_sender.load() == 10u; }));
  EXPECT_EQ(sink.drain(), 0u);
}

TEST(Stream, AFullRingDropsAndCountsNeverBlocks) {
  Relay relay("ingest:\n  ring_slots: 16\n  ring_bytes: 0\n");
  Stats& stats = relay.shm().stats();
  // Stop the fan-out so nothing empties the ring, then overfill it.
  pid_t fanout = relay.child_pid(kFanout);
  ASSERT_EQ(kill(fanout, SIGSTOP), 0);
  UdpSource source(relay.ingest_port());
  for (int i = 0; i < 40; ++i) source.send(test_payload(uint64_t(i)));
  Counters c;  // the snapshot in which all 40 are accounted for: its two figures belong together
  EXPECT_TRUE(wait_until([&] {
    c = relay.counters();
    return c["ingest.datagrams"] + c["ingest.drops_ring_full"] == 40u;
  }));
  EXPECT_EQ(c["ingest.datagrams"], 16u);
  EXPECT_EQ(c["ingest.drops_ring_full"], 24u);
  ASSERT_EQ(kill(fanout, SIGCONT), 0);
  EXPECT_TRUE(wait_until([&] { return stats.fanout.datagrams.load() == 16u; }));
}

}  // namespace
