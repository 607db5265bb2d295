// Unit tests of the shared-memory layout and the header checks readers rely on.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <vector>

#include "ring.hpp"
#include "shm.hpp"
#include "subscribers.hpp"

using namespace vrelay;

namespace {

std::vector<char> valid_segment() {
  Layout l = Layout::compute({8, 16, 1500});
  std::vector<char> mem(l.total + 64);
  auto* h = new (mem.data()) Header{};
  h->magic = kShmMagic;
  h->header_size = sizeof(Header);
  h->total_size = l.total;
  h->max_subscribers = 8;
  h->ring_slots = 16;
  h->max_datagram = 1500;
  h->processes_offset = l.processes;
  h->stats_offset = l.stats;
  h->subscribers_offset = l.subscribers;
  h->ring_offset = l.ring;
  h->ring_slot_stride = l.slot_stride;
  h->version.store(layout_version(kLayoutMajor, kLayoutMinor));
  return mem;
}

TEST(Layout, PartsAreAlignedAndDoNotOverlap) {
  Layout l = Layout::compute({1024, 4096, 1500});
  EXPECT_EQ(l.processes % kCacheLine, 0u);
  EXPECT_EQ(l.stats % kCacheLine, 0u);
  EXPECT_EQ(l.subscribers % kCacheLine, 0u);
  EXPECT_EQ(l.ring % kCacheLine, 0u);
  EXPECT_GE(l.stats, l.processes + kRoleCount * sizeof(ProcessSlot));
  EXPECT_GE(l.ring, l.subscribers + 1024 * sizeof(SubscriberSlot));
  EXPECT_GE(l.slot_stride, kRingDataOffset + 1500);
  EXPECT_EQ(l.slot_stride % kCacheLine, 0u);
  EXPECT_GE(l.total, l.ring + sizeof(RingControl) + 4096ull * l.slot_stride);
}

TEST(CheckHeader, AcceptsAValidSegment) {
  auto mem = valid_segment();
  Status usable = check_header(mem.data(), mem.size());
  EXPECT_TRUE(usable) << usable.error();
}

TEST(CheckHeader, Truncated) {
  auto mem = valid_segment();
  EXPECT_NE(check_header(mem.data(), 10).error().find("truncated"), std::string::npos);
  EXPECT_NE(check_header(mem.data(), sizeof(Header) + 100).error().find("truncated"), std::string::npos);
}

TEST(CheckHeader, WrongMagic) {
  auto mem = valid_segment();
  reinterpret_cast<Header*>(mem.data())->magic = 42;
  EXPECT_EQ(check_header(mem.data(), mem.size()).error(), "not a vrelay segment (bad magic number)");
}

TEST(CheckHeader, OtherMajorVersionNamesBoth) {
  auto mem = valid_segment();
  reinterpret_cast<Header*>(mem.data())->version.store(layout_version(kLayoutMajor + 1, 3));
  bool starting = true, other_version = false;
  Status usable = check_header(mem.data(), mem.size(), &starting, &other_version);
  ASSERT_FALSE(usable);
  EXPECT_FALSE(starting);
  EXPECT_TRUE(other_version);
  const std::string& msg = usable.error();
  EXPECT_NE(msg.find(std::to_string(kLayoutMajor + 1) + ".3"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(kLayoutMajor) + "."), std::string::npos) << msg;
}

TEST(CheckHeader, VersionZeroMeansStarting) {
  auto mem = valid_segment();
  reinterpret_cast<Header*>(mem.data())->version.store(0);
  bool starting = false;
  Status usable = check_header(mem.data(), mem.size(), &starting);
  ASSERT_FALSE(usable);
  EXPECT_EQ(usable.error(), "segment is being created (vrelayd is starting)");
  EXPECT_TRUE(starting);
}

TEST(CheckHeader, InconsistentOffsets) {
  auto mem = valid_segment();
  reinterpret_cast<Header*>(mem.data())->ring_offset += 64;
  EXPECT_NE(check_header(mem.data(), mem.size()).error().find("corrupt"), std::string::npos);
}

// Found by the shm fuzz target: a huge max_datagram wrapped the slot stride to 0.
TEST(CheckHeader, ADatagramSizeNoUdpPayloadHasIsCorrupt) {
  auto mem = valid_segment();
  reinterpret_cast<Header*>(mem.data())->max_datagram = 0xFFFFFFC1;
  EXPECT_NE(check_header(mem.data(), mem.size()).error().find("corrupt"), std::string::npos);
}

TEST(Counters, TableIsGeneratedFromTheDefinitions) {
  ASSERT_GT(kCounterCount, 10u);
  Stats stats{};
  stats.ingest.drops_oversize.store(7);
  stats.fanout.sent_datagrams.store(9);
  bool found_oversize = false, found_sent = false;
  for (size_t i = 0; i < kCounterCount; ++i) {
    const CounterInfo& c = kCounters[i];
    ASSERT_LT(c.offset + sizeof(uint64_t), sizeof(Stats) + 1);
    if (std::string(c.group) == "ingest" && std::string(c.name) == "drops_oversize") {
      found_oversize = true;
      EXPECT_EQ(read_counter(stats, c), 7u);
    }
    if (std::string(c.group) == "fanout" && std::string(c.name) == "sent_datagrams") {
      found_sent = true;
      EXPECT_EQ(read_counter(stats, c), 9u);
    }
  }
  EXPECT_TRUE(found_oversize && found_sent);
}

TEST(Subscribers, SeqlockRoundTrip) {
  SubscriberSlot slot{};
  TableControl table{};
  Endpoint ep = *parse_endpoint("127.0.0.1:5004");
  {
    SubscriberWrite w(slot, table);
    w.set_destination(ep);
    slot.state.store(uint32_t(SubscriberState::kPlaying));
    slot.from_ns.store(5);
    slot.until_ns.store(9);
  }
  EXPECT_EQ(table.generation.load(), 1u);
  SubscriberSnapshot s;
  ASSERT_TRUE(read_subscriber(slot, &s));
  EXPECT_EQ(s.state, SubscriberState::kPlaying);
  EXPECT_EQ(s.destination.to_string(), "127.0.0.1:5004");
  EXPECT_EQ(s.from_ns, 5u);
  EXPECT_EQ(s.until_ns, 9u);
}

TEST(Subscribers, ASlotLeftMidWriteIsNotRead) {
  SubscriberSlot slot{};
  slot.seq.store(3);  // a writer died between its two seq stores
  SubscriberSnapshot s;
  EXPECT_FALSE(read_subscriber(slot, &s, 10));
  TableControl table{};
  { SubscriberWrite w(slot, table); }  // the next writer repairs it
  EXPECT_TRUE(read_subscriber(slot, &s, 10));
}

TEST(Segment, CreateOpenAndRemove) {
  std::string instance = "unit-" + std::to_string(getpid());
  auto seg = Segment::create(instance, {4, 16, 1500});
  try {
    Segment::open(instance, true);
    ADD_FAILURE() << "a segment not published yet opened";
  } catch (const SegmentError& e) {
    EXPECT_EQ(e.problem(), SegmentProblem::kStarting);
    EXPECT_EQ(e.reason(), "segment is being created (vrelayd is starting)");
    EXPECT_EQ(std::string(e.what()), "/vrelay." + instance + ": " + e.reason());
  }
  seg->publish();
  auto reader = Segment::open(instance, true);
  EXPECT_EQ(reader->header().max_subscribers, 4u);
  EXPECT_EQ(std::string(reader->header().instance), instance);
  EXPECT_TRUE(Segment::remove(instance));
  EXPECT_THROW(Segment::open(instance, true), std::runtime_error);
}

// A reload's new sizes (Supervisor::resize_segment): the new segment takes the name, the
// old mapping notices, and the relay's state carries over.
TEST(Segment, ANewSizeCarriesTheStateOver) {
  std::string instance = "unit-resize-" + std::to_string(getpid());
  auto old = Segment::create(instance, {4, 16, 1500});
  old->publish();
  EXPECT_FALSE(old->replaced());
  std::strcpy(old->header().control_address, "127.0.0.1:7000");
  old->stats().ingest.datagrams.store(40);
  old->process(kFanout).restarts.store(3);
  for (uint32_t i : {1u, 3u}) {  // two subscriptions, in slots 1 and 3
    old->subscribers()[i].state.store(uint32_t(SubscriberState::kPlaying));
    old->subscribers()[i].port.store(5000 + i);
    old->subscribers()[i].sent_until.store(38);
  }
  // 40 datagrams went through the ring of 16: positions 24 to 39 are in it, the fan-out sent
  // up to 38. Position 29 is 1400 bytes long; the others 100.
  RingView ring = ring_of(*old);
  for (uint64_t p = 0; p < 40; ++p) {
    ring.header(p) = RingSlotHeader{p == 29 ? 1400u : 100u, 0, p, 1000 + p, 0};
    std::memset(ring.data(p), int(p), ring.header(p).length);
  }
  old->ring_control().head.store(40);
  old->ring_control().tail.store(38);

  // Larger: all 16 datagrams, both subscriptions (packed), the counters and the addresses.
  auto larger = Segment::create(instance, {8, 64, 1500});
  EXPECT_TRUE(old->replaced());
  Segment::CarriedOver carried = larger->carry_over_from(*old);
  EXPECT_EQ(carried.subscriptions, 2u);
  EXPECT_EQ(carried.left_out, 0u);
  EXPECT_EQ(carried.datagrams, 16u);
  EXPECT_EQ(carried.unsent, 0u);
  EXPECT_EQ(std::string(larger->header().control_address), "127.0.0.1:7000");
  EXPECT_EQ(larger->stats().ingest.datagrams.load(), 40u);
  EXPECT_EQ(larger->process(kFanout).restarts.load(), 3u);
  EXPECT_EQ(larger->subscribers()[0].port.load(), 5001u);
  EXPECT_EQ(larger->subscribers()[1].port.load(), 5003u);
  EXPECT_EQ(larger->subscribers()[1].sent_until.load(), 38u);
  EXPECT_EQ(larger->ring_control().head.load(), 40u);
  EXPECT_EQ(larger->ring_control().tail.load(), 38u);
  RingView bigger = ring_of(*larger);
  for (uint64_t p = 24; p < 40; ++p) {
    EXPECT_EQ(bigger.header(p).position, p);
    EXPECT_EQ(bigger.header(p).received_ns, 1000 + p);
    EXPECT_EQ(bigger.data(p)[bigger.header(p).length - 1], char(p));
  }

  // Smaller slots and table: position 29 no longer fits, so the ring holds 30 to 39, and the
  // fan-out's tail (38) is among them; one subscription has no slot.
  auto smaller = Segment::create(instance, {1, 16, 1316});
  Segment::CarriedOver shrunk = smaller->carry_over_from(*old);
  EXPECT_EQ(shrunk.subscriptions, 1u);
  EXPECT_EQ(shrunk.left_out, 1u);
  EXPECT_EQ(shrunk.datagrams, 10u);
  EXPECT_EQ(shrunk.unsent, 0u);
  EXPECT_EQ(smaller->ring_control().tail.load(), 38u);
  // Fewer slots than the fan-out's backlog: the oldest unsent ones are gone, and counted.
  old->ring_control().tail.store(20);
  auto fewer = Segment::create(instance, {4, 16, 1500});
  Segment::CarriedOver behind = fewer->carry_over_from(*old);
  EXPECT_EQ(behind.datagrams, 16u);
  EXPECT_EQ(behind.unsent, 4u);
  EXPECT_EQ(fewer->ring_control().tail.load(), 24u);
  EXPECT_TRUE(Segment::remove(instance));
  EXPECT_TRUE(fewer->replaced());
}

TEST(Segment, InstanceNames) {
  for (const char* good : {"default", "a", "relay_2-east", "abcdefghijklmnopqrstuvwxyz012345"}) {
    Status valid = Segment::valid_instance_name(good);
    EXPECT_TRUE(valid) << good << ": " << valid.error();
  }
  for (const char* bad : {"", "../x", "a b", "abcdefghijklmnopqrstuvwxyz0123456", "dot.ted"}) {
    Status valid = Segment::valid_instance_name(bad);
    ASSERT_FALSE(valid) << bad;
    EXPECT_EQ(valid.error(), "expected 1 to 32 letters, digits, '-' or '_'");
  }
}

}  // namespace
