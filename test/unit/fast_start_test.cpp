// Unit tests of the fast-start decision shared by the fan-out and the http process
// (common/fast_start.hpp): which key frame a viewer arriving mid-stream starts at, and the
// tables that go first.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "fast_start.hpp"

using namespace vrelay;

namespace {

// A ring of 64 slots (48 reachable) filled with empty datagrams, one every 100 ms, and the
// StreamInfo ingest would have written for it.
struct Stream {
  static constexpr uint32_t kSlots = 64;
  static constexpr uint64_t kStepNs = 100 * kNsPerMs;
  uint32_t stride = uint32_t(kRingDataOffset + 2 * kTsPacketSize);
  std::vector<char> memory = std::vector<char>(size_t(kSlots) * stride);
  RingControl control{};
  RingView ring{&control, memory.data(), kSlots, stride};
  std::unique_ptr<StreamInfo> info = std::make_unique<StreamInfo>();

  explicit Stream(uint64_t count, const std::vector<uint64_t>& keys) {
    for (uint64_t p = 0; p < count; ++p) {
      RingSlotHeader& h = ring.header(p);
      h.length = 0;
      h.position = p;
      h.received_ns = kNsPerSecond + p * kStepNs;
      h.flags = 0;
    }
    for (uint64_t k : keys) ring.header(k).flags = kSlotKeyFrame;
    control.head = count;
    info->tables_position = 0;
    info->tables_seq = 2;
  }
  uint64_t time_of(uint64_t position) const { return kNsPerSecond + position * kStepNs; }
};

TEST(FastStartPoint, NoTablesNoFastStart) {
  Stream s(40, {10, 30});
  s.info->tables_seq = 0;
  EXPECT_FALSE(choose_fast_start(s.ring, *s.info, s.time_of(40)));
  s.info->tables_seq = 3;  // being written
  EXPECT_FALSE(choose_fast_start(s.ring, *s.info, s.time_of(40)));
}

TEST(FastStartPoint, TheLastKeyFrameOrTheOneBeforeIfItLeftLessThanASecond) {
  Stream s(40, {10, 30});
  auto start = choose_fast_start(s.ring, *s.info, s.time_of(40) + 1);  // key 30 is 1 s old
  ASSERT_TRUE(start);
  EXPECT_EQ(start->key_position, 30u);
  EXPECT_EQ(start->tables_seq, 2u);
  start = choose_fast_start(s.ring, *s.info, s.time_of(35));  // key 30 is 0.5 s old
  ASSERT_TRUE(start);
  EXPECT_EQ(start->key_position, 10u);
  // Key frames received after the viewer came do not count.
  start = choose_fast_start(s.ring, *s.info, s.time_of(20));
  ASSERT_TRUE(start);
  EXPECT_EQ(start->key_position, 10u);
}

TEST(FastStartPoint, OnlyKeyFramesInReachAndOfTheCurrentTables) {
  Stream s(60, {5, 30});  // 48 reachable: from position 12 on
  auto start = choose_fast_start(s.ring, *s.info, s.time_of(35));
  ASSERT_TRUE(start);
  EXPECT_EQ(start->key_position, 30u) << "key frame 5 is out of reach: the last one, young as it is";
  s.info->tables_position = 31;  // the source restarted with other tables after key frame 30
  EXPECT_FALSE(choose_fast_start(s.ring, *s.info, s.time_of(59)));
}

TEST(FastStartPoint, TablesAreReadUnderTheSeqlockAndContinueTheCounters) {
  Stream s(4, {});
  uint8_t pat[kTsPacketSize] = {kTsSync, 0x40, 0x00, 0x17}, pmt[kTsPacketSize] = {kTsSync, 0x50, 0x00, 0x1c};
  for (size_t w = 0; w < kTablePacketWords; ++w) {
    uint64_t a = 0, b = 0;
    std::memcpy(&a, pat + w * 8, std::min<size_t>(8, kTsPacketSize - w * 8));
    std::memcpy(&b, pmt + w * 8, std::min<size_t>(8, kTsPacketSize - w * 8));
    s.info->pat[w] = a;
    s.info->pmt[w] = b;
  }
  TablePackets tables{};
  EXPECT_FALSE(read_tables(*s.info, 4, &tables)) << "other tables than those of the key frame";
  ASSERT_TRUE(read_tables(*s.info, 2, &tables));
  EXPECT_EQ(std::memcmp(tables.data(), pat, kTsPacketSize), 0);
  EXPECT_EQ(std::memcmp(tables.data() + kTsPacketSize, pmt, kTsPacketSize), 0);
  // Datagram 2 carries the next PAT (counter 5) and PMT (counter 9), with payload.
  s.ring.header(2).length = 2 * kTsPacketSize;
  uint8_t* d = reinterpret_cast<uint8_t*>(s.ring.data(2));
  std::memcpy(d, pat, kTsPacketSize);
  std::memcpy(d + kTsPacketSize, pmt, kTsPacketSize);
  d[3] = 0x15;
  d[kTsPacketSize + 3] = 0x19;
  continue_counters(s.ring, 1, 4, &tables);
  EXPECT_EQ(tables[3], 0x14) << "the PAT comes just before the next one";
  EXPECT_EQ(tables[kTsPacketSize + 3], 0x18);
}

}  // namespace
