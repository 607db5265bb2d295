// Unit tests of the SPSC datagram ring: order, full ring, wrap-around, and a two-thread
// run (the TSan build checks the acquire/release pairs).
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "ring.hpp"

using namespace vrelay;

namespace {

struct TestRing {
  explicit TestRing(uint32_t slots, uint32_t max_payload = 64)
      : stride(uint32_t((kRingDataOffset + max_payload + 63) / 64 * 64)), memory(size_t(slots) * stride) {
    control.head = 0;
    control.tail = 0;
    producer = std::make_unique<RingView>(&control, memory.data(), slots, stride);
    consumer = std::make_unique<RingView>(&control, memory.data(), slots, stride);
  }
  bool push(const std::string& payload) {
    uint64_t head = producer->producer_position();
    if (producer->writable(head, 1) == 0) return false;
    std::memcpy(producer->data(head), payload.data(), payload.size());
    producer->header(head).length = uint32_t(payload.size());
    producer->header(head).position = head;
    producer->publish(head + 1);
    return true;
  }
  std::optional<std::string> pop() {
    uint64_t tail = consumer->consumer_position();
    if (consumer->readable(tail) == 0) return std::nullopt;
    std::string out(consumer->data(tail), consumer->header(tail).length);
    EXPECT_EQ(consumer->header(tail).position, tail);
    consumer->release(tail + 1);
    return out;
  }
  uint32_t stride;
  RingControl control;
  std::vector<char> memory;
  std::unique_ptr<RingView> producer, consumer;
};

TEST(Ring, KeepsOrder) {
  TestRing r(16);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(r.push("d" + std::to_string(i)));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(*r.pop(), "d" + std::to_string(i));
  EXPECT_FALSE(r.pop());
}

TEST(Ring, FullRingRefusesUntilTheConsumerReleases) {
  TestRing r(16);
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(r.push(std::to_string(i)));
  EXPECT_FALSE(r.push("overflow"));
  EXPECT_EQ(r.producer->writable(r.producer->producer_position(), 1), 0u);
  EXPECT_EQ(*r.pop(), "0");
  EXPECT_EQ(r.producer->writable(r.producer->producer_position(), 4), 1u);
  EXPECT_TRUE(r.push("16"));
  for (int i = 1; i <= 16; ++i) EXPECT_EQ(*r.pop(), std::to_string(i));
}

// The soak's three lost datagrams (docs/benchmarks.md, 2026-12-02): the producer's copy of
// the tail, one slot short of the two datagrams a late generator tick wanted, dropped one
// although the consumer had long emptied the ring.
TEST(Ring, AStaleTailNeverCostsRoomTheRingHas) {
  TestRing r(16);
  for (int i = 0; i < 15; ++i) ASSERT_TRUE(r.push(std::to_string(i)));
  for (int i = 0; i < 15; ++i) ASSERT_TRUE(r.pop());  // the consumer caught up: 16 free
  EXPECT_EQ(r.producer->writable(r.producer->producer_position(), 2), 2u);
  EXPECT_EQ(r.producer->writable(r.producer->producer_position(), 16), 16u);
  EXPECT_EQ(r.producer->writable(r.producer->producer_position(), 40), 16u);
}

TEST(Ring, WrapsAroundManyTimes) {
  TestRing r(16);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(r.push("x" + std::to_string(i)));
    if (i % 3 == 2) {
      for (int k = 0; k < 3; ++k) ASSERT_TRUE(r.pop());
    }
  }
  EXPECT_GT(r.control.head.load(), 16u * 60);  // positions only grow
}

TEST(Ring, ResumesFromSharedPositionsAfterARestart) {
  TestRing r(16);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(r.push(std::to_string(i)));
    ASSERT_TRUE(r.pop());
  }
  ASSERT_TRUE(r.push("before"));
  // A restarted consumer and producer start with empty caches.
  r.consumer = std::make_unique<RingView>(&r.control, r.memory.data(), 16, r.stride);
  r.producer = std::make_unique<RingView>(&r.control, r.memory.data(), 16, r.stride);
  ASSERT_TRUE(r.push("after"));
  EXPECT_EQ(*r.pop(), "before");
  EXPECT_EQ(*r.pop(), "after");
  EXPECT_FALSE(r.pop());
}

TEST(Ring, TwoThreadsPassEveryItemInOrder) {
  TestRing r(64);
  constexpr int kCount = 200000;
  std::thread producer([&] {
    for (int i = 0; i < kCount;) {
      if (r.push(std::to_string(i))) ++i;
    }
  });
  int expected = 0;
  while (expected < kCount) {
    if (auto item = r.pop()) {
      ASSERT_EQ(*item, std::to_string(expected));
      ++expected;
    }
  }
  producer.join();
}

}  // namespace
