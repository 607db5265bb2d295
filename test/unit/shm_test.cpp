// Unit tests of the shared-memory layout and the header checks readers rely on.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <vector>

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
