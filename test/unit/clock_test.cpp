// common/clock.hpp: the monotonic receive stamp that keeps PAUSE/RESUME cut-offs still when
// the wall clock steps.
#include "clock.hpp"

#include <gtest/gtest.h>

namespace vrelay {
namespace {

constexpr uint64_t kWall = 1'800'000'000 * kNsPerSecond;  // some wall time in 2027
constexpr uint64_t kMonotonic = 5'000 * kNsPerSecond;     // some time since boot
constexpr uint64_t kHour = 3600 * kNsPerSecond;

TEST(Clock, AReceiveStampKeepsTheDatagramsAge) {
  EXPECT_EQ(monotonic_receive_time(kWall - 300 * kNsPerMs, kWall, kMonotonic), kMonotonic - 300 * kNsPerMs);
  EXPECT_EQ(monotonic_receive_time(kWall, kWall, kMonotonic), kMonotonic);
}

TEST(Clock, AWallClockStepAfterTheStampCostsOnlyTheAge) {
  // Stamped, then the clock went back 2 h before ingest read it: the stamp lies in the future.
  EXPECT_EQ(monotonic_receive_time(kWall, kWall - 2 * kHour, kMonotonic), kMonotonic);
  // Or forward 1 h: an hour-old datagram is not believed; it was received about now.
  EXPECT_EQ(monotonic_receive_time(kWall, kWall + kHour, kMonotonic), kMonotonic);
}

TEST(Clock, NeverBeforeBoot) {
  EXPECT_EQ(monotonic_receive_time(kWall - 500 * kNsPerMs, kWall, 100 * kNsPerMs), 100 * kNsPerMs);
}

}  // namespace
}  // namespace vrelay
